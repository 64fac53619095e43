"""Lifeguard's Local Health Multiplier: a score that slows probing when this node struggles."""

from __future__ import annotations


class Awareness:
    """A score in ``[0, max_multiplier - 1]``; timeouts are scaled by ``score + 1``."""

    __slots__ = ("max_multiplier", "score")

    def __init__(self, max_multiplier: int) -> None:
        self.max_multiplier = max_multiplier
        self.score = 0

    def apply(self, delta: int) -> int:
        """Add ``delta`` and clamp; return the new score."""
        self.score = min(max(self.score + delta, 0), self.max_multiplier - 1)
        return self.score

    def scale(self, timeout: float) -> float:
        return timeout * (self.score + 1)
