"""The JSON of ``GET /omnirelay/control/lease-health``, field for field (nulls omitted)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from .model import PeerHealth, PeerHealthSnapshot


def rfc3339(value: datetime) -> str:
    return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def peer_json(peer: PeerHealth) -> dict[str, Any]:
    out: dict[str, Any] = {"peerId": peer.peer_id}
    if peer.last_heartbeat is not None:
        out["lastHeartbeat"] = rfc3339(peer.last_heartbeat)
    if peer.last_disconnect is not None:
        out["lastDisconnect"] = rfc3339(peer.last_disconnect)
    out["isHealthy"] = peer.is_healthy
    out["activeAssignments"] = peer.active_assignments
    out["pendingReassignments"] = peer.pending_reassignments
    out["activeLeases"] = [
        {"sequenceId": h.sequence_id, "attempt": h.attempt, "leaseId": h.lease_id}
        for h in peer.active_leases
    ]
    out["metadata"] = dict(peer.metadata.items())
    return out


def lease_health_json(snapshot: PeerHealthSnapshot) -> dict[str, Any]:
    """``{"peers": [...], "summary": {...}}``, plus ``providerErrors`` when a provider failed."""
    summary = snapshot.summary
    doc: dict[str, Any] = {
        "peers": [peer_json(p) for p in snapshot.peers],
        "summary": {
            "eligiblePeers": summary.eligible_peers,
            "unhealthyPeers": summary.unhealthy_peers,
            "pendingReassignments": summary.pending_reassignments,
        },
    }
    if snapshot.failures:
        doc["providerErrors"] = [
            {"provider": f.provider, "error": f.error} for f in snapshot.failures
        ]
    return doc
