"""The one clock every timer reads, injectable so tests can skew or drift a node's time."""

from __future__ import annotations

from typing import Protocol

import attrs
import trio


class Clock(Protocol):
    """Node-local monotonic time in seconds, and its mapping back to Trio's clock."""

    def now(self) -> float: ...

    def trio_time(self, local: float) -> float:
        """The Trio time at which this clock will read ``local`` (for sleeping until then)."""
        ...


class TrioClock:
    """Trio's own clock (``trio.current_time()``): real, or a ``MockClock`` in tests."""

    def now(self) -> float:
        return trio.current_time()

    def trio_time(self, local: float) -> float:
        return local


@attrs.frozen
class SkewedClock:
    """A clock with a fixed ``offset`` and a ``rate`` error (1.05 runs 5% fast)."""

    offset: float = 0.0
    rate: float = 1.0

    def now(self) -> float:
        return self.offset + self.rate * trio.current_time()

    def trio_time(self, local: float) -> float:
        return (local - self.offset) / self.rate
