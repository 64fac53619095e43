"""Leadership failover in virtual time: N coordinators, S shard scopes, the in-memory store.

Measures the time until every scope has a leader from a cold start, the failover time of each
scope a coordinator led when it stops abruptly (no release; once with its node still alive in the
others' view, as before gossip notices, once marked dead at once) and when it stops gracefully,
and CPU per coordinator per virtual second in steady state. ``swimmesh simulate leadership`` and
``benchmarks/leadership_bench.py`` run it.
"""

from __future__ import annotations

import random
import statistics
import time
from collections.abc import Callable
from typing import Any

import trio
import trio.testing

from leadership import (
    EventKind,
    InMemoryLeaseStore,
    LeadershipConfig,
    LeadershipEvent,
    LeadershipScope,
)
from leadership.testing import CoordinatorGroup, LocalMesh
from leadership.tokens import ENDING_KINDS


def spread(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    if not ordered:
        return {}

    def q(p: float) -> float:
        return ordered[min(len(ordered) - 1, int(p * len(ordered)))]

    return {
        "n": len(ordered),
        "min": round(ordered[0], 3),
        "median": round(statistics.median(ordered), 3),
        "p90": round(q(0.9), 3),
        "max": round(ordered[-1], 3),
    }


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
