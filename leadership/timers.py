"""Trio cancel scopes whose deadlines are times on the lease clock.

Trio's deadlines are on Trio's clock (``CLOCK_MONOTONIC``, which stops during system suspend);
lease deadlines are on the lease clock (``CLOCK_BOOTTIME`` by default, which does not). A
deadline converted once would, after the host slept, let a ``leadership()`` block, a scope
task or a renewal run on past the lease. So every place that acts on a lease deadline arms its
cancel scope here, and one watcher per process (a Trio system task shared by every coordinator,
so its cost does not grow with them) compares each lease clock with Trio's every
``CLOCK_CHECK_INTERVAL`` and, after a jump, maps every armed deadline to Trio time again: a jump
is acted on within that interval. (``is_leader`` reads the lease clock itself and is never late.)
"""

from __future__ import annotations

import weakref
from types import TracebackType

import trio
import trio.lowlevel

from .clock import Clock, TrioTime

CLOCK_CHECK_INTERVAL = 0.25
"""Seconds between two checks of every lease clock against Trio's clock: how late, at most,
a ``leadership()`` block ends after the host wakes from a suspend that outlasted its lease.
Each check is a wakeup of the process (about 1 ms of CPU per second here at 0.25 s, once
per process however many coordinators it runs)."""

JUMP_THRESHOLD = 0.2
"""A change of the offset between the two clocks larger than this fraction of the check
interval is a jump (rate errors are bounded far below it)."""


class LeaseTimers:
    """Lease-clock deadlines of cancel scopes, kept true when the lease clock jumps."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._armed: dict[trio.CancelScope, float] = {}
        self._offset = 0.0

    @property
    def may_jump(self) -> bool:
        """False for Trio's own clock, which cannot jump ahead of itself."""
        return not isinstance(self._clock, TrioTime)

    def start(self) -> None:
        """Have the process's clock watcher check this lease clock until :meth:`stop` (a
        no-op for Trio's own clock)."""
        if self.may_jump:
            self._offset = self._clock.now() - trio.current_time()
            _watcher().add(self)

    def stop(self) -> None:
        if self.may_jump:
            _watcher().timers.discard(self)

    def arm(self, scope: trio.CancelScope, deadline: float) -> None:
        """Cancel ``scope`` once the lease clock reads ``deadline`` (until disarmed)."""
        self._armed[scope] = deadline
        scope.deadline = self._clock.trio_time(deadline)

    def disarm(self, scope: trio.CancelScope) -> None:
        self._armed.pop(scope, None)

    def until(self, deadline: float) -> _Armed:
        """A cancel scope (``with timers.until(d) as scope:``) that ends when the lease clock
        reads ``deadline``."""
        scope = trio.CancelScope()
        self.arm(scope, deadline)
        return _Armed(self, scope)

    def rearm(self) -> None:
        """Map every armed deadline to Trio time again (after a jump of the lease clock)."""
        for scope, deadline in list(self._armed.items()):
            scope.deadline = self._clock.trio_time(deadline)

    def check(self) -> None:
        """Re-arm if the lease clock jumped since the last check. A clock's rate error moves
        the offset a little every check, and its own ``trio_time`` already accounts for that;
        only a jump needs the deadlines mapped again."""
        before, self._offset = self._offset, self._clock.now() - trio.current_time()
        if abs(self._offset - before) > JUMP_THRESHOLD * CLOCK_CHECK_INTERVAL:
            self.rearm()


class _Armed:
    """Enters an armed cancel scope and disarms it on the way out (a class, not a generator:
    every scope task enters one per sleep)."""

    __slots__ = ("_scope", "_timers")

    def __init__(self, timers: LeaseTimers, scope: trio.CancelScope) -> None:
        self._timers = timers
        self._scope = scope

    def __enter__(self) -> trio.CancelScope:
        return self._scope.__enter__()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> bool:
        try:
            return self._scope.__exit__(kind, value, traceback)
        finally:
            self._timers.disarm(self._scope)


class _ClockWatcher:
    """Checks every started :class:`LeaseTimers` of this Trio run, while there are any."""

    def __init__(self) -> None:
        self.timers: weakref.WeakSet[LeaseTimers] = weakref.WeakSet()
        self._running = False

    def add(self, timers: LeaseTimers) -> None:
        self.timers.add(timers)
        if not self._running:
            self._running = True
            trio.lowlevel.spawn_system_task(self._run, name="leadership lease clock watcher")

    async def _run(self) -> None:
        try:
            while self.timers:
                await trio.sleep(CLOCK_CHECK_INTERVAL)
                for timers in list(self.timers):
                    timers.check()
        finally:
            self._running = False


_WATCHER: trio.lowlevel.RunVar[_ClockWatcher] = trio.lowlevel.RunVar("leadership_clock_watcher")


def _watcher() -> _ClockWatcher:
    try:
        return _WATCHER.get()
    except LookupError:
        watcher = _ClockWatcher()
        _WATCHER.set(watcher)
        return watcher
