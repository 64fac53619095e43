"""The candidate: rounds, quorum counting and lease validity (DESIGN.md 5 rules 2, 4, 5, 7).

Theory of operation, per scope:

* A **round** is one acquisition (a new term) or one renewal (the same term). The candidate
  reads its clock (``start``) before the request leaves and gives the round its own id; a grant
  counts only for the exact round it answers (replies matched by term alone let a stale grant of
  an earlier round extend a later lease).
* A round **succeeds** once the grants form a majority of every voter configuration heard of in
  that round (the candidate's own, and any a reply carried). The lease then lasts until
  ``start + min(granted) * (1 - eps) / (1 + eps)`` on the candidate's own clock: each voter's
  grant runs at least ``min(granted)`` on a clock that may be ``1 + eps`` fast while ours may be
  ``1 - eps`` slow.
* A success whose deadline has already passed when the reply lands is **abandoned**, never acted
  on. A renewal that succeeds after the lease ran out locally **restores** leadership at the same
  term (the voters refused every other holder in between: the term never moved).
* A round **fails** once the refusals leave no majority in some configuration; the highest
  promised term a reject carried is remembered, and the next campaign goes above it:
  ``max(own term, highest promised seen) + 1``. The fence token is the term. A campaign also
  fails at the first voter that had promised its term already: the others might still make a
  majority, but with a voter down the round would only wait for its timeout, and a campaign
  above that term is granted by everyone the first one could get.
* **Release** first stops believing and abandons the in-flight round, then tells the voters.
  A released term is never renewed.
* A **campaign that fails** (refused, or given up when it timed out) gives its term back at once
  to every voter that granted it or had not answered, and any grant of a term this candidate
  left behind that lands later is given back to the voter it came from. Such a grant elects
  nobody, but it would keep every other candidate out of that voter for a whole lease: with one
  voter of three down, two candidates holding one grant each would block each other until both
  grants expired.

* A **thrifty renewal** asks only a majority of the voters (this node's own voter first, then
  voters in an order drawn from the holder's name, so leaders spread over the voters, skipping
  those the caller says are down and those that were slow last time): a renewal needs a
  majority's grants, and asking every voter had each voter answer every leader's every
  renewal. The round **widens** to every voter at the first refusal, and when the shell says
  the answers are late (:meth:`widen`). Safety does not depend on whom a round asks, only on
  the grants it counts; a voter not asked lets its copy of the grant run out, which only means
  it would grant another candidate that the asked majority still refuses.

Nothing here sleeps or sends: methods take a clock reading and return :class:`Outbound`
messages and decisions for a shell to act on.
"""

from __future__ import annotations

import enum
import math
import zlib
from collections.abc import Collection, Iterable

import attrs

from ..tokens import Holder
from .membership import VoterConfig
from .wire import LeaseReply, LeaseRequest, Message, ReleaseRequest, RoundEntry, Verdict


class RoundKind(enum.Enum):
    ACQUIRE = "acquire"
    RENEW = "renew"


@attrs.frozen
class Outbound:
    """Send ``message`` to every voter in ``targets``."""

    targets: frozenset[str]
    message: Message


@attrs.frozen
class Elected:
    """Leader of ``scope`` at ``term`` (the fence) until ``deadline`` on the candidate's clock."""

    scope: str
    term: int
    deadline: float
    granted: float
    """The shortest duration a voter of the quorum granted."""
    restored: bool = False
    """A renewal that landed after local expiry restored the same term."""


@attrs.frozen
class Renewed:
    scope: str
    term: int
    deadline: float
    granted: float


@attrs.frozen
class Refused:
    """The round cannot reach a quorum; ``promised`` is the highest term a voter reported."""

    scope: str
    term: int
    promised: int
    kind: RoundKind
    lost: bool
    """The candidate believed it led and stopped (a voter promised a higher term)."""
    incumbent: Holder | None = None
    """Who the refusing voters said holds the scope (the holder most of them named), if anyone."""
    incumbent_term: int = 0
    incumbent_remaining: float = 0.0


@attrs.frozen
class Abandoned:
    """A quorum came too late: its own deadline had passed. Release the term; never act on it."""

    scope: str
    term: int
    kind: RoundKind


Decision = Elected | Renewed | Refused | Abandoned


@attrs.frozen
class RoundStep:
    decisions: tuple[Decision, ...] = ()
    outbound: tuple[Outbound, ...] = ()


@attrs.define
class _Round:
    round_id: int
    kind: RoundKind
    term: int
    start: float
    configs: list[VoterConfig]
    asked: set[str]
    grants: set[str] = attrs.field(factory=set)
    refusals: set[str] = attrs.field(factory=set)
    min_granted: float = math.inf
    reports: dict[Holder, tuple[int, int, float]] = attrs.field(factory=dict)
    """Holders refusing voters named: (voters naming it, its term, least remaining)."""
    kept: set[str] = attrs.field(factory=set)
    """Refusing voters that still recorded this round's grant (their save failed)."""
    outbid: bool = False
    """A voter refused a campaign having promised its term or above to another holder."""


@attrs.define
class _ScopeState:
    term: int = 0
    max_seen: int = 0
    leader: bool = False
    deadline: float = -math.inf
    round: _Round | None = None
    released_term: int = 0


class LeaseCandidate:
    """One holder's campaigns and leases over every scope it takes part in."""

    def __init__(
        self,
        holder: Holder,
        config: VoterConfig,
        *,
        duration: float,
        max_drift: float = 0.05,
        thrifty: bool = False,
    ) -> None:
        if not 0 <= max_drift < 1:
            raise ValueError(f"max_drift must be in [0, 1), got {max_drift}")
        if not duration > 0:
            raise ValueError(f"duration must be > 0, got {duration}")
        self.holder = holder
        self.config = config
        self.duration = duration
        self.max_drift = max_drift
        self.factor = (1 - max_drift) / (1 + max_drift)
        self._scopes: dict[str, _ScopeState] = {}
        self._next_round = 1
        self._giving_back: list[Outbound] = []
        self.foreign_replies = 0
        self.terms_given_back = 0
        """Failed campaigns whose term was given back to the voters."""
        self.stray_grants_given_back = 0
        """Grants of a term left behind that landed late and were given back."""
        self.thrifty = thrifty
        """Renewals ask a majority of the voters, not all of them."""
        self._slow: set[str] = set()
        """Voters that had not answered a thrifty renewal when it widened: not asked first
        again until they answer a round."""
        self.widened = 0
        """Thrifty renewal rounds that had to ask every voter."""

    # ---------------------------------------------------------------- queries

    def is_leader(self, scope: str, now: float) -> bool:
        st = self._scopes.get(scope)
        return st is not None and st.leader and now < st.deadline

    def deadline(self, scope: str) -> float:
        """The end of the current lease on this clock (``-inf`` when not leading)."""
        st = self._scopes.get(scope)
        return st.deadline if st is not None and st.leader else -math.inf

    def term(self, scope: str) -> int:
        st = self._scopes.get(scope)
        return 0 if st is None else st.term

    def highest_seen(self, scope: str) -> int:
        st = self._scopes.get(scope)
        return 0 if st is None else max(st.term, st.max_seen)

    def released(self, scope: str) -> bool:
        """The current term of ``scope`` was released (it is never renewed)."""
        st = self._scopes.get(scope)
        return st is not None and st.term != 0 and st.released_term == st.term

    def leading(self, now: float) -> list[str]:
        """Scopes this holder leads at ``now`` with no round in flight, in name order."""
        return sorted(
            scope
            for scope, st in self._scopes.items()
            if st.leader and now < st.deadline and st.round is None
        )

    def in_flight(self, scope: str) -> RoundKind | None:
        st = self._scopes.get(scope)
        return None if st is None or st.round is None else st.round.kind

    # ---------------------------------------------------------------- rounds

    def campaign(self, scopes: Iterable[str], now: float) -> Outbound:
        """Start a new term for each scope; the clock was read (``now``) before sending."""
        entries = []
        for scope in scopes:
            st = self._state(scope)
            st.leader = False
            st.term = max(st.term, st.max_seen) + 1
            entries.append(self._open(scope, st, RoundKind.ACQUIRE, now))
        return self._request(entries)

    def renew(
        self, scopes: Iterable[str], now: float, *, down: Collection[str] = ()
    ) -> Outbound | None:
        """A new round at the same term for each scope that holds an unreleased term (thrifty:
        at a majority of the voters, preferring those not ``down`` in the caller's view)."""
        targets = self._renewal_targets(down)
        entries = []
        for scope in scopes:
            st = self._scopes.get(scope)
            if st is None or st.term == 0 or st.released_term == st.term:
                continue
            entries.append(self._open(scope, st, RoundKind.RENEW, now, targets))
        if not entries:
            return None
        return Outbound(targets, LeaseRequest(self.holder, self.config.epoch, tuple(entries)))

    def widen(self, round_ids: Collection[int]) -> Outbound | None:
        """Ask the voters a thrifty renewal left out, for those of ``round_ids`` still
        undecided (their answers are late); voters asked that had not answered are asked last
        next time."""
        entries: list[RoundEntry] = []
        rest: set[str] = set()
        for scope, st in self._scopes.items():
            rnd = st.round
            if rnd is None or rnd.round_id not in round_ids:
                continue
            left_out = self._left_out(rnd)
            if not left_out:
                continue
            self._slow |= rnd.asked - rnd.grants - rnd.refusals
            rnd.asked |= left_out
            rest |= left_out
            entries.append(RoundEntry(scope, rnd.term, rnd.round_id, self.duration))
        if not entries:
            return None
        self.widened += len(entries)
        request = LeaseRequest(self.holder, self.config.epoch, tuple(entries))
        return Outbound(frozenset(rest), request)

    def on_reply(self, reply: LeaseReply, now: float) -> RoundStep:
        """Count a voter's verdicts; decide the rounds they complete."""
        if reply.holder != self.holder:
            self.foreign_replies += 1
            return RoundStep()
        if reply.config is not None:
            self.learn_config(reply.config)
        decisions: list[Decision] = []
        widen: list[RoundEntry] = []
        widen_to: set[str] = set()
        refused: list[RoundEntry] = []
        refused_to: set[str] = set()
        self._slow.discard(reply.voter)
        for verdict in reply.verdicts:
            st = self._scopes.get(verdict.scope)
            if st is None:
                continue
            st.max_seen = max(st.max_seen, verdict.promised)
            rnd = st.round
            if rnd is None or not self._answers(verdict, rnd):
                if verdict.granted and self._left_behind(st, verdict.term):
                    self.stray_grants_given_back += 1
                    release = ReleaseRequest(self.holder, verdict.scope, verdict.term)
                    self._giving_back.append(Outbound(frozenset({reply.voter}), release))
                continue
            if reply.config is not None and reply.config not in rnd.configs:
                rnd.configs.append(reply.config)
                new = set(reply.config.voters) - rnd.asked
                if new:
                    rnd.asked |= new
                    widen_to |= new
                    widen.append(RoundEntry(verdict.scope, rnd.term, rnd.round_id, self.duration))
            if verdict.granted:
                rnd.grants.add(reply.voter)
                rnd.min_granted = min(rnd.min_granted, verdict.duration)
            else:
                rnd.refusals.add(reply.voter)
                left_out = self._left_out(rnd)
                if left_out:
                    # a thrifty renewal refused: the voters it left out may make the majority
                    rnd.asked |= left_out
                    refused_to |= left_out
                    refused.append(RoundEntry(verdict.scope, rnd.term, rnd.round_id, self.duration))
                    self.widened += 1
                if verdict.holder == self.holder:
                    rnd.kept.add(reply.voter)
                # (a refusal naming this holder is this round's own grant that the voter could
                # not store: the others may still make a majority)
                rnd.outbid |= (
                    rnd.kind is RoundKind.ACQUIRE
                    and verdict.promised >= rnd.term
                    and verdict.holder != self.holder
                )
                if verdict.holder is not None and verdict.holder != self.holder:
                    count, term, remaining = rnd.reports.get(verdict.holder, (0, 0, math.inf))
                    rnd.reports[verdict.holder] = (
                        count + 1,
                        max(term, verdict.holder_term),
                        min(remaining, verdict.remaining),
                    )
            decision = self._settle(verdict.scope, st, rnd, now)
            if decision is not None:
                decisions.append(decision)
        outbound, self._giving_back = self._giving_back, []
        if widen:
            request = LeaseRequest(self.holder, self.config.epoch, tuple(widen))
            outbound.append(Outbound(frozenset(widen_to), request))
        if refused:
            request = LeaseRequest(self.holder, self.config.epoch, tuple(refused))
            outbound.append(Outbound(frozenset(refused_to), request))
        return RoundStep(tuple(decisions), tuple(outbound))

    def abandon(self, scope: str) -> Outbound | None:
        """Forget the in-flight round (timed out or cancelled); its replies will be ignored.
        An abandoned campaign gives its term back (the release to send is returned); a renewal
        does not: its term may still be renewed or restored."""
        st = self._scopes.get(scope)
        if st is None or st.round is None:
            return None
        rnd, st.round = st.round, None
        if rnd.kind is RoundKind.ACQUIRE:
            return self._give_back(scope, st, rnd)
        return None

    def step_down(self, scope: str) -> None:
        """Stop believing (the lease ran out locally); the term may still be renewed or restored."""
        st = self._scopes.get(scope)
        if st is not None:
            st.leader = False

    def release(self, scope: str) -> Outbound | None:
        """Stop believing, abandon the in-flight round, then tell the voters (DESIGN 5 rule 7)."""
        st = self._scopes.get(scope)
        if st is None or st.term == 0:
            return None
        st.leader = False
        asked = st.round.asked if st.round is not None else set()
        st.round = None
        st.released_term = st.term
        return Outbound(
            frozenset(set(self.config.voters) | asked),
            ReleaseRequest(self.holder, scope, st.term),
        )

    def learn_config(self, config: VoterConfig) -> None:
        """Use a newer voter configuration for the next rounds."""
        if config.epoch > self.config.epoch:
            self.config = config

    def observe_term(self, scope: str, term: int) -> None:
        """Learn of a term in use elsewhere (gossip, a reject); the next campaign goes above it."""
        st = self._state(scope)
        st.max_seen = max(st.max_seen, term)

    # ---------------------------------------------------------------- internals

    def _state(self, scope: str) -> _ScopeState:
        st = self._scopes.get(scope)
        if st is None:
            st = self._scopes[scope] = _ScopeState()
        return st

    def _open(
        self,
        scope: str,
        st: _ScopeState,
        kind: RoundKind,
        now: float,
        targets: Collection[str] | None = None,
    ) -> RoundEntry:
        round_id = self._next_round
        self._next_round += 1
        st.round = _Round(
            round_id=round_id,
            kind=kind,
            term=st.term,
            start=now,
            configs=[self.config],
            asked=set(self.config.voters if targets is None else targets),
        )
        return RoundEntry(scope, st.term, round_id, self.duration)

    def _renewal_targets(self, down: Collection[str]) -> frozenset[str]:
        """Every voter, or (thrifty) a majority: this node's own voter first, then in an order
        drawn from the holder's name (leaders spread over the voters), the slow and the down
        ones last."""
        voters = self.config.voters
        if not self.thrifty:
            return frozenset(voters)
        me = self.holder.node_id
        ranked = sorted(
            voters,
            key=lambda v: (
                v in down,
                v in self._slow,
                v != me,
                zlib.crc32(f"{me}/{v}".encode()),
                v,
            ),
        )
        return frozenset(ranked[: self.config.majority])

    def _left_out(self, rnd: _Round) -> set[str]:
        """Voters of the round's configurations it has not asked (a thrifty renewal)."""
        if rnd.kind is not RoundKind.RENEW:
            return set()
        out: set[str] = set()
        for config in rnd.configs:
            out |= set(config.voters) - rnd.asked
        return out

    def _request(self, entries: list[RoundEntry]) -> Outbound:
        return Outbound(
            frozenset(self.config.voters),
            LeaseRequest(self.holder, self.config.epoch, tuple(entries)),
        )

    def _give_back(self, scope: str, st: _ScopeState, rnd: _Round) -> Outbound | None:
        """A failed campaign's term is never used again: release it at every voter that granted
        it or may still (a voter holds nothing of a term it refused, unless it refused only
        because it could not store the grant)."""
        st.released_term = max(st.released_term, rnd.term)
        targets = (rnd.asked - rnd.refusals) | rnd.kept
        if not targets:
            return None
        self.terms_given_back += 1
        return Outbound(frozenset(targets), ReleaseRequest(self.holder, scope, rnd.term))

    @staticmethod
    def _left_behind(st: _ScopeState, term: int) -> bool:
        """A term this candidate will never lead at: an older one, or the current one released."""
        return term < st.term or (term == st.term and st.released_term == term)

    def _answers(self, verdict: Verdict, rnd: _Round) -> bool:
        """A verdict counts only for the exact round it answers."""
        return verdict.round_id == rnd.round_id and verdict.term == rnd.term

    def _validity_start(self, rnd: _Round, now: float) -> float:
        """The lease runs from the clock reading taken before the request left."""
        return rnd.start

    def _settle(self, scope: str, st: _ScopeState, rnd: _Round, now: float) -> Decision | None:
        if all(c.has_majority(rnd.grants) for c in rnd.configs):
            st.round = None
            deadline = self._validity_start(rnd, now) + rnd.min_granted * self.factor
            believing = st.leader and now < st.deadline
            if now >= deadline:
                if believing:
                    return None  # a stale renewal: the current lease already runs longer
                st.leader = False
                return Abandoned(scope, rnd.term, rnd.kind)
            if believing:
                st.deadline = max(st.deadline, deadline)
                return Renewed(scope, rnd.term, st.deadline, rnd.min_granted)
            st.leader = True
            st.deadline = deadline
            restored = rnd.kind is RoundKind.RENEW
            return Elected(scope, rnd.term, deadline, rnd.min_granted, restored=restored)
        if rnd.outbid or any(c.out_of_reach(rnd.refusals) for c in rnd.configs):
            st.round = None
            if rnd.kind is RoundKind.ACQUIRE:
                give_back = self._give_back(scope, st, rnd)
                if give_back is not None:
                    self._giving_back.append(give_back)
            lost = st.leader and st.max_seen > st.term
            if lost:
                st.leader = False
            holder, term, remaining = None, 0, 0.0
            if rnd.reports:
                holder, (_, term, remaining) = max(
                    rnd.reports.items(), key=lambda item: (item[1][0], item[1][1])
                )
            return Refused(scope, rnd.term, st.max_seen, rnd.kind, lost, holder, term, remaining)
        return None
