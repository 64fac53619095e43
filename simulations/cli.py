"""``swimmesh simulate <scenario>`` (and ``python -m simulations``): flags, checks, output.

Bad options are one line on stderr naming the fix, exit 1 (2 for what argparse refuses). A run
whose safety checker found an overlap or a fence regression prints the offending intervals and
exits 1.
"""

from __future__ import annotations

import argparse
import importlib.util
import re
import sys
import time
from pathlib import Path
from typing import Any, NoReturn

from swimmesh.cli.base import quiet_logger
from swimmesh.config import PRESETS

from .harness import Options, SimulationError
from .scenarios import SCENARIOS, Scenario

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}
PLOTS_MISSING = "--plot needs matplotlib: pip install 'swimmesh[plots]'"


def duration(text: str) -> float:
    """``120s``, ``2m``, ``500ms``, ``1h`` or plain seconds."""
    m = _DURATION.match(text)
    if m is None or float(m.group(1)) <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive duration like 120s or 2m")
    return float(m.group(1)) * _UNITS[m.group(2)]


def latency(text: str) -> tuple[float, float]:
    """``MEAN[:JITTER]`` one-way delay, e.g. ``2ms:1ms`` (jitter at most the mean)."""
    mean_text, _, jitter_text = text.partition(":")
    try:
        mean = duration(mean_text) if mean_text.strip() not in ("0", "") else 0.0
        jitter = duration(jitter_text) if jitter_text.strip() not in ("0", "") else 0.0
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"{text!r} is not MEAN[:JITTER] like 2ms:1ms") from None
    if jitter > mean:
        raise argparse.ArgumentTypeError(f"{text!r}: the jitter must not exceed the mean")
    return mean, jitter


def split(text: str) -> tuple[int, ...]:
    """``60/40`` or ``40/30/30``: relative sizes of the partition's sides."""
    try:
        parts = tuple(int(p) for p in text.split("/"))
    except ValueError:
        parts = ()
    if len(parts) < 2 or any(p <= 0 for p in parts):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not two or more positive sizes like 60/40 or 40/30/30"
        )
    return parts


def one_line_errors(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Make ``parser`` report a bad argument in one line (no usage block)."""

    def error(message: str) -> NoReturn:
        parser.exit(2, f"error: {parser.prog}: {message}\n")

    parser.error = error  # type: ignore[method-assign]
    return parser


def add_scenarios(simulate: Any) -> None:
    """Add one sub-command per scenario to ``simulate`` (argparse sub-parsers)."""
    for scenario in SCENARIOS.values():
        p = one_line_errors(simulate.add_parser(scenario.name, help=scenario.summary))
        d = scenario.defaults
        p.add_argument(
            "--nodes",
            type=int,
            default=None,
            help=f"nodes, at least 2 (default {d.get('nodes', '50 and 200')})",
        )
        p.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
        p.add_argument(
            "--duration",
            type=duration,
            default=None,
            help=f"virtual time, e.g. 120s or 2m (default {d['duration']:g}s)",
        )
        p.add_argument("--preset", choices=sorted(PRESETS), default="lan", help="default lan")
        if scenario.name != "lifeguard-matrix":
            p.add_argument(
                "--loss",
                type=float,
                default=None,
                help=f"packet loss, a fraction in [0, 1) (default {d.get('loss', 0):g})",
            )
        p.add_argument(
            "--latency",
            type=latency,
            default=(0.002, 0.001),
            help="one-way delay MEAN[:JITTER] (default 2ms:1ms)",
        )
        if scenario.leadership:
            p.add_argument(
                "--quorum",
                choices=["static", "none"],
                default="none",
                help="static: the quorum lease store over the mesh; none: one in-memory store",
            )
            p.add_argument("--scopes", type=int, default=4, help="scopes elected (default 4)")
        if "split" in scenario.flags:
            p.add_argument(
                "--split", type=split, default=(50, 50), help="side sizes, e.g. 60/40 or 40/30/30"
            )
        if "runs" in scenario.flags:
            p.add_argument("--runs", type=int, default=1, help="runs per cell (default 1)")
        if "kills" in scenario.flags:
            p.add_argument("--kills", type=int, default=3, help="nodes crashed (default 3)")
        if "restart" in scenario.flags:
            p.add_argument("--restart", action="store_true", help="restart each with a new boot id")
        if "drift" in scenario.flags:
            p.add_argument(
                "--drift", type=float, default=0.02, help="clock rate error (default 0.02)"
            )
        if "stall_fraction" in scenario.flags:
            p.add_argument(
                "--stall-fraction",
                type=float,
                default=None,
                help=f"fraction of nodes that stall (default {d.get('stall_fraction', 0):g})",
            )
        if "inject" in scenario.flags:
            p.add_argument(
                "--inject",
                choices=["store-amnesia", "slow-clock"],
                default=None,
                help="a fault the safety checker must catch (negative control)",
            )
        if "start" in scenario.flags:
            p.add_argument(
                "--start",
                choices=["joined", "formed"],
                default="joined",
                help="joined: every node joins (N x N formation); formed: the mesh starts "
                "formed, nodes sharing their records (for 10,000 nodes; default joined)",
            )
        p.add_argument("--out", type=Path, default=None, help="write the JSON (and plots) here")
        p.add_argument("--plot", action="store_true", help="write PNG charts into --out (or .)")
        p.add_argument("--format", choices=["table", "json"], default="table")
        p.set_defaults(func=run_command, scenario_def=scenario)


def options_from(args: argparse.Namespace) -> Options:
    mean, jitter = args.latency
    return Options(
        nodes=args.nodes,
        seed=args.seed,
        duration=args.duration,
        preset=args.preset,
        loss=getattr(args, "loss", None),
        latency=mean,
        jitter=jitter,
        quorum=getattr(args, "quorum", "none"),
        split=getattr(args, "split", (50, 50)),
        runs=getattr(args, "runs", 1),
        kills=getattr(args, "kills", 3),
        restart=getattr(args, "restart", False),
        scopes=getattr(args, "scopes", 4),
        drift=getattr(args, "drift", 0.02),
        stall_fraction=getattr(args, "stall_fraction", None),
        inject=getattr(args, "inject", None),
        start=getattr(args, "start", "joined"),
    )


def check(scenario: Scenario, options: Options) -> None:
    """Refuse options no scenario can run with, in one line."""
    if options.nodes is not None and options.nodes < 2:
        raise SimulationError(
            f"--nodes must be at least 2 (got {options.nodes}): a mesh needs two members"
        )
    if options.loss is not None and not 0 <= options.loss < 1:
        raise SimulationError(
            f"--loss is a fraction in [0, 1) (got {options.loss:g}): e.g. 0.01 for 1%"
        )
    if options.scopes < 1:
        raise SimulationError(f"--scopes must be at least 1 (got {options.scopes})")
    if (
        scenario.name == "partition"
        and options.nodes is not None
        and len(options.split) > options.nodes
    ):
        raise SimulationError(
            f"--split has {len(options.split)} sides but there are only {options.nodes} nodes"
        )


def peak_rss_mb() -> float:
    """This process's peak resident memory so far, in MB (as the kernel counts it)."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def plots_available() -> bool:
    return importlib.util.find_spec("matplotlib") is not None


def run_command(args: argparse.Namespace) -> int:
    """Run the scenario the arguments name; print a table or JSON; write files; exit code."""
    from rich.console import Console

    from .progress import BarProgress
    from .report import json_path, print_tables, to_json

    scenario: Scenario = args.scenario_def
    try:
        options = scenario.resolve(options_from(args))
        check(scenario, options)
        if args.plot and not plots_available():
            raise SimulationError(PLOTS_MISSING)
        wall = time.perf_counter()
        # Split-brain warnings and the like are counted in the result, not one line each.
        with BarProgress() as progress, quiet_logger("leadership"), quiet_logger("swimmesh"):
            outcome = scenario.run(options, progress)
        wall = time.perf_counter() - wall
    except SimulationError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    text = to_json(outcome)
    written: list[Path] = []
    if args.out is not None or args.plot:
        out = args.out if args.out is not None else Path(".")
        try:
            out.mkdir(parents=True, exist_ok=True)
            if args.out is not None:
                path = json_path(out, outcome)
                path.write_text(text)
                written.append(path)
            if args.plot:
                from .plots import plot

                written += plot(outcome, out)
        except OSError as exc:
            print(f"error: cannot write to {out}: {exc.strerror or exc}", file=sys.stderr)
            return 1
    if args.format == "json":
        sys.stdout.write(text)
    else:
        console = Console()
        print_tables(outcome, console)
        nodes = options.nodes or 0
        peak = peak_rss_mb()
        per_node = f", {peak * 1024 / nodes:.0f} kB per simulated node" if nodes else ""
        console.print(
            f"wall time {wall:.1f} s, peak memory {peak:.0f} MB{per_node} "
            "(not part of the result, which replays exactly)"
        )
        for path in written:
            console.print(f"wrote {path}")
    safety = outcome.get("safety")
    if safety is not None and safety["verdict"] != "ok":
        print(f"safety violation: {safety['violation']}", file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m simulations <scenario> ...``: the same as ``swimmesh simulate``."""
    from swimmesh.cli import main as swimmesh_main

    return swimmesh_main(["simulate", *(argv if argv is not None else sys.argv[1:])])
