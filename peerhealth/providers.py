"""Snapshot providers and their deterministic merge by peer id.

Any object with ``peer_health_snapshot() -> Sequence[PeerHealth]`` (and optionally a ``name``)
is a provider: the tracker, a transport-level provider, anything a user adds. Merging by peer:
healthy only if every provider says so; the latest heartbeat and disconnect; the largest
counts; the union of leases; metadata from the first provider that names a key. A provider that
raises is reported in ``failures`` and the others are still served.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from typing import Protocol, runtime_checkable

from .model import Labels, PeerHealth, PeerHealthSnapshot, ProviderFailure
from .tracker import utc_now

log = logging.getLogger("peerhealth")


@runtime_checkable
class PeerHealthSnapshotProvider(Protocol):
    def peer_health_snapshot(self) -> Sequence[PeerHealth]: ...


def provider_name(provider: object) -> str:
    name = getattr(provider, "name", None)
    return name if isinstance(name, str) else type(provider).__name__


def _latest(a: datetime | None, b: datetime | None) -> datetime | None:
    if a is None:
        return b
    if b is None:
        return a
    return max(a, b)


def merge_peer(a: PeerHealth, b: PeerHealth) -> PeerHealth:
    """Merge two views of one peer (``a`` from the earlier provider)."""
    return PeerHealth(
        peer_id=a.peer_id,
        last_heartbeat=_latest(a.last_heartbeat, b.last_heartbeat),
        last_disconnect=_latest(a.last_disconnect, b.last_disconnect),
        is_healthy=a.is_healthy and b.is_healthy,
        active_assignments=max(a.active_assignments, b.active_assignments),
        pending_reassignments=max(a.pending_reassignments, b.pending_reassignments),
        active_leases=tuple(sorted(set(a.active_leases) | set(b.active_leases))),
        metadata=Labels(
            [*a.metadata.items(), *((k, v) for k, v in b.metadata.items() if k not in a.metadata)]
        ),
    )


def merge_snapshots(
    providers: Iterable[PeerHealthSnapshotProvider], now: Callable[[], datetime] = utc_now
) -> PeerHealthSnapshot:
    """One snapshot from several providers, by peer id, sorted by peer id."""
    merged: dict[str, PeerHealth] = {}
    failures: list[ProviderFailure] = []
    for provider in providers:
        try:
            peers = list(provider.peer_health_snapshot())
        except Exception as exc:  # a provider's failure must not take the endpoint down
            failures.append(
                ProviderFailure(provider_name(provider), f"{type(exc).__name__}: {exc}")
            )
            log.warning(
                "peer health provider failed",
                extra={"provider": provider_name(provider), "error": str(exc)},
            )
            continue
        for peer in peers:
            seen = merged.get(peer.peer_id)
            merged[peer.peer_id] = peer if seen is None else merge_peer(seen, peer)
    return PeerHealthSnapshot(
        generated_at=now(),
        peers=tuple(merged[k] for k in sorted(merged)),
        failures=tuple(failures),
    )
