"""Elections without voters (``quorum = "none"``) over real SWIM nodes on the in-memory network:
one leader per scope agreed by every node, failover after a crash, and a partition that elects
on both sides, reports split brain on both, and is resolved on heal (the higher fence keeps it)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path

import cbor2
import pytest
import trio
import trio.testing

from leadership import (
    EventKind,
    LeadershipConfig,
    LeadershipCoordinator,
    LeadershipScope,
    TrioTime,
)
from leadership.availability import CLAIMS_KIND, AvailabilityLeaseStore
from leadership.messenger import MessengerError
from leadership.quorum.wire import LeaseNotice, NoticeEntry, encode
from leadership.testing import LocalMesh
from leadership.tokens import Holder
from swimmesh.elections import open_elections
from swimmesh.member import MemberStatus
from swimmesh.testing import Cluster, wait_for

NAMES = ["a", "b", "c", "d", "e"]
SHARDS = tuple(LeadershipScope.shard("orders", str(i)) for i in range(20))
SCOPES = (LeadershipScope.global_control(), *SHARDS)
IDS = [s.scope_id for s in SCOPES]
CONFIG = LeadershipConfig(scopes=SCOPES, lease_duration=4.0, renewal_lead_time=1.5)


class Nodes:
    """Each node's coordinator and store, started in its own cancel scope so it can crash."""

    def __init__(self, cluster: Cluster, nursery: trio.Nursery, data: Path) -> None:
        self.cluster, self.nursery, self.data = cluster, nursery, data
        self.coordinators: dict[str, LeadershipCoordinator] = {}
        self.stores: dict[str, AvailabilityLeaseStore] = {}
        self._scopes: dict[str, trio.CancelScope] = {}

    async def start(self, name: str) -> None:
        await self.nursery.start(self._run, name)

    async def _run(self, name: str, task_status=trio.TASK_STATUS_IGNORED) -> None:
        with trio.CancelScope() as scope:
            self._scopes[name] = scope
            async with open_elections(
                self.cluster.nodes[name], CONFIG, data_dir=str(self.data / name), clock=TrioTime()
            ) as running:
                assert isinstance(running.store, AvailabilityLeaseStore)
                assert running.voters is None
                self.coordinators[name] = running.coordinator
                self.stores[name] = running.store
                task_status.started()
                await trio.sleep_forever()

    def crash(self, name: str) -> None:
        self.coordinators.pop(name).crash()
        self.stores.pop(name)
        self._scopes.pop(name).cancel()
        self.cluster.crash(name)

    def leaders(self, scope: str, among: list[str] | None = None) -> list[str]:
        names = among if among is not None else list(self.coordinators)
        return [n for n in names if self.coordinators[n].is_leader(scope)]

    def agreed(self, names: list[str]) -> bool:
        """Every scope has one leader among ``names``, and each of them reports it."""
        for scope in IDS:
            leaders = self.leaders(scope, names)
            if len(leaders) != 1:
                return False
            for name in names:
                token = self.coordinators[name].hub.token(scope)
                if token is None or token.leader_id != leaders[0]:
                    return False
        return True

    def fence(self, name: str, scope: str) -> int:
        token = self.coordinators[name].hub.token(scope)
        assert token is not None
        return token.fence_token

    def story(self, scope: str) -> str:
        """Every node's events for ``scope``, for a failure message."""
        return "\n".join(
            f"{name}: "
            + ", ".join(
                f"{e.kind.value}/{e.leader_id}/{e.token.fence_token if e.token else '-'}"
                for e in coordinator.hub.history()
                if e.scope == scope
            )
            for name, coordinator in sorted(self.coordinators.items())
        )

    def split_brain_reports(self, name: str, scope: str) -> int:
        return sum(
            1
            for e in self.coordinators[name].hub.history()
            if e.kind is EventKind.SPLIT_BRAIN and e.scope == scope
        )


@asynccontextmanager
async def mesh(tmp_path: Path) -> AsyncIterator[tuple[Cluster, Nodes]]:
    async with Cluster.open("fast", seed=5) as cluster, AsyncExitStack():
        await cluster.start_many(NAMES)
        await wait_for(
            lambda: cluster.views_agree(MemberStatus.ALIVE), timeout=30, what="mesh formed"
        )
        async with trio.open_nursery() as nursery:
            nodes = Nodes(cluster, nursery, tmp_path)
            for name in NAMES:
                await nodes.start(name)
            yield cluster, nodes
            for coordinator in nodes.coordinators.values():
                coordinator.crash()
            nursery.cancel_scope.cancel()


async def test_every_node_agrees_and_a_crash_fails_over_at_a_higher_fence(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    async with mesh(tmp_path) as (_, nodes):
        await wait_for(lambda: nodes.agreed(NAMES), timeout=30, what="every scope led")
        leader = nodes.leaders("global-control")[0]
        fence = nodes.fence(leader, "global-control")
        started = trio.current_time()
        nodes.crash(leader)
        rest = [n for n in NAMES if n != leader]
        await wait_for(lambda: nodes.agreed(rest), timeout=30, what="a successor agreed")
        failover = trio.current_time() - started
        successor = nodes.leaders("global-control")[0]
        assert successor != leader
        assert nodes.fence(successor, "global-control") > fence
        # no lease to wait out: failure detection plus the election's back-off
        assert failover < CONFIG.lease_duration + 3, failover
        for name in rest:
            assert nodes.split_brain_reports(name, "global-control") == 0


async def test_a_partition_elects_on_both_sides_and_the_heal_keeps_the_higher_fence(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    async with mesh(tmp_path) as (cluster, nodes):
        await wait_for(lambda: nodes.agreed(NAMES), timeout=30, what="every scope led")
        leader = nodes.leaders("global-control")[0]
        minority = sorted({leader, next(n for n in NAMES if n != leader)})
        majority = [n for n in NAMES if n not in minority]
        cluster.network.partition(
            [cluster.nodes[n].config.bind for n in minority],
            [cluster.nodes[n].config.bind for n in majority],
        )
        await wait_for(
            lambda: nodes.agreed(minority) and nodes.agreed(majority),
            timeout=60,
            what="each side agreed on its own leaders",
        )
        # availability: both sides lead every scope (split brain, by design of this mode)
        (left,) = nodes.leaders("global-control", minority)
        (right,) = nodes.leaders("global-control", majority)
        fences = {n: nodes.fence(n, "global-control") for n in (left, right)}
        assert fences[right] > fences[left]  # the majority side elected above what it had seen
        cluster.network.heal()
        await wait_for(
            lambda: cluster.views_agree(MemberStatus.ALIVE), timeout=60, what="mesh reunited"
        )
        await wait_for(lambda: nodes.agreed(NAMES), timeout=60, what="one leader per scope again")
        # the higher fence kept the scope; both former leaders reported the split brain
        assert nodes.leaders("global-control") == [right], nodes.story("global-control")
        assert nodes.fence(left, "global-control") == fences[right]
        assert nodes.split_brain_reports(left, "global-control") >= 1
        assert nodes.split_brain_reports(right, "global-control") >= 1
        lost = [
            e
            for e in nodes.coordinators[left].hub.history()
            if e.scope == "global-control" and e.kind is EventKind.LOST
        ]
        assert lost, "the lower fence must lose its scope"
        for name in NAMES:
            assert nodes.stores[name].stats.bad_messages == 0


async def test_a_restarted_holder_gives_up_the_claims_of_its_earlier_life(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    async with mesh(tmp_path) as (cluster, nodes):
        await wait_for(lambda: nodes.agreed(NAMES), timeout=30, what="every scope led")
        leader = nodes.leaders("global-control")[0]
        fence = nodes.fence(leader, "global-control")
        # crash and restart before anyone declares the old incarnation dead
        nodes.crash(leader)
        await trio.sleep(0.2)  # the crashed node's endpoint closes
        await cluster.start(leader)
        seed = next(n for n in NAMES if n != leader)
        await cluster.nodes[leader].join([cluster.nodes[seed].config.bind])
        await nodes.start(leader)
        await wait_for(lambda: nodes.agreed(NAMES), timeout=60, what="one leader again")
        now_leader = nodes.leaders("global-control")[0]
        token = nodes.coordinators[now_leader].election("global-control").token
        assert token is not None and token.fence_token > fence
        for name in NAMES:
            known = nodes.coordinators[name].hub.token("global-control")
            assert known is not None and known.fence_token == token.fence_token


async def test_a_malformed_claims_message_is_a_counted_drop_not_a_crash(
    autojump_clock: trio.testing.MockClock,
) -> None:
    local = LocalMesh()
    async with AvailabilityLeaseStore.open(
        local.messenger("a"), local.view("a"), now=trio.current_time, max_duration=4, settle=0
    ) as store:
        await trio.testing.wait_all_tasks_blocked()  # the store follows the view
        local.add("b")
        sender = local.messenger("b")
        for junk in (b"\xff\x00", cbor2.dumps(["lease-req"]), cbor2.dumps({"x": 1})):
            with pytest.raises(MessengerError):
                await sender.request("a", CLAIMS_KIND, junk, timeout=1)
        assert store.stats.bad_messages == 3
        # still serving: a claim from b is taken, and a's store reports it held
        scope = LeadershipScope.global_control()
        holder = Holder("b", "boot-1")
        notice = LeaseNotice((NoticeEntry("acquired", scope.key, holder, 7, 0.0),))
        await sender.request("a", CLAIMS_KIND, cbor2.dumps(encode(notice)), timeout=1)
        result = await store.get(scope)
        assert result.lease is not None and (result.lease.holder, result.lease.term) == (holder, 7)
        # and a's own claim comes above the highest term it has heard of
        local.set_status("b", "dead")
        await trio.sleep(0.1)
        granted = await store.acquire(scope, Holder("a", "boot-2"), 4)
        assert granted.lease is not None and granted.lease.term == 8
