"""Leadership metrics in OmniRelay's names, on a registry of the caller's (one per node)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

ELECTION_BUCKETS_MS = (5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000)


class LeadershipMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry(auto_describe=False)
        self.transitions = Counter(
            "mesh_leadership_transitions",
            "Leadership transitions of this node, by kind (observed not counted)",
            ["scope", "scope_kind", "leader", "transition"],
            registry=self.registry,
        )
        self.election_duration = Histogram(
            "mesh_leadership_election_duration_ms",
            "From a scope found vacant to this node elected (ms)",
            ["scope", "scope_kind"],
            buckets=ELECTION_BUCKETS_MS,
            registry=self.registry,
        )
        self.split_brain = Counter(
            "mesh_leadership_split_brain",
            "Split-brain reports: an incumbent dead, left or long suspect with a valid token; "
            "overlapping valid tokens; a lower fence acting after a higher one",
            ["scope", "leader"],
            registry=self.registry,
        )
        self.scopes_led = Gauge(
            "swimmesh_leadership_scopes_led", "Scopes this node leads now", registry=self.registry
        )
        self.store_errors = Counter(
            "swimmesh_leadership_store_unavailable",
            "Lease store calls that found the store unavailable or did not answer in time",
            ["operation"],
            registry=self.registry,
        )
