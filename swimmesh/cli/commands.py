"""The commands behind ``swimmesh agent``, ``mesh ...``, ``keys ...``, ``tls ...`` and
``simulate ...``: each takes the parsed arguments and returns an exit code."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

import httpx
import trio

from ..agentconfig import load_settings
from ..config import ConfigError
from ..crypto import KeyringError, decode_key, encode_key, generate_key
from ..logs import setup_logging
from .base import EXIT_ERROR, EXIT_OK, CliError, quiet_logger
from .http import call, follow, token
from .render import (
    event_line,
    leaders_table,
    lease_health_table,
    lifeguard_table,
    peers_table,
    signal_line,
)


def cmd_agent(args: argparse.Namespace) -> int:
    from ..agent import AgentError, print_ready, run_agent

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
        reason = trio.run(
            lambda: run_agent(settings, announce=print_ready, install_key=args.install_key)
        )
    except (ConfigError, AgentError, KeyringError) as exc:
        raise CliError(str(exc)) from None
    except OSError as exc:
        raise CliError(str(exc.strerror or exc)) from None
    logging.getLogger("swimmesh.agent").info("agent stopped", extra={"reason": reason})
    return EXIT_OK


def cmd_peers_list(args: argparse.Namespace) -> int:
    doc = call("GET", args.url, "/control/peers", args.timeout)
    print(json.dumps(doc, indent=2) if args.format == "json" else peers_table(doc))
    return EXIT_OK


def cmd_lease_health(args: argparse.Namespace) -> int:
    doc = call("GET", args.url, "/omnirelay/control/lease-health", args.timeout)
    print(json.dumps(doc, indent=2) if args.format == "json" else lease_health_table(doc))
    return EXIT_OK


def cmd_leaders(args: argparse.Namespace) -> int:
    query = {"scope": args.scope} if args.scope else {}
    if not args.watch:
        path = "/control/leaders" + (f"?{httpx.QueryParams(query)}" if query else "")
        doc = call("GET", args.url, path, args.timeout)
        print(json.dumps(doc, indent=2) if args.format == "json" else leaders_table(doc))
        return EXIT_OK
    print(
        f"Streaming leadership events from {args.url} (scope={args.scope or '*'}). "
        "Press Ctrl+C to exit."
    )

    def data(line: str) -> Any:
        return json.loads(line.removeprefix("data:")) if line.startswith("data:") else None

    return follow(args, "/control/events/leadership", query, data, event_line)


def cmd_backpressure(args: argparse.Namespace) -> int:
    if not args.watch:
        doc = call("GET", args.url, "/omnirelay/control/backpressure", args.timeout)
        if doc is None:
            print("{}" if args.format == "json" else "no backpressure signal yet")
        else:
            print(json.dumps(doc, indent=2) if args.format == "json" else signal_line(doc))
        return EXIT_OK
    print(f"Streaming backpressure signals from {args.url}. Press Ctrl+C to exit.", file=sys.stderr)
    return follow(
        args,
        "/omnirelay/control/backpressure/stream",
        {},
        lambda line: json.loads(line) if line.strip() else None,
        signal_line,
    )


def cmd_health(args: argparse.Namespace) -> int:
    if args.health_command == "set":
        body = {"healthy": args.healthy, "reason": args.reason}
        doc = call("POST", args.url, "/control/health", args.timeout, token(args), body)
    else:
        doc = call("GET", args.url, "/control/health", args.timeout)
    if args.format == "json":
        print(json.dumps(doc, indent=2))
    else:
        state = "healthy" if doc["healthy"] else "unhealthy"
        why = f" ({doc['reason']})" if doc.get("reason") else ""
        leading = ", ".join(doc["leading"]) or "nothing"
        print(f"{state}{why}; leading {leading}")
    return EXIT_OK


def cmd_voters(args: argparse.Namespace) -> int:
    if args.voters_command == "list":
        doc = call("GET", args.url, "/control/voters", args.timeout)
    else:
        path = f"/control/voters/{args.voters_command}"
        doc = call("POST", args.url, path, args.timeout, token(args), {"node": args.node})
    if args.format == "json":
        print(json.dumps(doc, indent=2))
    else:
        print(f"epoch {doc['epoch']}: {', '.join(doc['voters'])}")
        local = doc.get("local")
        if isinstance(local, dict):
            if local.get("granting"):
                print("this node's voter grants leases")
            else:
                left = float(local.get("remaining") or 0)
                until = f" for {left:.1f} s more" if left > 0 else ""
                print(f"this node's voter grants nothing{until}: {local.get('reason')}")
    return EXIT_OK


def cmd_keys(args: argparse.Namespace) -> int:
    if args.keys_command == "generate":
        print(encode_key(generate_key()))
        return EXIT_OK
    if args.keys_command == "list":
        doc = call("GET", args.url, "/control/keys", args.timeout, token(args))
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
    doc = call(
        "POST",
        args.url,
        f"/control/keys/{args.keys_command}",
        args.timeout,
        token(args),
        {"key": args.key},
    )
    if args.format == "json":
        print(json.dumps(doc, indent=2))
    else:
        print(f"{doc['op']}: {doc['succeeded']}/{doc['members']} members")
        for name, error in sorted(doc["failed"].items()):
            print(f"  {name}: {error}")
    return EXIT_OK if not doc["failed"] else EXIT_ERROR


def cmd_tls(args: argparse.Namespace) -> int:
    from ..devcerts import DevCertError, create_ca, create_cert

    out = Path(args.out)
    try:
        if args.tls_command == "ca":
            cert, key = create_ca(out, force=args.force)
        else:
            cert, key = create_cert(Path(args.ca_dir), args.name, out, args.host or None)
    except DevCertError as exc:
        raise CliError(str(exc)) from None
    except OSError as exc:
        raise CliError(f"cannot write to {out}: {exc.strerror or exc}") from None
    print(f"wrote {cert} and {key}")
    return EXIT_OK


def cmd_simulate_lifeguard(args: argparse.Namespace) -> int:
    import attrs

    from simulations.lifeguard import simulate

    if args.nodes < 2:
        raise CliError(f"--nodes must be at least 2 (got {args.nodes}): a mesh needs two members")
    if not 0 <= args.loss < 1:
        raise CliError(f"--loss is a fraction in [0, 1) (got {args.loss:g}): e.g. 0.1 for 10%")
    if args.seconds <= 0:
        raise CliError(f"--seconds must be positive (got {args.seconds:g})")
    rows = [
        attrs.asdict(
            simulate(
                lifeguard, nodes=args.nodes, seconds=args.seconds, loss=args.loss, seed=args.seed
            )
        )
        for lifeguard in (True, False)
    ]
    print(json.dumps(rows, indent=2) if args.format == "json" else lifeguard_table(rows))
    return EXIT_OK


def cmd_simulate_leadership(args: argparse.Namespace) -> int:
    import trio.testing

    from simulations.leadership import scenario, table

    if args.nodes < 2 or args.scopes < 1 or args.victims < 1:
        raise CliError("leadership needs --nodes >= 2, --scopes >= 1 and --victims >= 1")
    if args.seconds <= 0:
        raise CliError(f"--seconds must be positive (got {args.seconds:g})")
    from swimmesh.testing import replayable

    clock = trio.testing.MockClock(autojump_threshold=0)
    # split brain is in the table, not one line per scope
    with quiet_logger("leadership"), replayable(args.seed):
        result = trio.run(
            scenario, args.nodes, args.scopes, args.seconds, args.seed, args.victims, clock=clock
        )
    print(json.dumps(result, indent=2) if args.format == "json" else table(result))
    return EXIT_OK
