"""The quorum lease store over a messenger: voters in other nodes, bounded rounds, and real
coordinators electing through it (in one process, under a mock clock)."""

from __future__ import annotations

import collections
from contextlib import AsyncExitStack

import pytest
import trio
import trio.testing

from leadership import (
    LeadershipConfig,
    LeadershipCoordinator,
    LeadershipScope,
    LeaseChangeKind,
    LeaseOutcome,
)
from leadership.clock import TrioTime
from leadership.messenger import MessengerError
from leadership.quorum import MemoryPromises, VoterConfig
from leadership.quorum.durable import KnownConfigFile
from leadership.quorum.followers import MIN_REMAINING
from leadership.quorum.store import CAMPAIGN_WINDOW, MESSAGE_KIND, QuorumLeaseStore
from leadership.quorum.wire import NoticeEntry
from leadership.testing import LocalMesh, LocalMessenger
from leadership.tokens import Holder

D = 8.0
VOTERS = VoterConfig(1, {"v1", "v2", "v3"})
SCOPE = LeadershipScope.custom("orders")


class CountingMessenger(LocalMessenger):
    """Counts requests by target, so tests can see batching."""

    sent: collections.Counter[str]

    async def request(self, node_id: str, kind: str, payload: bytes, *, timeout: float) -> bytes:
        self.sent[node_id] += 1
        return await super().request(node_id, kind, payload, timeout=timeout)


async def open_stores(
    stack: AsyncExitStack, mesh: LocalMesh, names: list[str], max_duration: float = D, **kw
):
    stores: dict[str, QuorumLeaseStore] = {}
    for name in names:
        mesh.add(name)
        messenger = CountingMessenger(mesh, name)
        messenger.sent = collections.Counter()
        promises = MemoryPromises() if name in VOTERS.voters else None
        stores[name] = await stack.enter_async_context(
            QuorumLeaseStore.open(
                messenger,
                config=VOTERS,
                clock=TrioTime(),
                max_duration=max_duration,
                promises=promises,
                **kw,
            )
        )
    return stores


@pytest.fixture
def clock():
    return trio.testing.MockClock(autojump_threshold=0)


async def test_one_holder_at_a_time_and_everyone_can_read_it():
    mesh = LocalMesh()
    async with AsyncExitStack() as stack:
        stores = await open_stores(stack, mesh, ["v1", "v2", "v3", "c1"])
        a, b = Holder("c1", "boot-1"), Holder("v2", "boot-1")
        won = await stores["c1"].acquire(SCOPE, a, D)
        assert won.outcome is LeaseOutcome.GRANTED and won.lease is not None
        assert won.lease.term == won.lease.fence_token == 1 and won.lease.duration == D
        lost = await stores["v2"].acquire(SCOPE, b, D)
        assert lost.outcome is LeaseOutcome.LEASE_HELD and lost.lease is not None
        assert lost.lease.holder == a and lost.lease.term == 1
        read = await stores["v3"].get(SCOPE)
        assert read.outcome is LeaseOutcome.LEASE_HELD and read.lease is not None
        assert read.lease.holder == a and read.lease.term == 1


async def renew_together(
    store: QuorumLeaseStore, holder: Holder, scopes: list[LeadershipScope]
) -> list[LeaseOutcome]:
    """Renew every scope (term 1) at once; the outcomes."""
    results: list[LeaseOutcome] = []

    async def renew(scope: LeadershipScope) -> None:
        results.append((await store.renew(scope, holder, 1, D)).outcome)

    async with trio.open_nursery() as nursery:
        for scope in scopes:
            nursery.start_soon(renew, scope)
    return results


async def test_renewals_keep_the_term_and_travel_together(clock):
    mesh = LocalMesh()
    scopes = [LeadershipScope.shard("orders", str(i)) for i in range(5)]
    async with AsyncExitStack() as stack:
        stores = await open_stores(stack, mesh, ["v1", "v2", "v3", "c1"])
        store, holder = stores["c1"], Holder("c1", "boot-1")
        for scope in scopes:
            assert (await store.acquire(scope, holder, D)).outcome is LeaseOutcome.GRANTED
        await trio.sleep(D / 3)  # past the freshness of the grants
        sent_before = dict(store.messenger.sent)  # type: ignore[attr-defined]
        assert await renew_together(store, holder, scopes) == [LeaseOutcome.GRANTED] * 5
        sent = store.messenger.sent  # type: ignore[attr-defined]
        assert {v: sent[v] - sent_before.get(v, 0) for v in ("v1", "v2", "v3")} == {
            "v1": 1,
            "v2": 1,
            "v3": 1,
        }


async def test_thrifty_renewals_ask_a_majority_and_widen_when_one_is_silent(clock):
    mesh = LocalMesh()
    scopes = [LeadershipScope.shard("orders", str(i)) for i in range(5)]
    async with AsyncExitStack() as stack:
        stores = await open_stores(stack, mesh, ["v1", "v2", "v3", "c1"], thrifty_renewals=True)
        store, holder = stores["c1"], Holder("c1", "boot-1")
        sent = store.messenger.sent  # type: ignore[attr-defined]

        async def renew_all() -> list[LeaseOutcome]:
            return await renew_together(store, holder, scopes)

        for scope in scopes:
            assert (await store.acquire(scope, holder, D)).outcome is LeaseOutcome.GRANTED
        await trio.sleep(D / 3)
        before = collections.Counter(sent)
        assert await renew_all() == [LeaseOutcome.GRANTED] * 5
        asked = {v for v in ("v1", "v2", "v3") if sent[v] > before[v]}
        assert len(asked) == 2 and all(sent[v] - before[v] == 1 for v in asked)
        # one of the two goes silent: the round asks the third after a short wait, in time
        silent = sorted(asked)[0]
        mesh.unreachable.add(silent)
        await trio.sleep(D / 3)
        start = trio.current_time()
        assert await renew_all() == [LeaseOutcome.GRANTED] * 5
        assert trio.current_time() - start <= store.request_timeout / 2 + 0.01
        assert store.stats.renewals_widened == 1
        # and the next renewal leaves the silent voter out from the start
        await trio.sleep(D / 3)
        before = collections.Counter(sent)
        start = trio.current_time()
        assert await renew_all() == [LeaseOutcome.GRANTED] * 5
        assert trio.current_time() - start < 0.05 and store.stats.renewals_widened == 1
        assert sent[silent] == before[silent]


async def test_a_renewal_takes_every_scope_led_along_and_the_next_are_answered_at_once(clock):
    mesh = LocalMesh()
    scopes = [LeadershipScope.shard("orders", str(i)) for i in range(6)]
    async with AsyncExitStack() as stack:
        stores = await open_stores(stack, mesh, ["v1", "v2", "v3", "c1"])
        store, holder = stores["c1"], Holder("c1", "boot-1")
        for scope in scopes:  # acquired at different moments
            assert (await store.acquire(scope, holder, D)).outcome is LeaseOutcome.GRANTED
            await trio.sleep(0.2)
        await trio.sleep(D / 3)
        sent = store.messenger.sent  # type: ignore[attr-defined]
        before = sent["v1"]
        first = await store.renew(scopes[0], holder, 1, D)
        assert first.outcome is LeaseOutcome.GRANTED
        assert sent["v1"] - before == 1 and store.stats.renewed_ahead == 5
        await trio.sleep(0.5)
        for scope in scopes[1:]:  # each due now: answered from the round that took it along
            start = trio.current_time()
            result = await store.renew(scope, holder, 1, D)
            assert result.outcome is LeaseOutcome.GRANTED and result.lease is not None
            # the validity it implies ends where that round's does, never later
            factor = (1 - 0.05) / (1 + 0.05)
            implied = start + result.lease.duration * factor
            assert implied == pytest.approx(store._candidate.deadline(scope.key))
        assert sent["v1"] - before == 1 and store.stats.renewals_answered_early == 5
        # and every voter holds the renewed grants: the leases run a full period from then
        for name in ("v1", "v2", "v3"):
            voter = stores[name].voter
            later = trio.current_time() + D / 2
            assert all(voter.holder_of(s.key, later) == holder for s in scopes)


async def test_a_cut_off_holder_gets_no_answer_and_the_scope_moves_on_after_expiry(clock):
    mesh = LocalMesh()
    async with AsyncExitStack() as stack:
        stores = await open_stores(stack, mesh, ["v1", "v2", "v3", "c1", "c2"], round_timeout=1.0)
        a, b = Holder("c1", "x"), Holder("c2", "y")
        assert (await stores["c1"].acquire(SCOPE, a, D)).outcome is LeaseOutcome.GRANTED
        await trio.sleep(D / 3)  # a renewal at once is answered from the fresh grant
        mesh.unreachable.add("c1")
        t0 = trio.current_time()
        renewed = await stores["c1"].renew(SCOPE, a, 1, D)
        assert renewed.outcome is LeaseOutcome.STORE_UNAVAILABLE
        assert trio.current_time() - t0 == pytest.approx(1.0)
        early = await stores["c2"].acquire(SCOPE, b, D)
        assert early.outcome is LeaseOutcome.LEASE_HELD  # the voters still hold c1's grant
        await trio.sleep(D)
        taken = await stores["c2"].acquire(SCOPE, b, D)
        assert taken.outcome is LeaseOutcome.GRANTED and taken.lease is not None
        assert taken.lease.term > 1


async def test_release_frees_the_scope_at_once():
    mesh = LocalMesh()
    async with AsyncExitStack() as stack:
        stores = await open_stores(stack, mesh, ["v1", "v2", "v3", "c1", "c2"])
        a, b = Holder("c1", "x"), Holder("c2", "y")
        await stores["c1"].acquire(SCOPE, a, D)
        assert (await stores["c1"].release(SCOPE, a, 1)).outcome is LeaseOutcome.RELEASED
        assert (await stores["c2"].get(SCOPE)).outcome is LeaseOutcome.VACANT
        assert (await stores["c2"].acquire(SCOPE, b, D)).outcome is LeaseOutcome.GRANTED
        again = await stores["c1"].renew(SCOPE, a, 1, D)
        assert again.outcome is not LeaseOutcome.GRANTED


async def test_hostile_payloads_are_refused_and_counted(caplog):
    mesh = LocalMesh()
    async with AsyncExitStack() as stack:
        stores = await open_stores(stack, mesh, ["v1", "v2", "v3"])
        for junk in (b"", b"\xff\x00", b"\x83\x01\x02\x03"):
            with pytest.raises(Exception):  # noqa: B017 - the messenger turns it into MessengerError
                await stores["v1"]._serve("mallory", junk)
        assert stores["v1"].stats.bad_messages == 3
        assert MESSAGE_KIND


async def start_coordinators(
    nursery: trio.Nursery, mesh: LocalMesh, stores: dict[str, QuorumLeaseStore]
) -> tuple[dict[str, LeadershipCoordinator], dict[str, trio.CancelScope]]:
    """A coordinator of SCOPE on every store, each in a cancel scope of its own (to crash it)."""
    coordinators: dict[str, LeadershipCoordinator] = {}
    scopes: dict[str, trio.CancelScope] = {}

    async def run(name: str, task_status=trio.TASK_STATUS_IGNORED) -> None:
        config = LeadershipConfig(
            node_id=name, scopes=(SCOPE,), lease_duration=D, max_clock_drift=0.05
        )
        with trio.CancelScope() as cs:
            scopes[name] = cs
            async with LeadershipCoordinator.open(
                config, stores[name], mesh.view(name), boot_id=f"{name}-1"
            ) as coord:
                coordinators[name] = coord
                task_status.started()
                await trio.sleep_forever()

    for name in stores:
        await nursery.start(run, name)
    return coordinators, scopes


async def test_coordinators_elect_one_leader_and_fail_over_with_a_higher_fence(clock):
    mesh = LocalMesh()
    names = ["v1", "v2", "v3", "c1"]
    async with AsyncExitStack() as stack:
        stores = await open_stores(stack, mesh, names)
        async with trio.open_nursery() as nursery:
            coordinators, scopes = await start_coordinators(nursery, mesh, stores)
            samples = 0
            with trio.fail_after(30):
                while not any(c.is_leader(SCOPE.scope_id) for c in coordinators.values()):
                    await trio.sleep(0.05)
            for _ in range(400):  # 20 virtual seconds, sampled every 50 ms
                leaders = [n for n, c in coordinators.items() if c.is_leader(SCOPE.scope_id)]
                assert len(leaders) <= 1, leaders
                samples += bool(leaders)
                await trio.sleep(0.05)
            assert samples > 350  # renewals keep it
            (first,) = [n for n, c in coordinators.items() if c.is_leader(SCOPE.scope_id)]
            fence = coordinators[first].election(SCOPE.scope_id).token.fence_token  # type: ignore[union-attr]
            coordinators.pop(first).crash()
            scopes.pop(first).cancel()
            mesh.set_status(first, "dead")
            with trio.fail_after(60):
                while not any(c.is_leader(SCOPE.scope_id) for c in coordinators.values()):
                    leaders = [n for n, c in coordinators.items() if c.is_leader(SCOPE.scope_id)]
                    assert len(leaders) <= 1
                    await trio.sleep(0.05)
            (second,) = [n for n, c in coordinators.items() if c.is_leader(SCOPE.scope_id)]
            token = coordinators[second].election(SCOPE.scope_id).token
            assert token is not None and token.fence_token > fence
            nursery.cancel_scope.cancel()


async def open_with_notices(stack: AsyncExitStack, mesh: LocalMesh, names: list[str]):
    """Stores whose holders send notices to every one of ``names``."""
    return await open_stores(stack, mesh, names, peers=lambda: list(names))


async def next_change(feed):
    with trio.fail_after(5):
        return await feed.__anext__()


async def test_followers_learn_from_notices_and_campaign_after_a_release(clock):
    mesh = LocalMesh()
    async with AsyncExitStack() as stack:
        stores = await open_with_notices(stack, mesh, ["v1", "v2", "v3", "c1", "c2"])
        a, b = Holder("c1", "x"), Holder("c2", "y")
        feed = stores["c2"].watch()
        await stores["c2"].get(SCOPE)  # c2 takes part in the scope
        assert (await stores["c1"].acquire(SCOPE, a, D)).outcome is LeaseOutcome.GRANTED
        change = await next_change(feed)
        assert change.kind is LeaseChangeKind.ACQUIRED and change.lease.holder == a
        sent = dict(stores["c2"].messenger.sent)  # type: ignore[attr-defined]
        held = await stores["c2"].acquire(SCOPE, b, D)
        assert held.outcome is LeaseOutcome.LEASE_HELD and held.lease.holder == a
        assert stores["c2"].messenger.sent == sent  # answered from what the notice said
        assert stores["c2"].stats.answered_from_cache == 1
        await stores["c1"].release(SCOPE, a, 1)
        change = await next_change(feed)
        assert change.kind is LeaseChangeKind.RELEASED
        won = await stores["c2"].acquire(SCOPE, b, D)
        assert won.outcome is LeaseOutcome.GRANTED and won.lease.term == 2


async def test_followers_hear_of_a_release_only_after_the_voters_have_it(clock):
    """A release reaches the voters slowly (their link from the holder is slow) and the
    followers fast. The successor campaigns as soon as it hears; had it heard before a majority
    of voters cleared the grant, it would be refused and wait out the whole lease (a SIGTERM
    handover that took a lease instead of a round trip, seen on real agents)."""
    mesh = LocalMesh()
    async with AsyncExitStack() as stack:
        stores = await open_with_notices(stack, mesh, ["v1", "v2", "v3", "c1", "c2"])
        a, b = Holder("c1", "x"), Holder("c2", "y")
        feed = stores["c2"].watch()
        await stores["c2"].get(SCOPE)
        assert (await stores["c1"].acquire(SCOPE, a, D)).outcome is LeaseOutcome.GRANTED
        assert (await next_change(feed)).kind is LeaseChangeKind.ACQUIRED
        slow = stores["c1"].messenger
        fast_request = slow.request

        async def slow_to_voters(node_id, kind, payload, *, timeout):
            if kind == MESSAGE_KIND:
                await trio.sleep(0.2)
            return await fast_request(node_id, kind, payload, timeout=timeout)

        slow.request = slow_to_voters  # type: ignore[method-assign]
        released_at = trio.current_time()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(stores["c1"].release, SCOPE, a, 1)
            change = await next_change(feed)
            assert change.kind is LeaseChangeKind.RELEASED
            won = await stores["c2"].acquire(SCOPE, b, D)
        assert won.outcome is LeaseOutcome.GRANTED and won.lease is not None
        assert won.lease.term == 2
        assert trio.current_time() - released_at < 1.0  # a round trip, not the 8 s lease


async def test_news_of_a_released_term_is_ignored(clock):
    mesh = LocalMesh()
    async with AsyncExitStack() as stack:
        stores = await open_with_notices(stack, mesh, ["v1", "v2", "v3"])
        a = Holder("c1", "x")
        store = stores["v3"]
        await store.get(SCOPE)
        store._take_notice(NoticeEntry("released", SCOPE.key, a, 4, 0.0))
        store._take_notice(NoticeEntry("renewed", SCOPE.key, a, 4, D))  # overtaken
        assert store._cached(SCOPE, None) is None
        store._take_notice(NoticeEntry("acquired", SCOPE.key, a, 5, D))
        cached = store._cached(SCOPE, None)
        assert cached is not None and cached.lease.term == 5


async def test_renewing_a_released_term_is_refused_at_once(clock):
    mesh = LocalMesh()
    async with AsyncExitStack() as stack:
        stores = await open_stores(stack, mesh, ["v1", "v2", "v3", "c1"])
        a = Holder("c1", "x")
        await stores["c1"].acquire(SCOPE, a, D)
        await stores["c1"].release(SCOPE, a, 1)
        t0 = trio.current_time()
        again = await stores["c1"].renew(SCOPE, a, 1, D)
        assert again.outcome is LeaseOutcome.NOT_CURRENT_LEADER
        assert trio.current_time() == t0  # no round that could only time out


async def test_a_renewal_cancelled_before_its_batch_leaves_sends_nothing(clock):
    mesh = LocalMesh()
    async with AsyncExitStack() as stack:
        stores = await open_stores(stack, mesh, ["v1", "v2", "v3", "c1"])
        store, a = stores["c1"], Holder("c1", "x")
        await store.acquire(SCOPE, a, D)
        sent = dict(store.messenger.sent)  # type: ignore[attr-defined]
        with trio.CancelScope() as scope:
            scope.cancel()  # cancelled at its first checkpoint, before the batch flushes
            await store.renew(SCOPE, a, 1, D)
        await trio.sleep(1)
        assert store.messenger.sent == sent  # type: ignore[attr-defined]
        assert store._renewals == []


async def test_a_voter_says_when_its_stored_voters_differ_from_the_file(caplog, tmp_path):
    promises = MemoryPromises()
    mesh = LocalMesh()
    mesh.add("v1")
    for voters in (VOTERS, VoterConfig(1, {"v1", "v2", "v9"})):
        async with QuorumLeaseStore.open(
            mesh.messenger("v1"),
            config=voters,
            clock=TrioTime(),
            max_duration=D,
            promises=promises,
        ):
            pass
    assert "configured voters (v1, v2, v9) are only the bootstrap" in caplog.text


@pytest.mark.parametrize("recover", [True, False])
async def test_a_voter_that_lost_its_data_recovers_terms_and_sits_out_before_voting(
    clock, recover: bool
):
    """v2 grants c1's lease, then restarts with nothing stored (its data directory lost). With
    recovery it learns the promised terms from v1 and v3 and sits out; without it (the broken
    variant) it grants c2 the same scope while c1 still leads: two leaders."""
    mesh = LocalMesh()
    async with AsyncExitStack() as stack:
        stores = await open_stores(stack, mesh, ["v1", "v3", "c1", "c2"], recover_if_blank=recover)
        v2_scope = trio.CancelScope()

        async def run_v2(promises: MemoryPromises, task_status=trio.TASK_STATUS_IGNORED):
            with v2_scope:
                async with QuorumLeaseStore.open(
                    LocalMessenger(mesh, "v2"),
                    config=VOTERS,
                    clock=TrioTime(),
                    max_duration=D,
                    promises=promises,
                    recover_if_blank=recover,
                ) as store:
                    stores["v2"] = store
                    task_status.started()
                    await trio.sleep_forever()

        mesh.add("v2")
        async with trio.open_nursery() as nursery:
            await nursery.start(run_v2, MemoryPromises())
            a, b = Holder("c1", "x"), Holder("c2", "y")
            await trio.sleep(2)  # the blank voters of a new mesh find each other
            mesh.unreachable |= {"v3", "c2"}  # c1 is elected by v1 and v2; c2 hears nothing
            granted = await stores["c1"].acquire(SCOPE, a, D)
            assert granted.outcome is LeaseOutcome.GRANTED
            elected_at = trio.current_time()
            mesh.unreachable -= {"v3", "c2"}
            v2_scope.cancel()  # v2 crashes ...
            await trio.sleep(0.1)
            v2_scope = trio.CancelScope()
            await nursery.start(run_v2, MemoryPromises())  # ... and comes back with nothing
            await trio.sleep(1.5)
            mesh.unreachable |= {"v1", "c1"}  # c2 can reach only v2 and v3 now
            taken = await stores["c2"].acquire(SCOPE, b, D)
            still_leading = trio.current_time() < elected_at + D * (1 - 0.05) / (1 + 0.05)
            assert still_leading
            if recover:
                assert taken.outcome is not LeaseOutcome.GRANTED
                voter = stores["v2"].voter
                assert voter is not None and voter.promised(SCOPE.key) >= 1
            else:
                # the broken variant: a second leader while c1's lease is valid
                assert taken.outcome is LeaseOutcome.GRANTED
            nursery.cancel_scope.cancel()


async def test_a_blank_voter_asks_again_soon_when_the_others_were_not_there_yet(clock):
    """A voter starts before its node has joined the mesh: its first request for the others'
    terms fails at once (nobody known yet). It asks again within a fraction of a second, not a
    second later, so a voter that goes down right after the others have started does not leave
    it blank (with three voters a blank one needs both others)."""

    class Joining(LocalMessenger):
        joined = False

        async def request(self, node_id: str, kind: str, payload: bytes, *, timeout: float):
            if not self.joined:
                raise MessengerError(f"unknown member {node_id!r}")
            return await super().request(node_id, kind, payload, timeout=timeout)

    mesh = LocalMesh()
    async with AsyncExitStack() as stack:
        await open_stores(stack, mesh, ["v2", "v3"], recover_if_blank=True)
        mesh.add("v1")
        messenger = Joining(mesh, "v1")
        store = await stack.enter_async_context(
            QuorumLeaseStore.open(
                messenger,
                config=VOTERS,
                clock=TrioTime(),
                max_duration=D,
                promises=MemoryPromises(),
                recover_if_blank=True,
            )
        )
        voter = store.voter
        assert voter is not None
        await trio.sleep(0.01)
        assert voter.recovering
        messenger.joined = True
        start = trio.current_time()
        with trio.fail_after(1.0):
            while voter.recovering:
                await trio.sleep(0.01)
        assert trio.current_time() - start < 0.2


async def test_a_candidate_keeps_the_newest_voter_configuration_across_a_restart(clock, tmp_path):
    """c1 learns epoch 2 from a voter's reply and stores it; restarted with only the bootstrap
    voters configured, it starts from epoch 2 (today's voters), not epoch 1."""
    mesh = LocalMesh()
    known = KnownConfigFile(tmp_path / "voters.json")
    async with AsyncExitStack() as stack:
        stores = await open_stores(stack, mesh, ["v1", "v2", "v3"])
        mesh.add("v4")
        await stack.enter_async_context(
            QuorumLeaseStore.open(
                LocalMessenger(mesh, "v4"),
                config=VOTERS,
                clock=TrioTime(),
                max_duration=D,
                promises=MemoryPromises(),
            )
        )
        new = await stores["v1"].change_voters(VOTERS.with_added("v4"))
        assert new.epoch == 2
        mesh.add("c1")

        def open_c1():
            return QuorumLeaseStore.open(
                LocalMessenger(mesh, "c1"),
                config=VOTERS,
                clock=TrioTime(),
                max_duration=D,
                known_config=known,
            )

        async with open_c1() as c1:
            granted = await c1.acquire(SCOPE, Holder("c1", "x"), D)
            assert granted.outcome is LeaseOutcome.GRANTED
            assert c1.config == new
        assert known.load() == new
        async with open_c1() as again:
            assert again.config == new


def test_a_damaged_stored_configuration_is_ignored_with_a_warning(tmp_path, caplog):
    path = tmp_path / "voters.json"
    path.write_text("{not json")
    assert KnownConfigFile(path).load() is None
    assert "ignored the stored voter configuration" in caplog.text


async def test_renewals_keep_a_lease_alive_when_the_cap_is_far_above_the_lease(clock):
    """Freshness counts from the leases the holder asks for, not the store's cap: with a 600 s
    cap and 8 s leases, a leader renewing on schedule keeps its lease for a minute."""
    mesh = LocalMesh()
    async with AsyncExitStack() as stack:
        stores = await open_stores(stack, mesh, ["v1", "v2", "v3", "c1"], max_duration=600.0)
        store, holder = stores["c1"], Holder("c1", "boot-1")
        assert (await store.acquire(SCOPE, holder, D)).outcome is LeaseOutcome.GRANTED
        for _ in range(20):
            await trio.sleep(D / 3)
            renewed = await store.renew(SCOPE, holder, 1, D)
            assert renewed.outcome is LeaseOutcome.GRANTED
            assert renewed.lease is not None and renewed.lease.duration > D / 2


# -- followers' belief between notices ---------------------------------------------------------


async def open_believing(stack: AsyncExitStack, mesh: LocalMesh, names: list[str]):
    """Stores whose holders notify every one of ``names`` and let followers believe them for
    four leases while the mesh has them alive."""

    def alive(node_id: str) -> bool:
        return mesh.status(node_id) == "alive"

    return await open_stores(
        stack, mesh, names, peers=lambda: list(names), alive=alive, belief_leases=4
    )


async def test_followers_believe_a_live_holder_between_sparse_notices(clock):
    mesh = LocalMesh()
    scopes = [LeadershipScope.custom(f"s{i}") for i in range(3)]
    async with AsyncExitStack() as stack:
        stores = await open_believing(stack, mesh, ["v1", "v2", "v3", "c1", "c2"])
        a, b = Holder("c1", "x"), Holder("c2", "y")
        for scope in scopes:
            await stores["c2"].get(scope)
            assert (await stores["c1"].acquire(scope, a, D)).outcome is LeaseOutcome.GRANTED
        start = trio.current_time()
        asked = sum(stores["c2"].messenger.sent.values())  # type: ignore[attr-defined]
        renewals = 0
        while trio.current_time() - start < 16 * D:  # 16 leases, renewing every half lease
            await trio.sleep(D / 2)
            for scope in scopes:
                renewed = await stores["c1"].renew(scope, a, 1, D)
                assert renewed.outcome is LeaseOutcome.GRANTED
            renewals += 1
            for scope in scopes:  # the follower knows the holder without asking anyone
                held = await stores["c2"].acquire(scope, b, D)
                assert held.outcome is LeaseOutcome.LEASE_HELD and held.lease.holder == a
        assert sum(stores["c2"].messenger.sent.values()) == asked
        received = stores["c2"].stats.notices_received
        # one notice every three leases, every scope in it, against one renewal per half lease
        assert renewals == 32 and 6 <= received <= 8, received  # 3 acquisitions + 16 / 3
        # the holder is suspected: the follower no longer takes its word (the last notice's
        # lease has run out) and asks the voters, who still have c1's renewal of D/2 ago
        mesh.set_status("c1", "suspect")
        held = await stores["c2"].acquire(scopes[0], b, D)
        assert held.outcome is LeaseOutcome.LEASE_HELD and held.lease.holder == a
        assert sum(stores["c2"].messenger.sent.values()) > asked


async def test_a_notice_lets_a_follower_believe_only_while_the_holder_is_alive(clock):
    mesh = LocalMesh()
    async with AsyncExitStack() as stack:
        stores = await open_believing(stack, mesh, ["v1", "v2", "v3", "c2"])
        mesh.add("c1")
        a = Holder("c1", "x")
        store = stores["c2"]
        await store.get(SCOPE)
        store._take_notice(NoticeEntry("renewed", SCOPE.key, a, 3, 1.0, 4 * D))
        await trio.sleep(2.0)  # past the lease, within the belief
        cached = store._cached(SCOPE, None)
        assert cached is not None and cached.lease.term == 3
        assert cached.lease.remaining == 0 and cached.lease.believe > 3 * D
        mesh.set_status("c1", "dead")
        assert store._cached(SCOPE, None) is None


async def failover_after_crash(mesh: LocalMesh, stores: dict[str, QuorumLeaseStore]) -> float:
    """Coordinators on every store; the leader crashes and the view marks it dead. Returns how
    many virtual seconds after the end of the crashed leader's own validity another node leads
    (with a higher fence)."""
    async with trio.open_nursery() as nursery:
        coordinators, scopes = await start_coordinators(nursery, mesh, stores)

        def leaders() -> list[str]:
            return [n for n, c in coordinators.items() if c.is_leader(SCOPE.scope_id)]

        with trio.fail_after(30):
            while not leaders():
                await trio.sleep(0.05)
        await trio.sleep(4 * D + 0.3)  # several renewals, and a point inside the notice cycle
        (first,) = leaders()
        fence = coordinators[first].election(SCOPE.scope_id).token.fence_token  # type: ignore[union-attr]
        believed = coordinators[first]._scopes[SCOPE.key].deadline  # the leader's own validity
        coordinators.pop(first).crash()
        scopes.pop(first).cancel()
        mesh.set_status(first, "dead")
        crashed = trio.current_time()
        with trio.fail_after(10 * D):
            while not leaders():
                await trio.sleep(0.05)
        took = trio.current_time() - crashed
        (second,) = leaders()
        token = coordinators[second].election(SCOPE.scope_id).token
        assert token is not None and token.fence_token > fence
        nursery.cancel_scope.cancel()
    return took - (believed - crashed)


async def test_with_a_belief_failover_still_waits_only_for_the_lease(clock):
    """A successor takes over as soon as the voters let the crashed leader's lease go."""
    mesh = LocalMesh()
    async with AsyncExitStack() as stack:
        stores = await open_believing(stack, mesh, ["v1", "v2", "v3", "c1", "c2"])
        # the voters hold the lease up to D * (1 - factor) past the leader's own validity
        assert await failover_after_crash(mesh, stores) <= D * (1 - 0.95 / 1.05) + 0.2


async def test_the_failover_bound_catches_a_belief_that_outlives_the_holder(clock, monkeypatch):
    """Negative control: followers that keep believing a dead holder (the view is not asked)
    wait for the belief, several leases, and the bound above fails."""
    monkeypatch.setattr(
        "leadership.splitbrain.SplitBrainReporter.holder_alive", lambda self, node_id: True
    )
    mesh = LocalMesh()
    async with AsyncExitStack() as stack:
        stores = await open_believing(stack, mesh, ["v1", "v2", "v3", "c1", "c2"])
        for store in stores.values():
            store.board.alive = lambda node_id: True
        assert await failover_after_crash(mesh, stores) > D * (1 - 0.95 / 1.05) + 0.2


async def test_a_restarted_holder_tells_followers_its_previous_life_is_over(clock):
    """c1 restarts (a new boot id) before the others' views see it go: it learns from the
    voters that its previous life holds the scope and says so, so followers stop believing that
    lease past its end and ask the voters, instead of believing it for a whole belief."""
    mesh = LocalMesh()
    async with AsyncExitStack() as stack:
        stores = await open_believing(stack, mesh, ["v1", "v2", "v3", "c1", "c2"])
        old, new, b = Holder("c1", "boot-1"), Holder("c1", "boot-2"), Holder("c2", "y")
        await stores["c2"].get(SCOPE)
        assert (await stores["c1"].acquire(SCOPE, old, D)).outcome is LeaseOutcome.GRANTED
        await trio.sleep(1.0)
        held = await stores["c2"].acquire(SCOPE, b, D)
        assert held.outcome is LeaseOutcome.LEASE_HELD and held.lease.believe > D  # believed
        restarted = await stack.enter_async_context(
            QuorumLeaseStore.open(
                LocalMessenger(mesh, "c1"),
                config=VOTERS,
                clock=TrioTime(),
                max_duration=D,
                peers=lambda: ["v1", "v2", "v3", "c2"],
                alive=lambda node_id: mesh.status(node_id) == "alive",
                belief_leases=4,
            )
        )
        seen = await restarted.get(SCOPE)  # asks the voters: its previous life holds it
        assert seen.lease is not None and seen.lease.holder == old
        with trio.fail_after(1):
            while stores["c2"]._cached(SCOPE, b) is not None:
                await trio.sleep(0.01)
        again = await stores["c2"].acquire(SCOPE, b, D)  # the voters still hold it for old
        assert again.outcome is LeaseOutcome.LEASE_HELD and again.lease.holder == old
        assert again.lease.believe == 0
        await trio.sleep(D)  # once old's lease ran out, the scope can move on
        assert (await restarted.acquire(SCOPE, new, D)).outcome is LeaseOutcome.GRANTED


async def test_a_campaign_refused_at_the_very_end_of_a_lease_still_names_the_incumbent(clock):
    """Refused by a lease with less than MIN_REMAINING left, a campaign reports the incumbent
    with MIN_REMAINING, so the caller looks again right after it: reported as vacant, the
    coordinator would wait a whole evaluation interval before its next campaign."""
    mesh = LocalMesh()
    async with AsyncExitStack() as stack:
        stores = await open_stores(stack, mesh, ["v1", "v2", "v3", "c1", "c2"])
        a, b = Holder("c1", "x"), Holder("c2", "y")
        assert (await stores["c1"].acquire(SCOPE, a, D)).outcome is LeaseOutcome.GRANTED
        first = await stores["c2"].acquire(SCOPE, b, D)
        assert first.outcome is LeaseOutcome.LEASE_HELD and first.lease is not None
        await trio.sleep(first.lease.remaining - CAMPAIGN_WINDOW - MIN_REMAINING / 2)
        late = await stores["c2"].acquire(SCOPE, b, D)
        assert late.outcome is LeaseOutcome.LEASE_HELD
        assert late.lease is not None and late.lease.holder == a
        assert late.lease.remaining == MIN_REMAINING
        await trio.sleep(late.lease.remaining)
        assert (await stores["c2"].acquire(SCOPE, b, D)).outcome is LeaseOutcome.GRANTED


@pytest.mark.parametrize("give_back", [True, False])
async def test_a_campaign_that_times_out_frees_the_voters_it_reached(clock, monkeypatch, give_back):
    """v3 is down and v2 cannot be reached while c1 campaigns: v1 grants c1, and the round
    times out. When v2 is back, c2 must be elected by v1 and v2 at once. In the broken variant
    (a failed campaign keeps its grants) v1 refuses c2 until c1's grant expires, a whole lease:
    the split grants that left a scope leaderless after a SIGTERM on real agents."""
    if not give_back:
        from leadership.quorum.candidate import LeaseCandidate

        monkeypatch.setattr(LeaseCandidate, "_give_back", lambda *args: None)
    mesh = LocalMesh()
    async with AsyncExitStack() as stack:
        stores = await open_stores(stack, mesh, ["v1", "v2", "v3", "c1", "c2"], round_timeout=1.0)
        a, b = Holder("c1", "x"), Holder("c2", "y")
        mesh.unreachable |= {"v2", "v3"}
        failed = await stores["c1"].acquire(SCOPE, a, D)
        assert failed.outcome is LeaseOutcome.STORE_UNAVAILABLE
        mesh.unreachable -= {"v2"}
        t0 = trio.current_time()
        won = await stores["c2"].acquire(SCOPE, b, D)
        if give_back:
            assert won.outcome is LeaseOutcome.GRANTED
            assert trio.current_time() - t0 < 0.5  # one round trip, not a lease
            assert stores["c1"]._candidate is not None
            assert stores["c1"]._candidate.terms_given_back == 1
        else:
            assert won.outcome is not LeaseOutcome.GRANTED
