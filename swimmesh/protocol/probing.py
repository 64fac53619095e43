"""Round-robin probe order over a shuffled member list, reshuffled at each wrap (SWIM 4.3)."""

from __future__ import annotations

import random
from collections.abc import Callable


class ProbeOrder:
    """Hands out probe targets so every member is probed once per round, in random order."""

    def __init__(self, rng: random.Random) -> None:
        self._rng = rng
        self._order: list[str] = []
        self._index = 0
        self._members: set[str] = set()

    def add(self, name: str) -> None:
        """Insert a new member at a random point of the current round (as memberlist does)."""
        if name in self._members:
            return
        self._members.add(name)
        pos = self._rng.randint(self._index, len(self._order))
        self._order.insert(pos, name)

    def remove(self, name: str) -> None:
        """Forget a member; its stale slot is skipped lazily."""
        self._members.discard(name)

    def __contains__(self, name: str) -> bool:
        return name in self._members

    def __len__(self) -> int:
        return len(self._members)

    def next(self, eligible: Callable[[str], bool]) -> tuple[str | None, bool]:
        """Return ``(target, wrapped)``: the next eligible member and whether a round ended."""
        wrapped = False
        for _ in range(2):
            while self._index < len(self._order):
                name = self._order[self._index]
                self._index += 1
                if name in self._members and eligible(name):
                    return name, wrapped
            wrapped = True
            self._order = sorted(self._members)
            self._rng.shuffle(self._order)
            self._index = 0
        return None, wrapped
