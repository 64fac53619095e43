"""The clock a coordinator decides lease validity on, injectable so tests can skew or drift it.

Any object with ``now()`` (monotonic seconds) and ``trio_time(local)`` (the Trio time at which
the clock will read ``local``) fits, e.g. ``swimmesh.SkewedClock``. A lease clock may jump
ahead of Trio's (``CLOCK_BOOTTIME`` after a suspend, which Trio's monotonic clock does not
see): the coordinator maps its deadlines to Trio time again at the process's next wakeup after
the jump, and within ``CLOCK_CHECK_INTERVAL`` in a process that nothing else wakes (see
:mod:`leadership.timers`).
"""

from __future__ import annotations

import time
from typing import Protocol

import trio
import trio.testing


class Clock(Protocol):
    def now(self) -> float: ...

    def trio_time(self, local: float) -> float: ...


class TrioTime:
    """Trio's clock: real, or a ``MockClock`` in tests (stops during system suspend)."""

    def now(self) -> float:
        return trio.current_time()

    def trio_time(self, local: float) -> float:
        return local


class BootTime:
    """``CLOCK_BOOTTIME``: keeps counting across system suspend, so a suspended leader does
    not wake up still believing in a lease that ran out while it slept (Linux only)."""

    def now(self) -> float:
        return time.clock_gettime(time.CLOCK_BOOTTIME)

    def trio_time(self, local: float) -> float:
        return trio.current_time() + (local - self.now())


def default_clock() -> Clock:
    """The lease clock a coordinator uses unless given one: ``CLOCK_BOOTTIME`` where the
    platform has it (it counts across suspend, DESIGN.md 5 rule 8), else Trio's clock. Under a
    ``MockClock`` (virtual time, which never suspends) it is Trio's clock, so simulations stay
    in virtual time."""
    if isinstance(trio.lowlevel.current_clock(), trio.testing.MockClock):
        return TrioTime()
    if hasattr(time, "CLOCK_BOOTTIME"):
        return BootTime()
    return TrioTime()
