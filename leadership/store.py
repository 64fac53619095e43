"""The lease store protocol (OmniRelay's ``ILeadershipStore`` semantics) and its results.

A store arbitrates one lease per scope: ``acquire`` starts a new term (term and fence strictly
increase per scope and are never reset), ``renew`` extends the holder's current term, ``release``
ends it, ``get`` reads it. Durations and ``remaining`` are seconds on the store's own clock; a
holder decides its own validity on its clock (see the coordinator).

Grants never shrink under a holder: a store never moves an unexpired grant's expiry earlier
(a renewal granted for less than before keeps the earlier expiry), because the holder keeps
the later of its deadlines (DESIGN.md 5, rule 4).
"""

from __future__ import annotations

import enum
from collections import deque
from collections.abc import AsyncIterator, Mapping
from typing import Protocol, runtime_checkable

import attrs
import trio

from .scopes import LeadershipScope, labels_dict
from .tokens import Holder


class LeaseOutcome(enum.StrEnum):
    GRANTED = "granted"
    RELEASED = "released"
    VACANT = "vacant"
    """``get`` found no valid lease."""
    LEASE_HELD = "leaseHeld"
    """Another holder's lease is valid (the result carries it), or the scope is reserved."""
    LEASE_EXPIRED = "leaseExpired"
    """A renewal came after the holder's lease had expired."""
    NOT_CURRENT_LEADER = "notCurrentLeader"
    """A renewal or release by a holder (or term) that no longer holds the scope."""
    STORE_UNAVAILABLE = "storeUnavailable"


@attrs.frozen
class Lease:
    """A lease as the store saw it when it answered."""

    scope_id: str
    scope_kind: str
    holder: Holder
    term: int
    fence_token: int
    duration: float
    """Granted duration (seconds); the store may cap what was asked."""
    remaining: float
    """Seconds left on the store's clock when it answered."""
    age: float
    """Seconds since this term was acquired, on the store's clock."""
    labels: Mapping[str, str] = attrs.field(factory=dict, converter=labels_dict)
    believe: float = 0.0
    """Seconds a follower may keep believing the holder past ``remaining`` while the holder
    stays alive in its view (the holder tells its followers less often than it renews); 0: the
    lease alone."""


@attrs.frozen
class LeaseResult:
    outcome: LeaseOutcome
    lease: Lease | None = None
    """The granted lease, or on ``LEASE_HELD`` / ``NOT_CURRENT_LEADER`` the incumbent's."""
    reserved_for: str | None = None
    """A node the scope is being handed to (a transfer); others must not acquire it yet."""
    reserved_remaining: float = 0.0
    detail: str = ""

    @property
    def ok(self) -> bool:
        return self.outcome in (LeaseOutcome.GRANTED, LeaseOutcome.RELEASED)


class LeaseStore(Protocol):
    """What the coordinator needs from a store. Every call may raise nothing: failures are a
    ``STORE_UNAVAILABLE`` result."""

    async def acquire(
        self, scope: LeadershipScope, holder: Holder, duration: float
    ) -> LeaseResult: ...

    async def renew(
        self, scope: LeadershipScope, holder: Holder, term: int, duration: float
    ) -> LeaseResult: ...

    async def release(
        self,
        scope: LeadershipScope,
        holder: Holder,
        term: int,
        *,
        successor: str | None = None,
        reserve: float = 0.0,
    ) -> LeaseResult:
        """End the holder's term. With ``successor``, only that node may acquire the scope for
        the next ``reserve`` seconds (a transfer)."""
        ...

    async def get(self, scope: LeadershipScope) -> LeaseResult: ...


class LeaseChangeKind(enum.StrEnum):
    ACQUIRED = "acquired"
    RENEWED = "renewed"
    """Optional: a store that reports renewals spares followers a read per renewal."""
    RELEASED = "released"
    RESYNC = "resync"
    CONFLICT = "conflict"
    """Another holder claims a scope this node holds (a store without voters, after a
    partition): the lease names the other holder; the store decides at the next renewal who
    keeps it."""
    """The watcher fell behind and lost changes: re-read every scope."""


def _lease_term(change: LeaseChange) -> int:
    return change.lease.term if change.lease is not None else 0


def _lease_holder(change: LeaseChange) -> Holder | None:
    return change.lease.holder if change.lease is not None else None


@attrs.frozen
class LeaseChange:
    """One change of a scope's lease. Every change names the term and holder it is about
    (a release the term it ended), so a follower can tell a stale or reordered change from a
    current one: a change about an older term than one it knows of is ignored."""

    kind: LeaseChangeKind
    scope_key: str = ""
    lease: Lease | None = None
    successor: str | None = None
    term: int = attrs.field(default=attrs.Factory(_lease_term, takes_self=True))
    """The term this change is about (the lease's for acquisitions and renewals)."""
    holder: Holder | None = attrs.field(default=attrs.Factory(_lease_holder, takes_self=True))
    """The holder of that term."""


@runtime_checkable
class WatchableLeaseStore(LeaseStore, Protocol):
    """A store that pushes lease changes (acquisitions and releases; renewals optionally; never
    expiry), so followers learn of a release at once instead of polling every evaluation."""

    def watch(self) -> AsyncIterator[LeaseChange]: ...


@attrs.define
class ChangeWatcher:
    """One subscriber of a store's change feed: a backlog the store appends to and this
    watcher drains; a backlog lost (overflow, a cut) is delivered as one ``RESYNC``."""

    node_id: str | None = None
    pending: deque[LeaseChange] = attrs.Factory(deque)
    ready: trio.Event = attrs.Factory(trio.Event)
    overflowed: bool = False

    def offer(self, change: LeaseChange, limit: int) -> bool:
        """Queue ``change``; False (and a resync owed) when the backlog is already ``limit``."""
        queued = len(self.pending) < limit
        if queued:
            self.pending.append(change)
        else:
            self.overflowed = True
        self.ready.set()
        return queued

    async def changes(self) -> AsyncIterator[LeaseChange]:
        while True:
            await self.ready.wait()
            self.ready = trio.Event()
            if self.overflowed:
                self.overflowed = False
                self.pending.clear()
                yield LeaseChange(LeaseChangeKind.RESYNC)
            while self.pending:
                yield self.pending.popleft()


async def watching(
    watchers: list[ChangeWatcher], watcher: ChangeWatcher
) -> AsyncIterator[LeaseChange]:
    """Subscribe ``watcher`` to a store's ``watchers`` for as long as the caller iterates."""
    watchers.append(watcher)
    try:
        async for change in watcher.changes():
            yield change
    finally:
        watchers.remove(watcher)
