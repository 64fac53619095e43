"""The clock a coordinator decides lease validity on, injectable so tests can skew or drift it.

Any object with ``now()`` (monotonic seconds) and ``trio_time(local)`` (the Trio time at which
the clock will read ``local``) fits, e.g. ``swimmesh.SkewedClock``.
"""

from __future__ import annotations

import time
from typing import Protocol

import trio


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
