"""The one data model of peer health, shared by every producer: entries, snapshots, summary.

Timestamps are wall-clock ``datetime`` in UTC (API edge); health itself is decided on a
monotonic clock by the tracker. Metadata keys are case-insensitive and keep the casing they
were first written with for output.
"""

from __future__ import annotations

from collections.abc import ItemsView, Iterable, Iterator, Mapping
from datetime import datetime

import attrs


class Labels(Mapping[str, str]):
    """An immutable string map with case-insensitive keys that remembers each key's casing."""

    __slots__ = ("_items", "_plain")

    def __init__(self, items: Mapping[str, str] | Iterable[tuple[str, str]] = ()) -> None:
        pairs = items.items() if isinstance(items, Mapping) else items
        store: dict[str, tuple[str, str]] = {}
        for key, value in pairs:
            folded = key.casefold()
            original = store[folded][0] if folded in store else key
            store[folded] = (original, value)
        self._items = store
        self._plain = {original: value for original, value in store.values()}

    def __getitem__(self, key: str) -> str:
        return self._items[key.casefold()][1]

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and key.casefold() in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self._plain)

    def __len__(self) -> int:
        return len(self._plain)

    def items(self) -> ItemsView[str, str]:
        return self._plain.items()

    def as_dict(self) -> dict[str, str]:
        """A plain copy, keys in their original casing."""
        return dict(self._plain)

    def __repr__(self) -> str:
        return f"Labels({dict(self.items())!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Mapping):
            return NotImplemented
        return {k.casefold(): v for k, v in self.items()} == {
            str(k).casefold(): v for k, v in other.items()
        }

    def __hash__(self) -> int:
        return hash(frozenset((k.casefold(), v) for k, v in self.items()))

    def merged(self, other: Mapping[str, str]) -> Labels:
        """A copy where ``other``'s values win (keys keep their first casing)."""
        return Labels([*self.items(), *other.items()])

    def without(self, key: str) -> Labels:
        return Labels([(k, v) for k, v in self.items() if k.casefold() != key.casefold()])


def _labels(value: Mapping[str, str] | Iterable[tuple[str, str]]) -> Labels:
    return value if isinstance(value, Labels) else Labels(value)


@attrs.frozen(order=True)
class PeerLeaseHandle:
    """One lease held by a peer: ``(sequence_id, attempt, lease_id)``."""

    sequence_id: int
    attempt: int
    lease_id: str


@attrs.frozen
class PeerHealth:
    """The health of one peer as one producer (or the merge of several) sees it."""

    peer_id: str
    last_heartbeat: datetime | None = None
    last_disconnect: datetime | None = None
    is_healthy: bool = True
    active_assignments: int = 0
    pending_reassignments: int = 0
    active_leases: tuple[PeerLeaseHandle, ...] = ()
    metadata: Labels = attrs.field(factory=Labels, converter=_labels)


@attrs.frozen
class ProviderFailure:
    """A snapshot provider that raised; the snapshot is still served without it."""

    provider: str
    error: str


@attrs.frozen
class PeerHealthSummary:
    eligible_peers: int
    unhealthy_peers: int
    pending_reassignments: int


@attrs.frozen
class PeerHealthSnapshot:
    """A consistent copy of every peer's health at ``generated_at``."""

    generated_at: datetime
    peers: tuple[PeerHealth, ...]
    failures: tuple[ProviderFailure, ...] = ()

    @property
    def summary(self) -> PeerHealthSummary:
        healthy = sum(1 for p in self.peers if p.is_healthy)
        return PeerHealthSummary(
            eligible_peers=healthy,
            unhealthy_peers=len(self.peers) - healthy,
            pending_reassignments=sum(p.pending_reassignments for p in self.peers),
        )

    def peer(self, peer_id: str) -> PeerHealth | None:
        for p in self.peers:
            if p.peer_id == peer_id:
                return p
        return None
