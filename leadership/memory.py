"""An in-memory lease store for one process: tests, simulations, single-node services.

Every coordinator sharing one instance sees one arbiter. For tests it can delay each call
(request and reply separately, so a decision happens between them, as on a network), cut a
node off (``partition``), and runs on an injectable clock.
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from collections.abc import AsyncIterator, Callable
from typing import Protocol

import attrs
import trio

from .scopes import LeadershipScope
from .store import (
    ChangeWatcher,
    Lease,
    LeaseChange,
    LeaseChangeKind,
    LeaseOutcome,
    LeaseResult,
    watching,
)
from .tokens import Holder

log = logging.getLogger("leadership.memory")

WATCH_BUFFER = 4096


class StoreClock(Protocol):
    def now(self) -> float: ...


class _TrioNow:
    def now(self) -> float:
        return trio.current_time()


@attrs.define
class _Record:
    scope: LeadershipScope
    term: int = 0
    """The scope's last term (and fence); strictly increasing, never reset."""
    holder: Holder | None = None
    acquired_at: float = 0.0
    granted: float = 0.0
    expires: float = -math.inf
    reserved_for: str | None = None
    reserved_until: float = -math.inf


class InMemoryLeaseStore:
    """:class:`~leadership.store.WatchableLeaseStore` in one process's memory."""

    def __init__(
        self,
        *,
        clock: StoreClock | None = None,
        max_lease: float = 600.0,
        latency: float | Callable[[], float] = 0.0,
    ) -> None:
        self._clock = clock if clock is not None else _TrioNow()
        self.max_lease = max_lease
        self._latency = latency
        self._records: dict[str, _Record] = {}
        self._watchers: list[ChangeWatcher] = []
        self._cut_off: set[str] = set()
        self.available = True
        self.calls: Counter[str] = Counter()
        """Calls received, by operation."""

    # -- test controls ---------------------------------------------------------------------

    def partition(self, node_id: str) -> None:
        """Calls from ``node_id`` fail with ``STORE_UNAVAILABLE`` until :meth:`heal`."""
        self._cut_off.add(node_id)

    def heal(self, node_id: str) -> None:
        self._cut_off.discard(node_id)
        for watcher in self._watchers:
            if watcher.node_id == node_id and watcher.overflowed:
                watcher.ready.set()  # it missed changes while cut off: it resyncs now

    def client(self, node_id: str) -> StoreClient:
        """This store as node ``node_id`` reaches it: a partition cuts its reads and its change
        feed too (it resyncs on heal), not only its writes."""
        return StoreClient(self, node_id)

    def deliver(self, change: LeaseChange) -> None:
        """Put ``change`` on every change feed as if it had just happened: a stale, duplicated
        or reordered delivery, as a network can make."""
        self._notify(change)

    def last_term(self, scope: LeadershipScope) -> int:
        record = self._records.get(scope.key)
        return record.term if record is not None else 0

    # -- the protocol ----------------------------------------------------------------------

    async def acquire(self, scope: LeadershipScope, holder: Holder, duration: float) -> LeaseResult:
        if not await self._arrive("acquire", holder.node_id):
            return await self._unavailable()
        record, now = self._record(scope), self._clock.now()
        if record.holder is not None and now < record.expires:
            if record.holder == holder:  # acquiring what it already holds: a renewal
                self._extend(record, now, duration)
                return await self._reply(LeaseResult(LeaseOutcome.GRANTED, self._lease(record)))
            return await self._reply(LeaseResult(LeaseOutcome.LEASE_HELD, self._lease(record)))
        if (
            record.reserved_for is not None
            and now < record.reserved_until
            and record.reserved_for != holder.node_id
        ):
            return await self._reply(
                LeaseResult(
                    LeaseOutcome.LEASE_HELD,
                    reserved_for=record.reserved_for,
                    reserved_remaining=record.reserved_until - now,
                    detail=f"reserved for {record.reserved_for}",
                )
            )
        record.term += 1
        record.holder = holder
        record.acquired_at = now
        self._extend(record, now, duration)
        record.reserved_for, record.reserved_until = None, -math.inf
        lease = self._lease(record)
        self._notify(LeaseChange(LeaseChangeKind.ACQUIRED, scope.key, lease))
        return await self._reply(LeaseResult(LeaseOutcome.GRANTED, lease))

    async def renew(
        self, scope: LeadershipScope, holder: Holder, term: int, duration: float
    ) -> LeaseResult:
        if not await self._arrive("renew", holder.node_id):
            return await self._unavailable()
        record, now = self._record(scope), self._clock.now()
        if record.holder != holder or record.term != term:
            incumbent = self._lease(record) if self._valid(record, now) else None
            return await self._reply(
                LeaseResult(LeaseOutcome.NOT_CURRENT_LEADER, incumbent, detail="lease revoked")
            )
        if now >= record.expires:
            record.holder = None
            return await self._reply(
                LeaseResult(LeaseOutcome.LEASE_EXPIRED, detail="lease expired before renewal")
            )
        self._extend(record, now, duration)
        lease = self._lease(record)
        self._notify(LeaseChange(LeaseChangeKind.RENEWED, scope.key, lease))
        return await self._reply(LeaseResult(LeaseOutcome.GRANTED, lease))

    async def release(
        self,
        scope: LeadershipScope,
        holder: Holder,
        term: int,
        *,
        successor: str | None = None,
        reserve: float = 0.0,
    ) -> LeaseResult:
        if not await self._arrive("release", holder.node_id):
            return await self._unavailable()
        record, now = self._record(scope), self._clock.now()
        if record.holder != holder or record.term != term:
            return await self._reply(LeaseResult(LeaseOutcome.NOT_CURRENT_LEADER))
        record.holder, record.expires = None, now
        if successor is not None and reserve > 0:
            record.reserved_for, record.reserved_until = successor, now + reserve
        self._notify(
            LeaseChange(
                LeaseChangeKind.RELEASED, scope.key, successor=successor, term=term, holder=holder
            )
        )
        return await self._reply(LeaseResult(LeaseOutcome.RELEASED))

    async def get(self, scope: LeadershipScope, *, node_id: str | None = None) -> LeaseResult:
        if not await self._arrive("get", node_id):
            return await self._unavailable()
        record, now = self._record(scope), self._clock.now()
        if self._valid(record, now):
            return await self._reply(LeaseResult(LeaseOutcome.LEASE_HELD, self._lease(record)))
        reserved = record.reserved_for if now < record.reserved_until else None
        return await self._reply(
            LeaseResult(
                LeaseOutcome.VACANT,
                reserved_for=reserved,
                reserved_remaining=record.reserved_until - now if reserved else 0.0,
            )
        )

    def watch(self, *, node_id: str | None = None) -> AsyncIterator[LeaseChange]:
        """Lease changes (acquired, renewed, released) from now on; ``RESYNC`` if this watcher fell
        more than ``WATCH_BUFFER`` changes behind, or was cut off, and lost some."""
        return watching(self._watchers, ChangeWatcher(node_id))

    # -- internals -------------------------------------------------------------------------

    def _record(self, scope: LeadershipScope) -> _Record:
        record = self._records.get(scope.key)
        if record is None:
            record = self._records[scope.key] = _Record(scope)
        return record

    @staticmethod
    def _valid(record: _Record, now: float) -> bool:
        return record.holder is not None and now < record.expires

    def _extend(self, record: _Record, now: float, duration: float) -> None:
        """Grant ``duration`` (capped) from ``now``; never earlier than an unexpired grant
        already ends (grants do not shrink under a holder)."""
        record.granted = max(0.0, min(duration, self.max_lease))
        record.expires = max(record.expires, now + record.granted)

    def _lease(self, record: _Record) -> Lease:
        assert record.holder is not None
        now = self._clock.now()
        return Lease(
            scope_id=record.scope.scope_id,
            scope_kind=record.scope.kind,
            holder=record.holder,
            term=record.term,
            fence_token=record.term,
            duration=record.granted,
            remaining=max(0.0, record.expires - now),
            age=now - record.acquired_at,
            labels=record.scope.labels,
        )

    def _notify(self, change: LeaseChange) -> None:
        for watcher in self._watchers:
            if watcher.node_id is not None and watcher.node_id in self._cut_off:
                watcher.overflowed = True  # lost; delivered as RESYNC on heal
                continue
            was_behind = watcher.overflowed
            if not watcher.offer(change, WATCH_BUFFER) and not was_behind:
                log.warning("lease watcher fell behind; it will resync")

    def _delay(self) -> float:
        return self._latency() if callable(self._latency) else self._latency

    async def _arrive(self, operation: str, node_id: str | None) -> bool:
        """The request's trip to the store; False when the caller is cut off."""
        self.calls[operation] += 1
        delay = self._delay()
        if delay > 0:
            await trio.sleep(delay)
        return self.available and (node_id is None or node_id not in self._cut_off)

    async def _reply(self, result: LeaseResult) -> LeaseResult:
        """The reply's trip back: the decision is already made, so it must not be cancelled
        away silently between the two (a caller that gives up just never hears of it)."""
        delay = self._delay()
        if delay > 0:
            await trio.sleep(delay)
        return result

    async def _unavailable(self) -> LeaseResult:
        return LeaseResult(LeaseOutcome.STORE_UNAVAILABLE, detail="store unreachable")


class StoreClient:
    """One node's handle on an :class:`InMemoryLeaseStore` (see ``client``)."""

    def __init__(self, store: InMemoryLeaseStore, node_id: str) -> None:
        self.store = store
        self.node_id = node_id

    async def acquire(self, scope: LeadershipScope, holder: Holder, duration: float) -> LeaseResult:
        return await self.store.acquire(scope, holder, duration)

    async def renew(
        self, scope: LeadershipScope, holder: Holder, term: int, duration: float
    ) -> LeaseResult:
        return await self.store.renew(scope, holder, term, duration)

    async def release(
        self,
        scope: LeadershipScope,
        holder: Holder,
        term: int,
        *,
        successor: str | None = None,
        reserve: float = 0.0,
    ) -> LeaseResult:
        return await self.store.release(scope, holder, term, successor=successor, reserve=reserve)

    async def get(self, scope: LeadershipScope) -> LeaseResult:
        return await self.store.get(scope, node_id=self.node_id)

    def watch(self) -> AsyncIterator[LeaseChange]:
        return self.store.watch(node_id=self.node_id)
