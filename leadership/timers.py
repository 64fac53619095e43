"""Trio cancel scopes whose deadlines are times on the lease clock.

Trio's deadlines are on Trio's clock (``CLOCK_MONOTONIC``, which stops during system suspend);
lease deadlines are on the lease clock (``CLOCK_BOOTTIME`` by default, which does not). A
deadline converted once would, after the host slept, let a ``leadership()`` block, a scope
task or a renewal run on past the lease. So every place that acts on a lease deadline arms its
cancel scope here, and one watcher per process (shared by every coordinator, so its cost does
not grow with them) compares each lease clock with Trio's and, after a jump, maps every armed
deadline to Trio time again.

The watcher compares the clocks whenever the process wakes anyway (a Trio instrument after each
wait for I/O or timers: two clock reads), and on its own every ``CLOCK_CHECK_INTERVAL`` when
nothing else wakes the process. An agent wakes several times a second for its membership
protocol, so a jump is acted on at its next wakeup after the host resumes, without a wakeup of
its own four times a second (which cost about as much CPU as the whole membership protocol of an
idle ``lan`` agent). ``is_leader`` reads the lease clock itself and is never late.
"""

from __future__ import annotations

import contextlib
import math
import weakref
from types import TracebackType

import trio
import trio.lowlevel

from .clock import Clock, TrioTime

CLOCK_CHECK_INTERVAL = 1.0
"""Seconds between two checks of every lease clock against Trio's clock when nothing else
wakes the process: how late, at most, a ``leadership()`` block ends after the host wakes from a
suspend that outlasted its lease, in a process that does nothing else (a busier one checks at
every wakeup)."""

JUMP_THRESHOLD = 0.2
"""A change of the offset between the two clocks larger than this fraction of the time since
the last check (at least ``MIN_JUMP`` seconds) is a jump; rate errors are bounded far below it."""

BUSY_CHECK_INTERVAL = 0.02
"""Seconds: a loop that wakes more often than this checks at most this often (the checks cost a
busy voter several percent of its CPU when it ran at every wakeup)."""

MIN_JUMP = 0.05
"""Seconds: the smallest offset change taken for a jump, however close two checks are."""


class LeaseTimers:
    """Lease-clock deadlines of cancel scopes, kept true when the lease clock jumps."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._armed: dict[trio.CancelScope, float] = {}
        self._offset = 0.0
        self._checked = 0.0

    @property
    def may_jump(self) -> bool:
        """False for Trio's own clock, which cannot jump ahead of itself."""
        return not isinstance(self._clock, TrioTime)

    def start(self) -> None:
        """Have the process's clock watcher check this lease clock until :meth:`stop` (a
        no-op for Trio's own clock)."""
        if self.may_jump:
            self._checked = trio.current_time()
            self._offset = self._clock.now() - self._checked
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
        now = trio.current_time()
        elapsed, self._checked = now - self._checked, now
        before, self._offset = self._offset, self._clock.now() - now
        if abs(self._offset - before) > max(MIN_JUMP, JUMP_THRESHOLD * elapsed):
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


class _ClockWatcher(trio.abc.Instrument):
    """Checks every started :class:`LeaseTimers` of this Trio run, while there are any: after
    each wait of the run loop (as an instrument), and by waking the loop itself when it has not
    woken for ``CLOCK_CHECK_INTERVAL`` (its deadline moves on while the loop is busy, at most
    twice an interval, so a busy process never wakes for it)."""

    def __init__(self) -> None:
        self.timers: weakref.WeakSet[LeaseTimers] = weakref.WeakSet()
        self._running = False
        self._idle = trio.CancelScope()
        self._moved = -math.inf
        self._checked = -math.inf

    def add(self, timers: LeaseTimers) -> None:
        self.timers.add(timers)
        if not self._running:
            self._running = True
            trio.lowlevel.add_instrument(self)
            trio.lowlevel.spawn_system_task(self._run, name="leadership lease clock watcher")

    def after_io_wait(self, timeout: float) -> None:
        now = trio.current_time()
        if now - self._checked < BUSY_CHECK_INTERVAL:
            return  # a busy loop: checked moments ago
        self._checked = now
        for timers in self.timers:
            timers.check()
        if now - self._moved >= CLOCK_CHECK_INTERVAL / 2:
            self._moved = now
            self._idle.deadline = now + CLOCK_CHECK_INTERVAL

    async def _run(self) -> None:
        try:
            while self.timers:
                self._idle = trio.CancelScope(deadline=trio.current_time() + CLOCK_CHECK_INTERVAL)
                self._moved = trio.current_time()
                with self._idle:
                    await trio.sleep_forever()  # its end wakes the loop: the instrument checks
        finally:
            self._running = False
            with contextlib.suppress(KeyError):  # already removed: the run is ending
                trio.lowlevel.remove_instrument(self)


_WATCHER: trio.lowlevel.RunVar[_ClockWatcher] = trio.lowlevel.RunVar("leadership_clock_watcher")


def _watcher() -> _ClockWatcher:
    try:
        return _WATCHER.get()
    except LookupError:
        watcher = _ClockWatcher()
        _WATCHER.set(watcher)
        return watcher
