"""How peers are picked: a set with O(1) add/remove and uniform random sampling, and the
round-robin probe order over a shuffled member list, reshuffled at each wrap (SWIM 4.3)."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator


class SampleSet:
    """Names in insertion order with swap-remove; sampling draws from the caller's RNG."""

    __slots__ = ("_index", "_items")

    def __init__(self) -> None:
        self._items: list[str] = []
        self._index: dict[str, int] = {}

    def add(self, name: str) -> None:
        if name not in self._index:
            self._index[name] = len(self._items)
            self._items.append(name)

    def discard(self, name: str) -> None:
        i = self._index.pop(name, None)
        if i is None:
            return
        last = self._items.pop()
        if i < len(self._items):
            self._items[i] = last
            self._index[last] = i

    def __contains__(self, name: object) -> bool:
        return name in self._index

    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def sample(self, rng: random.Random, k: int, exclude: str | None = None) -> list[str]:
        """Up to ``k`` distinct random names, never ``exclude``."""
        n = len(self._items)
        if n == 0 or k <= 0:
            return []
        if n <= k + 1:
            pool = [x for x in self._items if x != exclude]
            rng.shuffle(pool)
            return pool[:k]
        out: list[str] = []
        seen: set[int] = set()
        while len(out) < k:
            i = rng.randrange(n)
            if i in seen:
                continue
            seen.add(i)
            name = self._items[i]
            if name != exclude:
                out.append(name)
        return out


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

    def next(self, eligible: Callable[[str], bool]) -> str | None:
        """The next eligible member, starting a freshly shuffled round when this one ends."""
        for _ in range(2):
            while self._index < len(self._order):
                name = self._order[self._index]
                self._index += 1
                if name in self._members and eligible(name):
                    return name
            self._order = sorted(self._members)
            self._rng.shuffle(self._order)
            self._index = 0
        return None
