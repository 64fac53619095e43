"""The leadership coordinator: campaigns, renews and steps down per scope, for one node.

Theory of operation
-------------------
Every scope this node takes part in has one task, the *scope loop* (:meth:`_run_scope`). It
sleeps until ``state.next_at`` (a time on the lease clock) or until something pokes it, then
*evaluates* the scope once (:meth:`_evaluate`) and gets back the next time it must look. All
decisions happen in that one place; everything else only records facts and pokes:

- the change feed of a watchable store (another holder acquired, renewed or released),
- the membership view (candidates came, went or changed health),
- ``update_health``, ``transfer`` and ``stop``.

An evaluation finds the scope (see :mod:`leadership.state`) in one of three situations:

leading
    Past ``deadline``: the lease ended on this node's own clock; it stops believing
    (``expired``). Past ``renew_at``: renew (a new round at the same term). Otherwise, with
    ``preempt``, hand over to a better candidate that has been stable long enough.
following
    A known incumbent's lease runs until ``known_until``; nothing to do before ``next_read``.
vacant
    Campaign when this node ranks first among the healthy live candidates, or when the
    better-ranked ones have not claimed the scope within ``rank x electionBackoff`` (at most
    ``maxElectionWindow``), so different views cannot livelock an election; otherwise read
    the store and wait.

A leader believes its lease until ``start + granted * (1 - eps) / (1 + eps)`` on its own lease
clock, ``start`` read before the request was sent; it renews ``renewalLeadTime`` before that, and
if it cannot, it steps down at that deadline by itself, before the lease can end at the store.
A grant whose reply lands after that deadline is given back, never acted on; every store call
is bounded (:mod:`leadership.rounds`); changes about older terms are ignored.
Stopping to believe always comes first (``Transitions.end`` bumps the scope's generation, which
abandons every round still in flight); releasing the lease at the store comes after.

Times are on the lease clock (``CLOCK_BOOTTIME`` by default), which may jump ahead of Trio's
after a suspend: every sleep and deadline is armed in :class:`~leadership.timers.LeaseTimers`,
which maps it to Trio time again when that happens.
"""

from __future__ import annotations

import logging
import math
import random
import secrets
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import trio

from .announce import Announcer
from .audit import AuditLog
from .candidacy import Candidacy
from .clock import Clock, default_clock
from .config import LeadershipConfig
from .election import Election
from .feeds import Feeds
from .fencing import FenceGuard
from .hub import LeadershipEventHub
from .metrics import LeadershipMetrics
from .rounds import StoreRounds
from .scopes import LeadershipScope, parse_scope
from .scoring import Candidate, rank_candidates
from .splitbrain import SplitBrainReporter
from .state import ScopeState
from .store import Lease, LeaseOutcome, LeaseResult, LeaseStore, WatchableLeaseStore
from .timers import LeaseTimers
from .tokens import EventKind, Holder, LeadershipToken
from .transitions import Transitions
from .view import MembershipView

log = logging.getLogger("leadership.coordinator")

CLOCK_NUDGE = 1e-6
CLOCK_SHORT = 1e-3
"""A scope timer that fired more than this short of its lease-clock target is armed again."""


class NotLeaderError(Exception):
    """An operation only the scope's current leader may perform."""


class TransferError(Exception):
    """A transfer target that is not a live, healthy candidate eligible for the scope."""


class LeadershipCoordinator:
    """Runs elections for this node's scopes. Start it with :meth:`open`."""

    def __init__(
        self,
        config: LeadershipConfig,
        store: LeaseStore,
        view: MembershipView,
        nursery: trio.Nursery,
        *,
        clock: Clock | None = None,
        rng: random.Random | None = None,
        hub: LeadershipEventHub | None = None,
        metrics: LeadershipMetrics | None = None,
        audit: AuditLog | None = None,
        wall: Callable[[], float] | None = None,
        boot_id: str | None = None,
        leases_end_with_membership: bool = False,
    ) -> None:
        self.config = config
        self.store = store
        self.view = view
        self.node_id = config.node_id or view.local_id
        self.holder = Holder(self.node_id, boot_id or secrets.token_hex(8))
        self._nursery = nursery
        self._clock = clock if clock is not None else default_clock()
        self._timers = LeaseTimers(self._clock)
        self._rng = rng if rng is not None else random.Random()
        self.hub = hub if hub is not None else LeadershipEventHub(config.history_size)
        self.metrics = metrics if metrics is not None else LeadershipMetrics()
        self.audit = audit if audit is not None else AuditLog(path=config.audit_file)
        wall0 = wall() if wall is not None else datetime.now(UTC).timestamp()
        self._announce = Announcer(
            self.node_id, self._clock, self._rng, self.hub, self.metrics, self.audit, wall0, config
        )
        self._rounds = StoreRounds(store, self.holder, self.metrics, config.store_timeout)
        self._candidacy = Candidacy(config, view, self.node_id, self._clock)
        self._split = SplitBrainReporter(self._announce, view, self._clock, config)
        self._split.watch_incumbents = not leases_end_with_membership  # the store ends those
        self._transitions = Transitions(
            config, self.holder, self._clock, self._announce, self._split, self.metrics
        )
        self._watchable = isinstance(store, WatchableLeaseStore)
        self._scopes: dict[str, ScopeState] = {}
        self._elections: dict[str, Election] = {}
        self._feeds = Feeds(
            config,
            self.holder,
            self._clock,
            self._scopes,
            view,
            self._candidacy,
            self._transitions,
            self._split,
            self._timers,
            self._observe,
            self._backoff,
        )
        self.hub.set_token_source(lambda: self._transitions.current_tokens(self._scopes))

    # -- lifecycle -------------------------------------------------------------------------

    @classmethod
    @asynccontextmanager
    async def open(
        cls,
        config: LeadershipConfig,
        store: LeaseStore,
        view: MembershipView,
        **options: Any,
    ) -> AsyncIterator[LeadershipCoordinator]:
        """Run a coordinator until the block exits; then it steps down from every scope it leads
        and releases the leases (unless :meth:`crash` was called)."""
        async with trio.open_nursery() as nursery:
            coordinator = cls(config, store, view, nursery, **options)
            coordinator.audit.open()
            try:
                await coordinator._start()
                yield coordinator
            finally:
                if not coordinator._candidacy.stopping:
                    with (
                        trio.CancelScope(shield=True),
                        trio.move_on_after(config.max_election_window),
                    ):
                        await coordinator._step_down_all("shutdown")
                nursery.cancel_scope.cancel()
                coordinator._timers.stop()
                coordinator.audit.close()

    async def _start(self) -> None:
        self._timers.start()
        await self._candidacy.publish()
        for member in self.view.members():
            if member.node_id != self.node_id:
                self._candidacy.note_stability(member.node_id)
        self._nursery.start_soon(self._feeds.follow_view)
        if isinstance(self.store, WatchableLeaseStore):
            self._nursery.start_soon(self._feeds.follow_store, self.store)
        for scope in self.config.scopes:
            self._add_scope(scope)

    async def stop(self) -> None:
        """Graceful stop: retract candidacy, step down from and release every scope led, then
        end the coordinator (its ``async with`` block is cancelled, as a nursery's would be)."""
        if not self._candidacy.stopping:
            await self._step_down_all("shutdown")
        self._nursery.cancel_scope.cancel()

    def crash(self) -> None:
        """Stop at once without releasing anything (what a killed process looks like); its
        ``async with`` block is cancelled."""
        self._candidacy.stopping = True
        self._nursery.cancel_scope.cancel()

    # -- public API ------------------------------------------------------------------------

    @property
    def scopes(self) -> list[LeadershipScope]:
        return [s.scope for s in self._scopes.values()]

    @property
    def clock(self) -> Clock:
        """The lease clock this node decides validity on."""
        return self._clock

    @property
    def healthy(self) -> bool:
        return self._candidacy.healthy

    def election(self, scope: str | LeadershipScope) -> Election:
        """The election handle for ``scope`` (a configured one, or a new scope to take part in
        from now on, e.g. ``coordinator.election("my-resource")``)."""
        target = parse_scope(scope) if isinstance(scope, str) else scope
        state = self._scopes.get(target.key) or self._add_scope(target)
        election = self._elections.get(target.key)
        if election is None:
            election = Election(state, self._clock, self._timers)
            self._elections[target.key] = election
            state.listener = election
        return election

    def is_leader(self, scope: str) -> bool:
        state = self._scopes.get(scope.casefold())
        return state is not None and state.believes(self._now())

    def fence_guard(self) -> FenceGuard:
        """A :class:`FenceGuard` for a resource in this process whose rejections this node
        reports as split brain (a lower fence acted after a higher one) on its hub."""
        return self._split.fence_guard(lambda scope: self._scopes.get(scope.casefold()))

    def tokens(self) -> list[LeadershipToken]:
        """Tokens this node knows to be current (its own and observed ones)."""
        return self.hub.tokens()

    def candidates(self, scope: str | LeadershipScope) -> list[Candidate]:
        """The live candidates for ``scope`` in this node's view, best first."""
        target = parse_scope(scope) if isinstance(scope, str) else scope
        return rank_candidates(target, self._candidacy.candidates())

    async def update_health(self, healthy: bool, metadata: Mapping[str, str] | None = None) -> None:
        """Report this node's health. Unhealthy: advertise it, step down from and release every
        scope led at once (the next candidate need not wait for expiry), and stop campaigning."""
        changed = self._candidacy.set_health(healthy, metadata)
        if changed or metadata is not None:
            await self._candidacy.publish()
        if changed:
            log.info("leadership health changed", extra={"node": self.node_id, "healthy": healthy})
        if not healthy:
            await self._step_down_every_scope("unhealthy")
        else:
            for state in self._scopes.values():
                state.poke()

    async def transfer(self, scope: str, to: str) -> LeadershipToken | None:
        """Hand ``scope`` to the live candidate ``to``: release it reserved for ``to`` (for
        ``maxElectionWindow``), then wait that long for ``to`` to be seen leading. Returns the
        new leader's token, or None if it was not seen in time."""
        state = self._scopes.get(scope.casefold())
        if state is None or not state.believes(self._now()):
            raise NotLeaderError(f"{self.node_id} does not lead {scope!r}")
        target = self._candidacy.candidate(to)
        if to == self.node_id or target is None or not target.healthy:
            raise TransferError(f"{to!r} is not a live, healthy candidate for {scope!r}")
        if not target.eligible_for(state.scope):
            raise TransferError(f"{to!r} may not lead {scope!r}")
        window = self.config.max_election_window
        await self._give_up(state, f"transferred to {to}", successor=to, reserve=window)
        with trio.move_on_after(window):
            async with self.hub.subscribe(state.scope.scope_id, leader=to) as events:
                async for event in events:
                    if event.token is not None:
                        return event.token
        return None

    # -- scope tasks -----------------------------------------------------------------------

    def _add_scope(self, scope: LeadershipScope) -> ScopeState:
        state = ScopeState(scope, self.node_id)
        self._scopes[scope.key] = state
        self._nursery.start_soon(self._run_scope, state)
        return state

    def _now(self) -> float:
        return self._clock.now()

    def _interval(self) -> float:
        """The evaluation interval with OmniRelay's jitter (+25-125 ms at the default 750 ms)."""
        base = self.config.evaluation_interval
        return base * (1 + self._rng.uniform(1 / 30, 1 / 6))

    def _backoff(self, failures: int) -> float:
        step = self.config.election_backoff * 2.0 ** max(0, failures - 1)
        return min(step, self.config.max_election_window) * (1 + self._rng.random() / 4)

    async def _run_scope(self, state: ScopeState) -> None:
        # First look after one interval, so this node's candidacy and its peers' have spread.
        state.next_at = self._now() + self._interval()
        while True:
            with self._timers.until(state.next_at) as state.sleep:
                await state.wake.wait()
            state.sleep = None
            # A skewed clock's round trip through Trio time can land a few ulps short of the
            # target (step past it); one whose rate changed since arming lands far short (arm
            # again at the new rate). The target is the state's, never a stale copy.
            while not state.wake.is_set() and self._now() < state.next_at:
                if state.next_at - self._now() > CLOCK_SHORT:
                    with self._timers.until(state.next_at) as state.sleep:
                        await state.wake.wait()
                    state.sleep = None
                await trio.sleep(CLOCK_NUDGE)  # progress, whatever the clock's mapping says
            if state.wake.is_set():
                state.wake = trio.Event()
            state.next_at = await self._evaluate(state)

    async def _evaluate(self, state: ScopeState) -> float:
        now = self._now()
        if state.leading:
            if now >= state.deadline:
                self._transitions.end(state, EventKind.EXPIRED, "lease expired")
            elif now >= state.renew_at:
                return await self._renew(state)
            else:
                preferred, at = self._candidacy.preferred(state.scope)
                if preferred is None:
                    return state.renew_at
                if now < at:
                    return min(state.renew_at, at)
                await self._give_up(
                    state,
                    f"handed to preferred candidate {preferred}",
                    successor=preferred,
                    reserve=self.config.max_election_window,
                )
                return now
        if self._candidacy.stopping:
            return math.inf
        if state.stale_term:
            if self._candidacy.may_campaign(state.scope):
                return await self._campaign(state)
            term, state.stale_term = state.stale_term, 0
            await self._rounds.release(state.scope, term)
            return now
        if state.known is not None and now < state.next_read:
            return min(state.next_read, self._split.check_incumbent(state))
        if state.reserved_for is not None and now < state.reserved_until:
            if state.reserved_for != self.node_id or not self._candidacy.may_campaign(state.scope):
                return state.reserved_until
            return await self._campaign(state)
        rank = self._candidacy.rank(state)
        if rank is not None and (rank == 0 or now >= self._candidacy.campaign_at(state, rank)):
            return await self._campaign(state)
        result = await self._rounds.get(state.scope)
        return self._after_read(state, result, rank)

    @property
    def led(self) -> int:
        """How many scopes this node leads now."""
        return self._transitions.led

    def _observe(self, state: ScopeState, lease: Lease) -> float:
        """Another holder (or an earlier round of ours) holds the scope: when to look next."""
        if self._transitions.observe(state, lease):
            wake = self._follower_wake(state, self._now())
            return min(wake, self._split.check_incumbent(state))
        return self._now()

    def _follower_wake(self, state: ScopeState, now: float) -> float:
        if self._watchable:
            state.next_read = state.known_until
        else:
            state.next_read = min(state.known_until, now + self._interval())
        return state.next_read

    def _after_read(self, state: ScopeState, result: LeaseResult, rank: int | None) -> float:
        now = self._now()
        if result.outcome is LeaseOutcome.LEASE_HELD and result.lease is not None:
            return self._observe(state, result.lease)
        if result.outcome is LeaseOutcome.STORE_UNAVAILABLE:
            state.failures += 1
            return now + self._backoff(state.failures)
        state.failures = 0
        self._transitions.vacant(state, now)
        if result.reserved_for is not None and result.reserved_for != self.node_id:
            state.reserved_for = result.reserved_for
            state.reserved_until = now + result.reserved_remaining
            return state.reserved_until
        if result.reserved_for == self.node_id:
            state.reserved_for, state.reserved_until = self.node_id, now + result.reserved_remaining
            if self._candidacy.may_campaign(state.scope):
                return now
            # Handed to this node, which may not lead now: let the reservation run out.
            return min(state.reserved_until, now + self._interval())
        if rank is None:  # not a candidate: look again later
            return now + self._interval()
        return min(self._candidacy.campaign_at(state, rank), now + self._interval())

    async def _campaign(self, state: ScopeState) -> float:
        if state.vacant_since is None:
            state.vacant_since = self._now()
        generation = state.generation
        start = self._now()
        result = await self._rounds.acquire(state.scope, self.config.lease_duration)
        now = self._now()
        if generation != state.generation or not self._candidacy.may_campaign(state.scope):
            if result.outcome is LeaseOutcome.GRANTED and result.lease is not None:
                await self._release_stale(state, result.lease)
            return now + self._interval()
        if result.outcome is LeaseOutcome.GRANTED and result.lease is not None:
            if now >= start + self.config.validity(result.lease.duration):
                # Granted, but the reply came after the lease it grants would have ended on
                # this node's clock: never acted on, given back (DESIGN.md 5, rule 4).
                log.info(
                    "abandoned a grant that arrived after its own validity",
                    extra={"node": self.node_id, "scope": state.scope.scope_id},
                )
                await self._release_stale(state, result.lease)
                state.failures += 1
                return now + self._backoff(state.failures)
            state.failures = 0
            self._transitions.become_leader(state, result.lease, start)
            return state.renew_at
        state.stale_term = 0
        if result.outcome is LeaseOutcome.STORE_UNAVAILABLE:
            state.failures += 1
            return now + self._backoff(state.failures)
        return self._after_read(state, result, None)

    async def _renew(self, state: ScopeState) -> float:
        token = state.token
        assert token is not None
        generation = state.generation
        start = self._now()
        result: LeaseResult | None = None
        with self._timers.until(state.deadline):
            result = await self._rounds.renew(state.scope, token.term, self.config.lease_duration)
        now = self._now()
        if generation != state.generation:
            return now
        if result is None or now >= state.deadline:
            self._transitions.end(state, EventKind.EXPIRED, "lease expired during renew")
            return now
        if result.outcome is LeaseOutcome.GRANTED and result.lease is not None:
            state.failures = 0
            self._transitions.extend(state, result.lease, start)
            return state.renew_at
        if result.outcome is LeaseOutcome.STORE_UNAVAILABLE:
            state.failures += 1
            return min(now + self._backoff(state.failures), state.deadline)
        if result.outcome is LeaseOutcome.LEASE_EXPIRED:
            self._transitions.end(state, EventKind.EXPIRED, "lease expired during renew")
        else:
            self._transitions.end(state, EventKind.LOST, "lease revoked")
        return now

    async def _release_stale(self, state: ScopeState, lease: Lease) -> None:
        """A grant that arrived for an abandoned round: give it straight back."""
        result = await self._rounds.release(state.scope, lease.term)
        log.debug(
            "released a grant for an abandoned round",
            extra={"node": self.node_id, "scope": state.scope.scope_id, "ok": result.ok},
        )

    async def _give_up(
        self, state: ScopeState, reason: str, *, successor: str | None = None, reserve: float = 0.0
    ) -> None:
        token = self._transitions.end(state, EventKind.STEPPED_DOWN, reason)
        if token is None:
            return
        result = await self._rounds.release(
            state.scope, token.term, successor=successor, reserve=reserve
        )
        if result.outcome is LeaseOutcome.STORE_UNAVAILABLE:
            log.warning(
                "could not release a lease; it will expire at the store",
                extra={"node": self.node_id, "scope": state.scope.scope_id},
            )

    async def _step_down_every_scope(self, reason: str) -> None:
        """Step down from (and release) every scope this node leads, concurrently."""
        async with trio.open_nursery() as nursery:
            for state in list(self._scopes.values()):
                if state.leading:
                    nursery.start_soon(self._give_up, state, reason)

    async def _step_down_all(self, reason: str) -> None:
        """Stop for good: retract candidacy, then step down from every scope."""
        with trio.move_on_after(self.config.max_election_window):
            await self._candidacy.retract()
        self._candidacy.stopping = True
        await self._step_down_every_scope(reason)
