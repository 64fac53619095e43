"""Leadership safety in one process: each scenario runs through the public API (coordinators,
the in-memory store, the election handle) and fails if a service could see two leaders, or a
leadership block run on past its lease."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import attrs
import pytest
import trio
import trio.testing

from leadership import (
    BootTime,
    EventKind,
    Holder,
    InMemoryLeaseStore,
    LeadershipConfig,
    LeadershipCoordinator,
    LeadershipEvent,
    LeadershipLost,
    LeadershipScope,
    LeadershipToken,
    Lease,
    LeaseChange,
    LeaseChangeKind,
    LeaseOutcome,
    LeaseResult,
    LeaseStore,
    StaleFenceError,
)
from leadership.clock import Clock
from leadership.testing import CoordinatorGroup, JumpClock, LocalMesh
from leadership.timers import BUSY_CHECK_INTERVAL, CLOCK_CHECK_INTERVAL, LeaseTimers
from simulations.leadership import split_brain_reports
from simulations.safety import LeadershipRecorder, SafetyViolation
from swimmesh import SkewedClock
from swimmesh.testing import wait_for

GLOBAL = LeadershipScope.global_control()
SCOPE = "global-control"


@attrs.define
class World:
    group: CoordinatorGroup
    store: InMemoryLeaseStore
    recorder: LeadershipRecorder

    def c(self, name: str) -> LeadershipCoordinator:
        return self.group.coordinators[name]

    def leaders(self) -> list[str]:
        return self.group.leaders(SCOPE)

    async def wait_leader(self, name: str, timeout: float = 20.0) -> None:
        await wait_for(lambda: self.leaders() == [name], timeout=timeout, poll=0.01, what=name)

    def events(self, name: str, kind: EventKind) -> list[LeadershipEvent]:
        return [e for e in self.c(name).hub.history() if e.kind is kind]


@asynccontextmanager
async def world(
    names: list[str],
    *,
    store: InMemoryLeaseStore | None = None,
    wrap: Callable[[InMemoryLeaseStore], LeaseStore] | None = None,
    clocks: dict[str, Clock] | None = None,
    first: str | None = None,
    **overrides: Any,
) -> AsyncIterator[World]:
    """Coordinators for ``names`` on one store; ``first`` has the highest priority. The
    recorder samples every ``is_leader`` and checks the history on the way out."""
    store = store if store is not None else InMemoryLeaseStore()

    def make(name: str) -> LeadershipConfig:
        priority = 9 if name == first else 0
        return LeadershipConfig(node_id=name, scopes=(GLOBAL,), priority=priority, **overrides)

    async with trio.open_nursery() as nursery:
        group = CoordinatorGroup(nursery, wrap(store) if wrap else store, LocalMesh(), make)
        recorder = LeadershipRecorder()
        for name in names:
            recorder.follow(await group.start(name, clock=(clocks or {}).get(name)))
        nursery.start_soon(recorder.run)
        yield World(group, store, recorder)
        recorder.check()
        nursery.cancel_scope.cancel()


def on_event(coordinator: LeadershipCoordinator, kind: EventKind) -> trio.Event:
    """An event set when ``coordinator`` publishes its next event of ``kind``."""
    seen = trio.Event()
    coordinator.hub.add_listener(lambda e: seen.set() if e.kind is kind else None)
    return seen


async def current_lease(store: InMemoryLeaseStore) -> Lease:
    result = await store.get(GLOBAL)
    assert result.lease is not None
    return result.lease


# -- 1. grants never shrink under a holder ----------------------------------------------------


async def test_a_renewal_granted_for_less_lets_no_second_leader_in_while_the_first_believes(
    sim_clock: trio.testing.MockClock,
) -> None:
    store = InMemoryLeaseStore(latency=0.001)
    async with world(["n1", "n2"], store=store, first="n1") as w:
        await w.wait_leader("n1")
        renewed = on_event(w.c("n1"), EventKind.RENEWED)
        store.max_lease = 1.0  # the store's cap drops: the next renewal is granted for less
        with trio.fail_after(10):
            await renewed.wait()
        store.partition("n1")  # cut off right after that renewal
        store.max_lease = 600.0
        await wait_for(lambda: w.leaders() == ["n2"], timeout=30, poll=0.01, what="n2 leads")
        # The recorder (checked on the way out) saw no instant with both believing.


# -- 2. a grant that lands after its own validity ---------------------------------------------


class SuspendDuringAcquire:
    """The in-memory store, but the first acquisition's reply reaches the candidate after
    its host slept ``seconds`` (its lease clock, and the store's, jumped meanwhile)."""

    def __init__(self, store: InMemoryLeaseStore, clock: JumpClock, seconds: float) -> None:
        self.store, self.clock, self.seconds = store, clock, seconds
        self.renew, self.release, self.get = store.renew, store.release, store.get
        self.watch = store.watch

    async def acquire(self, scope: LeadershipScope, holder: Holder, duration: float) -> LeaseResult:
        result = await self.store.acquire(scope, holder, duration)
        if self.seconds:
            self.clock.jump(self.seconds)
            self.seconds = 0.0
        return result


async def test_a_grant_that_arrives_after_its_validity_is_abandoned_and_released(
    sim_clock: trio.testing.MockClock,
) -> None:
    clock = JumpClock()
    store = InMemoryLeaseStore(clock=clock)
    believed_when_elected: list[bool] = []

    def late(inner: InMemoryLeaseStore) -> LeaseStore:
        return SuspendDuringAcquire(inner, clock, seconds=20.0)  # type: ignore[return-value]

    async with world(["n1"], store=store, wrap=late, clocks={"n1": clock}) as w:
        election = w.c("n1").election(SCOPE)
        election.on_became_leader(lambda token: believed_when_elected.append(election.is_leader))
        await w.wait_leader("n1", timeout=30)
        assert believed_when_elected == [True]  # the late grant never elected it
        elected = w.events("n1", EventKind.ELECTED)
        assert len(elected) == 1 and elected[0].token is not None
        assert elected[0].token.term == 2  # the late grant (term 1) was given back, not used
        assert not w.events("n1", EventKind.EXPIRED)


# -- 3. suspend: the lease clock jumps ----------------------------------------------------------


async def test_the_default_lease_clock_counts_across_suspend() -> None:
    if not hasattr(time, "CLOCK_BOOTTIME"):
        pytest.skip("no CLOCK_BOOTTIME on this platform")
    mesh = LocalMesh()
    config = LeadershipConfig(node_id="n1", scopes=(GLOBAL,))
    async with LeadershipCoordinator.open(config, InMemoryLeaseStore(), mesh.view("n1")) as c:
        assert isinstance(c.clock, BootTime)
        c.crash()


async def test_after_the_host_sleeps_a_leadership_block_ends_at_once(
    sim_clock: trio.testing.MockClock,
) -> None:
    clock = JumpClock()  # n1's lease clock; the store's clock counts through n1's sleep too
    store = InMemoryLeaseStore(clock=clock)
    ended: list[float] = []
    async with world(["n1", "n2"], store=store, clocks={"n1": clock}, first="n1") as w:
        await w.wait_leader("n1")
        election = w.c("n1").election(SCOPE)
        expired = on_event(w.c("n1"), EventKind.EXPIRED)

        async def service() -> None:
            with pytest.raises(LeadershipLost):
                async with election.leadership():
                    await trio.sleep_forever()
            ended.append(trio.current_time())

        async with trio.open_nursery() as nursery:
            nursery.start_soon(service)
            await trio.sleep(1.0)
            w.recorder.crashed("n1")  # a sleeping host's beliefs are nobody's concern
            clock.jump(20.0)  # the host slept 20 s; Trio's clock did not see it
            woke = trio.current_time()
            assert not election.is_leader
            assert (await store.get(GLOBAL)).lease is None  # the store let the lease go
            with trio.fail_after(1.0):
                await expired.wait()
            # noticed at the process's first wakeup once BUSY_CHECK_INTERVAL has passed since
            # the last check, not at the idle check's interval
            assert trio.current_time() - woke <= 2 * BUSY_CHECK_INTERVAL
        assert ended and ended[0] - woke <= 2 * BUSY_CHECK_INTERVAL  # and so did the block


async def test_a_lease_clock_jump_in_an_otherwise_idle_process_is_noticed_within_the_interval(
    sim_clock: trio.testing.MockClock,
) -> None:
    """The host suspends while the process waits and nothing else would wake it: the watcher's
    own wakeup, within CLOCK_CHECK_INTERVAL, maps the deadline again (it was 100 s away)."""

    class SuspendsAt(JumpClock):
        """Jumps 150 s at Trio time ``at`` by itself, while every task of the run sleeps."""

        def __init__(self, at: float) -> None:
            super().__init__()
            self.at = at

        def now(self) -> float:
            if trio.current_time() >= self.at and not self.offset:
                self.jump(150.0)
            return super().now()

    clock = SuspendsAt(at=trio.current_time() + 0.3)
    timers = LeaseTimers(clock)
    timers.start()
    try:
        with trio.fail_after(10 * CLOCK_CHECK_INTERVAL):  # a watcher that never looks fails
            with timers.until(clock.now() + 100.0) as scope:
                await trio.sleep_forever()
        assert scope.cancelled_caught
        late = trio.current_time() - clock.at
        assert 0 <= late <= CLOCK_CHECK_INTERVAL
    finally:
        timers.stop()


# -- 4. the scope task's nudge loop -------------------------------------------------------------


class Steps(trio.abc.Instrument):
    """Counts task steps: a task that spins shows up as many of them."""

    def __init__(self) -> None:
        self.count = 0

    def before_task_step(self, task: trio.lowlevel.Task) -> None:
        self.count += 1


async def test_a_renewal_report_that_moves_a_followers_read_earlier_does_not_spin(
    sim_clock: trio.testing.MockClock,
) -> None:
    store = InMemoryLeaseStore()
    async with world(["n1", "n2"], store=store, first="n1") as w:
        await w.wait_leader("n1")
        await wait_for(
            lambda: w.c("n2").election(SCOPE).current_leader == "n1", timeout=10, poll=0.01
        )
        await trio.sleep(0.5)
        lease = await current_lease(store)
        steps = Steps()
        trio.lowlevel.add_instrument(steps)
        try:
            # A store whose voters clock differently may report less remaining than before.
            store.deliver(
                LeaseChange(
                    LeaseChangeKind.RENEWED, GLOBAL.key, attrs.evolve(lease, remaining=0.01)
                )
            )
            with trio.fail_after(1):
                await trio.sleep(0.05)
        finally:
            trio.lowlevel.remove_instrument(steps)
        assert steps.count < 2_000, steps.count


# -- 5. stale change-feed events ----------------------------------------------------------------


async def test_stale_change_feed_events_neither_depose_a_leader_nor_hide_it(
    sim_clock: trio.testing.MockClock,
) -> None:
    store = InMemoryLeaseStore()
    ghost = Holder("ghost", "boot1")
    await store.acquire(GLOBAL, ghost, 1.0)  # an earlier term by a node long gone
    await store.release(GLOBAL, ghost, 1)
    async with world(["n1", "n2"], store=store, first="n1") as w:
        await w.wait_leader("n1")
        await wait_for(
            lambda: w.c("n2").election(SCOPE).current_leader == "n1", timeout=10, poll=0.01
        )
        lease = await current_lease(store)
        assert lease.term == 2
        old = attrs.evolve(lease, holder=ghost, term=1, fence_token=1)
        # Delivered late: the ghost's acquisition and release of term 1.
        store.deliver(LeaseChange(LeaseChangeKind.ACQUIRED, GLOBAL.key, old))
        store.deliver(LeaseChange(LeaseChangeKind.RELEASED, GLOBAL.key, term=1, holder=ghost))
        await trio.sleep(0.1)
        assert w.leaders() == ["n1"]
        assert w.c("n2").election(SCOPE).current_leader == "n1"
        for name in ("n1", "n2"):
            assert not w.events(name, EventKind.SPLIT_BRAIN)
            assert not w.events(name, EventKind.LOST)
            assert not w.events(name, EventKind.STEPPED_DOWN)


# -- split brain: only what is real ------------------------------------------------------------


async def test_a_refuted_suspicion_of_the_leader_is_not_split_brain(
    sim_clock: trio.testing.MockClock,
) -> None:
    async with world(["n1", "n2", "n3"], first="n1") as w:
        await w.wait_leader("n1")
        await wait_for(
            lambda: all(w.c(n).election(SCOPE).current_leader == "n1" for n in ("n2", "n3")),
            timeout=10,
            poll=0.01,
        )
        w.group.mesh.set_status("n1", "suspect")
        await trio.sleep(0.05)
        w.group.mesh.set_status("n1", "alive")  # refuted
        await trio.sleep(20)
        for name in ("n2", "n3"):
            assert not w.events(name, EventKind.SPLIT_BRAIN)


async def test_a_leader_suspect_past_the_grace_with_a_valid_token_is_split_brain(
    sim_clock: trio.testing.MockClock,
) -> None:
    async with world(["n1", "n2"], first="n1") as w:
        await w.wait_leader("n1")
        await wait_for(
            lambda: w.c("n2").election(SCOPE).current_leader == "n1", timeout=10, poll=0.01
        )
        grace = w.c("n2").config.lease_duration
        w.group.mesh.set_status("n1", "suspect")  # gossip lost it; the store did not
        start = trio.current_time()
        reported = on_event(w.c("n2"), EventKind.SPLIT_BRAIN)
        with trio.fail_after(grace + 2):
            await reported.wait()
        assert grace <= trio.current_time() - start < grace + 1
        assert w.leaders() == ["n1"]


async def test_a_fence_guard_rejection_is_reported_as_split_brain(
    sim_clock: trio.testing.MockClock,
) -> None:
    async with world(["n1", "n2"], first="n1") as w:
        await w.wait_leader("n1")
        token = w.c("n1").election(SCOPE).token
        assert token is not None
        guard = w.c("n2").fence_guard()
        guard.check(token)
        stale: LeadershipToken = attrs.evolve(token, term=0, fence_token=0, leader_id="n2")
        with pytest.raises(StaleFenceError):
            guard.check(stale)
        (report,) = w.events("n2", EventKind.SPLIT_BRAIN)
        assert "fence 0 from n2 acted after fence" in report.reason
        assert (
            w.c("n2").metrics.registry.get_sample_value(
                "mesh_leadership_split_brain_total", {"scope": SCOPE, "leader": "n2"}
            )
            == 1.0
        )


# -- every store call is bounded ---------------------------------------------------------------


class HangsOnce:
    """The in-memory store without its change feed (so followers must read), but the first
    call of ``operation`` never answers."""

    def __init__(self, store: InMemoryLeaseStore, operation: str) -> None:
        self.store, self.operation = store, operation
        self.acquire, self.renew = store.acquire, store.renew
        self.release, self.get = store.release, store.get
        setattr(self, operation, self._hang)

    async def _hang(self, *args: Any, **kwargs: Any) -> LeaseResult:
        setattr(self, self.operation, getattr(self.store, self.operation))
        await trio.sleep_forever()
        raise AssertionError("unreachable")


@pytest.mark.parametrize("operation", ["acquire", "get"])
async def test_a_store_call_that_never_answers_is_abandoned(
    sim_clock: trio.testing.MockClock, operation: str
) -> None:
    def hang(inner: InMemoryLeaseStore) -> LeaseStore:
        return HangsOnce(inner, operation)  # type: ignore[return-value]

    # Alone, n1's first call is an acquisition; n2, ranked below n1, reads first.
    names = ["n1"] if operation == "acquire" else ["n1", "n2"]
    async with world(names, wrap=hang, first="n1") as w:
        last = w.c(names[-1])
        bound = last.config.store_timeout + last.config.max_election_window + 5
        await wait_for(
            lambda: last.election(SCOPE).current_leader == "n1", timeout=bound, poll=0.01
        )
        errors = last.metrics.registry.get_sample_value(
            "swimmesh_leadership_store_unavailable_total", {"operation": operation}
        )
        assert errors == 1.0


# -- the checker itself --------------------------------------------------------------------------


async def test_the_checker_tells_a_restarted_node_from_its_old_incarnation(
    sim_clock: trio.testing.MockClock,
) -> None:
    """A paused old incarnation of n1 (slow clock, no drift margin, cut off from the store)
    still believes while its restart leads: two holders named n1 at once."""
    store = InMemoryLeaseStore()
    mesh = LocalMesh()
    recorder = LeadershipRecorder()
    config = LeadershipConfig(node_id="n1", scopes=(GLOBAL,), max_clock_drift=0.0)
    cut_off = Unreachable(store)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(recorder.run)
        async with LeadershipCoordinator.open(
            config,
            cut_off,  # type: ignore[arg-type]
            mesh.view("n1"),
            clock=SkewedClock(rate=0.9),
            boot_id="old",
        ) as old:
            recorder.follow(old)
            await wait_for(lambda: old.is_leader(SCOPE), timeout=10, poll=0.01)
            cut_off.cut = True
            async with LeadershipCoordinator.open(
                config, store, mesh.view("n1"), boot_id="new"
            ) as new:
                recorder.follow(new)
                await wait_for(lambda: new.is_leader(SCOPE), timeout=30, poll=0.01)
                await trio.sleep(0.1)
                assert old.is_leader(SCOPE)  # both believe
                with pytest.raises(SafetyViolation, match=r"n1@old .* but n1@new"):
                    recorder.check()
                new.crash()
            old.crash()
        nursery.cancel_scope.cancel()


class Unreachable:
    """The in-memory store until ``cut``: then every call fails as unreachable."""

    def __init__(self, store: InMemoryLeaseStore) -> None:
        self.store = store
        self.cut = False

    async def _call(self, operation: str, *args: Any, **kwargs: Any) -> LeaseResult:
        if self.cut:
            return LeaseResult(LeaseOutcome.STORE_UNAVAILABLE)
        result: LeaseResult = await getattr(self.store, operation)(*args, **kwargs)
        return result

    async def acquire(self, *args: Any) -> LeaseResult:
        return await self._call("acquire", *args)

    async def renew(self, *args: Any) -> LeaseResult:
        return await self._call("renew", *args)

    async def release(self, *args: Any, **kwargs: Any) -> LeaseResult:
        return await self._call("release", *args, **kwargs)

    async def get(self, *args: Any) -> LeaseResult:
        return await self._call("get", *args)


@pytest.mark.slow
async def test_an_hour_of_loss_and_refuted_suspicions_over_swim_reports_no_split_brain(
    sim_clock: trio.testing.MockClock,
) -> None:
    """1% loss plus a 1.5 s network stall of a random node every minute, over real SWIM:
    Lifeguard suspects live nodes (incumbents among them) and they refute; the store never
    saw two leaders, so nothing may be reported."""
    result = await split_brain_reports(3600.0, 0.01, stalls=60)
    assert result["suspicions_seen"] > 20  # the stalls really made views suspect live nodes
    assert result["split_brain_reports"] == 0, result["first_reasons"]
