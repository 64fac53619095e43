"""``PeerLeaseHealthTracker``: per-peer heartbeats, disconnects, assignments and leases.

OmniRelay's semantics: healthy = not disconnected and (no heartbeat yet, or the last one within
``heartbeat_grace``); an assignment or a heartbeat clears the disconnect flag; a requeued release
raises pending reassignments and the next assignment lowers it (never below 0); unknown peers
are eligible. Safe from many Trio tasks and threads: each peer's state is an immutable tuple
replaced under a short lock, together with the counters its event moves, so a snapshot is one
consistent copy taken in one step; the output views are built under a second lock, so readers in
several threads never disturb each other or the writers.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import NamedTuple

from .model import Labels, PeerHealth, PeerHealthSnapshot, PeerLeaseHandle

DEFAULT_HEARTBEAT_GRACE = 30.0


def utc_now() -> datetime:
    return datetime.now(UTC)


class _Entry(NamedTuple):
    last_heartbeat: float | None  # monotonic
    last_heartbeat_wall: datetime | None
    last_disconnect_wall: datetime | None
    disconnected: bool
    active_assignments: int
    pending_reassignments: int
    leases: frozenset[PeerLeaseHandle]
    metadata: Labels


_EMPTY = _Entry(None, None, None, False, 0, 0, frozenset(), Labels())


class PeerLeaseHealthTracker:
    """Records what happens to each peer and answers who is eligible for work."""

    name = "tracker"

    def __init__(
        self,
        heartbeat_grace: float = DEFAULT_HEARTBEAT_GRACE,
        *,
        monotonic: Callable[[], float] = time.monotonic,
        wall: Callable[[], datetime] = utc_now,
    ) -> None:
        if heartbeat_grace <= 0:
            raise ValueError("heartbeat_grace must be > 0")
        self.heartbeat_grace = heartbeat_grace
        self._monotonic = monotonic
        self._wall = wall
        self._lock = threading.Lock()
        self._views_lock = threading.Lock()
        self._peers: dict[str, _Entry] = {}
        self._healthy: dict[str, bool] = {}
        self._views: dict[str, tuple[_Entry, bool, PeerHealth]] = {}
        self.assignments = 0
        self.releases = 0
        self.heartbeats = 0
        self.disconnects: Counter[str] = Counter()
        self.transitions: Counter[str] = Counter()

    # -- recording -------------------------------------------------------------------------

    def _update(
        self, peer: str, change: Callable[[_Entry], _Entry], count: Callable[[], None]
    ) -> None:
        """Optimistic copy-on-write: build the new entry outside the lock, then install it only
        if nobody replaced the old one meanwhile (else retry). The lock is held for a compare, a
        store and ``count`` (the event's counters, moved once per installed change), so threads
        preempted by the GIL do not convoy behind it."""
        peers = self._peers
        while True:
            old = peers.get(peer, _EMPTY)
            new = change(old)
            with self._lock:
                if peers.get(peer, _EMPTY) is old:
                    peers[peer] = new
                    count()
                    self._note_health(peer, new, self._monotonic())
                    return

    def _count_heartbeat(self) -> None:
        self.heartbeats += 1

    def _count_assignment(self) -> None:
        self.assignments += 1

    def _count_release(self) -> None:
        self.releases += 1

    @staticmethod
    def _count_nothing() -> None:
        return None

    def _note_health(self, peer: str, entry: _Entry, now: float) -> bool:
        healthy = self._is_healthy(entry, now)
        before = self._healthy.get(peer)
        if before is not None and before != healthy:
            self.transitions["to_healthy" if healthy else "to_unhealthy"] += 1
        self._healthy[peer] = healthy
        return healthy

    def _is_healthy(self, entry: _Entry, now: float) -> bool:
        if entry.disconnected:
            return False
        return entry.last_heartbeat is None or now - entry.last_heartbeat <= self.heartbeat_grace

    def record_heartbeat(self, peer: str) -> None:
        now, wall = self._monotonic(), self._wall()
        self._update(
            peer,
            lambda e: e._replace(last_heartbeat=now, last_heartbeat_wall=wall, disconnected=False),
            self._count_heartbeat,
        )

    def record_gossip(self, peer: str, metadata: Mapping[str, str]) -> None:
        """Merge metadata learned from gossip (e.g. ``mesh.role``, ``label.<k>``)."""
        self._update(
            peer, lambda e: e._replace(metadata=e.metadata.merged(metadata)), self._count_nothing
        )

    def record_disconnect(self, peer: str, reason: str) -> None:
        wall = self._wall()

        def count() -> None:
            self.disconnects[reason] += 1

        self._update(
            peer,
            lambda e: e._replace(
                disconnected=True,
                last_disconnect_wall=wall,
                metadata=e.metadata.merged({"disconnect.reason": reason}),
            ),
            count,
        )

    def record_lease_assigned(
        self, peer: str, handle: PeerLeaseHandle, resource_type: str = "", resource_id: str = ""
    ) -> None:
        extra = {
            k: v for k, v in (("resource.type", resource_type), ("resource.id", resource_id)) if v
        }

        def change(e: _Entry) -> _Entry:
            return e._replace(
                disconnected=False,
                active_assignments=e.active_assignments + 1,
                pending_reassignments=max(0, e.pending_reassignments - 1),
                leases=e.leases | {handle},
                metadata=e.metadata.merged(extra) if extra else e.metadata,
            )

        self._update(peer, change, self._count_assignment)

    def record_lease_released(self, peer: str, handle: PeerLeaseHandle, requeued: bool) -> None:

        def change(e: _Entry) -> _Entry:
            return e._replace(
                active_assignments=max(0, e.active_assignments - 1),
                pending_reassignments=e.pending_reassignments + (1 if requeued else 0),
                leases=e.leases - {handle},
                metadata=e.metadata.merged({"pending.count": str(e.pending_reassignments + 1)})
                if requeued
                else e.metadata,
            )

        self._update(peer, change, self._count_release)

    def forget(self, peer: str) -> None:
        with self._lock:
            self._peers.pop(peer, None)
            self._healthy.pop(peer, None)

    # -- reading ---------------------------------------------------------------------------

    def is_peer_eligible(self, peer: str) -> bool:
        entry = self._peers.get(peer)  # a single dict read: atomic, no lock needed
        return True if entry is None else self._is_healthy(entry, self._monotonic())

    def peer_health_snapshot(self) -> list[PeerHealth]:
        """Every peer's health now (the snapshot-provider protocol). A peer whose state and
        health did not change since the last snapshot is the same object as then (renderers
        may cache by identity)."""
        with self._lock:
            entries = list(self._peers.items())
            now = self._monotonic()
            health = [self._note_health(peer, entry, now) for peer, entry in entries]
        with self._views_lock:
            return self._views_of(entries, health)

    def _views_of(self, entries: list[tuple[str, _Entry]], health: list[bool]) -> list[PeerHealth]:
        views = self._views
        out: list[PeerHealth] = []
        for (peer, e), healthy in zip(entries, health, strict=True):
            cached = views.get(peer)
            if cached is not None and cached[0] is e and cached[1] is healthy:
                out.append(cached[2])
                continue
            view = PeerHealth(
                peer_id=peer,
                last_heartbeat=e.last_heartbeat_wall,
                last_disconnect=e.last_disconnect_wall,
                is_healthy=healthy,
                active_assignments=e.active_assignments,
                pending_reassignments=e.pending_reassignments,
                active_leases=tuple(sorted(e.leases)),
                metadata=e.metadata,
            )
            views[peer] = (e, healthy, view)
            out.append(view)
        if len(views) > len(entries):
            live = {peer for peer, _ in entries}
            for gone in [p for p in views if p not in live]:
                del views[gone]
        return out

    def snapshot(self) -> PeerHealthSnapshot:
        return PeerHealthSnapshot(
            generated_at=self._wall(), peers=tuple(self.peer_health_snapshot())
        )
