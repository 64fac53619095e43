"""The ``swimmesh`` command line: ``demo`` and ``simulate`` (the agent and the ``mesh`` read
commands arrive with the network layer)."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from typing import Any

import trio

from . import __version__
from .config import PRESETS, MeshConfig
from .member import Member, MemberStatus
from .runtime import MeshNode
from .testing import MemoryNetwork, wait_for

EXIT_OK, EXIT_ERROR, EXIT_TIMEOUT = 0, 1, 2


def _table(members: Sequence[Member]) -> str:
    rows = [("Node", "Address", "Status", "Inc", "RTT (ms)", "Tags")]
    for m in sorted(members, key=lambda m: m.name):
        host, port = m.address
        rtt = f"{m.rtt_ms:.2f}" if m.rtt_ms is not None else "-"
        tags = ",".join(f"{k}={v}" for k, v in sorted(m.metadata.items()))
        rows.append((m.name, f"{host}:{port}", m.status.label, str(m.incarnation), rtt, tags))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows
    )


async def _demo(nodes: int, preset: str, seed: int, out: Any) -> int:
    """Start ``nodes`` nodes on an in-memory network in real time, then crash one and make
    another leave, printing what every node sees."""
    net = MemoryNetwork(seed=seed)
    net.set_latency(0.001, 0.0005)
    names = [f"node-{i}" for i in range(nodes)]
    running: dict[str, MeshNode] = {}
    scopes: dict[str, trio.CancelScope] = {}

    async def run(name: str, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        cfg = MeshConfig.from_preset(
            preset,
            name=name,
            bind=(name, 7946),
            seed=seed + len(running),
            metadata={"role": "demo", "index": name.split("-")[1]},
        )
        with trio.CancelScope() as scope:
            scopes[name] = scope
            async with MeshNode.open(cfg, net.endpoint(cfg.bind)) as node:
                running[name] = node
                task_status.started()
                await trio.sleep_forever()

    def everyone_sees(status: MemberStatus, about: str) -> bool:
        return all(
            (m := n.member(about)) is not None and m.status is status
            for k, n in running.items()
            if k != about
        )

    async with trio.open_nursery() as nursery:
        for name in names:
            await nursery.start(run, name)
        start = trio.current_time()
        for name in names[1:]:
            await running[name].join([(names[0], 7946)])
        took = await wait_for(
            lambda: all(len(n.alive_members()) == nodes for n in running.values()),
            timeout=30,
            what="mesh formation",
        )
        print(f"{nodes} nodes formed a mesh in {took * 1000:.0f} ms ({preset} preset)\n", file=out)
        print(_table(running[names[0]].members()), file=out)
        if nodes >= 3:
            victim, leaver = names[-1], names[-2]
            scopes[victim].cancel()
            del running[victim]
            took = await wait_for(
                lambda: everyone_sees(MemberStatus.DEAD, victim),
                timeout=60,
                what="failure detection",
            )
            print(f"\ncrashed {victim}: every node saw it Dead after {took:.2f} s", file=out)
            await running[leaver].leave()
            scopes[leaver].cancel()
            del running[leaver]
            took = await wait_for(
                lambda: everyone_sees(MemberStatus.LEFT, leaver), timeout=10, what="leave"
            )
            print(
                f"{leaver} left gracefully: every node saw it Left after {took * 1000:.0f} ms\n",
                file=out,
            )
            print(_table(running[names[0]].members()), file=out)
        print(f"\ndemo finished in {trio.current_time() - start:.1f} s", file=out)
        nursery.cancel_scope.cancel()
    return EXIT_OK


def _cmd_demo(args: argparse.Namespace) -> int:
    if args.nodes < 1 or args.nodes > 500:
        print("error: --nodes must be between 1 and 500", file=sys.stderr)
        return EXIT_ERROR
    try:
        return trio.run(_demo, args.nodes, args.preset, args.seed, sys.stdout)
    except TimeoutError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_TIMEOUT


def _cmd_simulate(args: argparse.Namespace) -> int:
    import attrs

    from simulations.lifeguard import simulate

    rows = []
    for lifeguard in (True, False):
        out = simulate(
            lifeguard, nodes=args.nodes, seconds=args.seconds, loss=args.loss, seed=args.seed
        )
        rows.append(attrs.asdict(out))
    if args.format == "json":
        print(json.dumps(rows, indent=2))
    else:
        print(f"{'lifeguard':>9} {'suspicions':>10} {'false DEAD':>10} {'refutations':>11}")
        for r in rows:
            print(
                f"{r['lifeguard']!s:>9} {r['false_suspicions']:>10} {r['false_deaths']:>10} "
                f"{r['refutations']:>11}"
            )
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="swimmesh", description="SWIM gossip mesh on Trio")
    parser.add_argument("--version", action="version", version=f"swimmesh {__version__}")
    parser.add_argument(
        "--log-level", default="warning", choices=["debug", "info", "warning", "error"]
    )
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="run a local in-process mesh and show detection and leave")
    demo.add_argument("--nodes", type=int, default=5)
    demo.add_argument("--preset", choices=sorted(PRESETS), default="fast")
    demo.add_argument("--seed", type=int, default=1)
    demo.set_defaults(func=_cmd_demo)

    simulate = sub.add_parser("simulate", help="run a scenario in virtual time")
    simulate.add_argument(
        "scenario",
        choices=["lifeguard"],
        help="lifeguard: loss + stalling nodes, with and without Lifeguard",
    )
    simulate.add_argument("--nodes", type=int, default=50)
    simulate.add_argument("--seconds", type=float, default=300.0)
    simulate.add_argument("--loss", type=float, default=0.10)
    simulate.add_argument("--seed", type=int, default=1)
    simulate.add_argument("--format", choices=["table", "json"], default="table")
    simulate.set_defaults(func=_cmd_simulate)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    result: int = args.func(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
