"""The argument parser of ``swimmesh`` and ``main``, which runs a command and maps its errors
to one line on stderr and an exit code."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from .. import __version__
from ..config import PRESETS
from ..logs import setup_logging
from .base import DEFAULT_URL, EXIT_INTERRUPTED, CliError, parse_timeout
from .commands import (
    cmd_agent,
    cmd_backpressure,
    cmd_health,
    cmd_keys,
    cmd_leaders,
    cmd_lease_health,
    cmd_peers_list,
    cmd_simulate_leadership,
    cmd_simulate_lifeguard,
    cmd_tls,
    cmd_voters,
)
from .demo import cmd_demo

LEVELS = ["debug", "info", "warning", "error"]


def _read_flags(p: argparse.ArgumentParser, token: bool = False) -> None:
    p.add_argument(
        "--url",
        "-u",
        default=os.environ.get("SWIMMESH_URL", DEFAULT_URL),
        help=f"control plane URL (default {DEFAULT_URL})",
    )
    p.add_argument(
        "--timeout", type=parse_timeout, default=10.0, help="e.g. 500ms, 5s, 1m (default 10s)"
    )
    p.add_argument("--format", choices=["table", "json"], default="table")
    if token:
        p.add_argument("--token", help="control token (default: $SWIMMESH_CONTROL_TOKEN)")


def _agent_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    agent = sub.add_parser("agent", help="run a node until SIGINT/SIGTERM")
    agent.add_argument("--node-id", help="node name (default mesh-<hostname>)")
    agent.add_argument("--bind", help="gossip address, UDP and stream (default 127.0.0.1:7946)")
    agent.add_argument("--advertise", help="address peers use to reach this node")
    agent.add_argument("--join", action="append", default=[], help="seed HOST:PORT (repeatable)")
    agent.add_argument("--control", help="control plane HOST:PORT (default 127.0.0.1:7947)")
    agent.add_argument("--preset", choices=sorted(PRESETS), help="timing preset (default lan)")
    agent.add_argument("--config", help="TOML or JSON configuration file")
    agent.add_argument("--key", help="base64 gossip key (see `swimmesh keys generate`)")
    agent.add_argument(
        "--keyring-file",
        help="JSON keyring file (created from --key if absent; once it exists it holds the keys)",
    )
    agent.add_argument(
        "--install-key",
        action="store_true",
        help="install --key into an existing keyring file that does not hold it (by default "
        "that is refused: the key was probably removed cluster-wide)",
    )
    agent.add_argument(
        "--insecure", action="store_true", help="allow unencrypted gossip off loopback"
    )
    agent.add_argument("--control-token", help="bearer token for mutating control endpoints")
    agent.add_argument("--data-dir", help="directory for the keyring and the peer snapshot")
    agent.add_argument("--cluster-label", help="label that keeps meshes apart")
    agent.add_argument("--log-level", dest="agent_log_level", choices=LEVELS)
    agent.add_argument("--log-format", choices=["text", "json"])
    agent.set_defaults(func=cmd_agent)


def _mesh_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    mesh = sub.add_parser("mesh", help="read an agent's control plane").add_subparsers(
        dest="mesh_command", required=True
    )
    peers = mesh.add_parser("peers", help="members").add_subparsers(
        dest="peers_command", required=True
    )
    plist = peers.add_parser("list", help="the members this agent knows")
    _read_flags(plist)
    plist.set_defaults(func=cmd_peers_list)
    lh = mesh.add_parser(
        "lease-health", help="per-peer lease health (/omnirelay/control/lease-health)"
    )
    _read_flags(lh)
    lh.set_defaults(func=cmd_lease_health)
    leaders = mesh.add_parser("leaders", help="leadership").add_subparsers(
        dest="leaders_command", required=True
    )
    status = leaders.add_parser("status", help="current leaders per scope (/control/leaders)")
    _read_flags(status)
    status.add_argument("--scope", default=None, help="one scope (exact, any case)")
    status.add_argument(
        "--watch", action="store_true", help="stream leadership events until Ctrl+C (exit 0)"
    )
    status.set_defaults(func=cmd_leaders)
    health = mesh.add_parser(
        "health", help="this node's fitness to lead (/control/health)"
    ).add_subparsers(dest="health_command", required=True)
    hshow = health.add_parser("show", help="healthy or not, and the scopes it leads")
    _read_flags(hshow)
    hshow.set_defaults(func=cmd_health)
    hset = health.add_parser(
        "set", help="report health: unhealthy steps down from every scope and stops campaigning"
    )
    state = hset.add_mutually_exclusive_group(required=True)
    state.add_argument("--healthy", dest="healthy", action="store_true", default=None)
    state.add_argument("--unhealthy", dest="healthy", action="store_false")
    hset.add_argument("--reason", default="", help="why (shown in logs and events)")
    _read_flags(hset, token=True)
    hset.set_defaults(func=cmd_health)
    voters = mesh.add_parser(
        "voters", help="the voter set of the quorum lease store (/control/voters)"
    ).add_subparsers(dest="voters_command", required=True)
    vlist = voters.add_parser("list", help="the newest voter configuration this agent knows")
    _read_flags(vlist)
    vlist.set_defaults(func=cmd_voters)
    for op, text in (
        ("add", "add one voter (it inherits the promised terms; start it with --data-dir)"),
        ("remove", "remove one voter (nothing leaves the set implicitly, not even a dead node)"),
    ):
        vp = voters.add_parser(op, help=text)
        vp.add_argument("node", help="node id")
        _read_flags(vp, token=True)
        vp.set_defaults(func=cmd_voters)
    bp = mesh.add_parser("backpressure", help="the agent's backpressure signal")
    _read_flags(bp)
    bp.add_argument("--watch", action="store_true", help="stream signals until Ctrl+C (exit 0)")
    bp.set_defaults(func=cmd_backpressure)


def _keys_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    keys = sub.add_parser("keys", help="gossip encryption keys").add_subparsers(
        dest="keys_command", required=True
    )
    keys.add_parser("generate", help="print a new random key").set_defaults(func=cmd_keys)
    klist = keys.add_parser("list", help="keys installed on the agent")
    _read_flags(klist, token=True)
    klist.set_defaults(func=cmd_keys)
    for op, text in (
        ("install", "install a key on every member"),
        ("use", "make a key primary everywhere"),
        ("remove", "remove a key everywhere"),
    ):
        kp = keys.add_parser(op, help=text)
        kp.add_argument("key")
        _read_flags(kp, token=True)
        kp.set_defaults(func=cmd_keys)


def _tls_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    tls = sub.add_parser("tls", help="development certificates").add_subparsers(
        dest="tls_command", required=True
    )
    ca = tls.add_parser("ca", help="create a CA (ca.pem, ca-key.pem)")
    ca.add_argument(
        "--out", default=".", help="directory to write ca.pem and ca-key.pem into (default .)"
    )
    ca.add_argument(
        "--force",
        action="store_true",
        help="replace an existing CA (certificates it signed stop verifying)",
    )
    ca.set_defaults(func=cmd_tls)
    cert = tls.add_parser("cert", help="create a node certificate signed by the CA")
    cert.add_argument("name", help="node name: the certificate's CN and first SAN")
    cert.add_argument(
        "--ca-dir",
        default=".",
        help="directory holding ca.pem and ca-key.pem from `swimmesh tls ca` (default .)",
    )
    cert.add_argument(
        "--out", default=".", help="directory to write NAME.pem and NAME-key.pem into (default .)"
    )
    cert.add_argument(
        "--host", action="append", default=[], help="extra SAN: DNS name or IP (repeatable)"
    )
    cert.set_defaults(func=cmd_tls)


def _simulate_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from simulations.cli import add_scenarios, one_line_errors

    parent = one_line_errors(sub.add_parser("simulate", help="run a scenario in virtual time"))
    simulate = parent.add_subparsers(dest="scenario", required=True)
    lifeguard = simulate.add_parser(
        "lifeguard", help="loss and stalling nodes, with and without Lifeguard"
    )
    lifeguard.add_argument("--nodes", type=int, default=50, help="nodes (default 50, >= 2)")
    lifeguard.add_argument(
        "--seconds", type=float, default=300.0, help="virtual seconds (default 300)"
    )
    lifeguard.add_argument(
        "--loss", type=float, default=0.10, help="packet loss, a fraction in [0, 1) (default 0.1)"
    )
    lifeguard.set_defaults(func=cmd_simulate_lifeguard)
    leadership = simulate.add_parser(
        "leadership",
        help="coordinators on the in-memory store: cold start, crash and graceful failover",
    )
    leadership.add_argument("--nodes", type=int, default=20, help="coordinators (default 20)")
    leadership.add_argument(
        "--seconds", type=float, default=60.0, help="steady-state seconds measured (default 60)"
    )
    leadership.add_argument("--scopes", type=int, default=1000, help="shard scopes (default 1000)")
    leadership.add_argument(
        "--victims", type=int, default=5, help="stops per failover kind (default 5)"
    )
    leadership.set_defaults(func=cmd_simulate_leadership)
    for scenario in (lifeguard, leadership):
        scenario.add_argument("--seed", type=int, default=1)
        scenario.add_argument("--format", choices=["table", "json"], default="table")
    add_scenarios(simulate)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="swimmesh", description="SWIM gossip mesh on Trio")
    parser.add_argument("--version", action="version", version=f"swimmesh {__version__}")
    parser.add_argument("--log-level", default="warning", choices=LEVELS)
    sub = parser.add_subparsers(dest="command", required=True)
    _agent_parser(sub)
    demo = sub.add_parser("demo", help="start local agent processes and show detection and leave")
    demo.add_argument("--nodes", type=int, default=3)
    demo.add_argument("--preset", choices=sorted(PRESETS), default="fast")
    demo.add_argument(
        "--keep", action="store_true", help="keep the agents running until Ctrl+C (exit 0)"
    )
    demo.add_argument(
        "--in-process",
        action="store_true",
        help="nodes and leadership coordinators in this process on the in-memory network",
    )
    demo.add_argument("--seed", type=int, default=1, help="random seed (--in-process)")
    demo.set_defaults(func=cmd_demo)
    _mesh_parser(sub)
    _keys_parser(sub)
    _tls_parser(sub)
    _simulate_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; errors are one line on stderr. Exit codes: 0 ok (a ``--watch`` ended
    with Ctrl+C included), 1 error, 2 timeout, 130 another command interrupted by Ctrl+C."""
    args = build_parser().parse_args(argv)
    if args.command != "agent":
        setup_logging(args.log_level)
    try:
        result: int = args.func(args)
    except CliError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.code
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    return result
