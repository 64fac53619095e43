"""Membership at scale on the in-memory network, in virtual time (lan preset, 2 +- 1 ms, 1% loss).

For each N it measures: metadata dissemination (50/99/100% of nodes), crash -> first
suspicion and crash -> DEAD at every node over many crashes, false DEADs, packets and bytes per
node per second when idle, and wall-clock seconds per virtual minute. Prints JSON, then a table.

    python -m benchmarks.membership_sim --nodes 100 1000 --crashes 20

``--crashes 0`` stops after the idle window (formation and simulation speed only).
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import trio
import trio.testing

from simulations.mesh import lazy_collector
from swimmesh import MemberEventKind, MemberStatus
from swimmesh.protocol import suspicion_bounds
from swimmesh.testing import Cluster, EventLog, MemoryNetwork, replayable, wait_for


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return math.nan
    idx = min(len(ordered) - 1, max(0, math.ceil(q / 100 * len(ordered)) - 1))
    return ordered[idx]


async def measure(n: int, crashes: int, crash_gap: float, idle: float, seed: int) -> dict[str, Any]:
    with lazy_collector() as freeze:
        return await _measure(n, crashes, crash_gap, idle, seed, freeze)


async def _measure(
    n: int, crashes: int, crash_gap: float, idle: float, seed: int, freeze: Callable[[], None]
) -> dict[str, Any]:
    net = MemoryNetwork(seed=seed)
    net.set_latency(0.002, 0.001)
    names = [f"n{i:04d}" for i in range(n)]
    log = EventLog()
    result: dict[str, Any] = {"nodes": n, "preset": "lan", "latency_ms": "2+-1", "loss": 0.01}
    async with Cluster.open("lan", network=net, seed=seed) as cluster:
        wall = time.perf_counter()
        t0 = trio.current_time()
        await cluster.start_many(names)
        await wait_for(lambda: cluster.views_agree(MemberStatus.ALIVE), timeout=600, poll=0.5)
        result["formation_virtual_s"] = round(trio.current_time() - t0, 2)
        result["formation_wall_s"] = round(time.perf_counter() - wall, 2)
        freeze()  # the formed mesh lives as long as the run: no full collection walks it
        net.set_loss(0.01)
        async with trio.open_nursery() as watchers:
            for node in cluster.live():
                await watchers.start(log.follow, node)
            await trio.sleep(10)  # settle under loss

            # Idle window: traffic per node and simulation speed.
            before = {
                a: (s.packets_sent, s.bytes_sent)
                for a, s in (
                    (node.config.bind, net.stats(node.config.bind)) for node in cluster.live()
                )
            }
            wall, cpu = time.perf_counter(), time.process_time()
            await trio.sleep(idle)
            wall_idle = time.perf_counter() - wall
            cpu_idle = time.process_time() - cpu
            pk = [net.stats(a).packets_sent - p for a, (p, _) in before.items()]
            by = [net.stats(a).bytes_sent - b for a, (_, b) in before.items()]
            result["idle_packets_per_node_s"] = round(statistics.mean(pk) / idle, 2)
            result["idle_bytes_per_node_s"] = round(statistics.mean(by) / idle, 1)
            result["wall_s_per_virtual_minute"] = round(wall_idle * 60 / idle, 2)
            result["cpu_s_per_virtual_minute"] = round(cpu_idle * 60 / idle, 2)
            if crashes == 0:
                watchers.cancel_scope.cancel()
                return result

            # Metadata dissemination.
            origin = cluster.nodes[names[n // 2]]
            start = trio.current_time()
            await origin.update_metadata({"role": "bench", "v": "2"})
            await wait_for(
                lambda: len(log.of(MemberEventKind.UPDATE, origin.name)) >= n - 1,
                timeout=120,
                poll=0.05,
            )
            delays = sorted(t - start for t, _, _ in log.of(MemberEventKind.UPDATE, origin.name))
            result["metadata_p50_s"] = round(pct(delays, 50), 3)
            result["metadata_p99_s"] = round(pct(delays, 99), 3)
            result["metadata_p100_s"] = round(delays[-1], 3)

            # Crashes: one every crash_gap seconds, all measured.
            cfg = origin.config
            victims = [
                names[(7 + i * 37) % n]
                for i in range(crashes)
                if names[(7 + i * 37) % n] != origin.name
            ]
            victims = list(dict.fromkeys(victims))
            crashed_at: dict[str, float] = {}
            wall = time.perf_counter()
            crash_start = trio.current_time()
            for victim in victims:
                cluster.crash(victim)
                crashed_at[victim] = trio.current_time()
                await trio.sleep(crash_gap)
            await wait_for(
                lambda: (
                    cluster.views_agree(MemberStatus.DEAD, about=victims)
                    or all(
                        len(log.of(MemberEventKind.DEAD, v)) >= len(cluster.nodes) for v in victims
                    )
                ),
                timeout=600,
                poll=0.5,
            )
            crash_wall = time.perf_counter() - wall
            crash_virtual = trio.current_time() - crash_start
            first_suspect, dead_all, dead_median = [], [], []
            for v in victims:
                sus = [
                    t for t, obs, _ in log.of(MemberEventKind.SUSPECT, v) if obs in cluster.nodes
                ]
                dead = [t for t, obs, _ in log.of(MemberEventKind.DEAD, v) if obs in cluster.nodes]
                first_suspect.append(min(sus) - crashed_at[v])
                dead_all.append(max(dead) - crashed_at[v])
                dead_median.append(statistics.median(dead) - crashed_at[v])
            watchers.cancel_scope.cancel()
        false_dead = [
            ev.member.name
            for _, _, ev in log.of(MemberEventKind.DEAD)
            if ev.member.name not in crashed_at
        ]
        minimum, _ = suspicion_bounds(
            cfg.suspicion_mult, cfg.suspicion_max_timeout_mult, n, cfg.probe_interval
        )
        predicted = cfg.probe_interval + minimum
        result.update(
            crashes=len(victims),
            first_suspicion_median_s=round(statistics.median(first_suspect), 2),
            first_suspicion_p99_s=round(pct(first_suspect, 99), 2),
            dead_at_all_median_s=round(statistics.median(dead_all), 2),
            dead_at_all_p99_s=round(pct(dead_all, 99), 2),
            dead_median_node_median_s=round(statistics.median(dead_median), 2),
            memberlist_formula_s=round(predicted, 2),
            dead_at_all_vs_formula=round(statistics.median(dead_all) / predicted, 3),
            false_deads=len(false_dead),
            crash_phase_wall_s_per_virtual_minute=round(crash_wall * 60 / crash_virtual, 2),
        )
    return result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--nodes", type=int, nargs="+", default=[100, 1000])
    parser.add_argument("--crashes", type=int, default=20, help="0: stop after the idle window")
    parser.add_argument("--crash-gap", type=float, default=3.0)
    parser.add_argument("--idle", type=float, default=60.0)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    rows = []
    for n in args.nodes:
        with replayable(args.seed):
            rows.append(
                trio.run(
                    measure,
                    n,
                    args.crashes,
                    args.crash_gap,
                    args.idle,
                    args.seed,
                    clock=trio.testing.MockClock(autojump_threshold=0),
                )
            )
        print(json.dumps(rows[-1]), file=sys.stderr)
    print(json.dumps(rows, indent=2))
    keys = [k for k in rows[0] if k not in ("preset", "latency_ms", "loss")]
    width = max(len(k) for k in keys)
    print("\n" + "metric".ljust(width) + "".join(f"{'N=' + str(r['nodes']):>14}" for r in rows))
    for k in keys:
        print(k.ljust(width) + "".join(f"{r[k]!s:>14}" for r in rows))


if __name__ == "__main__":
    main()
