"""Randomized schedules against the real quorum voter and candidate: the safety budget run.

Runs every variant of ``simulations.quorum_schedules`` (the full rule set with 3 and 5 voters,
and each broken variant that removes one rule) over many seeds on two worker processes. Prints
JSON, then a table: schedules run, schedules with a violation by kind, and the first failing
seeds (replay one with ``run_schedule(variant, seed)``).

    python -m benchmarks.quorum_schedules --seeds 1000
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from multiprocessing import Pool
from typing import Any

from simulations.quorum_schedules import VARIANTS, run_schedule


def _chunk(args: tuple[str, int, int]) -> dict[str, Any]:
    variant, lo, hi = args
    kinds: dict[str, int] = {}
    failing: list[int] = []
    stats: dict[str, int] = {}
    for seed in range(lo, hi):
        result = run_schedule(variant, seed)
        for key, value in result.stats.items():
            stats[key] = stats.get(key, 0) + value
        if result.violations:
            failing.append(seed)
            for kind in {v.kind for v in result.violations}:
                kinds[kind] = kinds.get(kind, 0) + 1
    return {"failing": failing, "kinds": kinds, "stats": stats}


def run(variants: list[str], seeds: int, broken_seeds: int, workers: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    with Pool(workers) as pool:
        for name in variants:
            variant = VARIANTS[name]
            n = seeds if variant.expect_safe else broken_seeds
            step = max(1, n // (workers * 4))
            chunks = [(name, lo, min(n, lo + step)) for lo in range(0, n, step)]
            cpu0 = time.monotonic()
            parts = pool.map(_chunk, chunks)
            failing = sorted(s for p in parts for s in p["failing"])
            kinds: dict[str, int] = {}
            stats: dict[str, int] = {}
            for p in parts:
                for k, v in p["kinds"].items():
                    kinds[k] = kinds.get(k, 0) + v
                for k, v in p["stats"].items():
                    stats[k] = stats.get(k, 0) + v
            caught = bool(failing)
            verdict = "OK" if caught != variant.expect_safe else "UNEXPECTED"
            if variant.rare and not caught:
                verdict = "rare (see its scenario test)"
            out[name] = {
                "about": variant.about,
                "expect": "safe" if variant.expect_safe else "unsafe",
                "schedules": n,
                "failing_schedules": len(failing),
                "violations_by_kind": kinds,
                "first_failing_seeds": failing[:8],
                "verdict": verdict,
                "wall_s": round(time.monotonic() - cpu0, 1),
                "totals": stats,
            }
    return out


def table(result: dict[str, Any]) -> str:
    rows = [f"{'variant':<20} {'expect':<7} {'runs':>6} {'failing':>8}  {'kinds':<40} verdict"]
    for name, r in result.items():
        kinds = ", ".join(f"{k} {v}" for k, v in sorted(r["violations_by_kind"].items())) or "-"
        rows.append(
            f"{name:<20} {r['expect']:<7} {r['schedules']:>6} {r['failing_schedules']:>8}  "
            f"{kinds:<40} {r['verdict']}"
        )
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=1000, help="schedules per safe variant")
    parser.add_argument(
        "--broken-seeds", type=int, default=2000, help="schedules per broken variant"
    )
    parser.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated names")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args(argv)
    names = [v for v in args.variants.split(",") if v]
    unknown = [v for v in names if v not in VARIANTS]
    if unknown:
        parser.error(f"unknown variant(s) {', '.join(unknown)}; known: {', '.join(VARIANTS)}")
    result = run(names, args.seeds, args.broken_seeds, args.workers)
    json.dump(result, sys.stdout, indent=2)
    print()
    print(table(result))
    return 0 if all(r["verdict"] != "UNEXPECTED" for r in result.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
