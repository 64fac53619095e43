"""Lifeguard's local-health-aware suspicion: a timeout that shrinks with confirmations.

The timer starts at ``max`` and falls towards ``min`` as independent peers confirm the
suspicion, following memberlist: ``max(min, max - (max - min) * log(c + 1) / log(k + 1))``.
"""

from __future__ import annotations

import math


def suspicion_bounds(
    suspicion_mult: int, max_timeout_mult: int, n: int, probe_interval: float
) -> tuple[float, float]:
    """Return ``(min, max)`` suspicion timeouts for a cluster of ``n`` nodes."""
    node_scale = max(1.0, math.log10(max(1, n)))
    minimum = suspicion_mult * node_scale * probe_interval
    return minimum, max_timeout_mult * minimum


def suspicion_timeout(minimum: float, maximum: float, confirmations: int, k: int) -> float:
    """Timeout after ``confirmations`` independent confirmations out of ``k`` expected."""
    if k < 1:
        return minimum
    frac = math.log(confirmations + 1) / math.log(k + 1)
    return max(minimum, maximum - (maximum - minimum) * frac)


class Suspicion:
    """The suspicion of one member at one incarnation, with its confirmers."""

    __slots__ = ("confirmers", "incarnation", "k", "maximum", "minimum", "start")

    def __init__(
        self,
        start: float,
        incarnation: int,
        first_source: str,
        k: int,
        minimum: float,
        maximum: float,
    ) -> None:
        self.start = start
        self.incarnation = incarnation
        self.confirmers = {first_source}
        self.k = k
        self.minimum = minimum
        self.maximum = maximum

    def confirm(self, source: str) -> bool:
        """Record an independent confirmation; True if it was new (and so worth re-gossiping)."""
        if len(self.confirmers) - 1 >= self.k or source in self.confirmers:
            return False
        self.confirmers.add(source)
        return True

    @property
    def confirmations(self) -> int:
        return len(self.confirmers) - 1

    def deadline(self) -> float:
        return self.start + suspicion_timeout(
            self.minimum, self.maximum, self.confirmations, self.k
        )
