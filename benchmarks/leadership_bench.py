"""Leadership at scale in one process: N coordinators, S shard scopes, the in-memory store.

Runs ``simulations.leadership`` in virtual time (cold start, failover distributions, CPU per
virtual second), then the same mesh on the real clock for CPU per coordinator per wall second.
Prints JSON, then a table.

    python -m benchmarks.leadership_bench --coordinators 20 --scopes 1000

With ``--split-brain HOURS`` it instead counts false split-brain reports over real SWIM on the
in-memory network (1% loss; then 1% loss plus a 1.5 s stall of a random node every minute).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from typing import Any

import trio
import trio.testing

from leadership import InMemoryLeaseStore, LeadershipConfig, LeadershipScope
from leadership.testing import CoordinatorGroup, LocalMesh
from simulations.leadership import Elections, scenario, split_brain_reports, table


async def realtime(n: int, scopes: int, seconds: float) -> dict[str, Any]:
    """The same mesh on Trio's real clock: CPU per coordinator per wall second."""
    shard_scopes = tuple(LeadershipScope.shard("bench", str(i)) for i in range(scopes))
    store, mesh, elections = InMemoryLeaseStore(), LocalMesh(), Elections()
    names = [f"coord-{i:02d}" for i in range(n)]
    async with trio.open_nursery() as nursery:
        group = CoordinatorGroup(
            nursery, store, mesh, lambda nm: LeadershipConfig(node_id=nm, scopes=shard_scopes)
        )
        start = time.monotonic()
        for name in names:
            (await group.start(name)).hub.add_listener(elections.listener(name))
        await elections.until(lambda: len(elections.leader) == scopes, timeout=60)
        led_after = time.monotonic() - start
        await trio.sleep(3)
        cpu0, wall0 = time.process_time(), time.monotonic()
        await trio.sleep(seconds)
        cpu, wall = time.process_time() - cpu0, time.monotonic() - wall0
        nursery.cancel_scope.cancel()
    return {
        "realtime_cold_start_all_led_s": round(led_after, 3),
        "realtime_cpu_ms_per_coordinator_per_s": round(cpu * 1000 / wall / n, 3),
        "realtime_store_calls": dict(store.calls),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--coordinators", type=int, default=20)
    parser.add_argument("--scopes", type=int, default=1000)
    parser.add_argument("--steady", type=float, default=60.0, help="virtual seconds measured")
    parser.add_argument("--realtime", type=float, default=20.0, help="wall seconds; 0 skips")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--victims", type=int, default=5, help="stops per failover kind")
    parser.add_argument(
        "--split-brain", type=float, default=0.0, metavar="HOURS", help="count false reports"
    )
    args = parser.parse_args(argv)
    if args.split_brain > 0:
        return split_brain(args.split_brain * 3600.0, args.seed)
    logging.getLogger("leadership").setLevel(logging.ERROR)  # one split-brain line per scope
    clock = trio.testing.MockClock(autojump_threshold=0)
    wall0 = time.monotonic()
    result = trio.run(
        scenario, args.coordinators, args.scopes, args.steady, args.seed, args.victims, clock=clock
    )
    result["virtual_run_wall_s"] = round(time.monotonic() - wall0, 1)
    if args.realtime > 0:
        result.update(trio.run(realtime, args.coordinators, args.scopes, args.realtime))
    json.dump(result, sys.stdout, indent=2)
    sys.stdout.write("\n\n" + table(result) + "\n")
    return 0


def split_brain(seconds: float, seed: int) -> int:
    """False split-brain reports per run, without and with refuted suspicions."""
    logging.getLogger("leadership").setLevel(logging.ERROR)
    logging.getLogger("swimmesh").setLevel(logging.ERROR)
    runs = []
    for stalls in (0, int(seconds // 60)):
        clock = trio.testing.MockClock(autojump_threshold=0)
        runs.append(trio.run(split_brain_reports, seconds, 0.01, 5, seed, 4, stalls, clock=clock))
    json.dump(runs, sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
