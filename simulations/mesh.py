"""The real protocol on the in-memory network, as scenarios use it: a formed mesh with an event
log, and optionally a leadership coordinator on every node with the safety checker sampling.

Leases come from the quorum lease store over each node's stream channel (``quorum="static"``,
three voters spread over the node list, promises kept in memory across restarts) or from one
shared in-memory store (``quorum="none"``; it is never partitioned, so it arbitrates for both
sides of a cut). Everything random is seeded from the run's seed: coordinators get seeded RNGs
and boot ids ``name-bootN`` instead of random ones, and no wall clock.
"""

from __future__ import annotations

import gc
import math
import random
from collections import defaultdict
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import AsyncExitStack, asynccontextmanager, contextmanager
from typing import Any

import attrs
import trio

from leadership import (
    EventKind,
    InMemoryLeaseStore,
    LeadershipConfig,
    LeadershipCoordinator,
    LeadershipEvent,
    LeadershipScope,
    TrioTime,
)
from leadership.clock import Clock
from leadership.quorum import MemoryPromises, VoterConfig
from leadership.quorum.store import QuorumLeaseStore
from swimmesh import MemberEventKind, MemberStatus, MeshNode
from swimmesh.elections import BELIEF_LEASES, view_alive
from swimmesh.leadership_view import MeshMembershipView, MeshMessenger
from swimmesh.testing import Cluster, EventLog, MemoryNetwork

from .harness import Options, SimulationError, sub_seed
from .safety import LeadershipRecorder

PORT = 7946
FULL_CHECK = 300
"""Meshes up to this size are checked for convergence in full, every node about every node."""
SAMPLE_PERIOD = 0.02
"""Seconds between two safety samples of every coordinator (``is_leader`` per scope)."""


@contextmanager
def lazy_collector() -> Iterator[Callable[[], None]]:
    """Within the block, Python's cyclic garbage collector runs less often (young collections
    every 20,000 allocations instead of 700), and the function it yields hands every object
    that exists at that moment to the permanent generation (``gc.freeze``): called once the
    mesh is formed, which then lives as long as the run, so full collections stop walking all
    of it (every node's table and probe order). A 3,000-node run spent a quarter of its wall
    time in the collector before. Everything is handed back to the collector, and the
    thresholds restored, at the end. Collection timing changes no result."""
    thresholds = gc.get_threshold()
    gc.set_threshold(20_000, 50, 50)
    try:
        yield gc.freeze
    finally:
        gc.set_threshold(*thresholds)
        gc.unfreeze()


def node_names(n: int) -> list[str]:
    width = max(3, len(str(n - 1)))
    return [f"n{i:0{width}d}" for i in range(n)]


def voters_of(names: Sequence[str], count: int = 3) -> tuple[str, ...]:
    """``count`` voters spread evenly over ``names`` (so a split in list order puts a majority
    of them on its larger side)."""
    k = min(count, len(names))
    return tuple(names[i * len(names) // k] for i in range(k))


class SimMesh:
    """A formed mesh on a seeded :class:`MemoryNetwork`, every node's events in one log."""

    def __init__(self, cluster: Cluster, names: list[str], nursery: trio.Nursery) -> None:
        self.cluster = cluster
        self.net: MemoryNetwork = cluster.network
        self.names = names
        self.log = EventLog()
        self._nursery = nursery
        self._boots: dict[str, int] = dict.fromkeys(names, 1)
        self.events = True

    @classmethod
    @asynccontextmanager
    async def open(
        cls,
        options: Options,
        *,
        lifeguard: bool = True,
        nodes: int | None = None,
        events: bool = True,
        **overrides: Any,
    ) -> AsyncIterator[SimMesh]:
        """Start ``nodes`` (default ``options.nodes``) nodes, wait until every view agrees, then
        switch on ``options.loss``. ``events=False`` keeps no event log (N x N events is too
        much memory at 10,000 nodes)."""
        n = nodes if nodes is not None else int(options.nodes or 0)
        net = MemoryNetwork(seed=sub_seed(options.seed, "network"))
        net.set_latency(options.latency, options.jitter)
        names = node_names(n)
        with lazy_collector() as freeze:
            async with (
                Cluster.open(
                    options.preset, network=net, seed=options.seed, lifeguard=lifeguard, **overrides
                ) as cluster,
                trio.open_nursery() as nursery,
            ):
                mesh = cls(cluster, names, nursery)
                if options.start == "formed":
                    await cluster.start_formed(names)
                else:
                    await cluster.start_many(names)
                mesh.events = events
                if events:
                    for node in cluster.live():
                        await nursery.start(mesh.log.follow, node)
                await mesh.until(
                    mesh.converged, timeout=max(60.0, n * 0.5), what="formed", poll=0.5
                )
                net.set_loss(options.loss or 0.0)
                freeze()
                yield mesh
                nursery.cancel_scope.cancel()

    def address(self, name: str) -> tuple[str, int]:
        return (name, PORT)

    def converged(self, names: Sequence[str] | None = None) -> bool:
        """Every live node in ``names`` (all by default) sees exactly those as alive. Above
        ``FULL_CHECK`` nodes, a seeded sample of observers is checked in full and every
        node only about a few members (a full check is N x N per poll)."""
        group = [n for n in (names if names is not None else self.names) if n in self.cluster.nodes]
        want = len(group)
        wanted = set(group)
        observers = group
        if want > FULL_CHECK:
            pick = random.Random(want)
            probes = [group[0], group[-1], *pick.sample(group, 8)]
            for name in group:
                node = self.cluster.nodes[name]
                if any(node.status_of(p) is not MemberStatus.ALIVE for p in probes):
                    return False
            observers = pick.sample(group, 20)
        for name in observers:
            alive = self.cluster.nodes[name].alive_members()
            if len(alive) != want or any(m.name not in wanted for m in alive):
                return False
        return True

    async def until(
        self, condition: Callable[[], bool], *, timeout: float, what: str, poll: float = 0.1
    ) -> float | None:
        """Wait for ``condition`` (checked every ``poll`` virtual seconds); the time it took,
        or None when it did not hold within ``timeout``."""
        start = trio.current_time()
        with trio.move_on_after(timeout):
            while not condition():
                await trio.sleep(poll)
            return trio.current_time() - start
        return None

    def crash(self, name: str) -> None:
        self.cluster.crash(name)

    async def restart(self, name: str) -> MeshNode:
        """Start ``name`` again (a new process: a new seed for its RNG) and rejoin."""
        self._boots[name] += 1
        cfg = self.cluster._make_config(name)
        cfg = attrs.evolve(cfg, seed=sub_seed(cfg.seed or 0, "boot", self._boots[name]))
        node = await self.cluster.start(name, cfg)
        if self.events:
            await self._nursery.start(self.log.follow, node)
        others = [n for n in self.names if n != name and n in self.cluster.nodes]
        if others:
            await node.join([self.cluster.nodes[others[0]].config.advertise_address])
        return node

    def dead_events(self, since: float = -math.inf) -> list[tuple[float, str, str]]:
        """(time, observer, about) of every DEAD event since ``since``."""
        return [
            (t, obs, ev.member.name)
            for t, obs, ev in self.log.of(MemberEventKind.DEAD)
            if t >= since
        ]

    def alive_seen(self, observers: Sequence[str], about: Sequence[str]) -> float:
        """Mean over live ``observers`` of how many of ``about`` each sees alive."""
        live = [o for o in observers if o in self.cluster.nodes]
        if not live:
            return 0.0
        wanted = set(about)
        total = 0
        for o in live:
            total += sum(1 for m in self.cluster.nodes[o].alive_members() if m.name in wanted)
        return total / len(live)

    def status_of(self, observer: str, about: str) -> MemberStatus | None:
        return self.cluster.nodes[observer].status_of(about)


def scopes_for(count: int) -> tuple[LeadershipScope, ...]:
    """The global control scope and ``count - 1`` shard scopes."""
    shards = (LeadershipScope.shard("sim", str(i)) for i in range(max(0, count - 1)))
    return (LeadershipScope.global_control(), *shards)


class Leadership:
    """A coordinator on every node of a :class:`SimMesh`, the safety recorder sampling them,
    and every leadership event with its virtual time."""

    def __init__(
        self,
        mesh: SimMesh,
        options: Options,
        nursery: trio.Nursery,
        clocks: Callable[[str], Clock] | None = None,
    ) -> None:
        if options.quorum not in ("none", "static"):
            raise SimulationError(f"--quorum is static or none (got {options.quorum!r})")
        self.mesh = mesh
        self.options = options
        self.scopes = scopes_for(options.scopes)
        self.voters = voters_of(mesh.names) if options.quorum == "static" else ()
        self.config = LeadershipConfig(
            scopes=self.scopes,
            quorum=options.quorum,
            voters=self.voters,
            lease_duration=4.0,
            renewal_lead_time=1.5,
            history_size=4096,
        )
        self.memory_store = InMemoryLeaseStore() if options.quorum == "none" else None
        self.promises: dict[str, MemoryPromises] = defaultdict(MemoryPromises)
        self.recorder = LeadershipRecorder()
        self.coordinators: dict[str, LeadershipCoordinator] = {}
        self.events: list[tuple[float, str, LeadershipEvent]] = []
        self._clocks = clocks
        self._nursery = nursery
        self._scopes: dict[str, trio.CancelScope] = {}
        self._boots: dict[str, int] = {}

    @property
    def store_kind(self) -> str:
        if self.memory_store is not None:
            return "in-memory (one shared store, never partitioned)"
        return f"quorum (QuorumLeaseStore over the mesh, voters {', '.join(self.voters)})"

    @classmethod
    @asynccontextmanager
    async def open(
        cls, mesh: SimMesh, options: Options, clocks: Callable[[str], Clock] | None = None
    ) -> AsyncIterator[Leadership]:
        async with trio.open_nursery() as nursery:
            leadership = cls(mesh, options, nursery, clocks)
            for name in mesh.names:
                await leadership.start(name)
            nursery.start_soon(leadership.recorder.run, SAMPLE_PERIOD)
            yield leadership
            for name in list(leadership.coordinators):
                leadership.crash(name)  # no releases over a network being torn down
            nursery.cancel_scope.cancel()

    async def start(self, name: str) -> LeadershipCoordinator:
        """Start (or restart, with a new boot id) the coordinator on node ``name``."""
        boot = self._boots[name] = self._boots.get(name, 0) + 1
        coordinator: LeadershipCoordinator = await self._nursery.start(self._run, name, boot)
        self.coordinators[name] = coordinator
        self.recorder.follow(coordinator)
        return coordinator

    async def _run(self, name: str, boot: int, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        node = self.mesh.cluster.nodes[name]
        clock = self._clocks(name) if self._clocks is not None else TrioTime()
        options: dict[str, Any] = {
            "clock": clock,
            "rng": random.Random(sub_seed(self.options.seed, "coordinator", name, boot)),
            "boot_id": f"{name}-boot{boot}",
            "wall": lambda: 0.0,
        }

        def listen(event: LeadershipEvent) -> None:
            if event.kind in (EventKind.ELECTED, EventKind.SPLIT_BRAIN) or (
                event.leader_id == name and event.kind in (EventKind.LOST, EventKind.EXPIRED)
            ):
                self.events.append((trio.current_time(), name, event))

        with trio.CancelScope() as scope:
            self._scopes[name] = scope
            async with AsyncExitStack() as stack:
                if self.memory_store is not None:
                    store: Any = self.memory_store.client(name)
                else:
                    mesh_names = self.mesh.cluster.nodes
                    store = await stack.enter_async_context(
                        QuorumLeaseStore.open(
                            MeshMessenger(node),
                            config=VoterConfig(1, self.voters),
                            clock=clock,
                            max_duration=self.config.lease_duration,
                            max_drift=self.config.max_clock_drift,
                            promises=self.promises[name] if name in self.voters else None,
                            peers=lambda: (
                                [m.name for m in mesh_names[name].alive_members()]
                                if name in mesh_names
                                else []
                            ),
                            alive=view_alive(node),  # followers believe as in the agent
                            belief_leases=BELIEF_LEASES,
                            thrifty_renewals=True,  # as in the agent
                        )
                    )
                coordinator = await stack.enter_async_context(
                    LeadershipCoordinator.open(
                        self.config, store, MeshMembershipView(node), **options
                    )
                )
                coordinator.hub.add_listener(listen)
                task_status.started(coordinator)
                await trio.sleep_forever()

    def crash(self, name: str) -> None:
        """Stop ``name``'s coordinator abruptly (with its node, if the caller crashes that)."""
        coordinator = self.coordinators.pop(name, None)
        if coordinator is None:
            return
        coordinator.crash()
        self._scopes.pop(name).cancel()
        self.recorder.crashed(name)

    def leaders(self, scope: str, among: Sequence[str] | None = None) -> list[str]:
        names = among if among is not None else list(self.coordinators)
        return [
            n for n in names if n in self.coordinators and self.coordinators[n].is_leader(scope)
        ]

    def all_led(self, among: Sequence[str] | None = None) -> bool:
        return all(len(self.leaders(s.key, among)) == 1 for s in self.scopes)

    def elected(self, since: float = -math.inf) -> list[tuple[float, str, str, int]]:
        """(time, node, scope, fence) of every ELECTED event since ``since``."""
        return [
            (t, node, ev.scope, ev.token.fence_token if ev.token is not None else 0)
            for t, node, ev in self.events
            if ev.kind is EventKind.ELECTED and t >= since and ev.leader_id == node
        ]

    def split_brain_reports(self, since: float = -math.inf) -> int:
        return sum(1 for t, _, ev in self.events if ev.kind is EventKind.SPLIT_BRAIN and t >= since)

    def verdict(self) -> dict[str, Any]:
        """The safety checker's verdict on everything sampled so far."""
        from .safety import SafetyViolation

        try:
            counts = self.recorder.check()
        except SafetyViolation as exc:
            return {"verdict": "violation", "violation": str(exc), "checker": "simulations.safety"}
        return {"verdict": "ok", "checker": "simulations.safety", **counts}

    def timeline(self) -> list[dict[str, Any]]:
        """Every believed-leader interval the recorder saw: scope, node, fence, start, end (a
        term still running ends now, marked ``open``)."""
        now = round(trio.current_time(), 3)
        return [
            {
                "scope": i.scope,
                "node": i.holder.node_id,
                "boot": i.holder.boot_id,
                "fence": i.fence,
                "start": round(i.start, 3),
                "end": round(i.end, 3) if i.end is not None else now,
                "open": i.end is None,
            }
            for i in self.recorder.intervals
        ]
