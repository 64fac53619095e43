"""The agent's leader elections: a coordinator over a lease store that spans the mesh.

With ``quorum = "static"``, voters (``mesh.leadership.voters``, configuration epoch 1) answer
lease requests over the mesh's encrypted stream channel and keep their promised terms in the
data directory; every node runs a candidate and a coordinator. With ``quorum = "none"`` each node
decides on its own membership view (:mod:`leadership.availability`): always available, split
brain possible in a partition and resolved when it heals. Lease time is ``CLOCK_BOOTTIME``,
which keeps counting while the host is suspended, so a node never wakes from a suspend believing
in a lease that ran out.
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path

import attrs
from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

from leadership import (
    BootTime,
    LeadershipConfig,
    LeadershipCoordinator,
    LeadershipMetrics,
    TrioTime,
)
from leadership.availability import AvailabilityLeaseStore
from leadership.clock import Clock
from leadership.quorum import FilePromises, VoterConfig
from leadership.quorum.durable import KnownConfigFile
from leadership.quorum.store import QuorumLeaseStore

from .leadership_view import MeshMembershipView, MeshMessenger
from .member import MemberStatus
from .runtime import MeshNode

PROMISES_FILE = "leadership-promised-terms.json"
VOTERS_FILE = "leadership-voters.json"
BELIEF_LEASES = 4.0
"""A follower believes a live holder for this many leases between its notices, which come every
half of it: renewals then reach the voters alone, and a follower's cost of hearing about
leaders drops by about ``BELIEF_LEASES / 2`` times the leases' renewals per notice (a holder
renews about every ``leaseDuration - renewalLeadTime``). Suspicion or death of the holder ends
the belief at once, so failover is not slower."""


def lease_clock() -> Clock:
    """``CLOCK_BOOTTIME`` where the system has it (Linux), else Trio's monotonic clock."""
    return BootTime() if sys.platform.startswith("linux") else TrioTime()


def promises_path(data_dir: str | None) -> Path | None:
    return Path(data_dir) / PROMISES_FILE if data_dir else None


def setup_problem(config: LeadershipConfig, node_name: str, data_dir: str | None) -> str | None:
    """Why this node cannot run elections with these settings, in one line (None: it can)."""
    if config.quorum != "static":
        return None  # quorum = "none": nothing to keep on disk
    path = promises_path(data_dir)
    if path is None:
        if node_name in config.voters:
            return (
                f"node {node_name!r} is a voter (mesh.leadership.voters) and must keep its "
                "promised terms across restarts: give --data-dir"
            )
        return None
    try:
        FilePromises(path).load()
    except OSError as exc:
        return str(exc)
    return None


@attrs.frozen
class Elections:
    """What an agent runs for leadership: the coordinator and the lease store under it."""

    coordinator: LeadershipCoordinator
    store: QuorumLeaseStore | AvailabilityLeaseStore

    @property
    def voters(self) -> QuorumLeaseStore | None:
        """The store that answers voter-set operations (None without voters)."""
        return self.store if isinstance(self.store, QuorumLeaseStore) else None


@asynccontextmanager
async def open_elections(
    node: MeshNode,
    config: LeadershipConfig,
    *,
    data_dir: str | None,
    registry: CollectorRegistry | None = None,
    clock: Clock | None = None,
    offload_saves: bool = False,
) -> AsyncIterator[Elections]:
    """Run this node's voter (if it is one), candidate and coordinator until the block ends;
    leaving the block steps down from every scope and releases the leases. Check
    :func:`setup_problem` first. ``offload_saves`` writes a voter's promises in a worker
    thread (an agent on the real clock; not under a mock clock)."""
    clock = clock if clock is not None else lease_clock()
    async with AsyncExitStack() as stack:
        store: QuorumLeaseStore | AvailabilityLeaseStore
        if config.quorum == "static":
            path = promises_path(data_dir)
            store = await stack.enter_async_context(
                QuorumLeaseStore.open(
                    MeshMessenger(node),
                    config=VoterConfig(1, config.voters),
                    clock=clock,
                    max_duration=config.lease_duration,
                    max_drift=config.max_clock_drift,
                    promises=FilePromises(path) if path is not None else None,
                    peers=lambda: [m.name for m in node.alive_members()],
                    alive=view_alive(node),
                    belief_leases=BELIEF_LEASES,
                    thrifty_renewals=True,
                    offload_saves=offload_saves,
                    recover_if_blank=True,  # a voter whose data directory was lost
                    known_config=KnownConfigFile(Path(data_dir) / VOTERS_FILE)
                    if data_dir
                    else None,
                )
            )
        else:
            store = await stack.enter_async_context(
                AvailabilityLeaseStore.open(
                    MeshMessenger(node),
                    MeshMembershipView(node),
                    now=clock.now,
                    max_duration=config.lease_duration,
                    settle=settle_time(config),
                )
            )
        coordinator = await stack.enter_async_context(
            LeadershipCoordinator.open(
                config,
                store,
                MeshMembershipView(node),
                clock=clock,
                metrics=LeadershipMetrics(registry),
                leases_end_with_membership=isinstance(store, AvailabilityLeaseStore),
            )
        )
        if registry is not None:
            collector = StoreMessages(store)
            registry.register(collector)
            stack.callback(registry.unregister, collector)
        yield Elections(coordinator, store)


class StoreMessages(Collector):
    """``swimmesh_leadership_messages_total{kind, direction}``: the lease store's requests
    between nodes (voter rounds and notices; without voters, claims)."""

    def __init__(self, store: QuorumLeaseStore | AvailabilityLeaseStore) -> None:
        self.store = store

    def collect(self) -> Iterator[Metric]:
        family = CounterMetricFamily(
            "swimmesh_leadership_messages",
            "Lease store requests between nodes, by kind and direction",
            labels=["kind", "direction"],
        )
        if isinstance(self.store, QuorumLeaseStore):
            q = self.store.stats
            counts = {
                ("voter", "out"): q.voter_requests_sent,
                ("voter", "in"): q.voter_requests_served,
                ("notice", "out"): q.notices_sent,
                ("notice", "in"): q.notices_received,
            }
        else:
            a = self.store.stats
            counts = {("claims", "out"): a.claims_sent, ("claims", "in"): a.claims_received}
        for (kind, direction), value in counts.items():
            family.add_metric([kind, direction], value)
        yield family


def view_alive(node: MeshNode) -> Callable[[str], bool]:
    """Whether a node is alive (not suspect) in ``node``'s membership view."""

    def alive(node_id: str) -> bool:
        return node.status_of(node_id) is MemberStatus.ALIVE

    return alive


def settle_time(config: LeadershipConfig) -> float:
    """How long a node without voters waits after starting before it claims anything: long
    enough for the members that see it join to send it their claims."""
    return min(2.0, config.lease_duration / 2)
