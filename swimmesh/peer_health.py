"""The bridge from membership to the peer health kit (an edge: the core never imports it).

Acks record heartbeats; join, update and alive events record gossip metadata as
``mesh.role`` / ``mesh.cluster`` / ``mesh.region`` / ``mesh.version`` / ``label.<k>``; dead and
left record a disconnect with that reason. The node's own backpressure is published in its gossip
metadata (``backpressure`` = active | inactive, ``backpressure.pending``) so every peer sees it.
Leadership events record ``mesh.leader.scope.<scope id>`` = leader | follower on the peers
concerned (OmniRelay's hook).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

import trio

from leadership import EventKind, LeadershipEvent, LeadershipEventHub
from leadership.tokens import ENDING_KINDS
from peerhealth import BackpressureMonitor, BackpressureSignal, PeerLeaseHealthTracker

from .events import MemberEventKind
from .member import Member
from .runtime import MeshNode

log = logging.getLogger("swimmesh.peer_health")

_GOSSIP_KEYS = {
    "role": "mesh.role",
    "clusterId": "mesh.cluster",
    "region": "mesh.region",
    "meshVersion": "mesh.version",
}


def gossip_labels(metadata: Mapping[str, str]) -> dict[str, str]:
    """Gossip metadata in the kit's key names (OmniRelay's)."""
    out: dict[str, str] = {}
    for key, value in metadata.items():
        if key in _GOSSIP_KEYS:
            out[_GOSSIP_KEYS[key]] = value
        elif key.startswith("label.") or key.startswith("backpressure"):
            out[key] = value
        else:
            out[f"label.{key}"] = value
    return out


async def record_membership(node: MeshNode, tracker: PeerLeaseHealthTracker) -> None:
    """Feed ``tracker`` from ``node`` until cancelled."""

    def record(member: Member) -> None:
        if member.name != node.name:
            tracker.record_gossip(member.name, gossip_labels(member.metadata))

    node.on_ack(tracker.record_heartbeat)
    try:
        async with node.events() as events:
            for member in node.alive_members():
                record(member)
            async for event in events:
                kind, member = event.kind, event.member
                if kind in (MemberEventKind.JOIN, MemberEventKind.UPDATE, MemberEventKind.ALIVE):
                    record(member)
                elif kind is MemberEventKind.DEAD:
                    tracker.record_disconnect(member.name, "dead")
                elif kind is MemberEventKind.LEAVE:
                    tracker.record_disconnect(member.name, "left")
    finally:
        node.on_ack(None)


LEADER_KEY = "mesh.leader.scope."
_LEADING = frozenset({EventKind.ELECTED, EventKind.OBSERVED, EventKind.RENEWED, EventKind.SNAPSHOT})


def record_leadership(
    hub: LeadershipEventHub, tracker: PeerLeaseHealthTracker, local: str
) -> None:
    """Mark each scope's leader ``leader`` and its previous leader ``follower`` in ``tracker``."""
    leaders: dict[str, str] = {}

    def mark(peer: str, scope: str, role: str) -> None:
        if peer != local:
            tracker.record_gossip(peer, {LEADER_KEY + scope: role})

    def listener(event: LeadershipEvent) -> None:
        if event.leader_id is None:
            return
        before = leaders.get(event.scope)
        if event.kind in _LEADING:
            if before is not None and before != event.leader_id:
                mark(before, event.scope, "follower")
            leaders[event.scope] = event.leader_id
            mark(event.leader_id, event.scope, "leader")
        elif event.kind in ENDING_KINDS and before == event.leader_id:
            del leaders[event.scope]
            mark(event.leader_id, event.scope, "follower")

    hub.add_listener(listener)


async def publish_backpressure(node: MeshNode, monitor: BackpressureMonitor) -> None:
    """Mirror ``monitor``'s announced state into the node's gossip metadata until cancelled."""
    changed = trio.Event()
    latest: list[BackpressureSignal] = []

    def listener(signal: BackpressureSignal) -> None:
        latest.append(signal)
        changed.set()

    monitor.add_listener(listener)
    try:
        while True:
            await changed.wait()
            changed = trio.Event()
            signal, latest[:] = latest[-1], []
            metadata = dict(node.local_member.metadata)
            metadata["backpressure"] = "active" if signal.is_active else "inactive"
            metadata["backpressure.pending"] = str(signal.pending_count)
            await node.update_metadata(metadata)
            log.info(
                "backpressure published", extra={"node": node.name, "active": signal.is_active}
            )
    finally:
        monitor.remove_listener(listener)
