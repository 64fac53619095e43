"""Prometheus metrics for one node, read from its counters at scrape time.

Each node has its own ``CollectorRegistry`` (many nodes can share a process). Nothing is
recorded on the hot path by this module: the collector reads the core's plain counters when
Prometheus scrapes. Names keep OmniRelay's (``mesh_gossip_*``) plus our ``swimmesh_*``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping

from prometheus_client import CollectorRegistry
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from .member import MemberStatus
from .protocol.stats import RTT_BUCKETS_MS
from .runtime import MeshNode

DropSource = Callable[[], Mapping[str, int]]
"""The transport's drop counters by reason (``decrypt``, ``replay``, ``stream_*``, ...)."""

DATAGRAM_TRANSPORT_DROPS = frozenset({"decrypt", "replay"})
"""Transport drop reasons that refuse a whole incoming datagram (a sealed one that fails)."""


class GossipCollector(Collector):
    """Exports a :class:`MeshNode`'s membership and protocol counters."""

    def __init__(self, node: MeshNode, transport_drops: DropSource | None = None) -> None:
        self._node = node
        self._transport_drops = transport_drops

    def collect(self) -> Iterator[Metric]:
        node = self._node
        inst = node.instance
        stats = inst.stats

        members = GaugeMetricFamily(
            "mesh_gossip_members", "Members known to this node by status", labels=["status"]
        )
        counts = dict.fromkeys(MemberStatus, 0)
        for m in inst.members():
            counts[m.status] += 1
        for status, n in counts.items():
            members.add_metric([status.name.lower()], n)
        yield members

        rtt = HistogramMetricFamily(
            "mesh_gossip_rtt_ms", "Direct probe round trip per peer (ms)", labels=["peer"]
        )
        for peer, hist in sorted(stats.rtt.items()):
            cumulative, buckets = 0, []
            for bound, count in zip(RTT_BUCKETS_MS, hist.counts, strict=False):
                cumulative += count
                buckets.append((repr(bound), cumulative))
            cumulative += hist.counts[-1]
            buckets.append(("+Inf", cumulative))
            rtt.add_metric([peer], buckets, hist.total_ms)
        yield rtt

        drops: dict[str, int] = dict(stats.dropped)
        transport_drops = self._transport_drops() if self._transport_drops is not None else {}
        for reason, n in transport_drops.items():
            drops[reason] = drops.get(reason, 0) + n
        messages = CounterMetricFamily(
            "mesh_gossip_messages",
            "Gossip datagrams by direction and outcome",
            labels=["direction", "outcome"],
        )
        messages.add_metric(["out", "sent"], stats.packets_sent)
        # Datagrams only: one that decoded is accepted (whatever became of its messages); one
        # refused whole (undecodable, or failing to decrypt) is dropped. Send errors, stream
        # frames and single messages are counted by reason in swimmesh_dropped_packets only.
        messages.add_metric(["in", "accepted"], stats.packets_accepted)
        refused_by_transport = sum(
            n for reason, n in transport_drops.items() if reason in DATAGRAM_TRANSPORT_DROPS
        )
        messages.add_metric(["in", "dropped"], stats.packets_dropped + refused_by_transport)
        yield messages

        dropped = CounterMetricFamily(
            "swimmesh_dropped_packets", "Input dropped, by reason", labels=["reason"]
        )
        for reason, n in sorted(drops.items()):
            dropped.add_metric([reason], n)
        yield dropped

        for name, doc, value in (
            ("swimmesh_probes", "Direct probes sent", stats.probes),
            ("swimmesh_probe_failures", "Probes that got no ack at all", stats.probe_failures),
            ("swimmesh_indirect_probes", "Ping-reqs sent to relays", stats.indirect_probes),
            ("swimmesh_suspicions", "Suspicions started", stats.suspicions),
            ("swimmesh_refutations", "Suspicions about this node refuted", stats.refutations),
            ("swimmesh_deaths_declared", "Members this node declared dead", stats.deaths_declared),
            ("swimmesh_push_pulls", "Full state exchanges started or answered", stats.push_pulls),
            (
                "swimmesh_push_pull_failures",
                "Full state exchanges that failed",
                stats.push_pull_failures,
            ),
            ("swimmesh_repairs", "Table repairs pulled from unknown probers", stats.repairs),
            (
                "swimmesh_stream_fallbacks",
                "Probes answered over the stream channel only (UDP blocked?)",
                stats.stream_fallbacks,
            ),
            (
                "swimmesh_reconnect_attempts",
                "Reconnect attempts to failed members",
                stats.reconnect_attempts,
            ),
        ):
            yield CounterMetricFamily(name, doc, value=value)
        traffic = CounterMetricFamily(
            "swimmesh_bytes", "Datagram bytes by direction", labels=["direction"]
        )
        traffic.add_metric(["out"], stats.bytes_sent)
        traffic.add_metric(["in"], stats.bytes_received)
        yield traffic
        yield GaugeMetricFamily(
            "swimmesh_health_score",
            "Lifeguard local health multiplier (0 is healthy)",
            value=node.health_score,
        )
        yield GaugeMetricFamily(
            "swimmesh_broadcast_queue_depth",
            "Broadcasts waiting to be gossiped",
            value=inst.broadcast_depth,
        )
        yield CounterMetricFamily(
            "swimmesh_broadcasts_dropped",
            "Broadcasts pushed out of a full queue before their retransmit limit",
            value=inst.broadcasts_dropped,
        )
        yield GaugeMetricFamily(
            "swimmesh_incarnation", "This node's incarnation", value=inst.incarnation
        )


def node_registry(node: MeshNode, transport_drops: DropSource | None = None) -> CollectorRegistry:
    """A fresh registry holding this node's gossip metrics."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(GossipCollector(node, transport_drops))
    return registry
