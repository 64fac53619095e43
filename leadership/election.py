"""The service-facing election handle (Excalibur-style): state, waits, callbacks, and a block
that runs only while this node leads.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import trio

from .clock import Clock
from .state import ScopeState
from .timers import LeaseTimers
from .tokens import LeadershipToken

log = logging.getLogger("leadership.election")

BecameLeader = Callable[[LeadershipToken], None]
LostLeadership = Callable[[LeadershipToken, str], None]
LeaderChanged = Callable[[str | None, str | None], None]


class LeadershipLost(Exception):
    """Raised from ``async with election.leadership()`` when its block was cancelled because
    leadership was lost, expired or stepped down."""

    def __init__(self, scope: str, reason: str) -> None:
        super().__init__(f"leadership of {scope!r} ended: {reason}")
        self.scope = scope
        self.reason = reason


class Election:
    """One scope seen from this node. Get it with ``coordinator.election(scope_id)``."""

    def __init__(self, state: ScopeState, clock: Clock, timers: LeaseTimers) -> None:
        self._state = state
        self._clock = clock
        self._timers = timers
        self.scope = state.scope
        self._became: list[BecameLeader] = []
        self._lost: list[LostLeadership] = []
        self._changed: list[LeaderChanged] = []
        self._leader_event = trio.Event()
        self._active: set[trio.CancelScope] = set()
        self._last_leader: str | None = state.leader_of(clock.now())
        self.lost_reason = ""

    # -- state -----------------------------------------------------------------------------

    @property
    def candidate_id(self) -> str:
        return self._state.node_id

    @property
    def is_leader(self) -> bool:
        """True only while this node holds a lease it may still believe by its own clock."""
        return self._state.believes(self._clock.now())

    @property
    def token(self) -> LeadershipToken | None:
        """This node's token while it leads, else None."""
        return self._state.current_token(self._clock.now())

    @property
    def current_leader(self) -> str | None:
        """The leader this node knows of (itself included), or None."""
        return self._state.leader_of(self._clock.now())

    async def wait_until_leader(self) -> LeadershipToken:
        while True:
            token = self.token
            if token is not None:
                return token
            await self._leader_event.wait()

    @asynccontextmanager
    async def leadership(self) -> AsyncIterator[LeadershipToken]:
        """Wait until leader, then run the block in a cancel scope that is cancelled the moment
        leadership ends (its deadline follows the lease); raises :class:`LeadershipLost` if the
        block was cut short that way."""
        token = await self.wait_until_leader()
        with self._timers.until(self._state.deadline) as scope:
            self._active.add(scope)
            try:
                yield token
            finally:
                self._active.discard(scope)
        if scope.cancelled_caught:
            raise LeadershipLost(self.scope.scope_id, self.lost_reason or "lease expired")

    # -- callbacks (usable as decorators) --------------------------------------------------

    def on_became_leader(self, callback: BecameLeader) -> BecameLeader:
        self._became.append(callback)
        return callback

    def on_lost_leadership(self, callback: LostLeadership) -> LostLeadership:
        self._lost.append(callback)
        return callback

    def on_leader_changed(self, callback: LeaderChanged) -> LeaderChanged:
        self._changed.append(callback)
        return callback

    # -- driven by the coordinator (the state's ScopeListener) -------------------------------

    def _call(self, callback: Callable[..., None], *args: object) -> None:
        try:
            callback(*args)
        except Exception:
            log.exception("election callback failed", extra={"scope": self.scope.scope_id})

    def elected(self, token: LeadershipToken) -> None:
        self.lost_reason = ""
        self._leader_event.set()
        for cb in list(self._became):
            self._call(cb, token)

    def extended(self, deadline: float) -> None:
        """The lease deadline moved: every running ``leadership()`` block follows it."""
        for scope in self._active:
            self._timers.arm(scope, deadline)

    def ended(self, token: LeadershipToken, reason: str) -> None:
        self.lost_reason = reason
        self._leader_event = trio.Event()
        for scope in list(self._active):
            scope.cancel()
        for cb in list(self._lost):
            self._call(cb, token, reason)

    def leader_seen(self, leader: str | None) -> None:
        if leader != self._last_leader:
            old, self._last_leader = self._last_leader, leader
            for cb in list(self._changed):
                self._call(cb, old, leader)
