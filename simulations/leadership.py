"""Leadership failover in virtual time: N coordinators, S shard scopes, the in-memory store.

Measures the time until every scope has a leader from a cold start, the failover time of each
scope a coordinator led when it stops abruptly (no release; once with its node still alive in the
others' view, as before gossip notices, once marked dead at once) and when it stops gracefully,
and CPU per coordinator per virtual second in steady state. ``swimmesh simulate leadership`` and
``benchmarks/leadership_bench.py`` run it.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import Any

import trio
import trio.testing

from leadership import (
    EventKind,
    InMemoryLeaseStore,
    LeadershipConfig,
    LeadershipCoordinator,
    LeadershipEvent,
    LeadershipScope,
)
from leadership.testing import CoordinatorGroup, LocalMesh
from leadership.tokens import ENDING_KINDS

from .harness import spread


class Elections:
    """Every ELECTED event of every coordinator, by scope, with its virtual time."""

    def __init__(self) -> None:
        self.leader: dict[str, str] = {}
        self.elected_at: dict[str, float] = {}
        self.waiters: list[tuple[Callable[[], bool], trio.Event]] = []

    def listener(self, node: str) -> Callable[[LeadershipEvent], None]:
        def on_event(event: LeadershipEvent) -> None:
            if event.leader_id != node:
                return
            if event.kind is EventKind.ELECTED:
                self.leader[event.scope] = node
                self.elected_at[event.scope] = trio.current_time()
            elif event.kind in ENDING_KINDS and self.leader.get(event.scope) == node:
                del self.leader[event.scope]
            for condition, ready in list(self.waiters):
                if condition():
                    ready.set()

        return on_event

    async def until(self, condition: Callable[[], bool], timeout: float) -> None:
        if condition():
            return
        ready = trio.Event()
        entry = (condition, ready)
        self.waiters.append(entry)
        try:
            with trio.fail_after(timeout):
                await ready.wait()
        finally:
            self.waiters.remove(entry)


async def scenario(n: int, scopes: int, steady: float, seed: int, victims: int) -> dict[str, Any]:
    shard_scopes = tuple(LeadershipScope.shard("bench", str(i)) for i in range(scopes))
    store = InMemoryLeaseStore()
    mesh = LocalMesh()
    elections = Elections()
    names = [f"coord-{i:02d}" for i in range(n)]
    out: dict[str, Any] = {"coordinators": n, "scopes": scopes}

    def config(name: str) -> LeadershipConfig:
        return LeadershipConfig(node_id=name, scopes=shard_scopes, history_size=4096)

    async with trio.open_nursery() as nursery:
        group = CoordinatorGroup(nursery, store, mesh, config, seed)
        start = trio.current_time()
        for name in names:
            coordinator = await group.start(name)
            coordinator.hub.add_listener(elections.listener(name))
        await elections.until(lambda: len(elections.leader) == scopes, timeout=60)
        out["cold_start_all_led_s"] = round(max(elections.elected_at.values()) - start, 3)
        per_node = [sum(1 for v in elections.leader.values() if v == nm) for nm in names]
        out["scopes_per_coordinator"] = {"min": min(per_node), "max": max(per_node)}

        # Steady state, virtual time: CPU per coordinator per virtual second.
        await trio.sleep(5)
        cpu0, t0 = time.process_time(), trio.current_time()
        await trio.sleep(steady)
        cpu = time.process_time() - cpu0
        out["steady_cpu_ms_per_coordinator_per_virtual_s"] = round(
            cpu * 1000 / (trio.current_time() - t0) / n, 3
        )

        async def failover(victim: str, how: str) -> list[float]:
            led = [s for s, v in elections.leader.items() if v == victim]
            at = trio.current_time()
            if how == "graceful":
                await group.stop(victim)
            else:
                group.crash(victim, status="dead" if how == "crash-dead" else None)
            await elections.until(
                lambda: all(elections.leader.get(s) not in (None, victim) for s in led),
                timeout=60,
            )
            return [elections.elected_at[s] - at for s in led]

        rng = random.Random(seed)
        cfg = config(names[0])
        cycle = cfg.validity(cfg.lease_duration) - cfg.renewal_lead_time  # time between renewals
        for how in ("crash-alive", "crash-dead", "graceful"):
            samples: list[float] = []
            for _ in range(victims):
                leading = sorted(set(elections.leader.values()) & set(group.coordinators))
                victim = rng.choice(leading)  # one that leads something
                samples += await failover(victim, how)
                # Back as a new process (a new holder), then wait a random part of a renew cycle.
                mesh.set_status(victim, "alive")
                (await group.start(victim)).hub.add_listener(elections.listener(victim))
                await trio.sleep(rng.uniform(0.0, cycle))
            out[f"failover_{how}_s"] = spread(samples)
        nursery.cancel_scope.cancel()
    return out


def table(result: dict[str, Any]) -> str:
    rows = [
        ("coordinators / scopes", f"{result['coordinators']} / {result['scopes']}"),
        ("cold start -> every scope led, virtual s", result["cold_start_all_led_s"]),
        (
            "scopes per coordinator (min / max)",
            "{min} / {max}".format(**result["scopes_per_coordinator"]),
        ),
    ]
    for how, label in (
        ("crash-alive", "abrupt stop, still alive in the view"),
        ("crash-dead", "abrupt stop, marked dead at once"),
        ("graceful", "graceful stop"),
    ):
        s = result[f"failover_{how}_s"]
        rows.append(
            (
                f"failover {label}: min / median / p90 / max s (n)",
                f"{s['min']} / {s['median']} / {s['p90']} / {s['max']} ({s['n']})",
            )
        )
    rows += [
        (
            "steady CPU ms per coordinator per virtual s",
            result["steady_cpu_ms_per_coordinator_per_virtual_s"],
        ),
    ]
    if "realtime_cpu_ms_per_coordinator_per_s" in result:
        rows += [
            (
                "real time: cold start -> every scope led, s",
                result["realtime_cold_start_all_led_s"],
            ),
            (
                "real time: CPU ms per coordinator per s",
                result["realtime_cpu_ms_per_coordinator_per_s"],
            ),
        ]
    width = max(len(r[0]) for r in rows)
    return "\n".join(f"| {k:<{width}} | {v} |" for k, v in rows)


async def split_brain_reports(
    seconds: float,
    loss: float,
    nodes: int = 5,
    seed: int = 1,
    scopes: int = 4,
    stalls: int = 0,
    stall: float = 1.5,
) -> dict[str, Any]:
    """False split-brain reports over real SWIM: ``nodes`` mesh nodes on the in-memory
    network with ``loss`` packet loss, a coordinator on each (one shared in-memory store, so
    nothing here is ever a real split brain), for ``seconds`` of virtual time; optionally
    ``stalls`` network stalls of ``stall`` seconds of a random node (what makes Lifeguard
    suspect a live node, which then refutes). Counts the reports and, to show the faults
    happened, the suspicions the views saw."""
    from swimmesh import MemberStatus
    from swimmesh.leadership_view import MeshMembershipView
    from swimmesh.testing import Cluster, MemoryNetwork, wait_for

    names = [f"n{i}" for i in range(1, nodes + 1)]
    shards = (LeadershipScope.shard("bench", str(i)) for i in range(scopes - 1))
    scope_list = (LeadershipScope.global_control(), *shards)
    net = MemoryNetwork(seed=seed)
    net.set_latency(0.002, 0.001)
    reports: list[LeadershipEvent] = []
    suspicions = 0
    elected = 0

    def listen(event: LeadershipEvent) -> None:
        nonlocal elected
        if event.kind is EventKind.SPLIT_BRAIN:
            reports.append(event)
        elif event.kind is EventKind.ELECTED:
            elected += 1

    async def count_suspicions(view: MeshMembershipView) -> None:
        nonlocal suspicions
        async for node_id in view.changes():
            member = view.member(node_id)
            if member is not None and member.status == "suspect":
                suspicions += 1

    async with Cluster.open("lan", network=net, seed=seed) as cluster, trio.open_nursery() as n:
        await cluster.start_many(names)
        await wait_for(lambda: cluster.views_agree(MemberStatus.ALIVE), timeout=60)
        store = InMemoryLeaseStore()

        async def run(name: str, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
            view = MeshMembershipView(cluster.nodes[name])
            config = LeadershipConfig(scopes=scope_list)
            async with LeadershipCoordinator.open(config, store.client(name), view) as c:
                c.hub.add_listener(listen)
                task_status.started()
                await trio.sleep_forever()

        for name in names:
            await n.start(run, name)
            n.start_soon(count_suspicions, MeshMembershipView(cluster.nodes[name]))
        net.set_loss(loss)
        start = trio.current_time()
        rng = random.Random(seed)
        gap = seconds / (stalls + 1)
        for _ in range(stalls):
            await trio.sleep(gap)
            net.pause((rng.choice(names), 7946), stall)
        await trio.sleep(start + seconds - trio.current_time())
        n.cancel_scope.cancel()
    return {
        "virtual_seconds": seconds,
        "loss": loss,
        "nodes": nodes,
        "stalls": stalls,
        "scopes": scopes,
        "split_brain_reports": len(reports),
        "suspicions_seen": suspicions,
        "terms_elected": elected,
        "first_reasons": sorted({e.reason for e in reports})[:3],
    }
