"""The agent's leader elections: a coordinator over the quorum lease store, on this node.

Voters (``mesh.leadership.voters``, configuration epoch 1) answer lease requests over the mesh's
encrypted stream channel and keep their promised terms in the data directory; every node runs a
candidate and a coordinator. Lease time is ``CLOCK_BOOTTIME``, which keeps counting while the
host is suspended, so a node never wakes from a suspend believing in a lease that ran out.
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import attrs
from prometheus_client import CollectorRegistry

from leadership import (
    BootTime,
    LeadershipConfig,
    LeadershipCoordinator,
    LeadershipMetrics,
    TrioTime,
)
from leadership.clock import Clock
from leadership.quorum import FilePromises, VoterConfig
from leadership.quorum.store import QuorumLeaseStore

from .leadership_view import MeshMembershipView, MeshMessenger
from .runtime import MeshNode

PROMISES_FILE = "leadership-promised-terms.json"


def lease_clock() -> Clock:
    """``CLOCK_BOOTTIME`` where the system has it (Linux), else Trio's monotonic clock."""
    return BootTime() if sys.platform.startswith("linux") else TrioTime()


def promises_path(data_dir: str | None) -> Path | None:
    return Path(data_dir) / PROMISES_FILE if data_dir else None


def setup_problem(config: LeadershipConfig, node_name: str, data_dir: str | None) -> str | None:
    """Why this node cannot run elections with these settings, in one line (None: it can)."""
    if config.quorum != "static":
        return (
            'mesh.leadership: elections across agents need quorum = "static" and voters '
            '(mesh.leadership.voters = ["node-a", "node-b", "node-c"])'
        )
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
    store: QuorumLeaseStore


@asynccontextmanager
async def open_elections(
    node: MeshNode,
    config: LeadershipConfig,
    *,
    data_dir: str | None,
    registry: CollectorRegistry | None = None,
    clock: Clock | None = None,
) -> AsyncIterator[Elections]:
    """Run this node's voter (if it is one), candidate and coordinator until the block ends;
    leaving the block steps down from every scope and releases the leases. Check
    :func:`setup_problem` first."""
    path = promises_path(data_dir)
    clock = clock if clock is not None else lease_clock()
    async with QuorumLeaseStore.open(
        MeshMessenger(node),
        config=VoterConfig(1, config.voters),
        clock=clock,
        max_duration=config.lease_duration,
        max_drift=config.max_clock_drift,
        promises=FilePromises(path) if path is not None else None,
        peers=lambda: [m.name for m in node.alive_members()],
    ) as store, LeadershipCoordinator.open(
        config,
        store,
        MeshMembershipView(node),
        clock=clock,
        metrics=LeadershipMetrics(registry),
    ) as coordinator:
        yield Elections(coordinator, store)
