"""``swimmesh demo``: real agent processes on 127.0.0.1, or with ``--in-process`` the scenario
of :mod:`swimmesh.cli.inprocess`. Both run in real time (they are meant to be watched)."""

from __future__ import annotations

import argparse
import signal
import time
from collections.abc import Callable

import trio

from .base import EXIT_OK, EXIT_TIMEOUT, CliError, quiet_logger
from .http import call
from .render import peers_table


def _wait(condition: Callable[[], bool], timeout: float, what: str) -> float:
    from ..testing import wait_until

    try:
        return wait_until(condition, timeout, what)
    except TimeoutError as exc:
        raise CliError(str(exc), EXIT_TIMEOUT) from None


def _demo_agents(args: argparse.Namespace) -> int:
    from ..testing import AgentProcesses

    agents = AgentProcesses()
    names = [f"node-{i}" for i in range(args.nodes)]
    try:
        first = agents.start(names[0], preset=args.preset)
        for name in names[1:]:
            agents.start(name, "--join", first["gossip"], preset=args.preset)
        took = _wait(
            lambda: all(list(agents.peers(n).values()).count("Alive") == args.nodes for n in names),
            30,
            "mesh formation",
        )
        urls = [agents.url(n) for n in names]
        print(
            f"{args.nodes} agents on 127.0.0.1 formed a mesh in {took * 1000:.0f} ms "
            f"({args.preset} preset); control planes: {', '.join(urls)}\n"
        )
        print(peers_table(call("GET", urls[0], "/control/peers", 5)))
        if args.nodes >= 3 and not args.keep:
            victim, leaver = names[-1], names[-2]
            agents.kill(victim, signal.SIGKILL)
            took = _wait(
                lambda: all(agents.peers(n).get(victim) == "Dead" for n in agents.live()),
                60,
                "failure detection",
            )
            print(f"\nkill -9 {victim}: every agent saw it Dead after {took:.2f} s")
            agents.kill(leaver, signal.SIGTERM)
            took = _wait(
                lambda: all(agents.peers(n).get(leaver) == "Left" for n in agents.live()),
                10,
                "leave",
            )
            print(f"SIGTERM {leaver}: every agent saw it Left after {took * 1000:.0f} ms\n")
            print(peers_table(call("GET", urls[0], "/control/peers", 5)))
        if args.keep:
            print("\nagents keep running; Ctrl+C stops them")
            try:
                while True:
                    time.sleep(3600)
            except KeyboardInterrupt:
                pass  # Ctrl+C is how --keep ends: a normal exit
    finally:
        agents.stop_all(signal.SIGTERM)
    return EXIT_OK


def cmd_demo(args: argparse.Namespace) -> int:
    if not 1 <= args.nodes <= (500 if args.in_process else 50):
        raise CliError("--nodes must be between 1 and 50 (500 with --in-process)")
    if args.in_process:
        from .inprocess import in_process_demo

        try:
            with quiet_logger("leadership"):  # split brain is counted and explained instead
                trio.run(in_process_demo, args.nodes, args.preset, args.seed, print)
        except TimeoutError as exc:
            raise CliError(str(exc), EXIT_TIMEOUT) from None
        return EXIT_OK
    return _demo_agents(args)
