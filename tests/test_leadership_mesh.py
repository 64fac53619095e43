"""Coordinators on a real SWIM mesh (in-memory network, virtual time) through the adapter."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
import trio
import trio.testing

from leadership import (
    EventKind,
    InMemoryLeaseStore,
    LeadershipConfig,
    LeadershipCoordinator,
    LeadershipScope,
    MessengerError,
)
from leadership.testing import LocalMesh
from swimmesh import MemberStatus
from swimmesh.leadership_view import MeshMembershipView, MeshMessenger
from swimmesh.runtime import MeshNode
from swimmesh.testing import Cluster, MemoryNetwork, wait_for

NAMES = ["a", "b", "c", "d", "e"]
SCOPES = (
    LeadershipScope.global_control(),
    *(LeadershipScope.shard("jobs", str(i)) for i in range(6)),
)


class Coordinators:
    def __init__(self, nursery: trio.Nursery, store: InMemoryLeaseStore) -> None:
        self.nursery = nursery
        self.store = store
        self.running: dict[str, LeadershipCoordinator] = {}

    async def start(self, node: MeshNode, **overrides: Any) -> LeadershipCoordinator:
        config = LeadershipConfig(scopes=SCOPES, **overrides)

        async def run(task_status: trio.TaskStatus[LeadershipCoordinator]) -> None:
            async with LeadershipCoordinator.open(
                config, self.store.client(node.name), MeshMembershipView(node)
            ) as coordinator:
                task_status.started(coordinator)
                await trio.sleep_forever()

        coordinator: LeadershipCoordinator = await self.nursery.start(run)
        self.running[node.name] = coordinator
        return coordinator

    def leaders(self, scope: str = "global-control") -> list[str]:
        return [n for n, c in self.running.items() if c.is_leader(scope)]


@asynccontextmanager
async def mesh(
    seed: int, priorities: dict[str, int]
) -> AsyncIterator[tuple[Cluster, Coordinators]]:
    """A formed 5-node lan mesh with one coordinator per node on a shared store."""
    net = MemoryNetwork(seed=seed)
    net.set_latency(0.002, 0.001)
    async with Cluster.open("lan", network=net, seed=seed) as cluster, trio.open_nursery() as n:
        await cluster.start_many(NAMES)
        await wait_for(lambda: cluster.views_agree(MemberStatus.ALIVE), timeout=30)
        group = Coordinators(n, InMemoryLeaseStore())
        for name in NAMES:
            await group.start(cluster.nodes[name], priority=priorities.get(name, 0))
        yield cluster, group
        n.cancel_scope.cancel()


async def test_elections_over_gossip_follow_priority_and_survive_a_crash(
    sim_clock: trio.testing.MockClock,
) -> None:
    async with mesh(5, {"c": 10}) as (cluster, group):
        # Candidacy travels in gossip metadata: every node ranks all five the same way.
        await wait_for(
            lambda: all(
                [x.node_id for x in c.candidates("global-control")]
                == [x.node_id for x in group.running["a"].candidates("global-control")]
                and len(c.candidates("global-control")) == 5
                for c in group.running.values()
            ),
            timeout=10,
        )
        await wait_for(lambda: group.leaders() == ["c"], timeout=10)  # the priority node
        for scope in SCOPES:
            await wait_for(lambda s=scope: len(group.leaders(s.scope_id)) == 1, timeout=10)
        old = group.running["c"].election("global-control").token
        assert old is not None
        watcher = group.running["a"].hub.subscribe("global-control", kinds=["splitBrain"])

        group.running.pop("c").crash()
        cluster.crash("c")  # the process is gone: SWIM suspects it, then declares it dead
        with trio.fail_after(old_bound()):  # reported once gossip declares it dead
            split = await watcher.__anext__()
        assert split.kind is EventKind.SPLIT_BRAIN and split.leader_id == "c"
        assert "suspect" in split.reason or "dead" in split.reason
        await wait_for(lambda: len(group.leaders()) == 1, timeout=old_bound())
        new = group.running[group.leaders()[0]].election("global-control").token
        assert new is not None and new.fence_token > old.fence_token
        # Everyone else agrees on the new leader.
        await wait_for(
            lambda: all(
                c.election("global-control").current_leader == new.leader_id
                for c in group.running.values()
            ),
            timeout=10,
        )


def old_bound() -> float:
    cfg = LeadershipConfig()
    return cfg.lease_duration + cfg.max_election_window + 2 * cfg.evaluation_interval


async def test_a_graceful_leave_hands_leadership_over_at_once(
    sim_clock: trio.testing.MockClock,
) -> None:
    async with mesh(6, {}) as (cluster, group):
        await wait_for(lambda: len(group.leaders()) == 1, timeout=10)
        leader = group.leaders()[0]
        start = trio.current_time()
        await group.running.pop(leader).stop()  # step down + release, then leave the mesh
        await cluster.stop(leader)
        await wait_for(lambda: len(group.leaders()) == 1, timeout=5)
        assert trio.current_time() - start < LeadershipConfig().evaluation_interval
        assert group.leaders()[0] != leader


def test_simulate_leadership_reports_failover(capsys: object) -> None:
    import json

    from swimmesh.cli import main

    code = main(
        [
            "simulate",
            "leadership",
            "--nodes",
            "3",
            "--scopes",
            "12",
            "--seconds",
            "2",
            "--victims",
            "1",
            "--format",
            "json",
        ]
    )
    out = json.loads(capsys.readouterr().out)  # type: ignore[attr-defined]
    cfg = LeadershipConfig()
    assert code == 0 and out["scopes"] == 12
    assert out["cold_start_all_led_s"] <= cfg.evaluation_interval * 7 / 6 + cfg.election_backoff
    # A crash costs at most a lease (plus a rank wait while the victim still looks alive) ...
    assert out["failover_crash-alive_s"]["max"] <= cfg.lease_duration + cfg.max_election_window
    assert out["failover_crash-dead_s"]["max"] <= cfg.lease_duration + cfg.evaluation_interval
    # ... a graceful stop hands over at once.
    assert out["failover_graceful_s"]["max"] < cfg.evaluation_interval


async def test_the_mesh_messenger_carries_requests_by_node_name(
    sim_clock: trio.testing.MockClock,
) -> None:
    async with Cluster.open("lan", seed=7) as cluster:
        await cluster.start_many(["a", "b"])
        await wait_for(lambda: cluster.views_agree(MemberStatus.ALIVE), timeout=10)
        a, b = (MeshMessenger(cluster.nodes[n]) for n in ("a", "b"))
        seen: list[str] = []

        async def vote(sender: str, payload: bytes) -> bytes:
            seen.append(sender)
            if payload == b"bad":
                raise ValueError("malformed ballot")
            return b"granted:" + payload

        b.serve("vote", vote)
        assert await a.request("b", "vote", b"term-7", timeout=2.0) == b"granted:term-7"
        assert seen == ["a"] and a.local_id == "a"
        with pytest.raises(MessengerError, match="malformed ballot"):
            await a.request("b", "vote", b"bad", timeout=2.0)
        with pytest.raises(MessengerError, match="no handler"):
            await a.request("b", "other", b"", timeout=2.0)
        with pytest.raises(MessengerError, match="unknown member"):
            await a.request("nobody", "vote", b"", timeout=2.0)


async def test_the_mesh_messenger_tells_in_a_datagram_where_one_fits(
    sim_clock: trio.testing.MockClock,
) -> None:
    net = MemoryNetwork(seed=3)
    async with Cluster.open("lan", network=net, seed=3) as cluster:
        await cluster.start_many(["a", "b"])
        await wait_for(lambda: cluster.views_agree(MemberStatus.ALIVE), timeout=10)
        a, b = (MeshMessenger(cluster.nodes[n]) for n in ("a", "b"))
        told: list[tuple[str, bytes]] = []
        b.serve_told("notice", lambda sender, payload: told.append((sender, payload)))
        await a.tell("b", "notice", b"small", timeout=2.0)
        await wait_for(lambda: told == [("a", b"small")], timeout=1)
        # With every datagram between them lost, a small message is lost (it went as one)
        # while one too large for a datagram still arrives (it went over the stream channel).
        net.set_loss(1.0, between=(cluster.nodes["a"].config.bind, cluster.nodes["b"].config.bind))
        await a.tell("b", "notice", b"lost", timeout=2.0)
        await a.tell("b", "notice", b"L" * 2000, timeout=2.0)
        await wait_for(lambda: len(told) == 2, timeout=2)
        assert told[1] == ("a", b"L" * 2000)
        await trio.sleep(1.0)
        assert b"lost" not in [payload for _, payload in told]
        # A told kind is also asked and answered (empty), for a sender that must know.
        assert await a.request("b", "notice", b"asked", timeout=2.0) == b""
        assert told[-1] == ("a", b"asked")
        with pytest.raises(MessengerError, match="unknown member"):
            await a.tell("nobody", "notice", b"", timeout=2.0)


async def test_the_local_messenger_times_out_on_lost_peers(
    sim_clock: trio.testing.MockClock,
) -> None:
    mesh = LocalMesh()
    a, b = mesh.messenger("a"), mesh.messenger("b")
    mesh.add("a")
    mesh.add("b")

    async def echo(sender: str, payload: bytes) -> bytes:
        return sender.encode() + b":" + payload

    b.serve("echo", echo)
    assert await a.request("b", "echo", b"x", timeout=1.0) == b"a:x"
    mesh.unreachable.add("b")
    start = trio.current_time()
    with pytest.raises(MessengerError, match="no reply from b"):
        await a.request("b", "echo", b"x", timeout=1.0)
    assert trio.current_time() - start == pytest.approx(1.0)
    mesh.unreachable.clear()
    mesh.set_status("b", "dead")
    with pytest.raises(MessengerError):
        await a.request("b", "echo", b"x", timeout=0.5)


def test_the_leaders_table_keeps_omnirelays_layout() -> None:
    from swimmesh.cli import leaders_table

    doc = {
        "generatedAt": "2026-12-02T05:10:01.433Z",
        "tokens": [
            {
                "scope": "shard/demo/1",
                "leaderId": "node-2",
                "term": 3,
                "fenceToken": 3,
                "expiresAt": "2026-12-02T05:10:03.900Z",
                "scopeKind": "shard",
            },
            {
                "scope": "global-control",
                "leaderId": "node-4",
                "term": 1,
                "fenceToken": 1,
                "expiresAt": "2026-12-02T05:10:03.120Z",
                "scopeKind": "global",
            },
        ],
    }
    lines = leaders_table(doc).splitlines()
    assert lines[:2] == ["Generated at: 2026-12-02T05:10:01.433Z", ""]
    assert lines[2].startswith("Scope" + " " * 27 + "Leader" + " " * 14 + "Term  Fence Expires")
    assert lines[3] == (
        "global-control".ljust(32)
        + "node-4".ljust(20)
        + "1".ljust(6)
        + "1".ljust(6)
        + "2026-12-02 05:10:03Z".ljust(24)
        + "global"
    )
    assert lines[4].startswith("shard/demo/1")  # sorted by scope
    assert leaders_table({"generatedAt": "x", "tokens": []}).splitlines()[-1] == (
        "No active leaders."
    )


@pytest.mark.system
def test_the_in_process_demo_shows_elections_failover_and_handover() -> None:
    import subprocess
    import sys

    proc = subprocess.run(
        [sys.executable, "-m", "swimmesh", "demo", "--in-process", "--nodes", "4"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "every scope elected a leader" in out
    assert "leader of global-control (fence 1)" in out and "with fence 2" in out
    assert "stepped down: its" in out and "every node saw it Left" in out
    assert out.count("global-control                  node-") == 2  # before and after
