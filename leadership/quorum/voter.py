"""The voter: the grant rule of DESIGN.md 5 (rules 3, 4, 6, 7), with no I/O and no clock of its own.

Per scope a voter keeps the highest term it promised (durable) and its current grant (holder,
term, expiry on the voter's clock, released or not). It grants ``(scope, term, holder)`` when

* ``term`` is above the promised term and no unexpired, unreleased grant to another holder
  exists (a new campaign), or
* ``term`` equals the promised term, the grant is the same holder's and it has not released
  (a renewal, also after the grant expired locally: no higher term was promised in between).

A grant records ``now + min(requested, max_duration)`` and never moves an unexpired grant of the
same holder earlier, so the holder may keep the later of its deadlines. A reject carries the
promised term so the candidate retries above it. A release clears the grant, keeps the promised
term and refuses that holder's equal-term requests from then on.

A voter that restarts with promises on disk (so it may have granted before) sits out one maximum
lease on its own clock: its grant expiries were not kept, and a grant it gave before the crash
may still be counted by a leader. A voter grants only while it is in its own configuration.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping

import attrs

from ..tokens import Holder
from .durable import PromiseState, PromiseStore
from .membership import VoterConfig, VoterConfigError
from .wire import (
    READ_TERM,
    ConfigCommit,
    ConfigCommitted,
    ConfigPrepare,
    ConfigPrepared,
    LeaseReply,
    LeaseRequest,
    ReleaseRequest,
    Verdict,
)

log = logging.getLogger(__name__)


@attrs.define
class _Grant:
    promised: int = 0
    term: int = 0
    holder: Holder | None = None
    expires: float = -math.inf
    released: bool = False


@attrs.frozen
class Decision:
    """A request's reply as decided, and whether it must wait for a save first."""

    reply: LeaseReply
    needs_save: bool


@attrs.frozen
class VoterStatus:
    """Whether a voter grants now; if not, why, and for how long at most (0: unknown)."""

    granting: bool
    reason: str = ""
    remaining: float = 0.0


@attrs.frozen
class VoterStats:
    granted: int
    refused: int
    sit_out_refusals: int
    persist_failures: int


class LeaseVoter:
    """One voter's grant state for every scope, driven by requests and clock readings."""

    def __init__(
        self,
        name: str,
        *,
        max_duration: float,
        promises: PromiseStore,
        now: float,
        config: VoterConfig | None = None,
        sit_out: float | None = None,
        max_drift: float = 0.05,
        change_gap: float | None = None,
        recover_if_blank: bool = False,
    ) -> None:
        if not max_duration > 0:
            raise ValueError(f"max_duration must be > 0, got {max_duration}")
        self.name = name
        self.max_duration = max_duration
        self._promises = promises
        self._granted = self._refused = self._sit_out = self._persist_failures = 0
        state = promises.load()
        blank = state == PromiseState()
        stored = state.config
        if stored is not None and (config is None or stored.epoch >= config.epoch):
            self.config = stored
        elif config is not None:
            self.config = config
        else:
            raise VoterConfigError(f"voter {name!r} has no configuration (none given, none stored)")
        self._grants: dict[str, _Grant] = {
            scope: _Grant(promised=term) for scope, term in state.terms.items()
        }
        self._durable: dict[str, int] = dict(state.terms)
        """Promised terms known to be on disk: a grant above them waits for a save."""
        self._last_error = ""
        self.recovering = recover_if_blank and blank and self.in_config()
        """A voter started with nothing stored (a new mesh, or a lost data directory): no vote
        until :meth:`recovered` is given the promised terms of a majority of the other voters.
        (A node outside the voter set inherits them when it is added.)"""
        restarted = bool(state.terms)
        # a grant made before the restart may run for the longest lease ever configured here,
        # not today's (an operator may have shortened it meanwhile)
        self._longest = max(state.longest, max_duration)
        wait = self._longest if sit_out is None else sit_out
        self.sit_out_until = now + wait if restarted else -math.inf
        self._started_at = now
        self.change_gap = (
            self._longest * (1 + max_drift) / (1 - max_drift) if change_gap is None else change_gap
        )
        """Wait after committing a configuration before preparing the next (voter's clock):
        every lease granted under the configuration before it has run out by then."""
        # the bootstrap configuration (epoch 1) is committed by definition
        self._committed_epoch = max(state.committed_epoch, 1)
        if self.config is not stored:
            self._committed_epoch = max(self._committed_epoch, self.config.epoch)
        # when the stored configuration was committed is unknown after a restart: count the gap
        # from now (the bootstrap epoch has no predecessor to wait for)
        first = self.config.epoch == 1
        self._committed_at = -math.inf if first else now
        # (a blank voter writes nothing before it has recovered: a crash meanwhile must find
        # it blank again, not looking like a voter that never promised anything)
        if (self.config is not stored or self._longest > state.longest) and not self.recovering:
            self._save(self._terms())

    @property
    def stats(self) -> VoterStats:
        return VoterStats(self._granted, self._refused, self._sit_out, self._persist_failures)

    def promised(self, scope: str) -> int:
        grant = self._grants.get(scope)
        return 0 if grant is None else grant.promised

    def holder_of(self, scope: str, now: float) -> Holder | None:
        """The holder of an unexpired, unreleased grant, if any (for diagnostics)."""
        grant = self._grants.get(scope)
        if grant is None or grant.released or grant.expires <= now:
            return None
        return grant.holder

    def _holder_term(self, scope: str, now: float) -> int:
        grant = self._grants.get(scope)
        if grant is None or grant.released or grant.expires <= now:
            return 0
        return grant.term

    def _remaining(self, scope: str, now: float) -> float:
        grant = self._grants.get(scope)
        if grant is None or grant.released or grant.expires <= now:
            return 0.0
        return min(grant.expires - now, self.max_duration)

    def in_config(self) -> bool:
        return self.name in self.config.voters

    def status(self, now: float) -> VoterStatus:
        """Whether this voter grants at ``now`` (the refusals :meth:`decide` makes to all)."""
        if self.recovering:
            return VoterStatus(False, "recovering the promised terms it lost from the other voters")
        if not self.in_config():
            return VoterStatus(False, "not a member of its own voter configuration")
        if now < self.sit_out_until:
            return VoterStatus(
                False,
                "sitting out the longest lease after a start: grants it may have made before "
                "can still be counted",
                self.sit_out_until - now,
            )
        return VoterStatus(True)

    def on_request(self, request: LeaseRequest, now: float) -> LeaseReply:
        """Answer every scope of a request; new promises are made durable before the reply
        (:meth:`decide`, then a save when it needs one, in one call)."""
        decision = self.decide(request, now)
        if not decision.needs_save:
            return decision.reply
        state = self.snapshot()
        return self.settle(decision, self.saved(state, self.write(state)))

    def decide(self, request: LeaseRequest, now: float) -> Decision:
        """The verdicts for a request, grants recorded here at once (so the requests decided
        next see them). A reply whose grants name a term not yet on disk must wait for a save
        (``needs_save``): a shell may run that save off its event loop and let every request
        decided meanwhile share it (group commit)."""
        holder = request.holder
        refuse_all = self.recovering or not self.in_config() or now < self.sit_out_until
        if refuse_all and now < self.sit_out_until:
            self._sit_out += len(request.entries)
        verdicts = []
        needs_save = False
        for entry in request.entries:
            grant = self._grants.get(entry.scope) or _Grant()
            duration = min(entry.duration, self.max_duration)
            ok = not refuse_all and duration > 0 and self._may_grant(grant, entry.term, holder, now)
            if ok:
                self._record(entry.scope, entry.term, holder, now + duration, now)
                self._granted += 1
                needs_save |= entry.term > self._durable.get(entry.scope, 0)
            elif entry.term != READ_TERM:
                self._refused += 1
            verdicts.append(
                Verdict(
                    scope=entry.scope,
                    round_id=entry.round_id,
                    term=entry.term,
                    granted=ok,
                    promised=self.promised(entry.scope),
                    duration=duration if ok else 0.0,
                    holder=holder if ok else self.holder_of(entry.scope, now),
                    remaining=duration if ok else self._remaining(entry.scope, now),
                    holder_term=entry.term if ok else self._holder_term(entry.scope, now),
                )
            )
        reply = LeaseReply(
            voter=self.name, holder=holder, config=self.config, verdicts=tuple(verdicts)
        )
        return Decision(reply, needs_save)

    def snapshot(self) -> PromiseState:
        """Everything this voter must keep, as of now (what the next save writes)."""
        return PromiseState(
            terms=self._terms(),
            config=self.config,
            committed_epoch=self._committed_epoch,
            longest=self._longest,
        )

    def write(self, state: PromiseState) -> bool:
        """Write ``state`` (blocking; safe to run in a worker thread, touches nothing else)."""
        try:
            self._promises.save(state)
        except OSError as exc:
            self._last_error = str(exc)
            return False
        return True

    def saved(self, state: PromiseState, ok: bool) -> bool:
        """Book a finished :meth:`write` of ``state``: its terms are durable, or a failure is
        counted and logged. Returns ``ok``."""
        if ok:
            for scope, term in state.terms.items():
                if term > self._durable.get(scope, 0):
                    self._durable[scope] = term
            return True
        self._persist_failures += 1
        log.error(
            "voter %s could not store promised terms (%s); refusing new terms until the "
            "disk works again",
            self.name,
            self._last_error,
            extra={"voter": self.name, "error": self._last_error},
        )
        return False

    def settle(self, decision: Decision, durable: bool) -> LeaseReply:
        """The reply to send once the save a decision waited for has finished: as decided, or,
        if the save failed, every grant turned into a refusal (the grants stay recorded here,
        which only keeps others out until they expire)."""
        if durable:
            return decision.reply
        verdicts = []
        for verdict in decision.reply.verdicts:
            if verdict.granted:
                self._granted -= 1
                self._refused += 1
                verdict = self._refusal(verdict)
            verdicts.append(verdict)
        return attrs.evolve(decision.reply, verdicts=tuple(verdicts))

    def on_release(self, release: ReleaseRequest, now: float) -> bool:
        """Clear the holder's grant of that term; True if there was one to clear."""
        grant = self._grants.get(release.scope)
        if (
            grant is None
            or grant.term != release.term
            or grant.holder != release.holder
            or grant.released
        ):
            return False
        grant.released = True
        grant.expires = now
        return True

    def on_prepare(self, prepare: ConfigPrepare, now: float) -> ConfigPrepared:
        """Phase 1 of a change: store the new configuration durably, report promised terms.

        Only from the configuration the change starts from, once that one is committed here
        and the gap after its commit has passed (the voters hold the gap, whoever proposes)."""
        new, current = prepare.new, self.config

        def refuse(reason: str, wait: float = 0.0) -> ConfigPrepared:
            return ConfigPrepared(self.name, new.epoch, False, (), wait, reason)

        if new != current:
            if self.recovering:
                return refuse("this voter is recovering the promised terms it lost")
            if prepare.old != current:
                return refuse(f"this voter is at epoch {current.epoch}, not {prepare.old.epoch}")
            if new.epoch != current.epoch + 1 or len(new.voters ^ current.voters) != 1:
                return refuse(
                    f"a change adds or removes exactly one voter at epoch {current.epoch + 1}"
                )
            if self._committed_epoch < current.epoch:
                return refuse(f"epoch {current.epoch} is not committed here yet")
            wait = self._committed_at + self.change_gap - now
            if wait > 0:
                return refuse(f"epoch {current.epoch} was committed too recently", wait)
            if not self.adopt_config(new, {}):
                return refuse("could not store the configuration")
        return ConfigPrepared(self.name, new.epoch, True, tuple(sorted(self._terms().items())))

    def recovered(self, terms: Mapping[str, int], now: float) -> bool:
        """End a blank start with the highest terms a majority of the other voters promised
        (every term a majority ever promised is among them). If there were any, this voter may
        have granted leases it no longer knows of before it started: it sits out the longest
        lease from its start (counting from then is enough: those grants are older)."""
        if not self.adopt_config(self.config, terms):
            return False
        self.recovering = False
        if terms:
            self.sit_out_until = self._started_at + self._longest
        log.warning(
            "voter %s started without promised terms and recovered %d from the other voters%s",
            self.name,
            len(terms),
            f"; it grants nothing until {self._longest:g} s after its start"
            if terms
            else " (a new mesh)",
            extra={"voter": self.name, "terms": len(terms)},
        )
        return True

    def on_commit(self, commit: ConfigCommit, now: float) -> ConfigCommitted:
        """Phase 2: adopt the configuration and inherit the old majority's promised terms."""
        config = commit.config
        fresh = config.epoch > self._committed_epoch
        previous = self._committed_epoch
        if fresh:
            self._committed_epoch = config.epoch
        ok = self.adopt_config(config, dict(commit.terms))
        if not ok:
            self._committed_epoch = previous
        elif fresh:
            self._committed_at = now
        return ConfigCommitted(self.name, config.epoch, ok)

    def adopt_config(self, config: VoterConfig, terms: Mapping[str, int]) -> bool:
        """Store a configuration (newer, or the same again) and raise promised terms to ``terms``.

        An older epoch, or the same epoch with other members, is refused: voters never go back.
        """
        if config.epoch < self.config.epoch or (
            config.epoch == self.config.epoch and config != self.config
        ):
            return False
        merged = self._terms()
        for scope, term in terms.items():
            merged[scope] = max(merged.get(scope, 0), term)
        previous = self.config
        self.config = config
        if not self._save(merged):
            self.config = previous
            return False
        for scope, term in merged.items():
            self._grants.setdefault(scope, _Grant()).promised = term
        return True

    # ---------------------------------------------------------------- internals

    @staticmethod
    def _may_grant(grant: _Grant, term: int, holder: Holder, now: float) -> bool:
        if term > grant.promised:
            other_holds = (
                grant.holder is not None
                and grant.holder != holder
                and not grant.released
                and grant.expires > now
            )
            return not other_holds
        return (
            term == grant.promised
            and grant.term == term
            and grant.holder == holder
            and not grant.released
        )

    def _record(self, scope: str, term: int, holder: Holder, expires: float, now: float) -> None:
        grant = self._grants.setdefault(scope, _Grant())
        same = grant.holder == holder and not grant.released and grant.expires > now
        if same and grant.expires > expires:
            expires = grant.expires  # never move an unexpired grant of this holder earlier
        grant.promised = max(grant.promised, term)
        grant.term = term
        grant.holder = holder
        grant.expires = expires
        grant.released = False

    def _refusal(self, verdict: Verdict) -> Verdict:
        return attrs.evolve(
            verdict, granted=False, duration=0.0, promised=self.promised(verdict.scope)
        )

    def _terms(self) -> dict[str, int]:
        return {scope: g.promised for scope, g in self._grants.items() if g.promised}

    def _save(self, terms: dict[str, int]) -> bool:
        state = PromiseState(
            terms=dict(terms),
            config=self.config,
            committed_epoch=self._committed_epoch,
            longest=self._longest,
        )
        return self.saved(state, self.write(state))
