"""Elections over real SWIM nodes on the in-memory network: the quorum lease store over each
node's stream channel, coordinators on every node, partitions between them (virtual time).

A sampler reads every node's ``is_leader`` for every scope every 20 ms: never two at once, and
the fence of whoever leads a scope never goes back."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path

import pytest
import trio
import trio.testing

from leadership import EventKind, LeadershipConfig, LeadershipScope, TrioTime
from simulations.quorum_mesh import Sampler, chaos
from swimmesh.elections import open_elections
from swimmesh.member import MemberStatus
from swimmesh.testing import Cluster, wait_for

NAMES = ["a", "b", "c", "d", "e"]
VOTERS = ("a", "b", "c")
SHARDS = tuple(LeadershipScope.shard("orders", str(i)) for i in range(50))
SCOPES = (LeadershipScope.global_control(), *SHARDS)
IDS = [s.scope_id for s in SCOPES]


@asynccontextmanager
async def elections(
    tmp_path: Path,
    names: list[str] = NAMES,
    voters: tuple[str, ...] = VOTERS,
    quorum: str = "static",
    seed: int = 11,
) -> AsyncIterator[tuple[Cluster, Sampler]]:
    """``names`` SWIM nodes electing ``global-control`` plus 50 shards through ``open_elections``
    (``voters`` with ``quorum = "static"``), with a sampler running."""
    async with Cluster.open("fast", seed=seed) as cluster, AsyncExitStack() as stack:
        await cluster.start_many(names)
        await wait_for(
            lambda: cluster.views_agree(MemberStatus.ALIVE), timeout=60, what="mesh formed"
        )
        config = LeadershipConfig(
            quorum=quorum,
            voters=voters if quorum == "static" else (),
            scopes=SCOPES,
            lease_duration=4.0,
            renewal_lead_time=1.5,
        )
        coordinators = {}
        for name in names:
            running = await stack.enter_async_context(
                open_elections(
                    cluster.nodes[name], config, data_dir=str(tmp_path / name), clock=TrioTime()
                )
            )
            coordinators[name] = running.coordinator
        sampler = Sampler(coordinators, IDS)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(sampler.run)
            yield cluster, sampler
            nursery.cancel_scope.cancel()
        for coordinator in coordinators.values():
            coordinator.crash()  # no releases over a torn-down network


def fence_of(sampler: Sampler, leader: str) -> int:
    """The fence ``leader`` holds for ``global-control`` now (the sampler may not have seen it
    yet: it samples every 20 ms)."""
    token = sampler.coordinators[leader].election("global-control").token
    assert token is not None
    return token.fence_token


def agreed(sampler: Sampler, names: list[str]) -> bool:
    """Every scope has one leader among ``names`` and every node of ``names`` knows it."""
    for scope in IDS:
        leaders = sampler.leaders(scope, names)
        if len(leaders) != 1:
            return False
        for name in names:
            tokens = {t.scope: t for t in sampler.coordinators[name].hub.tokens()}
            token = tokens.get(scope)
            if token is None or token.leader_id != leaders[0]:
                return False
    return True


@pytest.mark.slow
async def test_only_the_side_with_a_voter_majority_leads_and_heal_reunites(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    async with elections(tmp_path) as (cluster, sampler):
        await wait_for(lambda: agreed(sampler, NAMES), timeout=60, what="every scope led")
        leader = sampler.leaders("global-control")[0]
        # the global leader on the minority side, with at most one voter there
        partner = "e" if leader in VOTERS else "c"
        minority = sorted({leader, partner if partner != leader else "d"})
        majority = [n for n in NAMES if n not in minority]
        assert sum(n in VOTERS for n in minority) <= 1
        fences = {"global-control": fence_of(sampler, leader)}
        cluster.network.partition(
            [cluster.nodes[n].config.bind for n in minority],
            [cluster.nodes[n].config.bind for n in majority],
        )
        await wait_for(
            lambda: (
                all(len(sampler.leaders(s, majority)) == 1 for s in IDS)
                and not any(sampler.leaders(s, minority) for s in IDS)
            ),
            timeout=60,
            what="the majority side leads every scope, the minority none",
        )
        await trio.sleep(20)  # hold: the minority never elects
        assert not any(sampler.leaders(s, minority) for s in IDS)
        assert sampler.highest["global-control"] > fences["global-control"]
        cluster.network.heal()
        await wait_for(
            lambda: cluster.views_agree(MemberStatus.ALIVE), timeout=60, what="mesh reunited"
        )
        await wait_for(lambda: agreed(sampler, NAMES), timeout=60, what="every node agrees")
    assert sampler.overlaps == [], sampler.overlaps[:5]
    assert sampler.regressions == [], sampler.regressions[:5]
    assert sampler.samples > 1000


@pytest.mark.slow
async def test_losing_a_voter_majority_stops_every_election(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    async with elections(tmp_path) as (cluster, sampler):
        await wait_for(lambda: agreed(sampler, NAMES), timeout=60, what="every scope led")
        groups = [["a", "d"], ["b", "e"], ["c"]]  # no side holds two of the three voters
        cluster.network.partition(*[[cluster.nodes[n].config.bind for n in g] for g in groups])
        await wait_for(
            lambda: not any(sampler.leaders(s) for s in IDS),
            timeout=30,
            what="every leader stepped down",
        )
        await trio.sleep(20)
        assert not any(sampler.leaders(s) for s in IDS)
        cluster.network.heal()
        await wait_for(lambda: agreed(sampler, NAMES), timeout=90, what="elections resume")
    assert sampler.overlaps == [] and sampler.regressions == []


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_chaos_with_drifting_clocks_never_gives_two_leaders(
    autojump_clock: trio.testing.MockClock, tmp_path: Path, seed: int
) -> None:
    sampler = await chaos(seed, tmp_path)
    assert sampler.overlaps == [], sampler.overlaps[:5]
    assert sampler.regressions == [], sampler.regressions[:5]
    assert sampler.samples > 2000


BIG = [f"n{i:02d}" for i in range(25)]
BIG_VOTERS = ("n00", "n05", "n10", "n15", "n20")


def split_13_12(leader: str) -> tuple[list[str], list[str]]:
    """12 nodes with the global leader and at most two voters; the other 13 (with three)."""
    others = [n for n in BIG if n != leader]
    non_voters = [n for n in others if n not in BIG_VOTERS]
    voters = [n for n in others if n in BIG_VOTERS]
    room = 2 - (leader in BIG_VOTERS)
    minority = sorted([leader, *voters[:room], *non_voters[: 11 - room]])
    return minority, [n for n in BIG if n not in minority]


@pytest.mark.slow
async def test_25_nodes_13_12_only_the_voter_majority_leads(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    async with elections(tmp_path, BIG, BIG_VOTERS, "static", 25) as (cluster, sampler):
        await wait_for(lambda: agreed(sampler, BIG), timeout=60, what="every scope led")
        minority, majority = split_13_12(sampler.leaders("global-control")[0])
        assert len(minority) == 12 and sum(n in BIG_VOTERS for n in minority) == 2
        fence = fence_of(sampler, sampler.leaders("global-control")[0])
        cluster.network.partition(
            [cluster.nodes[n].config.bind for n in minority],
            [cluster.nodes[n].config.bind for n in majority],
        )
        await wait_for(
            lambda: (
                all(len(sampler.leaders(s, majority)) == 1 for s in IDS)
                and not any(sampler.leaders(s, minority) for s in IDS)
            ),
            timeout=60,
            what="the 13 lead every scope, the 12 none",
        )
        await trio.sleep(15)  # hold: the minority never elects
        assert not any(sampler.leaders(s, minority) for s in IDS)
        assert sampler.highest["global-control"] > fence
        cluster.network.heal()
        await wait_for(
            lambda: cluster.views_agree(MemberStatus.ALIVE), timeout=90, what="mesh reunited"
        )
        await wait_for(lambda: agreed(sampler, BIG), timeout=90, what="every node agrees")
    assert sampler.overlaps == [], sampler.overlaps[:5]
    assert sampler.regressions == [], sampler.regressions[:5]


@pytest.mark.slow
async def test_25_nodes_without_voters_both_sides_elect_and_the_heal_resolves_it(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    async with elections(tmp_path, BIG, BIG_VOTERS, "none", 25) as (cluster, sampler):
        await wait_for(lambda: agreed(sampler, BIG), timeout=60, what="every scope led")
        minority, majority = split_13_12(sampler.leaders("global-control")[0])
        cluster.network.partition(
            [cluster.nodes[n].config.bind for n in minority],
            [cluster.nodes[n].config.bind for n in majority],
        )
        await wait_for(
            lambda: agreed(sampler, minority) and agreed(sampler, majority),
            timeout=60,
            what="each side leads every scope",
        )
        cluster.network.heal()
        await wait_for(
            lambda: cluster.views_agree(MemberStatus.ALIVE), timeout=90, what="mesh reunited"
        )
        await wait_for(lambda: agreed(sampler, BIG), timeout=90, what="one leader per scope")
        reports = {
            name: sum(1 for e in c.hub.history() if e.kind is EventKind.SPLIT_BRAIN)
            for name, c in sampler.coordinators.items()
        }
    # split brain existed by design of this mode, and was reported on both sides
    assert sampler.overlaps
    assert any(reports[n] for n in minority) and any(reports[n] for n in majority)
