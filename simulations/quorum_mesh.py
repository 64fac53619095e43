"""Elections over real SWIM nodes on the in-memory network under a mock clock, with chaos:
random partitions, crashes and restarts (new boot ids; voters keep their promise files), stalls,
and lease clocks up to 4% off in rate. A sampler reads every node's ``is_leader`` for every
scope every 20 ms: never two at once, and the fence of whoever leads never goes back.

The tests run a few seeds; ``python -m benchmarks.quorum_mesh_chaos`` runs many.
"""

from __future__ import annotations

import random
from pathlib import Path

import attrs
import trio

from leadership import LeadershipConfig, LeadershipCoordinator, LeadershipScope
from swimmesh.clock import SkewedClock
from swimmesh.elections import open_elections
from swimmesh.member import MemberStatus
from swimmesh.testing import Cluster, wait_for

NAMES = ["a", "b", "c", "d", "e"]
VOTERS = ("a", "b", "c")
SCOPES = (
    LeadershipScope.global_control(),
    *(LeadershipScope.shard("orders", str(i)) for i in range(5)),
)


@attrs.define
class Sampler:
    """What services saw: leaders per scope at each sample, and every violation found."""

    coordinators: dict[str, LeadershipCoordinator]
    scopes: list[str] = attrs.Factory(lambda: [s.scope_id for s in SCOPES])
    overlaps: list[str] = attrs.Factory(list)
    regressions: list[str] = attrs.Factory(list)
    highest: dict[str, int] = attrs.Factory(dict)
    samples: int = 0

    def leaders(self, scope: str, among: list[str] | None = None) -> list[str]:
        names = among if among is not None else list(self.coordinators)
        return [n for n in names if self.coordinators[n].is_leader(scope)]

    async def run(self) -> None:
        while True:
            self.samples += 1
            for scope in self.scopes:
                leaders = self.leaders(scope)
                if len(leaders) > 1:
                    self.overlaps.append(f"{trio.current_time():.2f} {scope}: {leaders}")
                for name in leaders:
                    token = self.coordinators[name].election(scope).token
                    if token is None:
                        continue
                    if token.fence_token < self.highest.get(scope, 0):
                        self.regressions.append(f"{scope}: {name} at {token.fence_token}")
                    self.highest[scope] = max(self.highest.get(scope, 0), token.fence_token)
            await trio.sleep(0.02)


class Electorate:
    """Each node's elections in its own cancel scope, so a node can crash and restart (a new
    boot id; a voter keeps its promised terms in its data directory)."""

    def __init__(
        self, cluster: Cluster, nursery: trio.Nursery, config: LeadershipConfig, data: Path
    ) -> None:
        self.cluster, self.nursery, self.config, self.data = cluster, nursery, config, data
        self.coordinators: dict[str, LeadershipCoordinator] = {}
        self.scopes: dict[str, trio.CancelScope] = {}

    async def start(self, name: str, clock: SkewedClock) -> None:
        await self.nursery.start(self._run, name, clock)

    async def _run(self, name: str, clock: SkewedClock, task_status=trio.TASK_STATUS_IGNORED):
        with trio.CancelScope() as scope:
            self.scopes[name] = scope
            async with open_elections(
                self.cluster.nodes[name], self.config, data_dir=str(self.data / name), clock=clock
            ) as running:
                self.coordinators[name] = running.coordinator
                task_status.started()
                await trio.sleep_forever()

    def crash(self, name: str) -> None:
        self.coordinators.pop(name).crash()
        self.scopes.pop(name).cancel()
        self.cluster.crash(name)


async def chaos(seed: int, data: Path, seconds: float = 90.0) -> Sampler:
    """Random partitions, crashes and restarts, stalls, and clocks up to 4% off in rate."""
    rng = random.Random(seed)
    config = LeadershipConfig(
        quorum="static",
        voters=VOTERS,
        scopes=SCOPES,
        lease_duration=4.0,
        renewal_lead_time=1.5,
        max_clock_drift=0.05,
    )

    def clock() -> SkewedClock:
        return SkewedClock(offset=rng.uniform(-100, 100), rate=rng.uniform(0.96, 1.04))

    async with Cluster.open("fast", seed=seed) as cluster, trio.open_nursery() as nursery:
        await cluster.start_many(NAMES)
        await wait_for(
            lambda: cluster.views_agree(MemberStatus.ALIVE), timeout=30, what="mesh formed"
        )
        electorate = Electorate(cluster, nursery, config, data)
        for name in NAMES:
            await electorate.start(name, clock())
        sampler = Sampler(electorate.coordinators)
        nursery.start_soon(sampler.run)
        end = trio.current_time() + seconds
        while trio.current_time() < end:
            await trio.sleep(rng.uniform(1.0, 6.0))
            roll = rng.random()
            live = sorted(cluster.nodes)
            if roll < 0.35:
                groups: list[list[str]] = [[], []]
                for name in live:
                    groups[rng.randrange(2)].append(name)
                cluster.network.partition(
                    *[[cluster.nodes[n].config.bind for n in g] for g in groups if g]
                )
                await trio.sleep(rng.uniform(1.0, 10.0))
                cluster.network.heal()
            elif roll < 0.65 and len(live) > 3:
                victim = rng.choice(live)
                electorate.crash(victim)
                await trio.sleep(rng.uniform(0.5, 6.0))
                await cluster.start(victim)
                seed_node = next(n for n in sorted(cluster.nodes) if n != victim)
                await cluster.nodes[victim].join([cluster.nodes[seed_node].config.bind])
                await electorate.start(victim, clock())
            else:
                victim = rng.choice(live)
                cluster.network.pause(cluster.nodes[victim].config.bind, rng.uniform(0.5, 5.0))
        cluster.network.heal()
        await wait_for(
            lambda: all(len(sampler.leaders(s.scope_id)) == 1 for s in SCOPES),
            timeout=120,
            what="every scope led again after the chaos",
        )
        nursery.cancel_scope.cancel()
        for coordinator in electorate.coordinators.values():
            coordinator.crash()
    return sampler
