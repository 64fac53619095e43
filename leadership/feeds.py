"""What a coordinator hears between evaluations: the store's change feed and the membership
view. Neither decides anything: they record what changed and wake the scope tasks that
must look again (see the coordinator's theory of operation).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable, Callable

import trio

from .candidacy import Candidacy
from .clock import Clock
from .config import LeadershipConfig
from .splitbrain import SplitBrainReporter
from .state import ScopeState
from .store import Lease, LeaseChange, LeaseChangeKind, WatchableLeaseStore
from .timers import LeaseTimers
from .tokens import EventKind, Holder
from .transitions import Transitions
from .view import MembershipView

log = logging.getLogger("leadership.coordinator")


class Feeds:
    """Follows the change feed and the view for one node's scopes."""

    def __init__(
        self,
        config: LeadershipConfig,
        holder: Holder,
        clock: Clock,
        scopes: dict[str, ScopeState],
        view: MembershipView,
        candidacy: Candidacy,
        transitions: Transitions,
        split: SplitBrainReporter,
        timers: LeaseTimers,
        observe: Callable[[ScopeState, Lease], float],
        backoff: Callable[[int], float],
    ) -> None:
        self.config = config
        self.holder = holder
        self.node_id = holder.node_id
        self.view = view
        self._clock = clock
        self._scopes = scopes
        self._candidacy = candidacy
        self._transitions = transitions
        self._split = split
        self._timers = timers
        self._observe = observe
        self._backoff = backoff

    def _renewed_elsewhere(self, state: ScopeState, lease: Lease) -> None:
        """The known incumbent renewed: postpone the next read without waking the runner."""
        known = state.known
        if known is None or lease.holder.node_id != known.leader_id or lease.term != known.term:
            return
        state.follow(lease, self._clock.now(), self._split.holder_alive(known.leader_id))
        state.next_read = state.known_until
        if state.sleep is not None and not state.wake.is_set():
            state.next_at = state.next_read
            if state.suspect_since is not None:  # a suspicion's grace is running: keep it
                state.next_at = min(state.next_at, self._split.check_incumbent(state))
            self._timers.arm(state.sleep, state.next_at)

    async def follow_view(self) -> None:
        await self._keep_following("membership view", self._follow_view_once)

    async def follow_store(self, store: WatchableLeaseStore) -> None:
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
            self._candidacy.view_changed()
            await trio.sleep(self._backoff(failures))

    async def _follow_view_once(self) -> None:
        async for node_id in self.view.changes():
            self._candidacy.view_changed()
            self._candidacy.note_stability(node_id)
            alive = self._split.holder_alive(node_id)
            for state in self._scopes.values():
                incumbent = state.known is not None and state.known.leader_id == node_id
                if incumbent and not alive and state.known_until > state.known_lease_until:
                    # believed past its lease while alive; no longer: the lease alone, and a
                    # fresh read when it ends (or now, if it ended since the last notice)
                    state.known_until = state.next_read = state.known_lease_until
                    state.poke()
                if incumbent and self._split.check_incumbent(state) < math.inf:
                    state.poke()  # a suspicion's grace runs: the scope task times it
                if state.vacant_since is not None or (self.config.preempt and state.leading):
                    state.poke()

    def _on_store_change(self, change: LeaseChange) -> None:
        if change.kind is LeaseChangeKind.RESYNC:
            for each in self._scopes.values():
                each.next_read = -math.inf
                each.poke()
            return
        state = self._scopes.get(change.scope_key)
        if state is None:
            return
        if change.kind is LeaseChangeKind.CONFLICT:
            self._conflict(state, change)
            return
        if state.is_stale(change):
            log.debug(
                "ignored a stale lease change",
                extra={
                    "node": self.node_id,
                    "scope": state.scope.scope_id,
                    "kind": change.kind.value,
                    "term": change.term,
                    "latest_term": state.latest_term,
                },
            )
            return
        state.saw_term(change.term)
        if change.kind is LeaseChangeKind.RENEWED and change.lease is not None:
            self._renewed_elsewhere(state, change.lease)
        elif change.kind is LeaseChangeKind.ACQUIRED and change.lease is not None:
            if change.lease.holder == self.holder:
                return
            if state.believes(self._clock.now()):
                self._transitions.conflict(state, change.lease)
            self._observe(state, change.lease)
            state.poke()
        elif change.kind is LeaseChangeKind.RELEASED:
            self._transitions.forget_incumbent(state, EventKind.STEPPED_DOWN, "observed release")
            if change.successor is not None:
                state.reserved_for = change.successor
                state.reserved_until = self._clock.now() + self.config.max_election_window
            state.vacant_since = self._clock.now()
            state.poke()

    def _conflict(self, state: ScopeState, change: LeaseChange) -> None:
        """Another holder claims a scope this node leads: split brain, reported here (the other
        side reports it too); the scope renews at once, and the store's answer says who keeps
        it. Reported once per pair of terms."""
        lease, now = change.lease, self._clock.now()
        if lease is None or not state.believes(now) or state.token is None:
            return
        pair = (state.token.fence_token, lease.fence_token)
        if state.conflict_reported == pair:
            return
        state.conflict_reported = pair
        self._split.report(
            state,
            state.token,
            f"{lease.holder.node_id} claims fence {lease.fence_token} while this node leads "
            f"with fence {state.token.fence_token}",
            other=lease.holder.node_id,
            other_fence=lease.fence_token,
        )
        state.renew_at = now
        state.poke()
