"""``swimmesh demo``: real agent processes on 127.0.0.1, or with ``--in-process`` the scenario
of :mod:`swimmesh.cli.inprocess`. Both run in real time (they are meant to be watched)."""

from __future__ import annotations

import argparse
import json
import signal
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import trio

from .base import EXIT_OK, EXIT_TIMEOUT, CliError, quiet_logger
from .http import call
from .render import leaders_table, peers_table

SCOPE = "global-control"


def _leader(doc: Any) -> tuple[str, int] | None:
    for token in (doc or {}).get("tokens", []):
        if token.get("scope") == SCOPE:
            return str(token["leaderId"]), int(token["fenceToken"])
    return None


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
    scratch = tempfile.TemporaryDirectory(prefix="swimmesh-demo-")
    voters = names[:3] if args.nodes >= 3 else []
    config = Path(scratch.name) / "swimmesh.toml"
    if voters:  # elections across the agents: the first three vote
        config.write_text(
            f"[mesh.leadership]\nvoters = {json.dumps(voters)}\n"
            'leaseDuration = "2s"\nrenewalLeadTime = "1s"\n'
        )

    def flags(name: str) -> list[str]:
        if not voters:
            return []
        return ["--config", str(config), "--data-dir", str(Path(scratch.name) / name)]

    try:
        first = agents.start(names[0], *flags(names[0]), preset=args.preset)
        for name in names[1:]:
            agents.start(name, "--join", first["gossip"], *flags(name), preset=args.preset)
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

        def agreed(not_leader: str | None = None) -> tuple[str, int] | None:
            docs = [call("GET", agents.url(n), "/control/leaders", 5) for n in agents.live()]
            seen = {_leader(doc) for doc in docs}
            found = seen.pop() if len(seen) == 1 else None
            return found if found is not None and found[0] != not_leader else None

        def granting(name: str) -> bool:
            doc = call("GET", agents.url(name), "/control/voters", 5) or {}
            local = doc.get("local") if isinstance(doc, dict) else None
            return isinstance(local, dict) and local.get("granting") is True

        victim, leaver, old_fence = names[-1], names[-2], 0
        if voters:
            took = _wait(lambda: agreed() is not None, 30, "an elected leader")
            print(f"\nvoters {', '.join(voters)} elected a leader in {took * 1000:.0f} ms:\n")
            print(leaders_table(call("GET", urls[0], "/control/leaders", 5)))
            # A voter that starts blank first learns the others' promised terms (it cannot tell
            # a new mesh from a lost data directory); killed before that, the leader would
            # leave one voter of three granting, and nobody could be elected.
            _wait(lambda: all(granting(v) for v in voters), 30, "every voter granting")
            current = agreed()
            if current is not None:  # the leader is the one to kill
                victim, old_fence = current
                leaver = next(n for n in reversed(names) if n != victim)
        if args.nodes >= 3 and not args.keep:
            agents.kill(victim, signal.SIGKILL)
            took = _wait(
                lambda: all(agents.peers(n).get(victim) == "Dead" for n in agents.live()),
                60,
                "failure detection",
            )
            print(f"\nkill -9 {victim}: every agent saw it Dead after {took:.2f} s")
            if voters:
                start = time.monotonic()
                _wait(lambda: agreed(victim) is not None, 30, "a new leader")
                took = time.monotonic() - start
                new = agreed(victim) or ("?", 0)
                print(
                    f"every agent agreed on the new leader {new[0]} (fence {new[1]}, up from "
                    f"{old_fence}) within {took:.2f} s more"
                )
            agents.kill(leaver, signal.SIGTERM)
            took = _wait(
                lambda: all(agents.peers(n).get(leaver) == "Left" for n in agents.live()),
                10,
                "leave",
            )
            print(f"SIGTERM {leaver}: every agent saw it Left after {took * 1000:.0f} ms\n")
            survivor = agents.url(agents.live()[0])
            print(peers_table(call("GET", survivor, "/control/peers", 5)))
        if args.keep:
            print("\nagents keep running; Ctrl+C stops them")
            try:
                while True:
                    time.sleep(3600)
            except KeyboardInterrupt:
                pass  # Ctrl+C is how --keep ends: a normal exit
    finally:
        agents.stop_all(signal.SIGTERM)
        scratch.cleanup()
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
