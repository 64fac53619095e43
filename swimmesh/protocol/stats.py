"""The core's counters: plain integers and an RTT histogram per peer, which the driver exports
as metrics at scrape time (so the core stays free of any metrics library)."""

from __future__ import annotations

import bisect
from collections import Counter

import attrs

RTT_BUCKETS_MS = (0.5, 1.0, 2.5, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0)


@attrs.define(slots=True)
class RttHistogram:
    """Direct-probe round trips to one peer, bucketed as ``RTT_BUCKETS_MS`` (cumulative at
    export time)."""

    counts: list[int] = attrs.field(factory=lambda: [0] * (len(RTT_BUCKETS_MS) + 1))
    total_ms: float = 0.0

    def observe(self, rtt_ms: float) -> None:
        self.counts[bisect.bisect_left(RTT_BUCKETS_MS, rtt_ms)] += 1
        self.total_ms += rtt_ms


@attrs.define(slots=True)
class Stats:
    """Counters the driver exports as metrics."""

    probes: int = 0
    probe_failures: int = 0
    indirect_probes: int = 0
    suspicions: int = 0
    refutations: int = 0
    deaths_declared: int = 0
    push_pulls: int = 0
    push_pull_failures: int = 0
    reconnect_attempts: int = 0
    repairs: int = 0
    stream_fallbacks: int = 0
    packets_sent: int = 0
    packets_received: int = 0
    packets_accepted: int = 0
    """Datagrams that decoded (their messages may still be dropped one by one)."""
    packets_dropped: int = 0
    """Datagrams refused whole: undecodable, wrong version or label, oversize."""
    bytes_sent: int = 0
    bytes_received: int = 0
    messages_received: int = 0
    dropped: Counter[str] = attrs.field(factory=Counter)
    rtt: dict[str, RttHistogram] = attrs.field(factory=dict)
