"""Per-peer lease health and backpressure: a leaf library any control-plane service can use.

``PeerLeaseHealthTracker`` records heartbeats, disconnects and lease assignments per peer;
providers merge into one snapshot served as OmniRelay's ``/omnirelay/control/lease-health``
JSON; ``BackpressureMonitor`` turns queue depths into signals; ``ReplicationSource`` and
``CheckpointingSink`` replay sequenced events exactly once.
"""

from .backpressure import (
    BackpressureDiagnostics,
    BackpressureMonitor,
    BackpressureSignal,
    MonitoredReceiveChannel,
    MonitoredSendChannel,
    monitored_memory_channel,
    resolve_low_watermark,
    watch_depth,
)
from .diagnostics import LeaseHealthRenderer, lease_health_json, peer_json
from .metrics import PeerHealthCollector
from .model import (
    Labels,
    PeerHealth,
    PeerHealthSnapshot,
    PeerHealthSummary,
    PeerLeaseHandle,
    ProviderFailure,
)
from .providers import PeerHealthSnapshotProvider, merge_peer, merge_snapshots
from .replication import (
    CheckpointingSink,
    ReplicationEvent,
    ReplicationEventKind,
    ReplicationSource,
)
from .tracker import DEFAULT_HEARTBEAT_GRACE, PeerLeaseHealthTracker

__all__ = [
    "DEFAULT_HEARTBEAT_GRACE",
    "BackpressureDiagnostics",
    "BackpressureMonitor",
    "BackpressureSignal",
    "CheckpointingSink",
    "Labels",
    "LeaseHealthRenderer",
    "MonitoredReceiveChannel",
    "MonitoredSendChannel",
    "PeerHealth",
    "PeerHealthCollector",
    "PeerHealthSnapshot",
    "PeerHealthSnapshotProvider",
    "PeerHealthSummary",
    "PeerLeaseHandle",
    "PeerLeaseHealthTracker",
    "ProviderFailure",
    "ReplicationEvent",
    "ReplicationEventKind",
    "ReplicationSource",
    "lease_health_json",
    "merge_peer",
    "merge_snapshots",
    "monitored_memory_channel",
    "peer_json",
    "resolve_low_watermark",
    "watch_depth",
]
