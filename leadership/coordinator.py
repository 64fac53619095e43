"""The leadership coordinator: campaigns, renews and steps down per scope, for one node.

Each scope has one task. It sleeps until the next thing that can matter for that scope (its
renewal point, its lease deadline, the end of a known incumbent's lease, the next campaign
attempt) or until something wakes it (a store change, a membership change, a health change).
A node campaigns for a vacant scope only when it ranks first among the live candidates in its
own view, or when the better-ranked ones have not claimed it within ``rank x electionBackoff``
(at most ``maxElectionWindow``), so different views cannot livelock an election.

A leader believes its lease until ``start + granted * (1 - eps) / (1 + eps)`` on its own clock,
``start`` read before the request was sent; it renews ``renewalLeadTime`` before that, and if it
cannot, it steps down at that deadline by itself, before the lease can end at the store.
"""

from __future__ import annotations

import logging
import math
import random
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import attrs
import trio

from .audit import AuditLog
from .clock import Clock, TrioTime
from .config import LeadershipConfig
from .election import Election
from .hub import LeadershipEventHub
from .metrics import LeadershipMetrics
from .scopes import LeadershipScope, parse_scope
from .scoring import Candidate, candidate_from, candidate_metadata, rank_candidates
from .store import (
    Lease,
    LeaseChange,
    LeaseChangeKind,
    LeaseOutcome,
    LeaseResult,
    LeaseStore,
    WatchableLeaseStore,
)
from .tokens import EventKind, Holder, LeadershipEvent, LeadershipToken
from .view import ALIVE, LIVE_STATUSES, MembershipView

log = logging.getLogger("leadership.coordinator")

COUNTED = frozenset(
    {
        EventKind.ELECTED,
        EventKind.RENEWED,
        EventKind.LOST,
        EventKind.EXPIRED,
        EventKind.STEPPED_DOWN,
    }
)


CLOCK_NUDGE = 1e-6


class NotLeaderError(Exception):
    """An operation only the scope's current leader may perform."""


class TransferError(Exception):
    """A transfer target that is not a live, healthy candidate eligible for the scope."""


@attrs.define(eq=False)
class _ScopeState:
    scope: LeadershipScope
    wake: trio.Event = attrs.Factory(trio.Event)
    # while this node leads
    leading: bool = False
    token: LeadershipToken | None = None
    deadline: float = -math.inf
    renew_at: float = math.inf
    correlation: str = ""
    generation: int = 0
    # what this node knows of another holder
    known: LeadershipToken | None = None
    known_until: float = -math.inf
    next_read: float = -math.inf
    """When to read the store again about a known incumbent: the end of its lease with a
    watchable store, at most one evaluation interval away without one."""
    known_correlation: str = ""
    split_reported: int = 0
    # campaigning
    vacant_since: float | None = None
    reserved_for: str | None = None
    reserved_until: float = -math.inf
    failures: int = 0
    ended_term: int = 0
    ended_correlation: str = ""
    """The last term this node led and its correlation id (a restored term keeps both)."""
    stale_term: int = 0
    """A term the store says this holder has but this node does not believe (a reply it gave
    up on): renewed to learn its validity, or released."""
    election: Election | None = None
    sleep: trio.CancelScope | None = None
    """The runner's sleep, whose deadline moves when a store change postpones the next read."""
    rank: tuple[int, int | None] = (-1, None)
    """(view version, this node's rank) cached until the candidates change."""

    def poke(self) -> None:
        self.wake.set()


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
    ) -> None:
        self.config = config
        self.store = store
        self.view = view
        self.node_id = config.node_id or view.local_id
        self.holder = Holder(self.node_id, boot_id or secrets.token_hex(8))
        self._nursery = nursery
        self._clock = clock if clock is not None else TrioTime()
        self._rng = rng if rng is not None else random.Random()
        self.hub = hub if hub is not None else LeadershipEventHub(config.history_size)
        self.metrics = metrics if metrics is not None else LeadershipMetrics()
        self.audit = audit if audit is not None else AuditLog(path=config.audit_file)
        self.hub.set_token_source(self._current_tokens)
        self._mono0 = self._clock.now()
        self._wall0 = wall() if wall is not None else datetime.now(UTC).timestamp()
        self._watchable = isinstance(store, WatchableLeaseStore)
        self._scopes: dict[str, _ScopeState] = {}
        self._healthy = True
        self._health_metadata: dict[str, str] = {}
        self._stopping = False
        self._candidates: list[Candidate] | None = None
        self._view_version = 0
        self._stable_since: dict[str, float] = {}
        self.led = 0

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
                if not coordinator._stopping:
                    with (
                        trio.CancelScope(shield=True),
                        trio.move_on_after(config.max_election_window),
                    ):
                        await coordinator._step_down_all("shutdown")
                nursery.cancel_scope.cancel()
                coordinator.audit.close()

    async def _start(self) -> None:
        await self._publish_candidacy()
        for member in self.view.members():
            if member.node_id != self.node_id:
                self._note_stability(member.node_id)
        self._nursery.start_soon(self._follow_view)
        if isinstance(self.store, WatchableLeaseStore):
            self._nursery.start_soon(self._follow_store, self.store)
        for scope in self.config.scopes:
            self._add_scope(scope)

    async def stop(self) -> None:
        """Graceful stop: retract candidacy, step down from and release every scope led, then
        end the coordinator (its ``async with`` block is cancelled, as a nursery's would be)."""
        if not self._stopping:
            await self._step_down_all("shutdown")
        self._nursery.cancel_scope.cancel()

    def crash(self) -> None:
        """Stop at once without releasing anything (what a killed process looks like); its
        ``async with`` block is cancelled."""
        self._stopping = True
        self._nursery.cancel_scope.cancel()

    # -- public API ------------------------------------------------------------------------

    @property
    def scopes(self) -> list[LeadershipScope]:
        return [s.scope for s in self._scopes.values()]

    @property
    def healthy(self) -> bool:
        return self._healthy

    def election(self, scope: str | LeadershipScope) -> Election:
        """The election handle for ``scope`` (a configured one, or a new scope to take part in
        from now on, e.g. ``coordinator.election("my-resource")``)."""
        target = parse_scope(scope) if isinstance(scope, str) else scope
        state = self._scopes.get(target.key) or self._add_scope(target)
        if state.election is None:
            state.election = Election(self, state)
        return state.election

    def is_leader(self, scope: str) -> bool:
        state = self._scopes.get(scope.casefold())
        return state is not None and self._believes(state)

    def tokens(self) -> list[LeadershipToken]:
        """Tokens this node knows to be current (its own and observed ones)."""
        return self.hub.tokens()

    def candidates(self, scope: str | LeadershipScope) -> list[Candidate]:
        """The live candidates for ``scope`` in this node's view, best first."""
        target = parse_scope(scope) if isinstance(scope, str) else scope
        return rank_candidates(target, self._candidate_list())

    async def update_health(self, healthy: bool, metadata: Mapping[str, str] | None = None) -> None:
        """Report this node's health. Unhealthy: advertise it, step down from and release every
        scope led at once (the next candidate need not wait for expiry), and stop campaigning."""
        changed = healthy != self._healthy
        self._healthy = healthy
        if metadata is not None:
            self._health_metadata = {f"leadership.health.{k}": v for k, v in metadata.items()}
        self._view_changed()
        if changed or metadata is not None:
            await self._publish_candidacy()
        if changed:
            log.info("leadership health changed", extra={"node": self.node_id, "healthy": healthy})
        if not healthy:
            await self._step_down_where(lambda s: True, "unhealthy")
        else:
            for state in self._scopes.values():
                state.poke()

    async def transfer(self, scope: str, to: str) -> LeadershipToken | None:
        """Hand ``scope`` to the live candidate ``to``: release it reserved for ``to`` (for
        ``maxElectionWindow``), then wait that long for ``to`` to be seen leading. Returns the
        new leader's token, or None if it was not seen in time."""
        state = self._scopes.get(scope.casefold())
        if state is None or not self._believes(state):
            raise NotLeaderError(f"{self.node_id} does not lead {scope!r}")
        target = next((c for c in self._candidate_list() if c.node_id == to), None)
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

    def _add_scope(self, scope: LeadershipScope) -> _ScopeState:
        state = _ScopeState(scope)
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

    async def _run_scope(self, state: _ScopeState) -> None:
        # First look after one interval, so this node's candidacy and its peers' have spread.
        next_at = self._now() + self._interval()
        while True:
            with trio.move_on_at(self._clock.trio_time(next_at)) as state.sleep:
                await state.wake.wait()
            state.sleep = None
            # A skewed clock's round trip through Trio time can land a few ulps short of the
            # target; step past it, or the loop would spin at one instant.
            while not state.wake.is_set() and self._now() < next_at:
                await trio.sleep(CLOCK_NUDGE)
            if state.wake.is_set():
                state.wake = trio.Event()
            next_at = await self._evaluate(state)

    async def _evaluate(self, state: _ScopeState) -> float:
        now = self._now()
        if state.leading:
            if now >= state.deadline:
                self._end(state, EventKind.EXPIRED, "lease expired")
            elif now >= state.renew_at:
                return await self._renew(state)
            else:
                preferred, at = self._preferred(state)
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
        if self._stopping:
            return math.inf
        if state.stale_term:
            if self._may_campaign(state):
                return await self._campaign(state)
            term, state.stale_term = state.stale_term, 0
            await self._store("release", self.store.release(state.scope, self.holder, term))
            return now
        if state.known is not None and now < state.next_read:
            return state.next_read
        if state.reserved_for is not None and now < state.reserved_until:
            if state.reserved_for != self.node_id or not self._may_campaign(state):
                return state.reserved_until
            return await self._campaign(state)
        rank = self._rank(state)
        if rank is not None and (rank == 0 or now >= self._campaign_at(state, rank)):
            return await self._campaign(state)
        result = await self._store("get", self.store.get(state.scope))
        return self._after_read(state, result, rank)

    def _campaign_at(self, state: _ScopeState, rank: int) -> float:
        """When a candidate of ``rank`` may campaign for a scope found vacant."""
        if state.vacant_since is None:
            return math.inf
        wait = min(rank * self.config.election_backoff, self.config.max_election_window)
        return state.vacant_since + wait

    def _follower_wake(self, state: _ScopeState, now: float) -> float:
        if self._watchable:
            state.next_read = state.known_until
        else:
            state.next_read = min(state.known_until, now + self._interval())
        return state.next_read

    def _after_read(self, state: _ScopeState, result: LeaseResult, rank: int | None) -> float:
        now = self._now()
        if result.outcome is LeaseOutcome.LEASE_HELD and result.lease is not None:
            return self._observe(state, result.lease)
        if result.outcome is LeaseOutcome.STORE_UNAVAILABLE:
            state.failures += 1
            return now + self._backoff(state.failures)
        state.failures = 0
        self._vacant(state, now)
        if result.reserved_for is not None and result.reserved_for != self.node_id:
            state.reserved_for = result.reserved_for
            state.reserved_until = now + result.reserved_remaining
            return state.reserved_until
        if result.reserved_for == self.node_id:
            state.reserved_for, state.reserved_until = self.node_id, now + result.reserved_remaining
            if self._may_campaign(state):
                return now
            # Handed to this node, which may not lead now: let the reservation run out.
            return min(state.reserved_until, now + self._interval())
        if rank is None:  # not a candidate: look again later
            return now + self._interval()
        return min(self._campaign_at(state, rank), now + self._interval())

    def _vacant(self, state: _ScopeState, now: float) -> None:
        """The store says nobody holds the scope: forget a known incumbent."""
        self._forget_incumbent(state, EventKind.EXPIRED, "lease expired")
        if state.vacant_since is None:
            state.vacant_since = now

    def _forget_incumbent(self, state: _ScopeState, kind: EventKind, reason: str) -> None:
        """The incumbent this node knew of is gone: say so under its term's correlation id."""
        token, state.known = state.known, None
        if token is not None:
            self._emit(state, kind, token, reason, state.known_correlation, token.leader_id)
            self._leader_seen(state)

    async def _campaign(self, state: _ScopeState) -> float:
        if state.vacant_since is None:
            state.vacant_since = self._now()
        generation = state.generation
        start = self._now()
        result = await self._store(
            "acquire", self.store.acquire(state.scope, self.holder, self.config.lease_duration)
        )
        now = self._now()
        if generation != state.generation or self._stopping or not self._may_campaign(state):
            if result.outcome is LeaseOutcome.GRANTED and result.lease is not None:
                await self._release_stale(state, result.lease)
            return now + self._interval()
        if result.outcome is LeaseOutcome.GRANTED and result.lease is not None:
            state.failures = 0
            self._become_leader(state, result.lease, start)
            return state.renew_at
        state.stale_term = 0
        if result.outcome is LeaseOutcome.STORE_UNAVAILABLE:
            state.failures += 1
            return now + self._backoff(state.failures)
        return self._after_read(state, result, None)

    async def _renew(self, state: _ScopeState) -> float:
        token = state.token
        assert token is not None
        generation = state.generation
        start = self._now()
        result: LeaseResult | None = None
        with trio.move_on_at(self._clock.trio_time(state.deadline)):
            result = await self._store(
                "renew",
                self.store.renew(state.scope, self.holder, token.term, self.config.lease_duration),
            )
        now = self._now()
        if generation != state.generation:
            return now
        if result is None or now >= state.deadline:
            self._end(state, EventKind.EXPIRED, "lease expired during renew")
            return now
        if result.outcome is LeaseOutcome.GRANTED and result.lease is not None:
            state.failures = 0
            self._extend(state, result.lease, start)
            return state.renew_at
        if result.outcome is LeaseOutcome.STORE_UNAVAILABLE:
            state.failures += 1
            return min(now + self._backoff(state.failures), state.deadline)
        if result.outcome is LeaseOutcome.LEASE_EXPIRED:
            self._end(state, EventKind.EXPIRED, "lease expired during renew")
        else:
            self._end(state, EventKind.LOST, "lease revoked")
        return now

    async def _store(self, operation: str, call: Awaitable[LeaseResult]) -> LeaseResult:
        """A store call whose exceptions (a store that breaks its protocol) become
        ``STORE_UNAVAILABLE`` results, logged and counted, instead of ending the coordinator."""
        try:
            result = await call
        except Exception as exc:
            log.warning(
                "lease store call failed",
                extra={"node": self.node_id, "operation": operation, "error": repr(exc)},
            )
            result = LeaseResult(LeaseOutcome.STORE_UNAVAILABLE, detail=repr(exc))
        if result.outcome is LeaseOutcome.STORE_UNAVAILABLE:
            self.metrics.store_errors.labels(operation).inc()
        return result

    async def _release_stale(self, state: _ScopeState, lease: Lease) -> None:
        """A grant that arrived for an abandoned round: give it straight back."""
        result = await self._store(
            "release", self.store.release(state.scope, self.holder, lease.term)
        )
        log.debug(
            "released a grant for an abandoned round",
            extra={"node": self.node_id, "scope": state.scope.scope_id, "ok": result.ok},
        )

    # -- transitions -----------------------------------------------------------------------

    def _token(
        self, state: _ScopeState, lease: Lease, issued: float, expires: float
    ) -> LeadershipToken:
        return LeadershipToken(
            scope=state.scope.scope_id,
            scope_kind=state.scope.kind,
            leader_id=lease.holder.node_id,
            term=lease.term,
            fence_token=lease.fence_token,
            issued_at=self._to_wall(issued),
            expires_at=self._to_wall(expires),
            labels=state.scope.labels,
        )

    def _become_leader(self, state: _ScopeState, lease: Lease, start: float) -> None:
        # The term this node led before, which the store still has it hold (a renewal whose
        # reply came too late): the same term and fence, the same correlation id.
        restored = lease.term in (state.stale_term, state.ended_term)
        state.stale_term = 0
        state.leading = True
        state.known = None
        state.deadline = start + self.config.validity(lease.duration)
        state.renew_at = state.deadline - self.config.renewal_lead_time
        state.correlation = state.ended_correlation if restored else self._new_id()
        issued = self._now() - lease.age
        state.token = self._token(state, lease, issued, state.deadline)
        state.reserved_for, state.reserved_until = None, -math.inf
        self.led += 1
        self.metrics.scopes_led.set(self.led)
        took = 0.0 if state.vacant_since is None else self._now() - state.vacant_since
        state.vacant_since = None
        if not restored:
            self.metrics.election_duration.labels(state.scope.scope_id, state.scope.kind).observe(
                took * 1000
            )
            if took > self.config.max_election_window:
                log.warning(
                    "election took longer than maxElectionWindow",
                    extra={
                        "node": self.node_id,
                        "scope": state.scope.scope_id,
                        "seconds": round(took, 3),
                        "max_election_window": self.config.max_election_window,
                        "correlation_id": state.correlation,
                    },
                )
        reason = "lease restored" if restored else "acquired"
        self._emit(state, EventKind.ELECTED, state.token, reason, state.correlation, self.node_id)
        if state.election is not None:
            state.election._elected(state.token)
            state.election._extended(self._trio_deadline(state))
        self._leader_seen(state)

    def _extend(self, state: _ScopeState, lease: Lease, start: float) -> None:
        assert state.token is not None
        state.deadline = max(state.deadline, start + self.config.validity(lease.duration))
        state.renew_at = state.deadline - self.config.renewal_lead_time
        state.token = attrs.evolve(state.token, expires_at=self._to_wall(state.deadline))
        self._emit(
            state, EventKind.RENEWED, state.token, "lease renewed", state.correlation, self.node_id
        )
        if state.election is not None:
            state.election._extended(self._trio_deadline(state))

    def _end(self, state: _ScopeState, kind: EventKind, reason: str) -> LeadershipToken | None:
        """Stop believing (first, always): abandons in-flight rounds for the scope."""
        token = state.token
        state.generation += 1
        if not state.leading or token is None:
            return None
        state.leading = False
        state.token = None
        state.ended_term, state.ended_correlation = token.term, state.correlation
        state.deadline, state.renew_at = -math.inf, math.inf
        self.led -= 1
        self.metrics.scopes_led.set(self.led)
        self._emit(state, kind, token, reason, state.correlation, self.node_id)
        if state.election is not None:
            state.election._ended(token, reason)
        self._leader_seen(state)
        state.poke()
        return token

    async def _give_up(
        self, state: _ScopeState, reason: str, *, successor: str | None = None, reserve: float = 0.0
    ) -> None:
        token = self._end(state, EventKind.STEPPED_DOWN, reason)
        if token is None:
            return
        result = await self._store(
            "release",
            self.store.release(
                state.scope, self.holder, token.term, successor=successor, reserve=reserve
            ),
        )
        if result.outcome is LeaseOutcome.STORE_UNAVAILABLE:
            log.warning(
                "could not release a lease; it will expire at the store",
                extra={"node": self.node_id, "scope": state.scope.scope_id},
            )

    async def _step_down_where(self, which: Callable[[_ScopeState], bool], reason: str) -> None:
        async with trio.open_nursery() as nursery:
            for state in list(self._scopes.values()):
                if state.leading and which(state):
                    nursery.start_soon(self._give_up, state, reason)

    async def _step_down_all(self, reason: str) -> None:
        self._stopping = True
        self._view_changed()
        with trio.move_on_after(self.config.max_election_window):
            await self.view.publish(
                candidate_metadata(self.config.priority, False, (), self.config.roles)
            )
        await self._step_down_where(lambda s: True, reason)

    def _observe(self, state: _ScopeState, lease: Lease) -> float:
        """Another holder (or an earlier round of ours) holds the scope."""
        now = self._now()
        if lease.holder == self.holder:
            # Ours, from a round whose reply we gave up on: renew it to learn its validity.
            if not state.leading:
                state.stale_term = lease.term
            return now
        token = self._token(state, lease, now - lease.age, now + lease.remaining)
        fresh = (
            state.known is None
            or state.known.fence_token != token.fence_token
            or state.known.leader_id != token.leader_id
        )
        state.known, state.known_until = token, now + lease.remaining
        state.vacant_since = None
        state.failures = 0
        state.reserved_for, state.reserved_until = None, -math.inf
        if fresh:
            state.known_correlation = self._new_id()
            self._emit(
                state,
                EventKind.OBSERVED,
                token,
                "observed incumbent",
                state.known_correlation,
                token.leader_id,
            )
            self._leader_seen(state)
            self._check_split_brain(state)
        return self._follower_wake(state, now)

    def _emit(
        self,
        state: _ScopeState,
        kind: EventKind,
        token: LeadershipToken | None,
        reason: str,
        correlation: str,
        leader: str | None,
    ) -> None:
        scope = state.scope
        event = self.hub.publish(
            LeadershipEvent(
                kind, scope.scope_id, leader, token, reason, correlation, self._to_wall(self._now())
            )
        )
        self.audit.append(event)
        if kind in COUNTED and leader == self.node_id:
            self.metrics.transitions.labels(
                scope.scope_id, scope.kind, leader, kind.value.lower()
            ).inc()
        level = logging.DEBUG if kind is EventKind.RENEWED else logging.INFO
        if log.isEnabledFor(level):
            fields = {
                "node": self.node_id,
                "scope": scope.scope_id,
                "kind": kind.value,
                "leader": leader,
                "term": token.term if token else None,
                "fence": token.fence_token if token else None,
                "reason": reason,
                "correlation_id": correlation,
                "sequence": event.sequence,
            }
            log.log(level, "leadership %s", kind.value, extra=fields)

    def _leader_seen(self, state: _ScopeState) -> None:
        if state.election is not None:
            state.election._leader_seen(self._leader_of(state))

    # -- split brain -----------------------------------------------------------------------

    def _check_split_brain(self, state: _ScopeState) -> None:
        known = state.known
        if known is None or self._now() >= state.known_until:
            return
        if state.split_reported == known.fence_token:
            return
        member = self.view.member(known.leader_id)
        status = member.status if member is not None else None
        if status == ALIVE or (member is None and known.leader_id == self.node_id):
            return
        state.split_reported = known.fence_token
        self._report_split_brain(
            state,
            known,
            f"incumbent is {status or 'unknown'} in the membership view while its token is valid",
            status=status or "unknown",
        )

    def _report_split_brain(
        self, state: _ScopeState, token: LeadershipToken | None, reason: str, **fields: object
    ) -> None:
        """One split-brain report: the metric, a structured warning and the event, all with
        one correlation id."""
        leader = token.leader_id if token is not None else self.node_id
        correlation = self._new_id()
        self.metrics.split_brain.labels(state.scope.scope_id, leader).inc()
        log.warning(
            "split brain: %s",
            reason,
            extra={
                "node": self.node_id,
                "scope": state.scope.scope_id,
                "leader": leader,
                "fence": token.fence_token if token is not None else None,
                "correlation_id": correlation,
                **fields,
            },
        )
        self._emit(state, EventKind.SPLIT_BRAIN, token, reason, correlation, leader)

    def _renewed_elsewhere(self, state: _ScopeState, lease: Lease) -> None:
        """The known incumbent renewed: postpone the next read without waking the runner."""
        known = state.known
        if known is None or lease.holder.node_id != known.leader_id or lease.term != known.term:
            return
        state.known_until = state.next_read = self._now() + lease.remaining
        if state.sleep is not None and not state.wake.is_set():
            state.sleep.deadline = self._clock.trio_time(state.next_read)

    def _conflict(self, state: _ScopeState, lease: Lease) -> None:
        """Another holder acquired a scope this node still believes it leads: two leaders.
        Reported as split brain; this node steps down at once (its lease is the older)."""
        self._report_split_brain(
            state,
            state.token,
            f"{lease.holder.node_id} acquired fence {lease.fence_token} while this node led",
            other=lease.holder.node_id,
        )
        self._end(state, EventKind.LOST, "lease revoked")

    # -- background followers --------------------------------------------------------------

    async def _follow_view(self) -> None:
        await self._keep_following("membership view", self._follow_view_once)

    async def _follow_store(self, store: WatchableLeaseStore) -> None:
        async def once() -> None:
            async for change in store.watch():
                self._on_store_change(change)

        await self._keep_following("lease store change feed", once)

    async def _keep_following(self, what: str, follow: Callable[[], Awaitable[None]]) -> None:
        """Run ``follow`` for good: if it fails (a view or store that breaks its protocol),
        log it, re-read every scope, and start again after a backoff."""
        failures = 0
        while True:
            try:
                await follow()
                return
            except Exception as exc:
                failures += 1
                log.warning(
                    f"{what} failed; following it again",
                    extra={"node": self.node_id, "error": repr(exc)},
                )
            self._on_store_change(LeaseChange(LeaseChangeKind.RESYNC))
            self._view_changed()
            await trio.sleep(self._backoff(failures))

    async def _follow_view_once(self) -> None:
        async for node_id in self.view.changes():
            self._view_changed()
            self._note_stability(node_id)
            for state in self._scopes.values():
                if state.known is not None and state.known.leader_id == node_id:
                    self._check_split_brain(state)
                if state.vacant_since is not None or (self.config.preempt and state.leading):
                    state.poke()

    def _note_stability(self, node_id: str) -> None:
        """Track since when each candidate has been alive and healthy without a break."""
        member = self.view.member(node_id)
        candidate = candidate_from(node_id, member.metadata) if member is not None else None
        if member is None or member.status != ALIVE or candidate is None or not candidate.healthy:
            self._stable_since.pop(node_id, None)
        else:
            self._stable_since.setdefault(node_id, self._now())

    def _preferred(self, state: _ScopeState) -> tuple[str | None, float]:
        """With ``preempt``: the better-ranked candidate this node should hand ``state`` to,
        and from when (it must have been alive and healthy for ``stable_after``)."""
        if not self.config.preempt or not self._healthy or self._stopping:
            return None, math.inf
        ranked = [c for c in rank_candidates(state.scope, self._candidate_list()) if c.healthy]
        if not ranked or ranked[0].node_id == self.node_id:
            return None, math.inf
        best = ranked[0].node_id
        since = self._stable_since.get(best)
        if since is None:
            return None, math.inf
        return best, since + self.config.stable_after

    def _on_store_change(self, change: LeaseChange) -> None:
        if change.kind is LeaseChangeKind.RESYNC:
            for each in self._scopes.values():
                each.next_read = -math.inf
                each.poke()
            return
        state = self._scopes.get(change.scope_key)
        if state is None:
            return
        if change.kind is LeaseChangeKind.RENEWED and change.lease is not None:
            self._renewed_elsewhere(state, change.lease)
        elif change.kind is LeaseChangeKind.ACQUIRED and change.lease is not None:
            if change.lease.holder == self.holder:
                return
            if self._believes(state):
                self._conflict(state, change.lease)
            self._observe(state, change.lease)
            state.poke()
        elif change.kind is LeaseChangeKind.RELEASED:
            self._forget_incumbent(state, EventKind.STEPPED_DOWN, "observed release")
            if change.successor is not None:
                state.reserved_for = change.successor
                state.reserved_until = self._now() + self.config.max_election_window
            state.vacant_since = self._now()
            state.poke()

    # -- ranking ---------------------------------------------------------------------------

    def _may_campaign(self, state: _ScopeState) -> bool:
        return (
            self.config.enabled
            and self._healthy
            and not self._stopping
            and self._self_candidate().eligible_for(state.scope)
        )

    def _candidate_list(self) -> list[Candidate]:
        if self._candidates is None:
            out = []
            for member in self.view.members():
                if member.node_id == self.node_id or member.status not in LIVE_STATUSES:
                    continue
                candidate = candidate_from(member.node_id, member.metadata)
                if candidate is None:
                    continue
                if member.status != ALIVE:
                    candidate = attrs.evolve(candidate, healthy=False)
                out.append(candidate)
            if not self._stopping and self.config.enabled:
                out.append(self._self_candidate())
            self._candidates = out
        return self._candidates

    def _self_candidate(self) -> Candidate:
        """This node as a candidate, from its own state (its view of itself may lag)."""
        me = self.view.member(self.node_id)
        gossip_role = me.metadata.get("role") if me is not None else None
        roles = frozenset(self.config.roles) | ({gossip_role} if gossip_role else set())
        return Candidate(
            self.node_id, self.config.priority, self._healthy, self.config.eligible_scopes, roles
        )

    def _view_changed(self) -> None:
        """Candidates (or this node's own candidacy) changed: ranks must be computed again."""
        self._candidates = None
        self._view_version += 1

    def _rank(self, state: _ScopeState) -> int | None:
        """This node's place among the scope's healthy live candidates; None if it may not
        campaign. Cached per scope until the candidates change."""
        version, rank = state.rank
        if version == self._view_version:
            return rank
        rank = None
        if self._may_campaign(state):
            ranked = rank_candidates(state.scope, self._candidate_list())
            healthy = [c for c in ranked if c.healthy]
            rank = next((i for i, c in enumerate(healthy) if c.node_id == self.node_id), None)
        state.rank = (self._view_version, rank)
        return rank

    async def _publish_candidacy(self) -> None:
        patterns = self.config.eligible_scopes if self.config.enabled else ()
        metadata = candidate_metadata(
            self.config.priority, self._healthy, patterns, self.config.roles
        )
        metadata.update(self._health_metadata)
        await self.view.publish(metadata)

    # -- clocks ----------------------------------------------------------------------------

    def _believes(self, state: _ScopeState) -> bool:
        return state.leading and self._now() < state.deadline

    def _current_tokens(self) -> dict[str, tuple[LeadershipToken, str]]:
        """Every scope's current token as this node knows it now (the hub's token source):
        its own while it believes it leads, else a known incumbent's until its lease ends."""
        now, out = self._now(), {}
        for key, state in self._scopes.items():
            if self._believes(state) and state.token is not None:
                out[key] = (state.token, state.correlation)
            elif state.known is not None and now < state.known_until:
                expires = self._to_wall(state.known_until)
                if state.known.expires_at != expires:
                    state.known = attrs.evolve(state.known, expires_at=expires)
                out[key] = (state.known, state.known_correlation)
        return out

    def _leader_of(self, state: _ScopeState) -> str | None:
        if self._believes(state):
            return self.node_id
        if state.known is not None and self._now() < state.known_until:
            return state.known.leader_id
        return None

    def _trio_deadline(self, state: _ScopeState) -> float:
        return self._clock.trio_time(state.deadline)

    def _to_wall(self, mono: float) -> datetime:
        return datetime.fromtimestamp(self._wall0 + (mono - self._mono0), UTC)

    def _new_id(self) -> str:
        return f"{self._rng.getrandbits(64):016x}"

