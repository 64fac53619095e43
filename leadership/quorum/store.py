"""The quorum lease store: the protocol core over a :class:`~leadership.messenger.PeerMessenger`.

A thin Trio shell. Each node runs one: its :class:`LeaseCandidate` asks the voters for the
coordinator's leases, and its :class:`LeaseVoter` (when the node has promises to keep) answers
other nodes. Every decision is the core's; the shell sends, waits with a bound and translates
decisions into :class:`~leadership.store.LeaseResult` for the coordinator:

* ``acquire`` is a campaign round, ``renew`` a renewal round at the same term (also after the
  lease ran out locally: a renewal quorum then restores the term), ``release`` drops the term
  and tells the voters, ``get`` asks the voters who holds the scope (a read at term 0).
* Renewals that are due together go to each voter in one message.
* A round that reaches no decision within ``round_timeout`` is abandoned (its late replies are
  ignored) and answered ``STORE_UNAVAILABLE``; a caller's cancellation abandons it too.
* A grant that lands after its own deadline is abandoned and released, never acted on.

Followers learn of leaders without asking the voters: a holder sends a notice (acquired,
renewed, released) to every member, which feeds the store's change feed (:meth:`watch`) and a
cache of known incumbents. While the cache holds a valid incumbent, ``acquire`` and ``get``
answer from it without a round (an eager follower would otherwise take minority voters' terms
from under the leader); a release notice clears it, so a successor campaigns at once.
Notices are advisory: only the voters decide who leads.
"""

from __future__ import annotations

import logging
import math
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager

import attrs
import cbor2
import trio

from ..clock import Clock
from ..messenger import MessengerError, PeerMessenger
from ..scopes import LeadershipScope
from ..store import Lease, LeaseChange, LeaseOutcome, LeaseResult
from ..tokens import Holder
from .candidate import Abandoned, Decision, Elected, LeaseCandidate, Outbound, Refused, Renewed
from .changing import run_change
from .durable import KnownConfigFile, PromiseStore
from .followers import MIN_REMAINING, IncumbentBoard
from .membership import VoterConfig
from .saving import GroupCommit
from .voter import LeaseVoter, VoterStatus
from .wire import (
    READ_TERM,
    ConfigCommit,
    ConfigPrepare,
    ConfigPrepared,
    LeaseNotice,
    LeaseReply,
    LeaseRequest,
    Message,
    NoticeEntry,
    QuorumWireError,
    ReleaseRequest,
    RoundEntry,
    decode,
    encode,
)

log = logging.getLogger("leadership.quorum")

CAMPAIGN_WINDOW = 0.02
"""Seconds a campaign waits for others to share its message to the voters."""
READ_WINDOW = 0.02
"""Seconds a read waits for others to share its message to the voters."""
MAX_READS_PER_MESSAGE = 512
RECOVER_RETRY = 1.0
"""Seconds between a blank voter's requests for the other voters' promised terms..."""
RECOVER_FIRST_RETRY = 0.05
"""...after a first retry this soon, doubling: a voter starts before its node has joined the
mesh, and a voter that is down before a blank one has heard from it leaves it unable to
vote (with three voters it needs both others)."""
MESSAGE_KIND = "quorum"
"""The messenger request kind the voters serve."""
NOTICE_KIND = "quorum-notice"
"""The messenger request kind every member serves for holders' notices."""
NOTICE_AT = 0.75
"""With a belief, a holder tells its followers again once its last notice of a scope is this
fraction of a belief old (notices cost both sides a stream exchange per member)."""
AHEAD_AT = 0.5
"""...and every other scope it leads whose last notice is this fraction old goes along, so a
follower hears from a holder in one message per period, not one per scope."""
CAMPAIGN_ATTEMPTS = 3
"""Campaign rounds per ``acquire``: a refusal reporting a promised term at or above ours is
retried above it at once (the candidate had not heard of that term)."""


@attrs.define
class _Waiter:
    done: trio.Event = attrs.Factory(trio.Event)
    decision: Decision | None = None


@attrs.define
class _Read:
    config: VoterConfig
    answered: set[str] = attrs.Factory(set)
    reports: dict[Holder, tuple[int, int, float]] = attrs.Factory(dict)
    """Holders the voters named: (voters naming it, its term, least remaining)."""
    best: tuple[int, Holder, float] | None = None
    done: trio.Event = attrs.Factory(trio.Event)


@attrs.define
class QuorumStats:
    rounds: int = 0
    timeouts: int = 0
    unanswered_requests: int = 0
    bad_messages: int = 0
    late_grants_released: int = 0
    answered_from_cache: int = 0
    renewed_ahead: int = 0
    """Scopes put into another scope's renewal round before their own was due."""
    renewals_answered_early: int = 0
    """Renewals answered from a round that renewed the scope ahead moments before."""
    renewals_widened: int = 0
    """Thrifty renewals whose majority had not answered in time, so every voter was asked."""
    notices_sent: int = 0
    notices_received: int = 0
    voter_requests_sent: int = 0
    """Messages to other nodes' voters (rounds, releases, reads, voter-set changes)."""
    voter_requests_served: int = 0


class QuorumLeaseStore:
    """:class:`~leadership.store.LeaseStore` whose arbiter is a majority of static voters."""

    def __init__(
        self,
        messenger: PeerMessenger,
        nursery: trio.Nursery,
        *,
        config: VoterConfig,
        clock: Clock,
        max_duration: float,
        max_drift: float,
        voter: LeaseVoter | None = None,
        request_timeout: float = 1.0,
        round_timeout: float = 2.0,
        peers: Callable[[], Iterable[str]] | None = None,
        offload_saves: bool = False,
        alive: Callable[[str], bool] | None = None,
        belief_leases: float = 0.0,
        thrifty_renewals: bool = False,
    ) -> None:
        self.messenger = messenger
        self._alive = alive
        self.thrifty_renewals = thrifty_renewals
        """Renewals ask a majority of the voters and widen when answers are late (see
        :mod:`.candidate`)."""
        self._peers = peers
        self._nursery = nursery
        self.config = config
        self.clock = clock
        self.max_duration = max_duration
        self.max_drift = max_drift
        self.voter = voter
        self._commits = GroupCommit(voter, offload=offload_saves) if voter is not None else None
        self.request_timeout = request_timeout
        self.round_timeout = round_timeout
        self._candidate: LeaseCandidate | None = None
        self._scopes: dict[str, LeadershipScope] = {}
        self._waiters: dict[str, _Waiter] = {}
        self._renewals: list[str] = []
        self._known_config: KnownConfigFile | None = None
        self._renewed_at: dict[str, float] = {}
        """When a round last succeeded for each scope this node leads (its start clock)."""
        self._reads: dict[int, _Read] = {}
        self._read_batch: list[RoundEntry] = []
        self._campaigns: list[str] = []
        self._next_read = 1
        self.board = IncumbentBoard((1 - max_drift) / (1 + max_drift), alive)
        self.belief_leases = belief_leases
        """How many of its leases a follower may believe this holder between notices while it
        is alive in the follower's view (0: notices go out at every renewal, and a follower
        believes the lease only)."""
        self._noticed: dict[str, tuple[int, float]] = {}
        self._disowned: dict[str, int] = {}
        """Per scope: the term of this node's previous life it told followers is over."""
        """Per scope this node leads: the term and time of the last notice that said so."""
        self._notices: list[NoticeEntry] = []
        self.stats = QuorumStats()

    @classmethod
    @asynccontextmanager
    async def open(
        cls,
        messenger: PeerMessenger,
        *,
        config: VoterConfig,
        clock: Clock,
        max_duration: float,
        max_drift: float = 0.05,
        promises: PromiseStore | None = None,
        request_timeout: float = 1.0,
        round_timeout: float = 2.0,
        peers: Callable[[], Iterable[str]] | None = None,
        offload_saves: bool = False,
        recover_if_blank: bool = False,
        known_config: KnownConfigFile | None = None,
        alive: Callable[[str], bool] | None = None,
        belief_leases: float = 0.0,
        thrifty_renewals: bool = False,
    ) -> AsyncIterator[QuorumLeaseStore]:
        """Run a store (and, with ``promises``, this node's voter) until the block ends.
        ``peers`` lists the members to send notices to (none: followers ask the voters);
        ``offload_saves`` writes promises in a worker thread (real clocks only: see
        :mod:`.saving`); with ``recover_if_blank`` a voter that finds nothing stored asks the
        other voters for their promised terms before it votes (a lost data directory);
        ``known_config`` keeps the newest voter configuration learned across restarts.

        With ``belief_leases`` (and ``alive``, this node's view of who is alive) a holder tells
        its followers only every ``3/4 belief_leases`` leases that it still holds a scope, and
        they believe it for ``belief_leases`` leases while it stays alive in their view: renewals
        reach the voters alone, and followers hear from a holder a few times less often. A
        follower drops that belief as soon as the holder is suspect or dead in its view, so
        failover still waits only for the lease."""
        learned = known_config.load() if known_config is not None else None
        if learned is not None and learned.epoch > config.epoch:
            config = learned
        voter = None
        if promises is not None:
            voter = LeaseVoter(
                messenger.local_id,
                max_duration=max_duration,
                promises=promises,
                now=clock.now(),
                config=config,
                recover_if_blank=recover_if_blank,
            )
            if voter.config != config:
                log.warning(
                    "this voter stores voter configuration epoch %d (%s); the configured voters "
                    "(%s) are only the bootstrap and are not read again: change voters with "
                    "`swimmesh mesh voters add|remove`",
                    voter.config.epoch,
                    ", ".join(sorted(voter.config.voters)),
                    ", ".join(sorted(config.voters)),
                    extra={"epoch": voter.config.epoch},
                )
            config = voter.config if voter.config.epoch > config.epoch else config
        async with trio.open_nursery() as nursery:
            store = cls(
                messenger,
                nursery,
                config=config,
                clock=clock,
                max_duration=max_duration,
                max_drift=max_drift,
                voter=voter,
                request_timeout=request_timeout,
                round_timeout=round_timeout,
                peers=peers,
                offload_saves=offload_saves,
                alive=alive,
                belief_leases=belief_leases,
                thrifty_renewals=thrifty_renewals,
            )
            store._known_config = known_config
            messenger.serve(MESSAGE_KIND, store._serve)
            messenger.serve_told(NOTICE_KIND, store._on_notice)
            if voter is not None and voter.recovering:
                nursery.start_soon(store._recover, voter)
            try:
                yield store
            finally:
                nursery.cancel_scope.cancel()

    # ---------------------------------------------------------------- LeaseStore

    async def acquire(self, scope: LeadershipScope, holder: Holder, duration: float) -> LeaseResult:
        self._candidate_for(holder, duration)
        key = scope.key
        self._scopes[key] = scope
        cached = self._cached(scope, holder)
        if cached is not None:
            return cached
        decision: Decision | None = None
        for _ in range(CAMPAIGN_ATTEMPTS):
            waiter = self._waiters[key] = _Waiter()
            if not self._campaigns:
                self._nursery.start_soon(self._flush_campaigns)
            self._campaigns.append(key)
            decision = await self._wait(key, waiter)
            stale_term = isinstance(decision, Refused) and decision.promised >= decision.term
            if not stale_term:
                break  # retry at once only above a term a voter reported promised
        return await self._result(scope, holder, decision, acquiring=True)

    async def renew(
        self, scope: LeadershipScope, holder: Holder, term: int, duration: float
    ) -> LeaseResult:
        cand = self._candidate_for(holder, duration)
        key = scope.key
        if cand.term(key) != term or cand.released(key):
            return LeaseResult(
                LeaseOutcome.NOT_CURRENT_LEADER,
                detail=f"term {term} is not this holder's, or it was released",
            )
        self._scopes[key] = scope
        now = self.clock.now()
        fresh = _freshness(cand)
        if cand.is_leader(key, now) and now - self._renewed_at.get(key, -math.inf) < fresh:
            # renewed moments ago along with another scope's round: that round's validity,
            # as a duration from now (the coordinator counts it from this call)
            remaining = (cand.deadline(key) - now) / cand.factor
            self.stats.renewals_answered_early += 1
            return LeaseResult(
                LeaseOutcome.GRANTED, self._lease(scope, holder, term, remaining, remaining)
            )
        waiter = self._waiters[key] = _Waiter()
        if not self._renewals:
            self._nursery.start_soon(self._flush_renewals)
        self._renewals.append(key)
        decision = await self._wait(key, waiter)
        return await self._result(scope, holder, decision, acquiring=False)

    async def release(
        self,
        scope: LeadershipScope,
        holder: Holder,
        term: int,
        *,
        successor: str | None = None,
        reserve: float = 0.0,
    ) -> LeaseResult:
        """Stop believing, abandon the round in flight, tell the voters (best effort, bounded).

        A quorum store keeps no reservations: a transfer's successor campaigns like anyone,
        and the voters arbitrate.
        """
        cand = self._candidate
        if cand is None or cand.holder != holder or cand.term(scope.key) != term:
            return LeaseResult(LeaseOutcome.NOT_CURRENT_LEADER, detail="not this holder's term")
        out = cand.release(scope.key)
        if out is not None:
            # Tell the voters and the followers now (not in a later batch: a stopping node's
            # store is about to close), the followers only once a majority of the voters has
            # the release (or every voter answered or failed, or half the bound passed): a
            # successor that campaigns on the notice while the voters still hold the grant is
            # refused and waits for the whole lease.
            notice = LeaseNotice((NoticeEntry("released", scope.key, holder, term, 0.0),))
            config, targets = self.config, sorted(out.targets)
            answered: set[str] = set()
            settled = trio.Event()
            if not targets:
                settled.set()
            done = 0

            async def tell(target: str) -> None:
                nonlocal done
                if await self._ask(target, out.message):
                    answered.add(target)
                done += 1
                if done == len(targets) or config.has_majority(answered):
                    settled.set()

            with trio.move_on_after(self.request_timeout):
                async with trio.open_nursery() as nursery:
                    for target in targets:
                        nursery.start_soon(tell, target)
                    with trio.move_on_after(self.request_timeout / 2):
                        await settled.wait()
                    payload = cbor2.dumps(encode(notice))
                    for peer in self._notice_targets():
                        nursery.start_soon(self._send_release_notice, peer, payload)
        return LeaseResult(LeaseOutcome.RELEASED)

    async def get(self, scope: LeadershipScope) -> LeaseResult:
        """Who holds ``scope``: the local lease, else the voters' answer (a read at term 0)."""
        key = scope.key
        self._scopes[key] = scope
        cand = self._candidate
        now = self.clock.now()
        if cand is not None and cand.is_leader(key, now + MIN_REMAINING):
            remaining = cand.deadline(key) - now
            return LeaseResult(
                LeaseOutcome.LEASE_HELD,
                self._lease(scope, cand.holder, cand.term(key), remaining, remaining),
            )
        cached = self._cached(scope, cand.holder if cand is not None else None)
        if cached is not None:
            return cached
        read_id = self._next_read
        self._next_read += 1
        read = self._reads[read_id] = _Read(self.config)
        if not self._read_batch:
            self._nursery.start_soon(self._flush_reads)
        self._read_batch.append(RoundEntry(key, READ_TERM, read_id, 0.0))
        try:
            with trio.move_on_after(self.round_timeout):
                await read.done.wait()
        finally:
            del self._reads[read_id]
        if not read.done.is_set():
            self.stats.timeouts += 1
            return LeaseResult(LeaseOutcome.STORE_UNAVAILABLE, detail="no voter majority answered")
        if read.best is None:
            return LeaseResult(LeaseOutcome.VACANT)
        term, holder, remaining = read.best
        return LeaseResult(
            LeaseOutcome.LEASE_HELD, self._lease(scope, holder, term, remaining, remaining)
        )

    # ---------------------------------------------------------------- rounds

    def _candidate_for(self, holder: Holder, duration: float) -> LeaseCandidate:
        cand = self._candidate
        if cand is None or cand.holder != holder:
            cand = self._candidate = LeaseCandidate(
                holder,
                self.config,
                duration=min(duration, self.max_duration),
                max_drift=self.max_drift,
                thrifty=self.thrifty_renewals,
            )
        return cand

    async def _wait(self, key: str, waiter: _Waiter) -> Decision | None:
        self.stats.rounds += 1
        try:
            with trio.move_on_after(self.round_timeout):
                await waiter.done.wait()
        finally:
            # only the waiter still registered owns the scope's round: a replaced one must not
            # abandon its successor's
            if self._waiters.get(key) is waiter:
                del self._waiters[key]
                if waiter.decision is None:
                    for batch in (self._renewals, self._campaigns):
                        if key in batch:  # cancelled before its batch left: drop it
                            batch.remove(key)
                    if self._candidate is not None:
                        # late replies are ignored from now on; a campaign's grants go back
                        give_back = self._candidate.abandon(key)
                        if give_back is not None:
                            self._dispatch(give_back)
        if waiter.decision is None:
            self.stats.timeouts += 1
        return waiter.decision

    async def _flush_renewals(self) -> None:
        """Send every renewal due in this scheduling batch in one message per voter."""
        await trio.lowlevel.checkpoint()
        keys, self._renewals = self._renewals, []
        cand = self._candidate
        if cand is None:
            return
        now = self.clock.now()
        # renew ahead: every other scope led here and not renewed for a while goes in the same
        # message, so a leader of many scopes settles into one round per renewal period
        asked = set(keys)
        ahead = [
            key
            for key in cand.leading(now)
            if key not in asked and now - self._renewed_at.get(key, -math.inf) >= _freshness(cand)
        ]
        self.stats.renewed_ahead += len(ahead)
        alive = self._alive
        me = self.messenger.local_id
        down = [v for v in cand.config.voters if alive is not None and v != me and not alive(v)]
        out = cand.renew([*keys, *ahead], now, down=down)
        if out is not None:
            self._dispatch(out)
            if out.targets != cand.config.voters and isinstance(out.message, LeaseRequest):
                rounds = {entry.round_id for entry in out.message.entries}
                self._nursery.start_soon(self._widen_later, cand, rounds)

    async def _widen_later(self, cand: LeaseCandidate, rounds: set[int]) -> None:
        """A thrifty renewal still undecided after a short wait asks every voter."""
        await trio.sleep(min(self.request_timeout / 2, cand.duration / 10))
        if cand is not self._candidate:
            return
        out = cand.widen(rounds)
        if out is not None:
            self.stats.renewals_widened += 1
            self._dispatch(out)

    async def _flush_campaigns(self) -> None:
        """Start the campaigns asked for within CAMPAIGN_WINDOW in one message per voter (each
        scope's term read from the clock just before sending): a node that campaigns for many
        scopes at once (a start, a leader gone) sends a few messages, not hundreds."""
        await trio.sleep(CAMPAIGN_WINDOW)
        keys, self._campaigns = self._campaigns, []
        cand = self._candidate
        if cand is None or not keys:
            return
        self._dispatch(cand.campaign(keys, self.clock.now()))

    async def _flush_reads(self) -> None:
        """Send the reads asked for within READ_WINDOW in one message per voter: followers
        of many scopes read them at nearly the same time (a start, a partition healing), and
        a voter answers one message far faster than hundreds."""
        await trio.sleep(READ_WINDOW)
        batch, self._read_batch = self._read_batch, []
        live = [e for e in batch if e.round_id in self._reads]
        for entries in _chunks(_unique_scopes(live), MAX_READS_PER_MESSAGE):
            request = LeaseRequest(
                Holder(self.messenger.local_id, "read"), self.config.epoch, tuple(entries)
            )
            for target in sorted(self.config.voters):
                self._nursery.start_soon(self._ask, target, request)

    def _dispatch(self, out: Outbound) -> None:
        for target in sorted(out.targets):
            self._nursery.start_soon(self._ask, target, out.message)

    async def _ask(self, target: str, message: Message) -> bool:
        """Send one message to one voter (this node's own voter without the network); whether
        it answered (a release's answer is empty)."""
        if target == self.messenger.local_id and self.voter is not None:
            answer = await self._answer(message)
        else:
            payload = cbor2.dumps(encode(message))
            self.stats.voter_requests_sent += 1
            try:
                raw = await self.messenger.request(
                    target, MESSAGE_KIND, payload, timeout=self.request_timeout
                )
            except MessengerError:
                self.stats.unanswered_requests += 1
                return False
            if not raw:
                return True
            try:
                answer = decode(cbor2.loads(raw))
            except (QuorumWireError, cbor2.CBORDecodeError, ValueError) as exc:
                self._bad(target, exc)
                return False
        if isinstance(answer, LeaseReply):
            self._take_reply(answer)
        return True

    def _take_reply(self, reply: LeaseReply) -> None:
        if reply.holder.boot_id == "read" and reply.holder.node_id == self.messenger.local_id:
            self._take_read(reply)
            return
        cand = self._candidate
        if cand is None:
            return
        now = self.clock.now()
        step = cand.on_reply(reply, now)
        if cand.config.epoch > self.config.epoch:
            self._adopt_config(cand.config)
        for out in step.outbound:
            self._dispatch(out)
        for decision in step.decisions:
            if isinstance(decision, Renewed | Elected):
                self._renewed_at[decision.scope] = now
            if isinstance(decision, Renewed) and self._notice_due(decision.scope, decision.term):
                # followers learn of renewals (asked for or made ahead), or with a belief,
                # often enough that it never runs out while this node holds the scope
                self._notify(
                    NoticeEntry(
                        "renewed",
                        decision.scope,
                        cand.holder,
                        decision.term,
                        decision.granted,
                        self._believe(cand.duration),
                    )
                )
            waiter = self._waiters.get(decision.scope)
            if waiter is not None and waiter.decision is None:
                waiter.decision = decision
                waiter.done.set()
            elif isinstance(decision, Abandoned | Elected):
                # nobody waits any more (timed out, cancelled): give the term back
                self._release_unwanted(decision.scope)

    def _take_read(self, reply: LeaseReply) -> None:
        for verdict in reply.verdicts:
            read = self._reads.get(verdict.round_id)
            if read is None:
                continue
            read.answered.add(reply.voter)
            if verdict.holder is not None and verdict.remaining >= MIN_REMAINING:
                count, term, remaining = read.reports.get(verdict.holder, (0, 0, math.inf))
                read.reports[verdict.holder] = (
                    count + 1,
                    max(term, verdict.holder_term),
                    min(remaining, verdict.remaining),
                )
            if read.config.has_majority(read.answered):
                if read.reports:
                    holder, (_, term, remaining) = max(
                        read.reports.items(), key=lambda item: (item[1][0], item[1][1])
                    )
                    read.best = (term, holder, remaining)
                    self._learn(verdict.scope, holder, term, remaining)
                read.done.set()

    def _release_unwanted(self, key: str) -> None:
        cand = self._candidate
        if cand is None:
            return
        out = cand.release(key)
        if out is not None:
            self.stats.late_grants_released += 1
            self._dispatch(out)

    async def _result(
        self, scope: LeadershipScope, holder: Holder, decision: Decision | None, *, acquiring: bool
    ) -> LeaseResult:
        if isinstance(decision, Elected | Renewed):
            if isinstance(decision, Elected):
                self._noticed[scope.key] = (decision.term, self.clock.now())
                believe = self._believe(self._candidate.duration) if self._candidate else 0.0
                self._notify(
                    NoticeEntry(
                        "acquired", scope.key, holder, decision.term, decision.granted, believe
                    )
                )
            return LeaseResult(
                LeaseOutcome.GRANTED,
                self._lease(scope, holder, decision.term, decision.granted, decision.granted),
            )
        if isinstance(decision, Refused):
            if acquiring:
                incumbent = None
                if decision.incumbent is not None:
                    # a lease at its very end still counts, as MIN_REMAINING: the caller looks
                    # again just after it instead of taking the scope for vacant and waiting
                    # an evaluation interval (a follower that learned the lease's end from
                    # the voters campaigns right at it, and races their expiry)
                    remaining = max(decision.incumbent_remaining, MIN_REMAINING)
                    self._learn(scope.key, decision.incumbent, decision.incumbent_term, remaining)
                    incumbent = self._lease(
                        scope, decision.incumbent, decision.incumbent_term, remaining, remaining
                    )
                return LeaseResult(
                    LeaseOutcome.LEASE_HELD,
                    incumbent,
                    detail=f"a voter majority refused term {decision.term} "
                    f"(highest promised {decision.promised})",
                )
            return LeaseResult(
                LeaseOutcome.NOT_CURRENT_LEADER,
                detail=f"voters promised term {decision.promised} above {decision.term}",
            )
        if isinstance(decision, Abandoned):
            self._release_unwanted(scope.key)
            return LeaseResult(
                LeaseOutcome.LEASE_EXPIRED, detail="the quorum answered after the lease's deadline"
            )
        return LeaseResult(
            LeaseOutcome.STORE_UNAVAILABLE,
            detail=f"no voter majority answered within {self.round_timeout:g} s",
        )

    def _lease(
        self,
        scope: LeadershipScope,
        holder: Holder,
        term: int,
        duration: float,
        remaining: float,
        believe: float = 0.0,
    ) -> Lease:
        return Lease(
            scope_id=scope.scope_id,
            scope_kind=scope.kind,
            holder=holder,
            term=term,
            fence_token=term,
            duration=duration,
            remaining=max(0.0, remaining),
            age=0.0,
            labels=scope.labels,
            believe=believe if believe > remaining else 0.0,
        )

    # ---------------------------------------------------------------- followers: notices

    def watch(self) -> AsyncIterator[LeaseChange]:
        """Changes other holders announced (acquired, renewed, released), from now on;
        ``RESYNC`` when this watcher fell behind and lost some."""
        return self.board.watch()

    def _learn(self, key: str, holder: Holder, term: int, remaining: float) -> None:
        self.board.learn(key, holder, term, remaining, self.clock.now())
        self._disown(key, holder, term)

    def _disown(self, key: str, holder: Holder, term: int) -> None:
        """A lease of this node's previous life (its node id, another boot): nobody renews it
        any more, but a node that restarted before the others' views saw it go is alive to
        them, and they would believe it for a whole belief. Tell them it is over here, once;
        they fall back to asking the voters, which hold it until its lease runs out."""
        cand = self._candidate
        if (
            self.belief_leases <= 0
            or holder.node_id != self.messenger.local_id
            or (cand is not None and holder == cand.holder)
            or self._disowned.get(key) == term
        ):
            return
        self._disowned[key] = term
        self._notify(NoticeEntry("released", key, holder, term, 0.0))

    def _cached(self, scope: LeadershipScope, mine: Holder | None) -> LeaseResult | None:
        now = self.clock.now()
        known = self.board.current(scope.key, mine, now)
        if known is None:
            return None
        self.stats.answered_from_cache += 1
        remaining = known.until - now
        believe = max(0.0, known.believe_until - now)
        lease = self._lease(scope, known.holder, known.term, remaining, remaining, believe)
        return LeaseResult(LeaseOutcome.LEASE_HELD, lease, detail="known incumbent")

    def _believe(self, duration: float) -> float:
        """How long followers may believe this holder between notices (0: the lease only)."""
        return duration * self.belief_leases

    def _notice_due(self, key: str, term: int) -> bool:
        """Whether a renewal of ``key`` at ``term`` must be told to the followers now: always
        without a belief, else when the last notice is three quarters of a belief old (or of
        another term): a lost notice still leaves the follower a quarter of a belief (a lease at
        4 leases of belief) to hear the next one before it asks the voters."""
        cand = self._candidate
        if self.belief_leases <= 0 or cand is None:
            return True
        now = self.clock.now()
        last = self._noticed.get(key)
        due = NOTICE_AT * self._believe(cand.duration)
        if last is not None and last[0] == term and now - last[1] < due:
            return False
        self._noticed[key] = (term, now)
        return True

    def _notices_ahead(self) -> tuple[NoticeEntry, ...]:
        """With a belief, the other scopes this node leads whose last notice is half of
        a belief old go along with a notice being sent, so followers hear from a holder in one
        message every so often rather than one per scope."""
        cand = self._candidate
        if self.belief_leases <= 0 or cand is None:
            return ()
        now, believe = self.clock.now(), self._believe(cand.duration)
        pending = {entry.scope for entry in self._notices}
        out = []
        for key, (term, at) in list(self._noticed.items()):
            if key in pending or now - at < AHEAD_AT * believe:
                continue
            if cand.term(key) != term or not cand.is_leader(key, now):
                del self._noticed[key]  # no longer led: nothing to say until it is again
                continue
            self._noticed[key] = (term, now)
            remaining = (cand.deadline(key) - now) / cand.factor
            out.append(NoticeEntry("renewed", key, cand.holder, term, remaining, believe))
        return tuple(out)

    def _notify(self, entry: NoticeEntry) -> None:
        if self._peers is None:
            return
        if not self._notices:
            self._nursery.start_soon(self._flush_notices)
        self._notices.append(entry)

    async def _flush_notices(self) -> None:
        """Send the notices of this scheduling batch in one message per member."""
        await trio.lowlevel.checkpoint()
        entries, self._notices = tuple(self._notices) + self._notices_ahead(), []
        if not entries or self._peers is None:
            return
        payload = cbor2.dumps(encode(LeaseNotice(entries)))
        for peer in self._notice_targets():
            self._nursery.start_soon(self._send_notice, peer, payload)

    def _notice_targets(self) -> list[str]:
        if self._peers is None:
            return []
        return sorted(set(self._peers()) - {self.messenger.local_id})

    async def _send_notice(self, peer: str, payload: bytes) -> None:
        """One-way: a follower has nothing to answer, and a lost notice costs it at most a
        question to the voters (see :func:`_notice_due`)."""
        self.stats.notices_sent += 1
        try:
            await self.messenger.tell(peer, NOTICE_KIND, payload, timeout=self.request_timeout)
        except MessengerError:
            self.stats.unanswered_requests += 1

    async def _send_release_notice(self, peer: str, payload: bytes) -> None:
        """A release, asked and answered: the successor's prompt campaign (the handover) hangs
        on it, so it is not left to a datagram that may be lost."""
        self.stats.notices_sent += 1
        try:
            await self.messenger.request(peer, NOTICE_KIND, payload, timeout=self.request_timeout)
        except MessengerError:
            self.stats.unanswered_requests += 1

    def _on_notice(self, sender: str, payload: bytes) -> None:
        try:
            notice = decode(cbor2.loads(payload))
        except (QuorumWireError, cbor2.CBORDecodeError, ValueError) as exc:
            self._bad(sender, exc)
            return
        if not isinstance(notice, LeaseNotice):
            self._bad(sender, QuorumWireError("expected a lease notice"))
            return
        self.stats.notices_received += 1
        for entry in notice.entries:
            self._take_notice(entry)

    def _take_notice(self, entry: NoticeEntry) -> None:
        scope = self._scopes.get(entry.scope)
        lease = None
        if scope is not None:
            lease = self._lease(
                scope, entry.holder, entry.term, entry.remaining, entry.remaining, entry.believe
            )
        self.board.take(entry, self.clock.now(), lease)

    # ---------------------------------------------------------------- voter-set changes

    def voting(self) -> VoterStatus | None:
        """Whether this node's voter grants now (None: this node is no voter)."""
        return None if self.voter is None else self.voter.status(self.clock.now())

    def voter_config(self) -> VoterConfig:
        """The newest voter configuration this node knows."""
        configs = [self.config]
        if self.voter is not None:
            configs.append(self.voter.config)
        if self._candidate is not None:
            configs.append(self._candidate.config)
        return max(configs, key=lambda c: c.epoch)

    async def change_voters(self, new: VoterConfig, *, timeout: float = 10.0) -> VoterConfig:
        """Run one voter-set change (one member more or less) from this node, as the proposer
        (:mod:`.changing`); raises :class:`ChangeRefused` with the voters' reasons."""
        change = await run_change(
            self._call,
            self.voter_config(),
            new,
            self.clock.now,
            max_duration=self.max_duration,
            max_drift=self.max_drift,
            timeout=timeout,
        )
        self._adopt_config(new)
        if self._candidate is not None:
            self._candidate.learn_config(new)
        log.info(
            "voter set changed",
            extra={"epoch": new.epoch, "voters": sorted(new.voters), "terms": len(change.terms)},
        )
        return new

    def _adopt_config(self, config: VoterConfig) -> None:
        """Use (and keep, with a data directory) a newer voter configuration."""
        if config.epoch < self.config.epoch or config == self.config:
            return
        self.config = config
        if self._known_config is not None:
            self._known_config.save(config)

    async def _call(self, target: str, message: Message) -> Message | None:
        if target == self.messenger.local_id and self.voter is not None:
            return await self._answer(message)
        self.stats.voter_requests_sent += 1
        try:
            raw = await self.messenger.request(
                target, MESSAGE_KIND, cbor2.dumps(encode(message)), timeout=self.request_timeout
            )
            return decode(cbor2.loads(raw)) if raw else None
        except MessengerError:
            self.stats.unanswered_requests += 1
        except (QuorumWireError, cbor2.CBORDecodeError, ValueError) as exc:
            self._bad(target, exc)
        return None

    # ---------------------------------------------------------------- the voter side

    async def _serve(self, sender: str, payload: bytes) -> bytes:
        """Answer another node's request; the holder comes from the payload, never the sender."""
        self.stats.voter_requests_served += 1
        try:
            message = decode(cbor2.loads(payload))
        except (QuorumWireError, cbor2.CBORDecodeError, ValueError) as exc:
            self._bad(sender, exc)
            raise
        answer = await self._answer(message)
        return b"" if answer is None else cbor2.dumps(encode(answer))

    async def _answer(self, message: Message) -> Message | None:
        voter, commits = self.voter, self._commits
        if voter is None or commits is None:
            return None
        now = self.clock.now()
        if isinstance(message, LeaseRequest):
            decision = voter.decide(message, now)
            if not decision.needs_save:
                return decision.reply
            return voter.settle(decision, await commits.durable())
        if isinstance(message, ReleaseRequest):
            voter.on_release(message, now)
            return None
        if isinstance(message, ConfigPrepare):
            return voter.on_prepare(message, now)
        if isinstance(message, ConfigCommit):
            return voter.on_commit(message, now)
        return None

    async def _recover(self, voter: LeaseVoter) -> None:
        """Collect the promised terms of a majority of the other voters (a blank start), asking
        again soon, then every second, until they answer; a majority that cannot answer is
        logged."""
        config = voter.config
        others = sorted(config.voters - {voter.name})
        attempts = 0
        pause = RECOVER_FIRST_RETRY
        while voter.recovering:
            attempts += 1
            answers = await self._ask_terms(config, others)
            accepted = [a for a in answers.values() if a.accepted]
            terms: dict[str, int] = {}
            for answer in accepted:
                for scope, term in answer.terms:
                    terms[scope] = max(terms.get(scope, 0), term)
            # a lone voter has nobody to ask: nobody else could know anything either
            enough = len(accepted) >= config.majority or not others
            if enough and voter.recovered(terms, self.clock.now()):
                return
            if attempts % 30 == 1:
                log.warning(
                    "voter %s started without promised terms and waits for %d of the other "
                    "voters to tell it theirs (%d answered%s)",
                    voter.name,
                    config.majority,
                    len(accepted),
                    "; refused: " + "; ".join(a.reason for a in answers.values() if a.reason)
                    if any(a.reason for a in answers.values())
                    else "",
                    extra={"voter": voter.name, "answered": len(accepted)},
                )
            await trio.sleep(pause)
            pause = min(RECOVER_RETRY, pause * 2)

    async def _ask_terms(
        self, config: VoterConfig, targets: list[str]
    ) -> dict[str, ConfigPrepared]:
        """Ask ``targets`` (at once) for their promised terms: a prepare of the same config."""
        answers: dict[str, ConfigPrepared] = {}

        async def ask(target: str) -> None:
            reply = await self._call(target, ConfigPrepare(config, config))
            if isinstance(reply, ConfigPrepared):
                answers[target] = reply

        async with trio.open_nursery() as nursery:
            for target in targets:
                nursery.start_soon(ask, target)
        return answers

    def _bad(self, peer: str, exc: Exception) -> None:
        self.stats.bad_messages += 1
        log.debug(
            "dropped a quorum message from %s: %s (a peer of another version, or damage)",
            peer,
            exc,
            extra={"peer": peer, "error": str(exc)},
        )


def _unique_scopes(entries: list[RoundEntry]) -> list[list[RoundEntry]]:
    """Split reads into groups without a repeated scope (a request names each scope once)."""
    groups: list[tuple[set[str], list[RoundEntry]]] = []
    for entry in entries:
        for names, group in groups:
            if entry.scope not in names:
                names.add(entry.scope)
                group.append(entry)
                break
        else:
            groups.append(({entry.scope}, [entry]))
    return [group for _, group in groups]


def _chunks(groups: list[list[RoundEntry]], size: int) -> list[list[RoundEntry]]:
    return [group[i : i + size] for group in groups for i in range(0, len(group), size)]


def _freshness(cand: LeaseCandidate) -> float:
    """A scope renewed less than this ago (a quarter of the validity of the leases this holder
    asks for) is not renewed again: a renewal asked for meanwhile is answered from that round."""
    return cand.duration * cand.factor / 4
