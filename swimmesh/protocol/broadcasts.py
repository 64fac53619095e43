"""The transmit-limited broadcast queue that feeds piggybacked gossip.

Claims are kept pre-encoded. Packing takes the least-transmitted first (newest first among
equals), so fresh news spreads before old news is repeated; a claim is retired after the
retransmit limit, and a newer broadcast with the same key supersedes the queued one.
"""

from __future__ import annotations

from collections.abc import Hashable

import attrs


@attrs.define(slots=True, eq=False)
class Broadcast:
    key: Hashable
    data: bytes
    transmits: int = 0


class BroadcastQueue:
    """Pre-encoded broadcasts bucketed by transmit count."""

    def __init__(self, max_items: int = 8192) -> None:
        self._by_key: dict[Hashable, Broadcast] = {}
        # transmit count -> {key: broadcast}, insertion order = age (oldest first)
        self._buckets: dict[int, dict[Hashable, Broadcast]] = {}
        self._max_items = max_items
        self.dropped = 0

    def __len__(self) -> int:
        return len(self._by_key)

    def __contains__(self, key: Hashable) -> bool:
        return key in self._by_key

    def queue(self, key: Hashable, data: bytes) -> None:
        """Queue ``data``, replacing any pending broadcast with the same key."""
        self._discard(key)
        b = Broadcast(key, data)
        self._by_key[key] = b
        self._buckets.setdefault(0, {})[key] = b
        if len(self._by_key) > self._max_items:
            self._drop_one()

    def _discard(self, key: Hashable) -> None:
        old = self._by_key.pop(key, None)
        if old is not None:
            bucket = self._buckets[old.transmits]
            del bucket[key]
            if not bucket:
                del self._buckets[old.transmits]

    def _drop_one(self) -> None:
        # Drop the most-transmitted, oldest broadcast: it has had the most chances to spread.
        worst = max(self._buckets)
        key = next(iter(self._buckets[worst]))
        self._discard(key)
        self.dropped += 1

    def take(self, budget: int, limit: int) -> list[bytes]:
        """Pick broadcasts that fit in ``budget`` bytes, count a transmit on each, retire
        those that reached ``limit`` and return their encoded bytes."""
        chosen: list[Broadcast] = []
        remaining = budget
        misses = 0
        for transmits in sorted(self._buckets):
            for b in reversed(self._buckets[transmits].values()):
                size = len(b.data)
                if size <= remaining:
                    chosen.append(b)
                    remaining -= size
                    if remaining < 16:
                        break
                else:
                    misses += 1
                    if misses > 32:
                        break
            if remaining < 16 or misses > 32:
                break
        for b in chosen:
            self._discard(b.key)
            b.transmits += 1
            if b.transmits < limit:
                self._by_key[b.key] = b
                self._buckets.setdefault(b.transmits, {})[b.key] = b
        return [b.data for b in chosen]
