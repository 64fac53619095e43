"""``swimmesh agent``: one node on the real network, with its control plane, until a signal.

Composes the UDP/WebSocket transport, gossip encryption, the :class:`MeshNode`, Prometheus
metrics, the HTTP control plane, cluster-wide key rotation and a peer snapshot for rejoining
after a restart. SIGINT or SIGTERM (or ``POST /control/leave``) makes it leave gracefully.
"""

from __future__ import annotations

import gc
import ipaddress
import json
import logging
import signal
import socket
import sys
from collections.abc import Callable
from contextlib import AsyncExitStack
from functools import partial
from pathlib import Path
from typing import Any

import attrs
import trio
from hypercorn.config import Config as HypercornConfig
from hypercorn.trio import serve

from leadership import LeadershipCoordinator
from peerhealth import (
    BackpressureDiagnostics,
    BackpressureMonitor,
    PeerHealthCollector,
    PeerHealthSnapshotProvider,
    PeerLeaseHealthTracker,
)

from .agentconfig import AgentSettings
from .clock import TrioClock
from .config import ConfigError, MeshConfig, format_address, parse_address
from .control import build_app
from .control.voters import VoterAdmin
from .crypto import Sealer, save_atomic
from .elections import open_elections, setup_problem
from .errors import SwimmeshError
from .events import MemberEventKind
from .keys import ClusterKeys, keyring_path, open_keyring
from .member import Member
from .metrics import node_registry
from .peer_health import publish_backpressure, record_leadership, record_membership
from .runtime import JoinError, MeshNode
from .transport.net import NetOptions, NetTransport
from .transport.sealed import SealedTransport
from .transport.tls import TlsPolicy

log = logging.getLogger("swimmesh.agent")

SNAPSHOT_INTERVAL = 30.0


class AgentError(SwimmeshError):
    """A reason the agent cannot start (printed as one line; exit code 1)."""


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _tls(settings: AgentSettings) -> TlsPolicy | None:
    t = settings.tls
    if not t:
        return None
    known = {
        "certFile",
        "keyFile",
        "caFile",
        "requireClientCert",
        "allowedNames",
        "allowedThumbprints",
        "allowedFingerprints",
        "minVersion",
        "allowUntrustedCertificates",
        "checkCertificateRevocation",
        "reloadIntervalOverride",
    }
    for pkcs12 in ("certificatePath", "certificateData", "certificatePassword"):
        if pkcs12 in t:
            raise ConfigError(
                f"mesh.gossip.tls.{pkcs12}: PKCS#12 certificates are not supported; convert to "
                "PEM (openssl pkcs12 -nodes) and give certFile, keyFile and caFile"
            )
    unknown = set(t) - known
    if unknown:
        raise ConfigError(f"mesh.gossip.tls: unknown key(s) {', '.join(sorted(unknown))}")
    if t.get("checkCertificateRevocation"):
        log.warning("mesh.gossip.tls.checkCertificateRevocation is not supported and is ignored")
    try:
        return TlsPolicy(
            cert_file=t.get("certFile"),
            key_file=t.get("keyFile"),
            ca_file=t.get("caFile"),
            require_client_cert=bool(t.get("requireClientCert", False)),
            allowed_names=tuple(t.get("allowedNames", ())),
            allowed_fingerprints=tuple(t.get("allowedFingerprints", ()))
            + tuple(t.get("allowedThumbprints", ())),
            min_version=str(t.get("minVersion", "1.2")),
            insecure_skip_verify=bool(t.get("allowUntrustedCertificates", False)),
        )
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"mesh.gossip.tls: {exc}") from None


class Agent:
    """The running agent; it serves the control plane as its :class:`ControlHost`."""

    def __init__(
        self,
        settings: AgentSettings,
        node: MeshNode,
        keys: ClusterKeys,
        drops: Callable[[], dict[str, int]],
    ) -> None:
        self.settings = settings
        self.node = node
        self.keys = keys
        self.control_token = settings.control_token
        self.registry = node_registry(node, drops)
        self.tracker = PeerLeaseHealthTracker()
        self.health_providers: list[PeerHealthSnapshotProvider] = [self.tracker]
        self.backpressure = BackpressureMonitor()
        self.backpressure_diagnostics = BackpressureDiagnostics()
        self.backpressure.add_listener(self.backpressure_diagnostics)
        self.registry.register(PeerHealthCollector(self.tracker, backpressure=self.backpressure))
        self.coordinator: LeadershipCoordinator | None = None
        """Leadership on this agent: set while it runs elections (``[mesh.leadership]``)."""
        self.voter_admin: VoterAdmin | None = None
        """The quorum lease store, for voter-set changes (elections with voters)."""
        self.joined = not settings.join
        self.shutdown = trio.Event()
        self.shutdown_reason = ""
        self._clock = TrioClock()

    @property
    def name(self) -> str:
        return self.node.name

    def members(self) -> list[Member]:
        return self.node.members()

    def clock_now(self) -> float:
        return self._clock.now()

    def readiness(self) -> tuple[bool, str]:
        if self.shutdown.is_set() or self.node.instance.leaving:
            return False, "leaving"
        if not self.joined:
            return False, "not joined yet"
        return True, "joined"

    def request_shutdown(self, reason: str) -> None:
        if not self.shutdown.is_set():
            self.shutdown_reason = reason
            self.shutdown.set()

    # -- snapshot --------------------------------------------------------------------------

    def snapshot_path(self) -> Path | None:
        return Path(self.settings.data_dir) / "peers.json" if self.settings.data_dir else None

    def save_snapshot(self) -> None:
        path = self.snapshot_path()
        if path is None:
            return
        peers = sorted(
            format_address(m.address) for m in self.node.alive_members() if m.name != self.node.name
        )
        save_atomic(path, json.dumps({"node": self.node.name, "peers": peers}).encode())

    def load_snapshot(self) -> list[str]:
        path = self.snapshot_path()
        if path is None or not path.exists():
            return []
        try:
            data = json.loads(path.read_text())
            peers = [p for p in data.get("peers", []) if isinstance(p, str)]
            for p in peers:
                parse_address(p, "snapshot")
            return peers
        except (OSError, ValueError, AttributeError, ConfigError) as exc:
            log.warning(
                "ignoring unreadable peer snapshot", extra={"path": str(path), "error": str(exc)}
            )
            return []


def _check_bindable(address: tuple[str, int]) -> None:
    """Fail with one line naming the control address when it cannot be served, before anything
    starts (hypercorn would fail later, inside its nursery, with a long traceback)."""
    if address[1] == 0:
        return
    try:
        infos = socket.getaddrinfo(address[0], address[1], type=socket.SOCK_STREAM)
        with socket.socket(infos[0][0], socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind(infos[0][4])
    except OSError as exc:
        raise AgentError(
            f"cannot serve the control plane on {format_address(address)}: "
            f"{exc.strerror or exc}; stop whatever holds it or pick another --control HOST:PORT"
        ) from None


def build_config(settings: AgentSettings) -> MeshConfig:
    config = settings.mesh_config(default_name=f"mesh-{socket.gethostname()}")
    host = config.bind[0]
    if config.advertise is None and host in ("0.0.0.0", "::", ""):
        raise AgentError(
            f"bind {format_address(config.bind)} is a wildcard: give --advertise HOST:PORT "
            "so peers know where to reach this node"
        )
    return config


async def run_agent(
    settings: AgentSettings,
    *,
    announce: Callable[[dict[str, Any]], None] | None = None,
    install_key: bool = False,
) -> str:
    """Run until a signal or a leave request; return why it stopped. ``install_key`` lets a
    ``--key`` that an existing keyring file does not hold into it (see :func:`open_keyring`)."""
    config = build_config(settings)
    ring_path = keyring_path(settings.keyring_file, settings.data_dir)
    keyring = open_keyring(settings.key, ring_path, install_key=install_key)
    if keyring is None and not settings.insecure and not is_loopback(config.bind[0]):
        raise AgentError(
            f"refusing to bind {format_address(config.bind)} without a gossip key: give --key or "
            "--keyring-file (make one with `swimmesh keys generate`), or --insecure to run "
            "unencrypted on purpose"
        )
    tls = _tls(settings)
    control = parse_address(settings.control, "control")
    elections = settings.leadership is not None
    if settings.leadership is not None and settings.leadership.quorum == "none":
        log.warning(
            'mesh.leadership: quorum = "none": each node elects on its own membership view; a '
            "partition elects a leader on each side (reported as split brain, resolved on "
            "heal). Set mesh.leadership.voters to 3 or 5 node ids for one leader at most",
            extra={"scopes": len(settings.leadership.scopes)},
        )
    if settings.leadership is not None:
        problem = setup_problem(settings.leadership, config.name, settings.data_dir)
        if problem is not None:
            raise AgentError(problem)
    _check_bindable(control)
    async with AsyncExitStack() as stack:
        try:
            net = await stack.enter_async_context(
                NetTransport.open(config.bind, NetOptions(tls=tls))
            )
        except OSError as exc:
            raise AgentError(
                f"cannot bind the gossip address {format_address(config.bind)} (UDP and TCP): "
                f"{exc.strerror or exc}; stop whatever holds it or pick another --bind HOST:PORT"
            ) from None
        if config.bind[1] == 0:  # an ephemeral port: advertise the one we got
            bound = net.local_address
            adv = config.advertise or (config.bind[0], bound[1])
            config = attrs.evolve(config, bind=bound, advertise=adv)
        transport: Any = net
        if keyring is not None:
            transport = SealedTransport(
                net, Sealer(keyring, config.cluster_label), Sealer(keyring, config.cluster_label)
            )

        def drops() -> dict[str, int]:
            out = dict(net.dropped)
            if isinstance(transport, SealedTransport):
                for k, v in transport.dropped.items():
                    out[k] = out.get(k, 0) + v
            return out

        async with MeshNode.open(config, transport) as node, trio.open_nursery() as nursery:
            keys = ClusterKeys(node, keyring, ring_path)
            agent = Agent(settings, node, keys, drops)
            hc = HypercornConfig()
            hc.bind = [format_address(control)]
            hc.accesslog = None
            hc.errorlog = logging.getLogger("swimmesh.control")
            app = build_app(agent)
            binds = await nursery.start(
                partial(serve, shutdown_trigger=agent.shutdown.wait), app, hc
            )
            control_url = binds[0] if binds else f"http://{format_address(control)}"
            nursery.start_soon(_signals, agent)
            nursery.start_soon(_snapshots, agent)
            nursery.start_soon(record_membership, node, agent.tracker)
            nursery.start_soon(publish_backpressure, node, agent.backpressure)
            info = {
                "event": "ready",
                "node": node.name,
                "gossip": format_address(node.local_member.address),
                "control": control_url,
                "encrypted": keyring is not None,
                "tls": tls is not None,
            }
            # Everything allocated so far lives as long as the agent: move it out of the
            # collector's generations so idle-time collections do not walk it again and again.
            gc.collect()
            gc.freeze()
            log.info("agent started", extra=info)
            if announce is not None:
                announce(info)
            nursery.start_soon(_join, agent, settings)
            async with AsyncExitStack() as leading:
                if elections:
                    assert settings.leadership is not None
                    running = await leading.enter_async_context(
                        open_elections(
                            node,
                            settings.leadership,
                            data_dir=settings.data_dir,
                            registry=agent.registry,
                            offload_saves=True,  # fsync off the event loop
                        )
                    )
                    agent.coordinator, agent.voter_admin = running.coordinator, running.voters
                    record_leadership(agent.coordinator.hub, agent.tracker, node.name)
                await agent.shutdown.wait()
                log.info(
                    "agent stopping", extra={"node": node.name, "reason": agent.shutdown_reason}
                )
                # step down and release every lease before leaving, so successors need not
                # wait for expiry (the coordinator's block then closes without waiting)
                if agent.coordinator is not None:
                    with trio.move_on_after(config.leave_timeout + 1) as stepping_down:
                        await agent.coordinator.stop()
                    if stepping_down.cancelled_caught:
                        log.warning("leases not all released in time; successors wait for expiry")
            with trio.move_on_after(config.leave_timeout + 1):
                await node.leave()
            agent.save_snapshot()
            nursery.cancel_scope.cancel()
            return agent.shutdown_reason
    raise AssertionError("unreachable")  # pragma: no cover


async def _join(agent: Agent, settings: AgentSettings) -> None:
    seeds = list(settings.join)
    if not seeds:
        snapshot = agent.load_snapshot()
        if snapshot:
            seeds = snapshot
        else:
            agent.joined = True
            return
    try:
        n = await agent.node.join(seeds)
        agent.joined = True
        log.info("joined", extra={"node": agent.node.name, "seeds_answered": n})
        return
    except JoinError as exc:
        log.warning("join failed; will keep retrying the seeds", extra={"error": str(exc)})
    snapshot = [p for p in agent.load_snapshot() if p not in seeds]
    if snapshot:
        try:
            await agent.node.join(snapshot)
            agent.joined = True
            log.info("rejoined from the peer snapshot", extra={"node": agent.node.name})
            return
        except JoinError as exc:
            log.warning("rejoin from snapshot failed", extra={"error": str(exc)})
    # The core's reconnect loop keeps retrying the seeds; we are ready once a peer appears.
    async with agent.node.events() as events:
        if any(m.name != agent.node.name for m in agent.node.alive_members()):
            agent.joined = True
            return
        async for event in events:
            if event.kind in (MemberEventKind.JOIN, MemberEventKind.ALIVE):
                agent.joined = True
                log.info("joined through reconnection", extra={"node": agent.node.name})
                return


async def _signals(agent: Agent) -> None:
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for signum in signals:
            agent.request_shutdown(f"signal {signal.Signals(signum).name}")
            return


async def _snapshots(agent: Agent) -> None:
    if agent.snapshot_path() is None:
        return
    while True:
        await trio.sleep(SNAPSHOT_INTERVAL)
        try:
            agent.save_snapshot()
        except OSError as exc:
            log.warning("cannot write peer snapshot", extra={"error": str(exc)})


def print_ready(info: dict[str, Any]) -> None:
    """The one line the agent prints on stdout: a JSON object scripts and tests can read."""
    sys.stdout.write(json.dumps(info) + "\n")
    sys.stdout.flush()
