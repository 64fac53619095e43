"""Mutation testing of swimmesh/protocol, leadership (with leadership/quorum) and peerhealth.

Runs mutmut (configured under ``[tool.mutmut]`` in pyproject.toml: the fast test files, a
per-test timeout) on one worker at low priority, a fixed sample of each package's mutants
(every ``stride``-th mutant of each file, in name order), and prints JSON, then a table of kill
rates per package. Slow (about an hour); never part of ``scripts/test`` or CI. Changing the
test selection in pyproject.toml makes mutmut drop every cached result.

    pip install mutmut   # into the project's venv; not a test dependency
    python -m benchmarks.mutation --survivors          # every package, the default sample
    python -m benchmarks.mutation --package peerhealth --stride 1
    python -m benchmarks.mutation --mutant NAME        # one mutant (``mutmut show NAME``)
    python -m benchmarks.mutation --rerun-survivors --since main   # after adding tests
    python -m benchmarks.mutation --report-only --survivors   # re-read the last results
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import re
import subprocess
import sys
import time
from collections import defaultdict
from importlib.metadata import version
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = {
    "swimmesh/protocol": ("swimmesh.protocol.", 8),
    "leadership/quorum": ("leadership.quorum.", 16),
    "leadership": ("leadership.", 32),
    "peerhealth": ("peerhealth.", 8),
}
"""Package -> (mutant name prefix, default stride). ``leadership`` here is the rest of the
package, without ``leadership/quorum``. The strides keep one run of everything under an hour
on a busy 2-core machine (the coordinator's mutants run its whole-cluster tests); ``--stride
1`` runs every mutant."""

SENTINEL = "generate.only.no.such.mutant*"
_LINE = re.compile(r"^\s*(\S+): (.+)$")
_INDEX = re.compile(r"__mutmut_(\d+)$")


def _mutmut(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    cmd = ["nice", "-n", "15", sys.executable, "-m", "mutmut", *args]
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=check)


def generate() -> None:
    """Write mutants/ and collect which tests reach which function (mutmut caches both)."""
    done = _mutmut("run", "--max-children", "1", SENTINEL, check=False)
    if "nothing matches" not in done.stdout + done.stderr:
        sys.exit(f"mutant generation or the clean test run failed:\n{done.stdout[-4000:]}")


def results() -> dict[str, str]:
    """Every mutant's name and status (killed, survived, timeout, no tests, not checked...)."""
    out = _mutmut("results", "--all", "true").stdout
    return {m.group(1): m.group(2).strip() for m in map(_LINE.match, out.splitlines()) if m}


def _order(name: str) -> tuple[str, int]:
    m = _INDEX.search(name)
    return (name[: m.start()], int(m.group(1))) if m else (name, 0)


def _package_of(name: str) -> str | None:
    """The most specific package whose prefix ``name`` starts with."""
    found = [p for p, (prefix, _) in PACKAGES.items() if name.startswith(prefix)]
    return max(found, key=len) if found else None


def sample(names: list[str], package: str, stride: int) -> list[str]:
    """Every ``stride``-th mutant of each module of ``package``, first one included."""
    by_module: dict[str, list[str]] = defaultdict(list)
    for name in names:
        if _package_of(name) == package:
            by_module[name.split(".x", 1)[0]].append(name)
    picked: list[str] = []
    for module in sorted(by_module):
        picked += sorted(by_module[module], key=_order)[::stride]
    return picked


def run(names: list[str]) -> None:
    """Run exactly ``names`` (mutmut with no names would run every mutant)."""
    for i in range(0, len(names), 300):
        _mutmut("run", "--max-children", "1", *names[i : i + 300], check=False)


def added_tests(since: str) -> set[str]:
    """Names of the test functions added to tests/ since the git revision ``since``."""
    diff = subprocess.run(
        ["git", "diff", since, "--", "tests/"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    return set(re.findall(r"^\+(?:async )?def (test_\w+)", diff, re.MULTILINE))


def reached_by(names: list[str], tests: set[str]) -> list[str]:
    """The mutants whose function one of ``tests`` calls (mutmut's own call records); no
    other surviving mutant can be killed by them."""
    stats = json.loads((ROOT / "mutants" / "mutmut-stats.json").read_text(encoding="utf-8"))
    calls = stats["tests_by_mangled_function_name"]
    out = []
    for name in names:
        callers = calls.get(_INDEX.sub("", name), [])
        if any(c.split("::")[-1].split("[")[0] in tests for c in callers):
            out.append(name)
    return out


def tally(names: list[str], status: dict[str, str]) -> dict[str, Any]:
    counts: dict[str, int] = defaultdict(int)
    for name in names:
        counts[status.get(name, "not checked")] += 1
    killed = counts["killed"] + counts["caught by type check"]
    return {
        "mutants": len(names),
        "killed": killed,
        "survived": counts["survived"],
        "timeout": counts["timeout"],
        "no_tests": counts["no tests"],
        "other": len(names) - killed - counts["survived"] - counts["timeout"] - counts["no tests"],
        "kill_rate": round((killed + counts["timeout"]) / len(names), 3) if names else None,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--package", action="append", choices=sorted(PACKAGES))
    ap.add_argument("--stride", type=int, help="every N-th mutant per file (default per package)")
    ap.add_argument("--mutant", action="append", default=[], help="run these mutants only")
    ap.add_argument("--report-only", action="store_true", help="tally the last results only")
    ap.add_argument("--rerun-survivors", action="store_true", help="run the sample's survivors")
    ap.add_argument("--since", help="with --rerun-survivors: only those a test added since this "
                    "git revision reaches")
    ap.add_argument("--survivors", action="store_true", help="list surviving mutants too")
    args = ap.parse_args()
    if importlib.util.find_spec("mutmut") is None:
        sys.exit("mutmut is not installed: pip install mutmut (into this venv only)")

    start = time.monotonic()
    if not args.report_only:
        generate()
    status = results()
    chosen = {p: sample(list(status), p, args.stride or PACKAGES[p][1])
              for p in args.package or PACKAGES}
    if args.mutant:
        chosen = {"selected": args.mutant}
    if not args.report_only:
        for names in chosen.values():
            if args.rerun_survivors:  # after new tests: a killed mutant stays killed
                names = [n for n in names if status.get(n) in ("survived", "no tests")]
                if args.since:
                    names = reached_by(names, added_tests(args.since))
            elif not args.mutant:  # resume: what has a result keeps it
                names = [n for n in names if status.get(n, "not checked") == "not checked"]
            run(names)
        status = results()

    report: dict[str, Any] = {
        "tool": f"mutmut {version('mutmut')}",
        "date": time.strftime("%Y-%m-%d", time.gmtime()),
        "seconds": round(time.monotonic() - start),
        "packages": {},
    }
    for package, names in chosen.items():
        entry = tally(names, status)
        if package in PACKAGES:
            entry["stride"] = args.stride or PACKAGES[package][1]
            entry["total_mutants"] = sum(1 for n in status if _package_of(n) == package)
        else:
            entry["stride"], entry["total_mutants"] = 1, len(names)
        if args.survivors:
            entry["survivors"] = [n for n in names if status.get(n) in ("survived", "no tests")]
        report["packages"][package] = entry
    print(json.dumps(report, indent=2))
    print()
    print(f"{'package':<20}{'sample':>14}{'killed':>8}{'survived':>10}{'timeout':>9}"
          f"{'no test':>9}{'kill rate':>11}")
    for package, e in report["packages"].items():
        rate = f"{e['kill_rate']:.1%}" if e["kill_rate"] is not None else "-"
        size = f"{e['mutants']}/{e['total_mutants']}"
        print(f"{package:<20}{size:>14}{e['killed']:>8}{e['survived']:>10}{e['timeout']:>9}"
              f"{e['no_tests']:>9}{rate:>11}")


if __name__ == "__main__":
    main()
