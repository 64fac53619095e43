"""How peers are picked: a set with O(1) add/remove and uniform random sampling, and the
round-robin probe order over a shuffled member list, reshuffled at each wrap (SWIM 4.3)."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator


class SampleSet:
    """Names in insertion order with swap-remove; sampling draws from the caller's RNG.

    A set can start as a view of another (:meth:`sharing`): the nodes of an in-process mesh
    that starts formed all see the same N names, so they share one list and one index instead
    of holding N copies each, and the first change copies them (copy on write). Such a view
    may hide one name of the shared set (the node itself, which is in everybody's set but
    its own)."""

    __slots__ = ("_hidden", "_index", "_items", "_shared")

    def __init__(self) -> None:
        self._items: list[str] = []
        self._index: dict[str, int] = {}
        self._hidden: str | None = None
        self._shared = False

    @classmethod
    def sharing(cls, base: SampleSet, hidden: str | None = None) -> SampleSet:
        """A set with the names of ``base`` but ``hidden``, sharing its storage until it
        changes (``base`` itself must not change afterwards)."""
        view = cls()
        view._items, view._index = base._items, base._index
        view._hidden = hidden if hidden in base._index else None
        view._shared = True
        return view

    def _own(self) -> None:
        """Copy the shared storage before the first change (copy on write)."""
        self._items = list(self._items)
        self._index = dict(self._index)
        self._shared = False
        hidden, self._hidden = self._hidden, None
        if hidden is not None:
            self.discard(hidden)

    def add(self, name: str) -> None:
        if self._shared:
            self._own()
        if name not in self._index:
            self._index[name] = len(self._items)
            self._items.append(name)

    def discard(self, name: str) -> None:
        if self._shared:
            self._own()
        i = self._index.pop(name, None)
        if i is None:
            return
        last = self._items.pop()
        if i < len(self._items):
            self._items[i] = last
            self._index[last] = i

    def __contains__(self, name: object) -> bool:
        return name in self._index and name != self._hidden

    def __len__(self) -> int:
        return len(self._items) - (self._hidden is not None)

    def __iter__(self) -> Iterator[str]:
        hidden = self._hidden
        if hidden is None:
            return iter(self._items)
        return (x for x in self._items if x != hidden)

    def sample(self, rng: random.Random, k: int, exclude: str | None = None) -> list[str]:
        """Up to ``k`` distinct random names, never ``exclude``."""
        n = len(self._items)
        hidden = self._hidden
        if n == 0 or k <= 0:
            return []
        if n <= k + 1 + (hidden is not None):
            pool = [x for x in self._items if x != exclude and x != hidden]
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
            if name != exclude and name != hidden:
                out.append(name)
        return out


class ProbeOrder:
    """Hands out probe targets so every member is probed once per round, in random order."""

    def __init__(self, rng: random.Random, members: SampleSet | None = None) -> None:
        """``members``: the members to start with (a formed start; default none). The first
        round's order is drawn at the first probe."""
        self._rng = rng
        self._order: list[str] = []
        self._index = 0
        self._members = members if members is not None else SampleSet()

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
