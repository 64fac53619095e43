"""Coordinators sharing the in-memory store, in virtual time (MockClock), per-node clocks."""

from __future__ import annotations

import json
import logging
import random
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing

from leadership import (
    Candidate,
    EventKind,
    FenceGuard,
    InMemoryLeaseStore,
    LeadershipConfig,
    LeadershipCoordinator,
    LeadershipLost,
    LeadershipScope,
    LeadershipToken,
    LeaseStore,
    NotLeaderError,
    StaleFenceError,
    TransferError,
    rank_candidates,
)
from leadership.clock import Clock
from leadership.testing import CoordinatorGroup, LocalMesh
from simulations.safety import LeadershipRecorder, SafetyViolation, check_stale_writes
from swimmesh import SkewedClock
from swimmesh.testing import wait_for

GLOBAL = LeadershipScope.global_control()
SCOPES = (GLOBAL, *(LeadershipScope.shard("orders", str(i)) for i in range(10)))
NAMES = ["n1", "n2", "n3", "n4", "n5"]


class Harness:
    """A group of coordinators plus a safety recorder and an exclusivity sampler."""

    def __init__(self, group: CoordinatorGroup, recorder: LeadershipRecorder) -> None:
        self.group = group
        self.recorder = recorder
        self.samples = 0
        self.overlaps: list[tuple[float, str, list[str]]] = []
        self.check_on_exit = True

    @property
    def c(self) -> dict[str, LeadershipCoordinator]:
        return self.group.coordinators

    async def start(
        self, name: str, clock: Clock | None = None, **kw: Any
    ) -> LeadershipCoordinator:
        coordinator = await self.group.start(name, clock=clock, **kw)
        self.recorder.follow(coordinator)
        return coordinator

    def crash(self, name: str, status: str | None = None) -> None:
        self.group.crash(name, status)
        self.recorder.crashed(name)

    def leader(self, scope: str = "global-control") -> str | None:
        leaders = self.group.leaders(scope)
        assert len(leaders) <= 1, leaders
        return leaders[0] if leaders else None

    async def wait_leader(self, scope: str = "global-control", timeout: float = 30.0) -> str:
        await wait_for(lambda: self.leader(scope) is not None, timeout=timeout, poll=0.01)
        leader = self.leader(scope)
        assert leader is not None
        return leader

    async def sample(self) -> None:
        """Every 5 virtual ms: at most one coordinator believes it leads each scope; every
        node that believes it leads global-control writes to its fenced resource."""
        while True:
            for scope, leaders in self.recorder.sample().items():
                if len(leaders) > 1:
                    self.overlaps.append((trio.current_time(), scope, leaders))
                if scope == "global-control":
                    for name in leaders:
                        self.recorder.write(self.c[name], scope)
            self.samples += 1
            await trio.sleep(0.005)


def make_config(**overrides: Any) -> Callable[[str], LeadershipConfig]:
    def make(name: str) -> LeadershipConfig:
        return LeadershipConfig(node_id=name, scopes=SCOPES, **overrides)

    return make


@asynccontextmanager
async def harness(
    names: list[str] = NAMES,
    *,
    store: LeaseStore | None = None,
    clocks: dict[str, Clock] | None = None,
    seed: int = 0,
    sample: bool = True,
    **overrides: Any,
) -> AsyncIterator[Harness]:
    store = store if store is not None else InMemoryLeaseStore()
    async with trio.open_nursery() as nursery:
        group = CoordinatorGroup(nursery, store, LocalMesh(), make_config(**overrides), seed)
        h = Harness(group, LeadershipRecorder())
        for name in names:
            await h.start(name, (clocks or {}).get(name))
        if sample:
            nursery.start_soon(h.sample)
        yield h
        if h.check_on_exit:
            assert not h.overlaps, h.overlaps[:3]
            h.recorder.check()
        nursery.cancel_scope.cancel()


def best(scope: LeadershipScope, names: list[str]) -> str:
    return rank_candidates(scope, [Candidate(n) for n in names])[0].node_id


async def test_one_leader_per_scope_the_best_ranked_and_every_node_agrees(
    sim_clock: trio.testing.MockClock,
) -> None:
    async with harness() as h:
        for scope in SCOPES:
            assert await h.wait_leader(scope.scope_id) == best(scope, NAMES)
        await trio.sleep(60)  # a minute of renewals: nobody else ever believes it leads
        for scope in SCOPES:
            leader = h.leader(scope.scope_id)
            assert leader == best(scope, NAMES)
            own = h.c[leader].election(scope.scope_id).token
            assert own is not None
            for c in h.c.values():  # followers know the renewed expiry, not the first one
                seen = c.hub.token(scope.scope_id)
                assert seen is not None
                assert abs((seen.expires_at - own.expires_at).total_seconds()) < 1.0
            views = {
                (t.leader_id, t.fence_token)
                for c in h.c.values()
                for t in c.tokens()
                if t.scope == scope.scope_id
            }
            assert views == {(leader, 1)}  # one term, seen alike by all five
        assert h.samples > 10_000
        # Shards spread: no node leads everything.
        led = [sum(c.is_leader(s.scope_id) for s in SCOPES) for c in h.c.values()]
        assert max(led) < len(SCOPES)


async def test_crash_failover_raises_the_fence_and_fencing_rejects_the_old_leader(
    sim_clock: trio.testing.MockClock,
) -> None:
    guard = FenceGuard()
    async with harness() as h:
        fences = []
        for _ in range(3):
            leader = await h.wait_leader()
            old = h.c[leader].election("global-control").token
            assert old is not None
            guard.check(old)
            fences.append(old.fence_token)
            crashed_at = trio.current_time()
            h.crash(leader, status="dead")
            new_leader = await h.wait_leader(timeout=old_lease_bound(h))
            took = trio.current_time() - crashed_at
            new = h.c[new_leader].election("global-control").token
            assert new is not None and new.fence_token > old.fence_token
            guard.check(new)
            with pytest.raises(StaleFenceError):
                guard.check(old)  # a paused ex-leader waking up is turned away
            # Nobody may lead before the crashed leader's lease can have ended at the store.
            cfg = h.c[new_leader].config
            assert took <= cfg.lease_duration + cfg.election_backoff + cfg.evaluation_interval
        assert fences == sorted(fences) and len(set(fences)) == 3


def old_lease_bound(h: Harness) -> float:
    cfg = next(iter(h.c.values())).config
    return cfg.lease_duration + cfg.evaluation_interval * 2 + cfg.max_election_window


async def test_split_brain_is_reported_when_the_incumbent_drops_out_of_the_view(
    sim_clock: trio.testing.MockClock,
) -> None:
    async with harness() as h:
        leader = await h.wait_leader()
        follower = next(n for n in NAMES if n != leader)
        events = h.c[follower].hub.subscribe("global-control", kinds=["splitBrain"])
        h.crash(leader, status="dead")  # gone from gossip while its token is still valid
        with trio.fail_after(1):
            event = await events.__anext__()
        assert event.leader_id == leader and event.correlation_id
        assert "dead in the membership view" in event.reason
        metric = h.c[follower].metrics.registry.get_sample_value(
            "mesh_leadership_split_brain_total", {"scope": "global-control", "leader": leader}
        )
        assert metric == 1.0
        # Reported once per term, not on every view change.
        h.group.mesh.set_status(leader, "left")
        await trio.sleep(0.1)
        assert events.next_nowait() is None


async def test_graceful_stop_steps_down_and_hands_over_within_an_interval(
    sim_clock: trio.testing.MockClock,
) -> None:
    async with harness() as h:
        leader = await h.wait_leader()
        interval = h.c[leader].config.evaluation_interval
        ours = h.c[leader].hub.subscribe("global-control", kinds=["steppedDown"])
        old = h.c[leader].election("global-control").token
        start = trio.current_time()
        await h.group.stop(leader)
        h.recorder.crashed(leader)
        successor = await h.wait_leader()
        assert trio.current_time() - start < interval
        stepped = ours.next_nowait()
        assert stepped is not None and stepped.reason == "shutdown"
        new = h.c[successor].election("global-control").token
        assert old is not None and new is not None and new.fence_token == old.fence_token + 1
        # The stopped node released everything it led: every scope has a leader again at once.
        for scope in SCOPES:
            assert await h.wait_leader(scope.scope_id, timeout=interval) != leader


async def test_an_unhealthy_leader_hands_over_and_unhealthy_nodes_do_not_campaign(
    sim_clock: trio.testing.MockClock,
) -> None:
    async with harness() as h:
        leader = await h.wait_leader()
        cfg = h.c[leader].config
        start = trio.current_time()
        await h.c[leader].update_health(False, {"cpu": "97%"})
        successor = await h.wait_leader()
        took = trio.current_time() - start
        assert took < cfg.evaluation_interval + cfg.election_backoff
        assert successor != leader
        assert not any(h.c[leader].is_leader(s.scope_id) for s in SCOPES)
        # The others see it as unhealthy; it stays a follower while unhealthy, even alone.
        seen = {c.node_id: c.healthy for c in h.c[successor].candidates("global-control")}
        assert seen[leader] is False
        for name in [n for n in NAMES if n != leader]:
            h.crash(name, status="dead")
        await trio.sleep(cfg.lease_duration * 3)
        assert h.leader() is None
        await h.c[leader].update_health(True)
        assert await h.wait_leader(timeout=cfg.evaluation_interval * 2) == leader


async def test_transfer_hands_a_scope_to_a_named_candidate(
    sim_clock: trio.testing.MockClock,
) -> None:
    async with harness() as h:
        leader = await h.wait_leader()
        ranked = [c.node_id for c in h.c[leader].candidates("global-control")]
        target = ranked[-1]  # the worst-ranked one: only a transfer puts it in charge
        old = h.c[leader].election("global-control").token
        with pytest.raises(TransferError):
            await h.c[leader].transfer("global-control", to="nobody")
        with pytest.raises(NotLeaderError):
            await h.c[target].transfer("global-control", to=leader)
        token = await h.c[leader].transfer("global-control", to=target)
        assert token is not None and token.leader_id == target
        assert old is not None and token.fence_token == old.fence_token + 1
        assert h.leader() == target
        await trio.sleep(30)
        assert h.leader() == target  # sticky: the incumbent keeps it


async def test_leadership_block_runs_only_while_leading(
    sim_clock: trio.testing.MockClock,
) -> None:
    store = InMemoryLeaseStore()
    async with harness(store=store) as h:
        leader = await h.wait_leader()
        election = h.c[leader].election("global-control")
        calls: list[tuple[str, object]] = []
        election.on_became_leader(lambda t: calls.append(("became", t.leader_id)))
        election.on_lost_leadership(lambda t, why: calls.append(("lost", why)))
        election.on_leader_changed(lambda old, new: calls.append(("changed", new)))
        body_ended: list[float] = []
        store.partition(leader)  # renewals now fail
        with pytest.raises(LeadershipLost, match="lease expired"):
            async with election.leadership() as token:
                assert token.leader_id == leader and election.is_leader
                try:
                    await trio.sleep_forever()
                finally:
                    body_ended.append(trio.current_time())
        assert not election.is_leader and election.token is None
        # The coordinator's own step-down comes at the same instant (in either order).
        await wait_for(lambda: ("lost", "lease expired") in calls, timeout=0.001, poll=0.0001)
        assert trio.current_time() - body_ended[0] < 0.001
        # Cut off before the store's lease could end: the next leader comes only after.
        successor = await h.wait_leader(timeout=10)
        took_over = trio.current_time()
        assert successor != leader and body_ended[0] < took_over
        assert ("changed", None) in calls  # it knew of no leader while cut off
        store.heal(leader)  # its change feed resyncs: it learns who leads now
        await wait_for(lambda: ("changed", successor) in calls, timeout=2)
        # A node waiting for leadership runs its block once it is elected.
        waiter = h.c[successor].election("global-control")
        with trio.fail_after(1):
            assert (await waiter.wait_until_leader()).leader_id == successor


async def test_election_handles_for_custom_resources(sim_clock: trio.testing.MockClock) -> None:
    async with harness(sample=False) as h:
        elections = {n: c.election("my-resource") for n, c in h.c.items()}
        winner = best(LeadershipScope.custom("my-resource"), NAMES)
        with trio.fail_after(10):
            token = await elections[winner].wait_until_leader()
        assert (token.scope, token.scope_kind) == ("my-resource", "custom")
        await wait_for(
            lambda: all(e.current_leader == winner for e in elections.values()), timeout=10
        )
        assert [n for n, e in elections.items() if e.is_leader] == [winner]


async def test_renewal_failure_steps_down_before_the_store_lease_ends(
    sim_clock: trio.testing.MockClock,
) -> None:
    store = InMemoryLeaseStore(latency=0.005)
    async with harness(store=store) as h:
        leader = await h.wait_leader()
        lease = await store.get(GLOBAL)
        assert lease.lease is not None
        store_expiry = trio.current_time() + lease.lease.remaining
        ended = h.c[leader].hub.subscribe("global-control", kinds=["expired", "lost"])
        store.partition(leader)
        with trio.fail_after(lease.lease.remaining):
            event = await ended.__anext__()
        assert event.kind is EventKind.EXPIRED
        assert trio.current_time() < store_expiry - 0.1  # its own deadline, with margin
        store.heal(leader)


def skewed(rate: float, offset: float = 0.0) -> SkewedClock:
    return SkewedClock(offset=offset, rate=rate)


async def chaos(
    h: Harness,
    store: InMemoryLeaseStore,
    rng: random.Random,
    until: float,
    stop: Callable[[], bool] = lambda: False,
) -> None:
    """Cut nodes off from the store (half the time a leader of some scope), crash and restart
    nodes, flap health; until ``until`` or until ``stop()``."""
    while trio.current_time() < until and not stop():
        await trio.sleep(rng.uniform(0.5, 4.0))
        live = list(h.c)
        action = rng.random()
        leading = sorted({n for s in SCOPES for n in h.group.leaders(s.scope_id)})
        victim = rng.choice(leading if leading and rng.random() < 0.5 else live)
        if action < 0.5:
            store.partition(victim)
            unseen = rng.random() < 0.5  # cut off from the mesh too: the others suspect it
            if unseen:
                h.group.mesh.set_status(victim, "suspect")
            await trio.sleep(rng.uniform(0.5, 9.0))
            store.heal(victim)
            if unseen and h.group.mesh.status(victim) == "suspect":
                h.group.mesh.set_status(victim, "alive")
        elif action < 0.7 and len(live) > 2:
            h.crash(victim)
            await trio.sleep(rng.uniform(0.0, 3.0))
            await h.start(victim, clock=CLOCKS.get(victim))
        else:
            await h.c[victim].update_health(False)
            await trio.sleep(rng.uniform(0.1, 3.0))
            if victim in h.c:
                await h.c[victim].update_health(True)


CHAOS_SECONDS = 240.0

CLOCKS: dict[str, Clock] = {
    "n1": skewed(1.05),  # 5% fast
    "n2": skewed(0.95),  # 5% slow
    "n3": skewed(1.0, +0.25),  # OmniRelay's skew budget, both ways (n4 also 3% slow)
    "n4": skewed(0.97, -0.25),
    "n5": skewed(1.03, 1000.0),
}


CHAOS_SEEDS = [1, 2, 3, *(pytest.param(seed, marks=pytest.mark.slow) for seed in range(4, 11))]


@pytest.mark.parametrize("seed", CHAOS_SEEDS)
async def test_skewed_and_drifting_clocks_never_hold_overlapping_leases(
    sim_clock: trio.testing.MockClock, seed: int
) -> None:
    rng = random.Random(seed)
    store = InMemoryLeaseStore(latency=lambda: rng.uniform(0.001, 0.05))
    async with harness(store=store, clocks=CLOCKS, seed=seed) as h:
        await chaos(h, store, rng, until=trio.current_time() + CHAOS_SECONDS)
        summary = h.recorder.check()
        assert summary["terms"] > 30  # the chaos really moved leadership around
        assert h.samples > 40_000
        assert summary["writes"] > 10_000


BROKEN_SEEDS = range(1, 11)


@pytest.mark.slow
@pytest.mark.parametrize("seed", BROKEN_SEEDS)
async def test_chaos_catches_a_leader_that_believes_its_whole_lease(
    sim_clock: trio.testing.MockClock, seed: int
) -> None:
    """Negative control for the chaos run: with no drift margin (``maxClockDrift = 0``, the
    leader believes the whole grant) every seed must find two leaders."""
    rng = random.Random(seed)
    store = InMemoryLeaseStore(latency=lambda: rng.uniform(0.001, 0.05))
    async with harness(store=store, clocks=CLOCKS, seed=seed, max_clock_drift=0.0) as h:
        h.check_on_exit = False
        end = trio.current_time() + 3 * CHAOS_SECONDS  # it stops at the first overlap
        await chaos(h, store, rng, until=end, stop=lambda: bool(h.overlaps))
        assert h.overlaps, f"seed {seed}: the broken variant was not caught"
        with pytest.raises(SafetyViolation, match="led until"):
            h.recorder.check()


async def test_the_checker_catches_a_drift_bound_that_is_too_small(
    sim_clock: trio.testing.MockClock,
) -> None:
    """Negative control: without the drift margin a slow clock overstays its lease."""
    store = InMemoryLeaseStore()
    names = ["n1", "n2", "n3"]
    first = best(GLOBAL, names)
    slow: dict[str, Clock] = {first: skewed(0.9)}  # the leader-to-be runs 10% slow
    async with harness(names, store=store, clocks=slow, max_clock_drift=0.0) as h:
        h.check_on_exit = False
        assert await h.wait_leader() == first
        store.partition(first)
        await trio.sleep(20)
        assert h.overlaps and first in h.overlaps[0][2]
        with pytest.raises(
            SafetyViolation, match=rf": {first}@\S+ \(fence \d+\) led until .* began"
        ):
            h.recorder.check()


class TrustingGuard(FenceGuard):
    """A broken fenced resource: it accepts every token."""

    def check(self, token: LeadershipToken) -> None:
        return None


async def test_the_checker_catches_a_resource_that_accepts_stale_writes(
    sim_clock: trio.testing.MockClock,
) -> None:
    """Negative control for the stale-write check: two leaders (no drift margin, a slow
    clock) both write; a real guard rejects the old one, a trusting one is caught."""
    for guard, caught in ((FenceGuard, False), (TrustingGuard, True)):
        store = InMemoryLeaseStore()
        names = ["n1", "n2", "n3"]
        first = best(GLOBAL, names)
        slow: dict[str, Clock] = {first: skewed(0.9)}
        async with harness(names, store=store, clocks=slow, max_clock_drift=0.0) as h:
            h.check_on_exit = False
            h.recorder = LeadershipRecorder(guard=guard)
            for c in h.c.values():
                h.recorder.follow(c)
            assert await h.wait_leader() == first
            store.partition(first)
            await trio.sleep(20)
            assert h.overlaps  # the old leader wrote while the new one did
            writes = h.recorder.writes
            taken_over = min(w.at for w in writes if w.holder.node_id != first)
            stale = [w for w in writes if w.holder.node_id == first and w.at >= taken_over]
            assert stale, "the overstaying leader never wrote"
            assert all(w.accepted for w in stale) is caught
            if caught:
                with pytest.raises(SafetyViolation, match=r"a write with fence .* was accepted"):
                    check_stale_writes(h.recorder.writes)
            else:
                check_stale_writes(h.recorder.writes)


class RestartingStore:
    """An in-memory store that can restart without persistence: it forgets the terms it
    issued, so fences start again from 1 (what DESIGN.md 5 rule 6 forbids)."""

    def __init__(self) -> None:
        self.inner = InMemoryLeaseStore()

    def restart(self) -> None:
        self.inner = InMemoryLeaseStore()

    async def acquire(self, *args: Any) -> Any:
        return await self.inner.acquire(*args)

    async def renew(self, *args: Any) -> Any:
        return await self.inner.renew(*args)

    async def release(self, *args: Any, **kwargs: Any) -> Any:
        return await self.inner.release(*args, **kwargs)

    async def get(self, *args: Any) -> Any:
        return await self.inner.get(*args)


async def test_the_checker_catches_fences_that_go_backwards(
    sim_clock: trio.testing.MockClock,
) -> None:
    """Negative control for the fence-order check: a store that forgot its terms hands the
    next leader the fence the crashed one had."""
    store = RestartingStore()
    async with harness(["n1", "n2", "n3"], store=store) as h:  # type: ignore[arg-type]
        h.check_on_exit = False
        leader = await h.wait_leader()
        h.crash(leader, status="dead")
        store.restart()
        successor = await h.wait_leader()
        assert successor != leader
        await trio.sleep(0.01)  # sampled
        with pytest.raises(SafetyViolation, match=r"fence went from 1 .* to 1"):
            h.recorder.check()


async def test_a_restarted_node_is_a_new_holder(sim_clock: trio.testing.MockClock) -> None:
    store = InMemoryLeaseStore()
    async with harness(store=store) as h:
        leader = await h.wait_leader()
        old = h.c[leader].election("global-control").token
        assert old is not None
        h.crash(leader)
        restarted = await h.start(leader)
        await trio.sleep(1.0)
        assert not restarted.is_leader("global-control")  # it may not renew its old term
        new_leader = await h.wait_leader(timeout=15)
        token = h.c[new_leader].election("global-control").token
        assert token is not None and token.fence_token > old.fence_token


async def test_metrics_count_this_nodes_transitions(sim_clock: trio.testing.MockClock) -> None:
    async with harness() as h:
        leader = await h.wait_leader()
        await trio.sleep(10)  # a renewal or two
        registry = h.c[leader].metrics.registry
        labels = {"scope": "global-control", "scope_kind": "global", "leader": leader}
        get = registry.get_sample_value
        assert get("mesh_leadership_transitions_total", {**labels, "transition": "elected"}) == 1
        assert get("mesh_leadership_transitions_total", {**labels, "transition": "renewed"}) >= 1
        count = get(
            "mesh_leadership_election_duration_ms_count",
            {"scope": "global-control", "scope_kind": "global"},
        )
        assert count == 1
        led = sum(h.c[leader].is_leader(s.scope_id) for s in SCOPES)
        assert get("swimmesh_leadership_scopes_led", {}) == led
        follower = next(n for n in NAMES if n != leader)
        other = h.c[follower].metrics.registry.get_sample_value
        assert (
            other("mesh_leadership_transitions_total", {**labels, "transition": "elected"}) is None
        )
        await h.group.stop(leader)
        h.recorder.crashed(leader)
        assert (
            get("mesh_leadership_transitions_total", {**labels, "transition": "steppeddown"}) == 1
        )


async def test_a_slow_election_logs_an_sla_warning(
    sim_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    store = InMemoryLeaseStore()
    store.available = False
    with caplog.at_level(logging.WARNING, logger="leadership.coordinator"):
        async with harness(store=store) as h:
            await trio.sleep(7)  # the store is down for longer than maxElectionWindow
            store.available = True
            await h.wait_leader()
    warnings = [r for r in caplog.records if "maxElectionWindow" in r.getMessage()]
    assert warnings and getattr(warnings[0], "seconds", 0) > 5.0
    assert getattr(warnings[0], "correlation_id", "")


class PollingOnly:
    """The in-memory store without its watch: coordinators must poll."""

    def __init__(self, store: InMemoryLeaseStore) -> None:
        self.acquire, self.renew = store.acquire, store.renew
        self.release, self.get = store.release, store.get


async def test_a_store_without_a_watch_is_polled(sim_clock: trio.testing.MockClock) -> None:
    async with harness(store=PollingOnly(InMemoryLeaseStore())) as h:  # type: ignore[arg-type]
        leader = await h.wait_leader()
        cfg = h.c[leader].config
        start = trio.current_time()
        await h.group.stop(leader)
        h.recorder.crashed(leader)
        await h.wait_leader()
        # Learnt by polling: within an interval (with jitter) plus one rank wait.
        assert trio.current_time() - start <= cfg.evaluation_interval * 7 / 6 + cfg.election_backoff


async def test_idle_followers_do_not_read_the_store(sim_clock: trio.testing.MockClock) -> None:
    """With a change feed that reports renewals, steady state costs one renewal per lease
    period per scope and nothing else: no follower wakes to read."""
    store = InMemoryLeaseStore()
    async with harness(store=store, sample=False) as h:
        for scope in SCOPES:
            await h.wait_leader(scope.scope_id)
        await trio.sleep(10)
        before = dict(store.calls)
        await trio.sleep(60)
        delta = {op: store.calls[op] - before.get(op, 0) for op in store.calls}
        cfg = h.c["n1"].config
        period = cfg.validity(cfg.lease_duration) - cfg.renewal_lead_time
        assert delta.get("get", 0) == 0 and delta.get("acquire", 0) == 0
        assert delta["renew"] <= len(SCOPES) * (60 / period + 1)


async def test_a_scope_that_asks_for_a_role_is_led_only_by_nodes_with_it(
    sim_clock: trio.testing.MockClock,
) -> None:
    ops = LeadershipScope.custom("ops-control", roles=("ops",))
    with_role = {"n4", "n5"}

    def make(name: str) -> LeadershipConfig:
        roles = ("ops",) if name in with_role else ()
        return LeadershipConfig(node_id=name, scopes=(*SCOPES, ops), roles=roles, priority=0)

    store = InMemoryLeaseStore()
    async with trio.open_nursery() as nursery:
        group = CoordinatorGroup(nursery, store, LocalMesh(), make)
        for name in NAMES:
            await group.start(name)
        await wait_for(lambda: len(group.leaders("ops-control")) == 1, timeout=10)
        ranked = rank_candidates(ops, [Candidate(n, roles=frozenset({"ops"})) for n in with_role])
        assert group.leaders("ops-control") == [ranked[0].node_id]
        for name in with_role:
            group.crash(name, status="dead")
        await trio.sleep(30)  # nobody else may take it, however long it stays vacant
        assert group.leaders("ops-control") == []
        assert all(group.leaders(s.scope_id) for s in SCOPES)  # the others are led as ever
        nursery.cancel_scope.cancel()


@pytest.mark.parametrize("preempt", [False, True])
async def test_a_preferred_candidate_takes_over_only_with_preempt_and_once_stable(
    sim_clock: trio.testing.MockClock, preempt: bool
) -> None:
    stable_after = 3.0

    def make(name: str) -> LeadershipConfig:
        return LeadershipConfig(
            node_id=name,
            scopes=(GLOBAL,),
            priority=10 if name == "boss" else 0,
            preempt=preempt,
            stable_after=stable_after,
        )

    store = InMemoryLeaseStore()
    async with trio.open_nursery() as nursery:
        group = CoordinatorGroup(nursery, store, LocalMesh(), make)
        for name in ("n1", "n2"):
            await group.start(name)
        await wait_for(lambda: len(group.leaders("global-control")) == 1, timeout=10)
        incumbent = group.leaders("global-control")[0]
        boss = await group.start("boss")
        joined = trio.current_time()
        # A flap inside the stability window restarts it.
        await trio.sleep(1.0)
        await boss.update_health(False)
        await boss.update_health(True)
        healthy_again = trio.current_time()
        if not preempt:
            await trio.sleep(30)
            assert group.leaders("global-control") == [incumbent]  # sticky
        else:
            await wait_for(lambda: group.leaders("global-control") == ["boss"], timeout=15)
            took = trio.current_time()
            assert took - healthy_again >= stable_after and took - joined > stable_after + 1
            token = boss.election("global-control").token
            assert token is not None and token.fence_token == 2
            stepped = [
                e
                for e in group.coordinators[incumbent].hub.history()
                if e.kind is EventKind.STEPPED_DOWN and e.leader_id == incumbent
            ]
            assert stepped and stepped[0].reason == "handed to preferred candidate boss"
            await trio.sleep(30)
            assert group.leaders("global-control") == ["boss"]  # and no churn after
        nursery.cancel_scope.cancel()


async def test_every_change_reaches_the_audit_file(
    sim_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    def make(name: str) -> LeadershipConfig:
        return LeadershipConfig(
            node_id=name, scopes=(GLOBAL,), audit_file=str(tmp_path / f"{name}.jsonl")
        )

    async with trio.open_nursery() as nursery:
        group = CoordinatorGroup(nursery, InMemoryLeaseStore(), LocalMesh(), make)
        for name in ("n1", "n2"):
            await group.start(name)
        await wait_for(lambda: len(group.leaders("global-control")) == 1, timeout=10)
        leader = group.leaders("global-control")[0]
        other = "n2" if leader == "n1" else "n1"
        await trio.sleep(10)  # renewals are not changes: they are not audited
        await group.stop(leader)
        await wait_for(lambda: group.leaders("global-control") == [other], timeout=5)
        nursery.cancel_scope.cancel()
    mine = [json.loads(line) for line in (tmp_path / f"{leader}.jsonl").read_text().splitlines()]
    theirs = [json.loads(line) for line in (tmp_path / f"{other}.jsonl").read_text().splitlines()]
    assert [(e["eventKind"], e["reason"]) for e in mine] == [
        ("elected", "acquired"),
        ("steppedDown", "shutdown"),
    ]
    assert mine[0]["correlationId"] == mine[1]["correlationId"]  # one id for the whole term
    assert [e["eventKind"] for e in theirs] == ["observed", "steppedDown", "elected", "steppedDown"]


class FlakyStore:
    """A store that breaks its protocol: some calls raise, its change feed dies."""

    def __init__(self, store: InMemoryLeaseStore) -> None:
        self._store = store
        self.raised = 0
        self.renew, self.release, self.get = store.renew, store.release, store.get

    async def acquire(self, *args: Any) -> Any:
        if self.raised < 6:
            self.raised += 1
            raise RuntimeError("connection reset by a broken store client")
        return await self._store.acquire(*args)

    async def watch(self) -> AsyncIterator[Any]:
        async for change in self._store.watch():
            yield change
            raise OSError("feed torn down")


async def test_a_store_that_raises_does_not_end_the_coordinator(
    sim_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    flaky = FlakyStore(InMemoryLeaseStore())
    async with harness(store=flaky) as h:  # type: ignore[arg-type]
        leader = await h.wait_leader(timeout=30)
        assert flaky.raised == 6
        errors = h.c[leader].metrics.registry.get_sample_value(
            "swimmesh_leadership_store_unavailable_total", {"operation": "acquire"}
        )
        assert errors is not None and errors >= 1
        await h.group.stop(leader)  # the feeds died; followers still learn by re-reading
        h.recorder.crashed(leader)
        assert await h.wait_leader(timeout=15) != leader
    assert any("change feed failed" in r.getMessage() for r in caplog.records)


async def test_a_disabled_coordinator_only_observes(sim_clock: trio.testing.MockClock) -> None:
    def make(name: str) -> LeadershipConfig:
        return LeadershipConfig(node_id=name, scopes=(GLOBAL,), enabled=name != "n1", priority=9)

    async with trio.open_nursery() as nursery:
        group = CoordinatorGroup(nursery, InMemoryLeaseStore(), LocalMesh(), make)
        observer = await group.start("n1")
        await group.start("n2")
        await wait_for(lambda: group.leaders("global-control") == ["n2"], timeout=10)
        assert [c.node_id for c in observer.candidates("global-control")] == ["n2"]
        await wait_for(
            lambda: observer.election("global-control").current_leader == "n2", timeout=5
        )
        group.crash("n2", status="dead")
        await trio.sleep(30)
        assert group.leaders("global-control") == []  # the observer never campaigns
        nursery.cancel_scope.cancel()


async def test_a_transfer_to_a_node_that_turns_unhealthy_falls_back_to_the_ranking(
    sim_clock: trio.testing.MockClock,
) -> None:
    async with harness(sample=True) as h:
        leader = await h.wait_leader()
        target = [c.node_id for c in h.c[leader].candidates("global-control")][-1]
        cfg = h.c[leader].config
        await h.c[target].update_health(False)  # the view lags: the leader still sees it healthy
        await h.c[leader]._give_up(
            h.c[leader]._scopes["global-control"],
            f"transferred to {target}",
            successor=target,
            reserve=cfg.max_election_window,
        )
        # It may not take the reserved scope; once the reservation runs out, the ranking decides.
        new = await h.wait_leader(timeout=cfg.max_election_window + 2 * cfg.evaluation_interval + 1)
        assert new != target


async def test_a_renewal_answered_too_late_is_restored_as_the_same_term(
    sim_clock: trio.testing.MockClock,
) -> None:
    slow = [False]
    store = InMemoryLeaseStore(latency=lambda: 2.0 if slow[0] else 0.0)
    async with harness(["n1", "n2", "n3"], store=store) as h:
        leader = await h.wait_leader()
        events = h.c[leader].hub.subscribe("global-control", leader=leader)
        with trio.fail_after(1):
            first = await events.__anext__()  # the snapshot of its term
        assert first.token is not None
        slow[0] = True  # the next renewal: 2 s there (granted), 2 s back (too late)
        with trio.fail_after(30):
            expired = await events.__anext__()
            while expired.kind is EventKind.RENEWED:
                expired = await events.__anext__()
        assert (expired.kind, expired.reason) == (EventKind.EXPIRED, "lease expired during renew")
        slow[0] = False
        with trio.fail_after(30):
            restored = await events.__anext__()
        assert (restored.kind, restored.reason) == (EventKind.ELECTED, "lease restored")
        assert restored.token is not None
        assert restored.token.fence_token == first.token.fence_token  # same term, no new fence
        assert restored.correlation_id == first.correlation_id
        assert h.leader() == leader
