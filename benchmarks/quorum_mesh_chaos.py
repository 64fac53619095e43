"""Chaos over real SWIM nodes and the real quorum store, many seeds: the mesh-level safety run.

Each seed runs ``simulations.quorum_mesh.chaos`` (5 nodes, 3 voters, 6 scopes, 90 virtual
seconds of random partitions, crashes and restarts, stalls, and clocks up to 4% off in rate)
under a mock clock, in worker processes. Prints JSON, then a table: seeds run, seeds with two
leaders at once or a fence that went back, samples taken, and wall time per seed.

    python -m benchmarks.quorum_mesh_chaos --seeds 200 --workers 2
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from multiprocessing import Pool
from pathlib import Path
from typing import Any

import trio
import trio.testing

from simulations.quorum_mesh import chaos


def one(seed: int) -> dict[str, Any]:
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="swimmesh-chaos-") as data:
        sampler = trio.run(
            chaos, seed, Path(data), clock=trio.testing.MockClock(autojump_threshold=0)
        )
    return {
        "seed": seed,
        "overlaps": sampler.overlaps[:3],
        "regressions": sampler.regressions[:3],
        "samples": sampler.samples,
        "wall_s": round(time.monotonic() - started, 2),
    }


def run(first: int, seeds: int, workers: int) -> dict[str, Any]:
    results = []
    with Pool(workers) as pool:
        for result in pool.imap_unordered(one, range(first, first + seeds)):
            results.append(result)
            bad = "ok"
            if result["overlaps"] or result["regressions"]:
                bad = "TWO LEADERS" if result["overlaps"] else "fence went back"
            print(
                f"seed {result['seed']}: {bad} ({result['wall_s']} s; {len(results)}/{seeds})",
                file=sys.stderr,
                flush=True,
            )
    results.sort(key=lambda r: r["seed"])
    walls = [r["wall_s"] for r in results]
    return {
        "config": {"first_seed": first, "seeds": seeds, "workers": workers},
        "seeds_run": len(results),
        "seeds_with_two_leaders": [r["seed"] for r in results if r["overlaps"]],
        "seeds_with_fence_regressions": [r["seed"] for r in results if r["regressions"]],
        "examples": [r for r in results if r["overlaps"] or r["regressions"]][:5],
        "samples": sum(r["samples"] for r in results),
        "wall_s_per_seed": {
            "median": round(statistics.median(walls), 2),
            "min": min(walls),
            "max": max(walls),
        },
    }


def table(result: dict[str, Any]) -> str:
    wall = result["wall_s_per_seed"]
    return "\n".join(
        [
            f"{'seeds':<10} {'two leaders':>12} {'fence back':>11} {'samples':>10} "
            f"{'wall/seed (median, min-max)':>28}",
            f"{result['seeds_run']:<10} {len(result['seeds_with_two_leaders']):>12} "
            f"{len(result['seeds_with_fence_regressions']):>11} {result['samples']:>10} "
            f"{wall['median']:>14} s ({wall['min']}-{wall['max']})",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=100)
    parser.add_argument("--first", type=int, default=0, help="first seed")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args(argv)
    result = run(args.first, args.seeds, args.workers)
    print(json.dumps(result, indent=2))
    print(table(result))
    bad = result["seeds_with_two_leaders"] or result["seeds_with_fence_regressions"]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
