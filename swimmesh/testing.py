"""Helpers for users' own tests: the in-memory network and condition waits."""

from __future__ import annotations

import heapq
import itertools
import json
import os
import random
import selectors
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import httpx
import trio

from .config import MeshConfig
from .events import MemberEvent, MemberEventKind
from .member import MemberStatus
from .protocol import FormedMesh, formed_mesh
from .runtime import MeshNode
from .transport.memory import EndpointStats, MemoryNetwork, MemoryTransport

__all__ = [
    "AgentProcesses",
    "Cluster",
    "EndpointStats",
    "EventLog",
    "MemoryNetwork",
    "MemoryTransport",
    "replayable",
    "seed_scheduler",
    "wait_for",
    "wait_until",
]


async def wait_for(
    condition: Callable[[], bool], *, timeout: float, poll: float = 0.05, what: str = "condition"
) -> float:
    """Wait until ``condition()`` holds, checking every ``poll`` seconds of (virtual) time.
    Return the time it took; raise ``TimeoutError`` naming ``what`` after ``timeout``."""
    start = trio.current_time()
    with trio.move_on_after(timeout):
        while not condition():
            await trio.sleep(poll)
        return trio.current_time() - start
    raise TimeoutError(f"{what} did not hold within {timeout}s")


class Cluster:
    """Many nodes on one :class:`MemoryNetwork`, each in its own cancel scope so a test can
    crash (cancel without leaving), stop gracefully, or restart any of them."""

    def __init__(
        self,
        nursery: trio.Nursery,
        network: MemoryNetwork,
        make_config: Callable[[str], MeshConfig],
    ) -> None:
        self.network = network
        self.nodes: dict[str, MeshNode] = {}
        self._nursery = nursery
        self._make_config = make_config
        self._scopes: dict[str, trio.CancelScope] = {}

    @classmethod
    @asynccontextmanager
    async def open(
        cls,
        preset: str = "lan",
        *,
        network: MemoryNetwork | None = None,
        seed: int = 0,
        **overrides: Any,
    ) -> AsyncIterator[Cluster]:
        """A cluster whose nodes use ``preset`` with ``overrides``; node ``name`` listens at
        ``(name, 7946)`` and draws its randomness from ``hash((seed, name))``."""
        net = network if network is not None else MemoryNetwork(seed=seed)

        def make(name: str) -> MeshConfig:
            node_seed = random.Random(f"{seed}/{name}").getrandbits(63)
            return MeshConfig.from_preset(
                preset, name=name, bind=(name, 7946), seed=node_seed, **overrides
            )

        async with trio.open_nursery() as nursery:
            cluster = cls(nursery, net, make)
            try:
                yield cluster
            finally:
                nursery.cancel_scope.cancel()

    async def start(
        self, name: str, config: MeshConfig | None = None, formed: FormedMesh | None = None
    ) -> MeshNode:
        """Start (or restart) node ``name`` (``formed``: as a member of that formed mesh)."""
        cfg = config if config is not None else self._make_config(name)
        node: MeshNode = await self._nursery.start(self._run, cfg, formed)
        self.nodes[name] = node
        return node

    async def _run(
        self,
        cfg: MeshConfig,
        formed: FormedMesh | None,
        task_status: Any = trio.TASK_STATUS_IGNORED,
    ) -> None:
        with trio.CancelScope() as scope:
            self._scopes[cfg.name] = scope
            async with MeshNode.open(cfg, self.network.endpoint(cfg.bind), formed=formed) as node:
                task_status.started(node)
                await trio.sleep_forever()

    async def start_formed(self, names: Iterable[str]) -> None:
        """Start nodes that already form a mesh: each knows every other as alive from the
        start, as if every join had completed (no join traffic, no N x N formation). They
        share one copy of those records until their views diverge, which is what lets a
        simulation hold 10,000 nodes; everything after the start is the real protocol."""
        configs = [self._make_config(name) for name in names]
        formed = formed_mesh(configs, trio.current_time())
        for cfg in configs:
            await self.start(cfg.name, cfg, formed)

    async def start_many(self, names: Iterable[str], join: str | None = None) -> None:
        """Start nodes and join each to ``join`` (the first one's address by default)."""
        names = list(names)
        for name in names:
            await self.start(name)
        seed = join if join is not None else names[0]
        for name in names:
            if name != seed:
                await self.nodes[name].join([self.nodes[seed].config.advertise_address])

    def crash(self, name: str) -> None:
        """Stop ``name`` without a word to its peers, as ``kill -9`` would: from this instant
        it handles nothing more (its tasks end at their next checkpoint, but a network that
        drives it would otherwise still hand it what is due at this very instant)."""
        self._scopes.pop(name).cancel()
        self.nodes.pop(name).closed = True

    async def stop(self, name: str) -> None:
        """Leave gracefully, then stop."""
        await self.nodes[name].leave()
        self.crash(name)

    def live(self) -> list[MeshNode]:
        return list(self.nodes.values())

    def views_agree(
        self,
        status: MemberStatus,
        about: Iterable[str] | None = None,
        observers: Iterable[str] | None = None,
    ) -> bool:
        """True when every observer sees every member in ``about`` with ``status``."""
        about_names = list(about) if about is not None else list(self.nodes)
        watchers = [self.nodes[n] for n in observers] if observers is not None else self.live()
        for node in watchers:
            for name in about_names:
                if node.status_of(name) is not status:
                    return False
        return True


def seed_scheduler(seed: int) -> bool:
    """Seed Trio's private scheduling RNG so a simulation replays the same interleaving.
    Returns False (and changes nothing) if this Trio version keeps it elsewhere."""
    from trio._core import _run

    rng = getattr(_run, "_r", None)
    if not isinstance(rng, random.Random):
        return False
    rng.seed(seed)
    return True


@contextmanager
def replayable(seed: int) -> Iterator[bool]:
    """Within the block, ``trio.run`` under a MockClock replays exactly: Trio's scheduling RNG
    is seeded and timers due at the same instant fire in the order they were armed (Trio breaks
    such ties by the cancel scope's memory address, which differs from run to run). Yields
    False (and changes nothing) if this Trio version keeps its internals elsewhere."""
    from trio._core import _run

    deadlines = getattr(_run, "Deadlines", None)
    original = getattr(deadlines, "add", None)
    if deadlines is None or original is None or not seed_scheduler(seed):
        yield False
        return
    order = itertools.count()

    def add(self: Any, deadline: float, cancel_scope: Any) -> None:
        heapq.heappush(self._heap, (deadline, next(order), cancel_scope))
        self._active += 1

    deadlines.add = add
    try:
        yield True
    finally:
        deadlines.add = original


class EventLog:
    """Collects every membership event from every node of a cluster, with virtual times."""

    def __init__(self) -> None:
        self.records: list[tuple[float, str, MemberEvent]] = []

    async def follow(self, node: MeshNode, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        async with node.events() as events:
            task_status.started()
            async for event in events:
                self.records.append((trio.current_time(), node.name, event))

    def of(
        self, kind: MemberEventKind, about: str | None = None
    ) -> list[tuple[float, str, MemberEvent]]:
        return [
            r
            for r in self.records
            if r[2].kind is kind and (about is None or r[2].member.name == about)
        ]


def wait_until(
    condition: Callable[[], bool], timeout: float, what: str, every: float = 0.02
) -> float:
    """Real-time wait for a condition, checked every ``every`` seconds (a costly check, e.g.
    reading hundreds of tokens from every agent, should not load what it watches); returns
    the time it took."""
    start = time.monotonic()
    while not condition():
        if time.monotonic() - start > timeout:
            raise TimeoutError(f"{what} did not hold within {timeout}s")
        time.sleep(every)
    return time.monotonic() - start


class AgentProcesses:
    """``swimmesh agent`` processes on 127.0.0.1 (tests, the demo, benchmarks): start them,
    read their control planes, signal them. ``stop_all`` kills those it started, by PID.
    Each agent's stderr goes to a file (a pipe nobody reads would block a chatty agent); it is
    read back only when an agent fails to start."""

    def __init__(self, log_level: str = "warning") -> None:
        self.procs: dict[str, subprocess.Popen[str]] = {}
        self.info: dict[str, dict[str, Any]] = {}
        self.log_level = log_level
        self._logs = tempfile.TemporaryDirectory(prefix="swimmesh-agents-")

    def start(
        self,
        name: str,
        *args: str,
        bind: str = "127.0.0.1:0",
        control: str = "127.0.0.1:0",
        preset: str = "fast",
        env: dict[str, str] | None = None,
        timeout: float = 30.0,
        wrapper: Sequence[str] = (),
    ) -> dict[str, Any]:
        """Start agent ``name`` (extra flags in ``args``) and return its ready line.
        ``wrapper`` prefixes the command (e.g. ``ip netns exec NS`` for a test's namespace)."""
        cmd = [
            *wrapper,
            sys.executable,
            "-m",
            "swimmesh",
            "agent",
            "--node-id",
            name,
            "--bind",
            bind,
            "--control",
            control,
            "--preset",
            preset,
            "--log-level",
            self.log_level,
            *args,
        ]
        log_path = os.path.join(self._logs.name, f"{name}.log")
        with open(log_path, "w") as log_file:
            proc = subprocess.Popen(
                cmd,
                stdout=subprocess.PIPE,
                stderr=log_file,
                text=True,
                env={**os.environ, **(env or {})},
            )
        self.procs[name] = proc
        assert proc.stdout is not None
        sel = selectors.DefaultSelector()
        sel.register(proc.stdout, selectors.EVENT_READ)
        if not sel.select(timeout=timeout):
            raise TimeoutError(f"agent {name} did not report ready within {timeout}s")
        line = proc.stdout.readline()
        if not line:
            with open(log_path) as f:
                raise RuntimeError(f"agent {name} exited with {proc.wait()}: {f.read().strip()}")
        self.info[name] = json.loads(line)
        return self.info[name]

    def gossip_port(self, name: str) -> int:
        return int(self.gossip(name).rsplit(":", 1)[1])

    def url(self, name: str) -> str:
        return str(self.info[name]["control"])

    def gossip(self, name: str) -> str:
        return str(self.info[name]["gossip"])

    def peers(self, name: str) -> dict[str, str]:
        try:
            doc = httpx.get(self.url(name) + "/control/peers", timeout=2).json()
        except httpx.HTTPError:
            return {}
        return {p["nodeId"]: p["status"] for p in doc["peers"]}

    def metric(self, name: str, metric: str) -> float:
        """A sample from the agent's ``/metrics``: ``family{label="v"}`` for one labelled
        sample, or a family name for the sum of all its samples (0 when it has none yet).
        A family the agent does not export at all raises ``KeyError``: a renamed metric must
        fail a check, not read as zero."""
        text = httpx.get(self.url(name) + "/metrics", timeout=2).text
        families = {line.split()[2] for line in text.splitlines() if line.startswith("# TYPE ")}
        family = metric.split("{")[0]
        if family not in families:
            raise KeyError(f"agent {name} exports no metric family {family!r}")
        total = 0.0
        for line in text.splitlines():
            if line.startswith("#"):
                continue
            sample, _, value = line.rpartition(" ")
            if sample == metric or ("{" not in metric and sample.split("{")[0] == metric):
                total += float(value)
        return total

    def log_tail(self, name: str, lines: int = 20) -> str:
        """The last ``lines`` lines agent ``name`` wrote to stderr (for a failure message)."""
        try:
            with open(os.path.join(self._logs.name, f"{name}.log")) as f:
                return "".join(f.readlines()[-lines:])
        except OSError as exc:
            return f"(no log: {exc})"

    def kill(self, name: str, sig: int = signal.SIGKILL) -> int:
        proc = self.procs.pop(name)
        proc.send_signal(sig)
        return proc.wait(timeout=30)

    def live(self) -> list[str]:
        return list(self.procs)

    def stop_all(self, sig: int = signal.SIGKILL) -> None:
        """Signal every agent still running that this object started, and wait for them."""
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(sig)
        for proc in self.procs.values():
            proc.wait(timeout=30)
        self.procs.clear()
