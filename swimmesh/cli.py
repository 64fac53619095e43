"""The ``swimmesh`` command line.

``agent`` runs a node; ``demo`` starts a local mesh of agents; ``mesh peers list`` reads an
agent's control plane; ``keys`` and ``tls`` manage secrets; ``simulate`` runs scenarios.
Exit codes: 0 ok, 1 error, 2 timeout.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import trio

from . import __version__
from .agentconfig import load_settings, parse_duration
from .config import PRESETS, ConfigError, MeshConfig
from .crypto import KeyringError, decode_key, encode_key, generate_key
from .errors import SwimmeshError
from .logs import setup_logging
from .member import Member, MemberStatus

EXIT_OK, EXIT_ERROR, EXIT_TIMEOUT = 0, 1, 2
DEFAULT_URL = "http://127.0.0.1:7947"


class CliError(SwimmeshError):
    def __init__(self, message: str, code: int = EXIT_ERROR) -> None:
        super().__init__(message)
        self.code = code


# -- HTTP helpers -----------------------------------------------------------------------------


def _timeout(text: str) -> float:
    try:
        return parse_duration(text, "--timeout")
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _call(
    method: str, url: str, path: str, timeout: float, token: str | None = None, body: Any = None
) -> Any:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        response = httpx.request(
            method, url.rstrip("/") + path, json=body, headers=headers, timeout=timeout
        )
    except httpx.TimeoutException:
        raise CliError(f"timed out after {timeout:g}s talking to {url}", EXIT_TIMEOUT) from None
    except httpx.HTTPError as exc:
        raise CliError(f"cannot reach {url}: {exc}") from None
    try:
        data = response.json() if response.content else None
    except ValueError:
        raise CliError(
            f"{url}{path} answered {response.status_code} with non-JSON content"
        ) from None
    if response.status_code >= 400 and not (isinstance(data, dict) and "failed" in data):
        message = data.get("error") if isinstance(data, dict) else response.text
        raise CliError(f"{url}{path}: HTTP {response.status_code}: {message}")
    return data


def _render(rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows
    )


def _utc(text: str, fmt: str) -> str:
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except (TypeError, ValueError):
        return str(text)
    return moment.astimezone(UTC).strftime(fmt)


def leaders_table(doc: dict[str, Any]) -> str:
    """OmniRelay's ``mesh leaders status`` snapshot: fixed columns, rows sorted by scope."""
    lines = [f"Generated at: {doc.get('generatedAt', '')}", ""]
    tokens = sorted(doc.get("tokens") or [], key=lambda t: str(t.get("scope", "")))
    if not tokens:
        return "\n".join([*lines, "No active leaders."])
    widths = (32, 20, 6, 6, 24, 12)
    header = ("Scope", "Leader", "Term", "Fence", "Expires (UTC)", "Kind")
    lines.append("".join(h.ljust(w) for h, w in zip(header, widths, strict=True)).rstrip())
    for t in tokens:
        cells = (
            str(t.get("scope", "")),
            str(t.get("leaderId", "")),
            str(t.get("term", "")),
            str(t.get("fenceToken", "")),
            _utc(str(t.get("expiresAt", "")), "%Y-%m-%d %H:%M:%SZ"),
            str(t.get("scopeKind", "")),
        )
        lines.append("".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip())
    return "\n".join(lines)


def peers_table(doc: dict[str, Any]) -> str:
    rows = [
        [
            "Node",
            "Address",
            "Status",
            "Inc",
            "RTT (ms)",
            "Role",
            "Cluster",
            "Region",
            "Version",
            "Tags",
        ]
    ]
    for p in doc.get("peers", []):
        md = p.get("metadata") or {}
        labels = md.get("labels") or {}
        rtt = p.get("rttMs")
        rows.append(
            [
                str(p.get("nodeId")),
                str(p.get("address", md.get("endpoint", ""))),
                str(p.get("status")),
                str(p.get("incarnation", "")),
                "-" if rtt is None else f"{rtt:.2f}",
                md.get("role") or "-",
                md.get("clusterId") or "-",
                md.get("region") or "-",
                md.get("meshVersion") or "-",
                ",".join(f"{k}={v}" for k, v in sorted(labels.items())),
            ]
        )
    return _render(rows)


# -- commands ---------------------------------------------------------------------------------


def _cmd_agent(args: argparse.Namespace) -> int:
    from .agent import AgentError, print_ready, run_agent

    flags = {
        "node_id": args.node_id,
        "bind": args.bind,
        "advertise": args.advertise,
        "join": args.join,
        "control": args.control,
        "preset": args.preset,
        "key": args.key,
        "keyring_file": args.keyring_file,
        "insecure": True if args.insecure else None,
        "control_token": args.control_token,
        "data_dir": args.data_dir,
        "log_level": args.agent_log_level,
        "log_format": args.log_format,
        "cluster_label": args.cluster_label,
    }
    try:
        settings = load_settings(args.config, os.environ, flags)
        setup_logging(settings.log_level, settings.log_format)
        reason = trio.run(lambda: run_agent(settings, announce=print_ready))
    except (ConfigError, AgentError, KeyringError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except OSError as exc:
        print(f"error: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_ERROR
    logging.getLogger("swimmesh.agent").info("agent stopped", extra={"reason": reason})
    return EXIT_OK


def _cmd_peers_list(args: argparse.Namespace) -> int:
    doc = _call("GET", args.url, "/control/peers", args.timeout)
    print(json.dumps(doc, indent=2) if args.format == "json" else peers_table(doc))
    return EXIT_OK


def lease_health_table(doc: dict[str, Any]) -> str:
    rows = [
        [
            "Peer",
            "Healthy",
            "Last heartbeat",
            "Last disconnect",
            "Assigned",
            "Pending",
            "Leases",
            "Role",
            "Reason",
        ]
    ]
    for p in doc.get("peers", []):
        md = p.get("metadata") or {}
        rows.append(
            [
                str(p["peerId"]),
                "yes" if p.get("isHealthy") else "NO",
                p.get("lastHeartbeat", "-"),
                p.get("lastDisconnect", "-"),
                str(p.get("activeAssignments", 0)),
                str(p.get("pendingReassignments", 0)),
                str(len(p.get("activeLeases", []))),
                md.get("mesh.role", "-"),
                md.get("disconnect.reason", "-"),
            ]
        )
    s = doc.get("summary", {})
    footer = (
        f"\n{s.get('eligiblePeers', 0)} eligible, {s.get('unhealthyPeers', 0)} unhealthy, "
        f"{s.get('pendingReassignments', 0)} pending reassignments"
    )
    errors = "".join(
        f"\nprovider {e['provider']} failed: {e['error']}" for e in doc.get("providerErrors", [])
    )
    return _render(rows) + footer + errors


def _cmd_lease_health(args: argparse.Namespace) -> int:
    doc = _call("GET", args.url, "/omnirelay/control/lease-health", args.timeout)
    print(json.dumps(doc, indent=2) if args.format == "json" else lease_health_table(doc))
    return EXIT_OK


def _signal_line(doc: dict[str, Any]) -> str:
    state = "ACTIVE" if doc["isActive"] else "inactive"
    return (
        f"{doc['observedAt']}  {state:<8} pending={doc['pendingCount']} "
        f"high={doc['highWatermark']} low={doc['lowWatermark']}"
    )


def _event_line(doc: dict[str, Any]) -> str:
    """OmniRelay's watch line: ``[HH:mm:ss] KIND scope=... leader=... term=... fence=...``."""
    token = doc.get("token") or {}
    return (
        f"[{_utc(str(doc.get('occurredAt', '')), '%H:%M:%S')}] "
        f"{str(doc.get('eventKind', '')).upper()} scope={doc.get('scope')} "
        f"leader={doc.get('leaderId') or '-'} term={token.get('term', '-')} "
        f"fence={token.get('fenceToken', '-')} "
        f"expires={_utc(str(token.get('expiresAt', '-')), '%H:%M:%SZ')} "
        f"reason={doc.get('reason', '')}"
    )


def _cmd_leaders(args: argparse.Namespace) -> int:
    query = {"scope": args.scope} if args.scope else {}
    if not args.watch:
        path = "/control/leaders" + (f"?{httpx.QueryParams(query)}" if query else "")
        doc = _call("GET", args.url, path, args.timeout)
        print(json.dumps(doc, indent=2) if args.format == "json" else leaders_table(doc))
        return EXIT_OK
    print(
        f"Streaming leadership events from {args.url} (scope={args.scope or '*'}). "
        "Press Ctrl+C to exit."
    )

    def data(line: str) -> Any:
        return json.loads(line.removeprefix("data:")) if line.startswith("data:") else None

    return _follow(args, "/control/events/leadership", query, data, _event_line)


def _follow(
    args: argparse.Namespace,
    path: str,
    params: dict[str, str],
    parse: Callable[[str], Any],
    render: Callable[[Any], str],
) -> int:
    """Print each document of a streamed response until it ends or Ctrl+C; ``parse`` turns a
    line into a document (None to skip it)."""
    url = args.url.rstrip("/") + path
    try:
        with httpx.stream(
            "GET", url, params=params, timeout=httpx.Timeout(args.timeout, read=None)
        ) as response:
            if response.status_code >= 400:
                raise CliError(f"{url}: HTTP {response.status_code}")
            for line in response.iter_lines():
                doc = parse(line)
                if doc is not None:
                    print(json.dumps(doc) if args.format == "json" else render(doc), flush=True)
    except httpx.TimeoutException:
        raise CliError(f"timed out connecting to {args.url}", EXIT_TIMEOUT) from None
    except httpx.HTTPError as exc:
        raise CliError(f"cannot reach {args.url}: {exc}") from None
    return EXIT_OK


def _cmd_backpressure(args: argparse.Namespace) -> int:
    if not args.watch:
        doc = _call("GET", args.url, "/omnirelay/control/backpressure", args.timeout)
        if doc is None:
            print("{}" if args.format == "json" else "no backpressure signal yet")
        else:
            print(json.dumps(doc, indent=2) if args.format == "json" else _signal_line(doc))
        return EXIT_OK
    print(f"Streaming backpressure signals from {args.url}. Press Ctrl+C to exit.", file=sys.stderr)
    return _follow(
        args,
        "/omnirelay/control/backpressure/stream",
        {},
        lambda line: json.loads(line) if line.strip() else None,
        _signal_line,
    )


def _token(args: argparse.Namespace) -> str | None:
    token: str | None = args.token or os.environ.get("SWIMMESH_CONTROL_TOKEN")
    return token


def _cmd_keys(args: argparse.Namespace) -> int:
    if args.keys_command == "generate":
        print(encode_key(generate_key()))
        return EXIT_OK
    if args.keys_command == "list":
        doc = _call("GET", args.url, "/control/keys", args.timeout, _token(args))
        if args.format == "json":
            print(json.dumps(doc, indent=2))
        elif not doc.get("encrypted"):
            print("gossip encryption is not enabled")
        else:
            for key in doc["keys"]:
                print(f"{key}{'  (primary)' if key == doc['primary'] else ''}")
        return EXIT_OK
    try:
        decode_key(args.key)
    except KeyringError as exc:
        raise CliError(str(exc)) from None
    doc = _call(
        "POST",
        args.url,
        f"/control/keys/{args.keys_command}",
        args.timeout,
        _token(args),
        {"key": args.key},
    )
    if args.format == "json":
        print(json.dumps(doc, indent=2))
    else:
        print(f"{doc['op']}: {doc['succeeded']}/{doc['members']} members")
        for name, error in sorted(doc["failed"].items()):
            print(f"  {name}: {error}")
    return EXIT_OK if not doc["failed"] else EXIT_ERROR


def _cmd_tls(args: argparse.Namespace) -> int:
    from .devcerts import create_ca, create_cert

    out = Path(args.out)
    if args.tls_command == "ca":
        cert, key = create_ca(out)
        print(f"wrote {cert} and {key}")
    else:
        cert, key = create_cert(Path(args.ca_dir), args.name, out, args.host or None)
        print(f"wrote {cert} and {key}")
    return EXIT_OK


def _cmd_simulate(args: argparse.Namespace) -> int:
    if args.scenario == "leadership":
        return _simulate_leadership(args)
    import attrs

    from simulations.lifeguard import simulate

    rows = []
    nodes = args.nodes if args.nodes is not None else 50
    seconds = args.seconds if args.seconds is not None else 300.0
    for lifeguard in (True, False):
        out = simulate(lifeguard, nodes=nodes, seconds=seconds, loss=args.loss, seed=args.seed)
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


def _simulate_leadership(args: argparse.Namespace) -> int:
    import logging

    import trio.testing

    from simulations.leadership import scenario, table

    logging.getLogger("leadership").setLevel(logging.ERROR)  # one split-brain line per scope
    nodes = args.nodes if args.nodes is not None else 20
    seconds = args.seconds if args.seconds is not None else 60.0
    if nodes < 2 or args.scopes < 1 or args.victims < 1:
        raise CliError("leadership needs --nodes >= 2, --scopes >= 1 and --victims >= 1")
    clock = trio.testing.MockClock(autojump_threshold=0)
    result = trio.run(scenario, nodes, args.scopes, seconds, args.seed, args.victims, clock=clock)
    print(json.dumps(result, indent=2) if args.format == "json" else table(result))
    return EXIT_OK


# -- demo -------------------------------------------------------------------------------------


def _wait(condition: Callable[[], bool], timeout: float, what: str) -> float:
    from .testing import wait_until

    try:
        return wait_until(condition, timeout, what)
    except TimeoutError as exc:
        raise CliError(str(exc), EXIT_TIMEOUT) from None


def _demo_agents(args: argparse.Namespace) -> int:
    from .testing import AgentProcesses

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
        print(peers_table(_call("GET", urls[0], "/control/peers", 5)))
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
            print(peers_table(_call("GET", urls[0], "/control/peers", 5)))
        if args.keep:
            print("\nagents keep running; Ctrl+C stops them")
            try:
                while True:
                    time.sleep(3600)
            except KeyboardInterrupt:
                pass
    finally:
        agents.stop_all(signal.SIGTERM)
    return EXIT_OK


DEMO_LEADERSHIP = {
    "leaseDuration": "2s",
    "renewalLeadTime": "1s",
    "evaluationInterval": "200ms",
    "electionBackoff": "200ms",
    "maxElectionWindow": "2s",
    "scopes": [{"scopeId": "global-control"}],
    "shards": [{"namespace": "demo", "shards": ["0", "1", "2", "3"]}],
}
"""Short leases, so the demo's failover takes seconds, not a default lease of 8 s."""


async def _demo_in_process(nodes: int, preset: str, seed: int) -> int:
    from leadership import (
        EventKind,
        InMemoryLeaseStore,
        LeadershipConfig,
        LeadershipCoordinator,
        token_json,
    )

    from .leadership_view import MeshMembershipView
    from .runtime import MeshNode
    from .testing import MemoryNetwork, wait_for

    logging.getLogger("leadership").setLevel(logging.ERROR)  # split brain is counted below
    net = MemoryNetwork(seed=seed)
    net.set_latency(0.001, 0.0005)
    store = InMemoryLeaseStore()
    leadership = LeadershipConfig.from_mapping(DEMO_LEADERSHIP)
    scope_ids = [s.scope_id for s in leadership.scopes]
    names = [f"node-{i}" for i in range(nodes)]
    running: dict[str, MeshNode] = {}
    coordinators: dict[str, LeadershipCoordinator] = {}
    scopes: dict[str, trio.CancelScope] = {}
    formed = trio.Event()

    async def run(name: str, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        cfg = MeshConfig.from_preset(preset, name=name, bind=(name, 7946), seed=seed + len(running))
        with trio.CancelScope() as scope:
            scopes[name] = scope
            async with MeshNode.open(cfg, net.endpoint(cfg.bind)) as node:
                running[name] = node
                task_status.started()
                await formed.wait()
                async with LeadershipCoordinator.open(
                    leadership, store.client(name), MeshMembershipView(node)
                ) as coordinator:
                    coordinators[name] = coordinator
                    await trio.sleep_forever()
                await trio.sleep_forever()  # the node stays in the mesh after its coordinator

    def everyone_sees(status: MemberStatus, about: str) -> bool:
        return all(n.status_of(about) is status for k, n in running.items() if k != about)

    def table(members: list[Member]) -> str:
        rows = [["Node", "Address", "Status", "Inc", "RTT (ms)"]]
        for m in sorted(members, key=lambda m: m.name):
            rtt = "-" if m.rtt_ms is None else f"{m.rtt_ms:.2f}"
            rows.append(
                [m.name, f"{m.address[0]}:{m.address[1]}", m.status.label, str(m.incarnation), rtt]
            )
        return _render(rows)

    def leader(scope: str) -> str | None:
        found = [n for n, c in coordinators.items() if c.is_leader(scope)]
        return found[0] if found else None

    def leaders() -> str:
        observer = coordinators[min(coordinators)]
        generated = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        doc = {"generatedAt": generated, "tokens": [token_json(t) for t in observer.tokens()]}
        return leaders_table(doc)

    async with trio.open_nursery() as nursery:
        for name in names:
            await nursery.start(run, name)
        for name in names[1:]:
            await running[name].join([(names[0], 7946)])
        took = await wait_for(
            lambda: all(len(n.alive_members()) == nodes for n in running.values()),
            timeout=30,
            what="mesh formation",
        )
        print(f"{nodes} in-process nodes formed a mesh in {took * 1000:.0f} ms ({preset} preset)\n")
        print(table(running[names[0]].members()))
        formed.set()
        took = await wait_for(
            lambda: len(coordinators) == nodes and all(leader(s) for s in scope_ids),
            timeout=30,
            what="elections",
        )
        print(
            f"\nevery scope elected a leader {took * 1000:.0f} ms after the coordinators started\n"
        )
        print(leaders())
        if nodes >= 3:
            victim = leader("global-control")
            assert victim is not None
            old = coordinators[victim].election("global-control").token
            assert old is not None
            coordinators.pop(victim).crash()  # a crash: nothing is released
            scopes[victim].cancel()
            del running[victim]
            start = trio.current_time()
            took = await wait_for(
                lambda: everyone_sees(MemberStatus.DEAD, victim),
                timeout=60,
                what="failure detection",
            )
            await wait_for(
                lambda: leader("global-control") is not None,
                timeout=30,
                poll=0.002,
                what="failover",
            )
            failover = trio.current_time() - start
            successor = leader("global-control")
            assert successor is not None
            new = coordinators[successor].election("global-control").token
            assert new is not None
            splits = sum(
                1
                for c in coordinators.values()
                for e in c.hub.history()
                if e.kind is EventKind.SPLIT_BRAIN and e.leader_id == victim
            )
            print(
                f"\ncrashed {victim}, leader of global-control (fence {old.fence_token}): every "
                f"node saw it Dead after {took:.2f} s; {successor} was elected with fence "
                f"{new.fence_token} after {failover:.2f} s, once its lease ran out "
                f"({splits} split-brain reports while its token was still valid)"
            )
            leaders_now = {leader(s) for s in scope_ids}
            leaver = next(
                (n for n in reversed(names) if n in coordinators and n in leaders_now),
                next(n for n in reversed(names) if n in coordinators),
            )
            led = [s for s in scope_ids if leader(s) == leaver]
            start = trio.current_time()
            await coordinators.pop(leaver).stop()  # step down and release, then leave
            await wait_for(
                lambda: all(leader(s) not in (None, leaver) for s in led),
                timeout=10,
                poll=0.002,
                what="handover",
            )
            handed = trio.current_time() - start
            start = trio.current_time()
            await running[leaver].leave()
            scopes[leaver].cancel()
            del running[leaver]
            await wait_for(
                lambda: everyone_sees(MemberStatus.LEFT, leaver), timeout=10, what="leave"
            )
            took = trio.current_time() - start
            print(
                f"{leaver} stepped down: its {len(led)} scope(s) had new leaders after "
                f"{handed * 1000:.0f} ms; it left, and every node saw it Left after "
                f"{took * 1000:.0f} ms\n"
            )
            print(table(running[min(running)].members()))
            print()
            print(leaders())
        nursery.cancel_scope.cancel()
    return EXIT_OK


def _cmd_demo(args: argparse.Namespace) -> int:
    if not 1 <= args.nodes <= (500 if args.in_process else 50):
        raise CliError("--nodes must be between 1 and 50 (500 with --in-process)")
    if args.in_process:
        try:
            return trio.run(_demo_in_process, args.nodes, args.preset, args.seed)
        except TimeoutError as exc:
            raise CliError(str(exc), EXIT_TIMEOUT) from None
    return _demo_agents(args)


# -- parser -----------------------------------------------------------------------------------


def _read_flags(p: argparse.ArgumentParser, token: bool = False) -> None:
    p.add_argument(
        "--url",
        "-u",
        default=os.environ.get("SWIMMESH_URL", DEFAULT_URL),
        help=f"control plane URL (default {DEFAULT_URL})",
    )
    p.add_argument(
        "--timeout", type=_timeout, default=10.0, help="e.g. 500ms, 5s, 1m (default 10s)"
    )
    p.add_argument("--format", choices=["table", "json"], default="table")
    if token:
        p.add_argument("--token", help="control token (default: $SWIMMESH_CONTROL_TOKEN)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="swimmesh", description="SWIM gossip mesh on Trio")
    parser.add_argument("--version", action="version", version=f"swimmesh {__version__}")
    parser.add_argument(
        "--log-level", default="warning", choices=["debug", "info", "warning", "error"]
    )
    sub = parser.add_subparsers(dest="command", required=True)

    agent = sub.add_parser("agent", help="run a node until SIGINT/SIGTERM")
    agent.add_argument("--node-id", help="node name (default mesh-<hostname>)")
    agent.add_argument("--bind", help="gossip address, UDP and stream (default 127.0.0.1:7946)")
    agent.add_argument("--advertise", help="address peers use to reach this node")
    agent.add_argument("--join", action="append", default=[], help="seed HOST:PORT (repeatable)")
    agent.add_argument("--control", help="control plane HOST:PORT (default 127.0.0.1:7947)")
    agent.add_argument("--preset", choices=sorted(PRESETS), help="timing preset (default lan)")
    agent.add_argument("--config", help="TOML or JSON configuration file")
    agent.add_argument("--key", help="base64 gossip key (see `swimmesh keys generate`)")
    agent.add_argument("--keyring-file", help="JSON keyring file (created from --key if absent)")
    agent.add_argument(
        "--insecure", action="store_true", help="allow unencrypted gossip off loopback"
    )
    agent.add_argument("--control-token", help="bearer token for mutating control endpoints")
    agent.add_argument("--data-dir", help="directory for the keyring and the peer snapshot")
    agent.add_argument("--cluster-label", help="label that keeps meshes apart")
    agent.add_argument(
        "--log-level", dest="agent_log_level", choices=["debug", "info", "warning", "error"]
    )
    agent.add_argument("--log-format", choices=["text", "json"])
    agent.set_defaults(func=_cmd_agent)

    demo = sub.add_parser("demo", help="start a local mesh of agents and show detection and leave")
    demo.add_argument("--nodes", type=int, default=3)
    demo.add_argument("--preset", choices=sorted(PRESETS), default="fast")
    demo.add_argument("--keep", action="store_true", help="keep the agents running until Ctrl+C")
    demo.add_argument(
        "--in-process", action="store_true", help="nodes in this process on the in-memory network"
    )
    demo.add_argument("--seed", type=int, default=1, help="random seed (--in-process)")
    demo.set_defaults(func=_cmd_demo)

    mesh = sub.add_parser("mesh", help="read an agent's control plane").add_subparsers(
        dest="mesh_command", required=True
    )
    peers = mesh.add_parser("peers", help="members").add_subparsers(
        dest="peers_command", required=True
    )
    plist = peers.add_parser("list", help="the members this agent knows")
    _read_flags(plist)
    plist.set_defaults(func=_cmd_peers_list)

    lh = mesh.add_parser(
        "lease-health", help="per-peer lease health (/omnirelay/control/lease-health)"
    )
    _read_flags(lh)
    lh.set_defaults(func=_cmd_lease_health)
    leaders = mesh.add_parser("leaders", help="leadership").add_subparsers(
        dest="leaders_command", required=True
    )
    status = leaders.add_parser("status", help="current leaders per scope (/control/leaders)")
    _read_flags(status)
    status.add_argument("--scope", default=None, help="one scope (exact, any case)")
    status.add_argument("--watch", action="store_true", help="stream leadership events")
    status.set_defaults(func=_cmd_leaders)
    bp = mesh.add_parser("backpressure", help="the agent's backpressure signal")
    _read_flags(bp)
    bp.add_argument("--watch", action="store_true", help="stream signals until Ctrl+C")
    bp.set_defaults(func=_cmd_backpressure)

    keys = sub.add_parser("keys", help="gossip encryption keys").add_subparsers(
        dest="keys_command", required=True
    )
    keys.add_parser("generate", help="print a new random key").set_defaults(func=_cmd_keys)
    klist = keys.add_parser("list", help="keys installed on the agent")
    _read_flags(klist, token=True)
    klist.set_defaults(func=_cmd_keys)
    for op, text in (
        ("install", "install a key on every member"),
        ("use", "make a key primary everywhere"),
        ("remove", "remove a key everywhere"),
    ):
        kp = keys.add_parser(op, help=text)
        kp.add_argument("key")
        _read_flags(kp, token=True)
        kp.set_defaults(func=_cmd_keys)

    tls = sub.add_parser("tls", help="development certificates").add_subparsers(
        dest="tls_command", required=True
    )
    ca = tls.add_parser("ca", help="create a CA (ca.pem, ca-key.pem)")
    ca.add_argument("--out", default=".")
    ca.set_defaults(func=_cmd_tls)
    cert = tls.add_parser("cert", help="create a node certificate signed by the CA")
    cert.add_argument("name")
    cert.add_argument("--ca-dir", default=".")
    cert.add_argument("--out", default=".")
    cert.add_argument(
        "--host", action="append", default=[], help="extra SAN: DNS name or IP (repeatable)"
    )
    cert.set_defaults(func=_cmd_tls)

    simulate = sub.add_parser("simulate", help="run a scenario in virtual time")
    simulate.add_argument(
        "scenario",
        choices=["lifeguard", "leadership"],
        help="lifeguard: loss + stalling nodes, with and without Lifeguard; leadership: "
        "coordinators on the in-memory store: cold start, crash and graceful failover",
    )
    simulate.add_argument(
        "--nodes", type=int, default=None, help="nodes (lifeguard 50) or coordinators (20)"
    )
    simulate.add_argument(
        "--seconds",
        type=float,
        default=None,
        help="virtual seconds (lifeguard 300) or steady-state seconds measured (leadership 60)",
    )
    simulate.add_argument("--scopes", type=int, default=1000, help="leadership: shard scopes")
    simulate.add_argument(
        "--victims", type=int, default=5, help="leadership: stops per failover kind"
    )
    simulate.add_argument("--loss", type=float, default=0.10)
    simulate.add_argument("--seed", type=int, default=1)
    simulate.add_argument("--format", choices=["table", "json"], default="table")
    simulate.set_defaults(func=_cmd_simulate)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command != "agent":
        setup_logging(args.log_level)
    try:
        result: int = args.func(args)
    except CliError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.code
    except KeyboardInterrupt:
        return EXIT_ERROR
    return result
