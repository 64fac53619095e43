"""One node's calls to its lease store, each a round that always ends in a result.

A store that raises (it breaks the protocol, which says failures are results) is logged,
counted and answered as ``STORE_UNAVAILABLE``, so a broken store cannot end the coordinator.
Every call is bounded by ``timeout``: a call that runs out is abandoned (its reply, should it
come, is never acted on) and answered as ``STORE_UNAVAILABLE`` too. A grant that still lands
at the store for an abandoned acquisition shows up later as this holder's own lease, which
the coordinator renews to learn its validity, or releases.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable

import trio

from .metrics import LeadershipMetrics
from .scopes import LeadershipScope
from .store import LeaseOutcome, LeaseResult, LeaseStore
from .tokens import Holder

log = logging.getLogger("leadership.coordinator")


class StoreRounds:
    """The store as one holder uses it."""

    def __init__(
        self, store: LeaseStore, holder: Holder, metrics: LeadershipMetrics, timeout: float
    ) -> None:
        self.store = store
        self.holder = holder
        self.timeout = timeout
        self._metrics = metrics

    async def acquire(self, scope: LeadershipScope, duration: float) -> LeaseResult:
        return await self._call("acquire", self.store.acquire(scope, self.holder, duration))

    async def renew(self, scope: LeadershipScope, term: int, duration: float) -> LeaseResult:
        return await self._call("renew", self.store.renew(scope, self.holder, term, duration))

    async def release(
        self,
        scope: LeadershipScope,
        term: int,
        *,
        successor: str | None = None,
        reserve: float = 0.0,
    ) -> LeaseResult:
        return await self._call(
            "release",
            self.store.release(scope, self.holder, term, successor=successor, reserve=reserve),
        )

    async def get(self, scope: LeadershipScope) -> LeaseResult:
        return await self._call("get", self.store.get(scope))

    async def _call(self, operation: str, call: Awaitable[LeaseResult]) -> LeaseResult:
        result = LeaseResult(LeaseOutcome.STORE_UNAVAILABLE, detail="timed out")
        try:
            with trio.move_on_after(self.timeout):
                result = await call
        except Exception as exc:
            log.warning(
                "lease store call failed",
                extra={"node": self.holder.node_id, "operation": operation, "error": repr(exc)},
            )
            result = LeaseResult(LeaseOutcome.STORE_UNAVAILABLE, detail=repr(exc))
        if result.outcome is LeaseOutcome.STORE_UNAVAILABLE:
            self._metrics.store_errors.labels(operation).inc()
        return result
