"""Prometheus metrics of the kit, read from its counters at scrape time (OmniRelay's names)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from .backpressure import BackpressureMonitor
from .providers import PeerHealthSnapshotProvider, merge_snapshots
from .replication import CheckpointingSink, ReplicationSource
from .tracker import PeerLeaseHealthTracker


class PeerHealthCollector(Collector):
    """Gauges of the merged snapshot, counters of the tracker, backpressure and replication."""

    def __init__(
        self,
        tracker: PeerLeaseHealthTracker,
        providers: Iterable[PeerHealthSnapshotProvider] = (),
        backpressure: BackpressureMonitor | None = None,
        replication: tuple[ReplicationSource, CheckpointingSink] | None = None,
    ) -> None:
        self.tracker = tracker
        self.providers = list(providers)
        self.backpressure = backpressure
        self.replication = replication

    def collect(self) -> Iterator[Metric]:
        t = self.tracker
        summary = merge_snapshots([t, *self.providers]).summary
        yield GaugeMetricFamily(
            "omnirelay_peer_lease_healthy", "Peers eligible for work", value=summary.eligible_peers
        )
        yield GaugeMetricFamily(
            "omnirelay_peer_lease_unhealthy",
            "Peers not eligible for work",
            value=summary.unhealthy_peers,
        )
        yield GaugeMetricFamily(
            "omnirelay_peer_lease_pending_reassignments",
            "Requeued leases waiting for a new assignment",
            value=summary.pending_reassignments,
        )
        yield CounterMetricFamily(
            "omnirelay_peer_lease_assignments", "Lease assignments recorded", value=t.assignments
        )
        yield CounterMetricFamily(
            "omnirelay_peer_lease_releases", "Lease releases recorded", value=t.releases
        )
        yield CounterMetricFamily(
            "omnirelay_peer_lease_heartbeats", "Heartbeats recorded", value=t.heartbeats
        )
        disconnects = CounterMetricFamily(
            "omnirelay_peer_lease_disconnects", "Disconnects recorded, by reason", labels=["reason"]
        )
        for reason, n in sorted(t.disconnects.items()):
            disconnects.add_metric([reason], n)
        yield disconnects
        transitions = CounterMetricFamily(
            "omnirelay_peer_lease_health_transitions", "Peers changing health", labels=["direction"]
        )
        for direction, n in sorted(t.transitions.items()):
            transitions.add_metric([direction], n)
        yield transitions
        if self.backpressure is not None:
            b = self.backpressure
            yield GaugeMetricFamily(
                "omnirelay_backpressure_active",
                "1 while under backpressure",
                value=1 if b.is_active else 0,
            )
            yield CounterMetricFamily(
                "omnirelay_backpressure_transitions",
                "Backpressure state changes",
                value=b.transitions,
            )
        if self.replication is not None:
            source, sink = self.replication
            yield GaugeMetricFamily(
                "omnirelay_replication_sequence_lag",
                "Events published but not yet applied",
                value=sink.sequence_lag(source),
            )
            yield GaugeMetricFamily(
                "omnirelay_replication_wall_lag_seconds",
                "Age of the last applied event",
                value=sink.wall_lag(),
            )
