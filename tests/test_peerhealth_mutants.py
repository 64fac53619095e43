"""Peer-health accounting that surviving mutants showed no test pinned down (docs/testing.md,
mutation testing): each test here fails with its mutant applied."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from prometheus_client.registry import CollectorRegistry

from peerhealth import (
    BackpressureMonitor,
    BackpressureSignal,
    PeerHealth,
    PeerHealthCollector,
    PeerLeaseHandle,
    PeerLeaseHealthTracker,
    merge_snapshots,
)
from peerhealth.providers import merge_peer
from peerhealth.replication import CheckpointingSink, ReplicationEventKind, ReplicationSource
from peerhealth.tracker import utc_now as tracker_utc_now

T0 = datetime(2026, 1, 1, tzinfo=UTC)


class Peers:
    """A snapshot provider that returns fixed views."""

    def __init__(self, *peers: PeerHealth) -> None:
        self.peers = list(peers)

    def peer_health_snapshot(self) -> list[PeerHealth]:
        return self.peers


def test_backpressure_counts_each_flip_and_each_notification_once() -> None:
    monitor = BackpressureMonitor(4, 2, cooldown=0, monotonic=lambda: 0.0, wall=lambda: T0)
    monitor.observe(1)  # the first observation is announced (inactive)
    assert (monitor.transitions, monitor.notifications) == (0, 1)
    assert monitor.observe(5) is not None and monitor.is_active
    assert (monitor.transitions, monitor.notifications) == (1, 2)
    assert monitor.observe(1) is not None and not monitor.is_active
    assert (monitor.transitions, monitor.notifications) == (2, 3)


def test_only_a_requeued_release_reports_a_pending_count() -> None:
    tracker = PeerLeaseHealthTracker(monotonic=lambda: 0.0, wall=lambda: T0)
    handle = PeerLeaseHandle(1, 1, "l")
    tracker.record_lease_assigned("a", handle)
    tracker.record_lease_released("a", handle, requeued=False)
    tracker.record_lease_assigned("b", handle)
    tracker.record_lease_released("b", handle, requeued=True)
    views = {p.peer_id: p for p in tracker.peer_health_snapshot()}
    assert "pending.count" not in views["a"].metadata and views["a"].pending_reassignments == 0
    assert views["b"].metadata["pending.count"] == "1" and views["b"].pending_reassignments == 1


def test_merging_two_views_keeps_the_latest_times_and_a_time_only_one_side_has() -> None:
    early, late = T0, T0 + timedelta(seconds=5)
    a = PeerHealth("p", last_heartbeat=late, last_disconnect=None)
    b = PeerHealth("p", last_heartbeat=early, last_disconnect=early)
    merged = merge_peer(a, b)
    assert merged.last_heartbeat == late and merged.last_disconnect == early
    merged = merge_peer(b, a)
    assert merged.last_heartbeat == late and merged.last_disconnect == early
    assert merge_peer(PeerHealth("p"), PeerHealth("p")).last_disconnect is None


def test_a_merged_snapshot_is_stamped_with_the_time_it_was_made() -> None:
    snapshot = merge_snapshots([Peers(PeerHealth("p"))], now=lambda: T0)
    assert snapshot.generated_at == T0 and [p.peer_id for p in snapshot.peers] == ["p"]


async def test_replication_lag_metrics_have_their_names_and_values() -> None:
    clock = [T0]
    source = ReplicationSource(wall=lambda: clock[0])
    sink = CheckpointingSink(lambda event: None, wall=lambda: clock[0])
    first = source.publish(ReplicationEventKind.ENQUEUED, "p")
    source.publish(ReplicationEventKind.COMPLETED, "p")
    source.publish(ReplicationEventKind.COMPLETED, "q")
    assert await sink.handle(first)
    assert sink.wall_lag() == 0.0  # applied the instant it happened
    clock[0] = T0 + timedelta(seconds=2.5)
    tracker = PeerLeaseHealthTracker(monotonic=lambda: 0.0, wall=lambda: T0)
    registry = CollectorRegistry()
    registry.register(PeerHealthCollector(tracker, replication=(source, sink)))
    assert registry.get_sample_value("omnirelay_replication_sequence_lag") == 2
    assert registry.get_sample_value("omnirelay_replication_wall_lag_seconds") == 2.5


def test_health_transitions_are_counted_by_direction() -> None:
    now = [0.0]
    tracker = PeerLeaseHealthTracker(5.0, monotonic=lambda: now[0], wall=lambda: T0)
    tracker.record_heartbeat("a")
    now[0] = 10.0
    tracker.peer_health_snapshot()  # the heartbeat is past its grace: unhealthy
    tracker.record_heartbeat("a")
    registry = CollectorRegistry()
    registry.register(PeerHealthCollector(tracker))
    name = "omnirelay_peer_lease_health_transitions_total"
    assert registry.get_sample_value(name, {"direction": "to_unhealthy"}) == 1
    assert registry.get_sample_value(name, {"direction": "to_healthy"}) == 1


def test_a_removed_listener_hears_nothing_more() -> None:
    monitor = BackpressureMonitor(4, 2, cooldown=0, monotonic=lambda: 0.0, wall=lambda: T0)
    heard: list[bool] = []

    def listener(signal: BackpressureSignal) -> None:
        heard.append(signal.is_active)

    monitor.add_listener(listener)
    monitor.observe(5)
    monitor.remove_listener(listener)
    monitor.observe(1)
    assert heard == [True]


def test_the_default_wall_clock_is_utc() -> None:
    assert tracker_utc_now().utcoffset() == timedelta(0)
