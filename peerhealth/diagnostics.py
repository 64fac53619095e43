"""The JSON of ``GET /omnirelay/control/lease-health``, field for field (nulls omitted)."""

from __future__ import annotations

import json
from typing import Any

from .model import PeerHealth, PeerHealthSnapshot
from .timefmt import rfc3339


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
    out["metadata"] = peer.metadata.as_dict()
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


_STR = json.encoder.encode_basestring  # the C escaper behind json.dumps(ensure_ascii=False)


def peer_fragment(peer: PeerHealth) -> str:
    """``peer_json(peer)`` encoded compactly, built directly from strings (several times
    faster than building the dict and encoding it; a test holds the two equal)."""
    parts = ['{"peerId":', _STR(peer.peer_id)]
    if peer.last_heartbeat is not None:
        parts += [',"lastHeartbeat":"', rfc3339(peer.last_heartbeat), '"']
    if peer.last_disconnect is not None:
        parts += [',"lastDisconnect":"', rfc3339(peer.last_disconnect), '"']
    parts += [
        ',"isHealthy":',
        "true" if peer.is_healthy else "false",
        ',"activeAssignments":',
        str(peer.active_assignments),
        ',"pendingReassignments":',
        str(peer.pending_reassignments),
        ',"activeLeases":[',
        ",".join(
            f'{{"sequenceId":{h.sequence_id},"attempt":{h.attempt},"leaseId":{_STR(h.lease_id)}}}'
            for h in peer.active_leases
        ),
        '],"metadata":{',
        ",".join(f"{_STR(k)}:{_STR(v)}" for k, v in peer.metadata.items()),
        "}}",
    ]
    return "".join(parts)


class LeaseHealthRenderer:
    """Renders snapshots to JSON bytes, re-encoding only peers that changed since the last
    render (peers are cached by identity; the tracker reuses unchanged ones)."""

    def __init__(self) -> None:
        self._fragments: dict[int, tuple[PeerHealth, str]] = {}

    def render(self, snapshot: PeerHealthSnapshot) -> bytes:
        fragments: dict[int, tuple[PeerHealth, str]] = {}
        parts = []
        cache = self._fragments
        for peer in snapshot.peers:
            key = id(peer)
            hit = cache.get(key)
            if hit is None or hit[0] is not peer:
                hit = (peer, peer_fragment(peer))
            fragments[key] = hit
            parts.append(hit[1])
        self._fragments = fragments
        doc = lease_health_json(PeerHealthSnapshot(snapshot.generated_at, (), snapshot.failures))
        summary = snapshot.summary
        doc["summary"] = {
            "eligiblePeers": summary.eligible_peers,
            "unhealthyPeers": summary.unhealthy_peers,
            "pendingReassignments": summary.pending_reassignments,
        }
        head = json.dumps(doc, separators=(",", ":"), ensure_ascii=False)
        # Splice the cached peer fragments into the "peers": [] array.
        return head.replace('"peers":[]', '"peers":[' + ",".join(parts) + "]", 1).encode()
