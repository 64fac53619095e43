"""A deadline heap for the sans-IO core: the driver asks for the next deadline and ticks it."""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable

import attrs


@attrs.define(slots=True, eq=False)
class Timer:
    """A scheduled callback; ``cancel()`` makes it a no-op (removed lazily from the heap)."""

    deadline: float
    callback: Callable[[float], None]
    cancelled: bool = False

    def cancel(self) -> None:
        self.cancelled = True


class TimerQueue:
    """Timers ordered by deadline, with insertion order breaking ties (deterministic)."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Timer]] = []
        self._seq = 0

    def schedule(self, deadline: float, callback: Callable[[float], None]) -> Timer:
        timer = Timer(deadline, callback)
        self._seq += 1
        heapq.heappush(self._heap, (deadline, self._seq, timer))
        return timer

    def next_deadline(self) -> float:
        heap = self._heap
        while heap and heap[0][2].cancelled:
            heapq.heappop(heap)
        return heap[0][0] if heap else math.inf

    def run_due(self, now: float) -> int:
        """Run every timer whose deadline is at or before ``now``; return how many ran."""
        ran = 0
        heap = self._heap
        while heap and heap[0][0] <= now:
            _, _, timer = heapq.heappop(heap)
            if timer.cancelled:
                continue
            timer.cancelled = True
            timer.callback(now)
            ran += 1
        return ran

    def __len__(self) -> int:
        return sum(1 for _, _, t in self._heap if not t.cancelled)
