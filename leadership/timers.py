"""Trio cancel scopes whose deadlines are times on the lease clock.

Trio's deadlines are on Trio's clock (``CLOCK_MONOTONIC``, which stops during system suspend);
lease deadlines are on the lease clock (``CLOCK_BOOTTIME`` by default, which does not). A
deadline converted once would, after the host slept, let a ``leadership()`` block, a scope
task or a renewal run on past the lease. So every place that acts on a lease deadline arms its
cancel scope here, and :meth:`LeaseTimers.follow_clock` maps every armed deadline to Trio time
again every ``CLOCK_CHECK_INTERVAL``: a jump of the lease clock is acted on within that.
(``is_leader`` reads the lease clock itself and is never late.)
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import trio

from .clock import Clock, TrioTime

CLOCK_CHECK_INTERVAL = 0.05
"""Seconds between two checks of the lease clock against Trio's clock."""

JUMP_THRESHOLD = 0.2
"""A change of the offset between the two clocks larger than this fraction of the check
interval is a jump (rate errors are bounded far below it)."""


class LeaseTimers:
    """Lease-clock deadlines of cancel scopes, kept true when the lease clock jumps."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._armed: dict[trio.CancelScope, float] = {}

    @property
    def may_jump(self) -> bool:
        """False for Trio's own clock, which cannot jump ahead of itself."""
        return not isinstance(self._clock, TrioTime)

    def arm(self, scope: trio.CancelScope, deadline: float) -> None:
        """Cancel ``scope`` once the lease clock reads ``deadline`` (until disarmed)."""
        self._armed[scope] = deadline
        scope.deadline = self._clock.trio_time(deadline)

    def disarm(self, scope: trio.CancelScope) -> None:
        self._armed.pop(scope, None)

    @contextmanager
    def until(self, deadline: float) -> Iterator[trio.CancelScope]:
        """A cancel scope that ends when the lease clock reads ``deadline``."""
        scope = trio.CancelScope()
        self.arm(scope, deadline)
        try:
            with scope:
                yield scope
        finally:
            self.disarm(scope)

    def rearm(self) -> None:
        """Map every armed deadline to Trio time again (after a jump of the lease clock)."""
        for scope, deadline in list(self._armed.items()):
            scope.deadline = self._clock.trio_time(deadline)

    async def follow_clock(self) -> None:
        """Keep armed deadlines true for good (a no-op for Trio's own clock)."""
        if not self.may_jump:
            return
        offset = self._clock.now() - trio.current_time()
        while True:
            await trio.sleep(CLOCK_CHECK_INTERVAL)
            before, offset = offset, self._clock.now() - trio.current_time()
            # A clock's rate error moves the offset a little every check, and its own
            # trio_time already accounts for that; only a jump needs the deadlines mapped again.
            if abs(offset - before) > JUMP_THRESHOLD * CLOCK_CHECK_INTERVAL:
                self.rearm()
