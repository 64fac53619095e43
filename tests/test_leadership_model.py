"""Leadership values: scopes, scoring, configuration, fencing and the in-memory store."""

from __future__ import annotations

import itertools
import random
import threading
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime

import pytest
import trio
import trio.testing
from hypothesis import given, settings
from hypothesis import strategies as st

from leadership import (
    Candidate,
    FencedResource,
    FenceGuard,
    Holder,
    InMemoryLeaseStore,
    InvalidScopeError,
    LeadershipConfig,
    LeadershipConfigError,
    LeadershipScope,
    LeadershipToken,
    LeaseChangeKind,
    LeaseOutcome,
    StaleFenceError,
    candidate_from,
    candidate_metadata,
    parse_scope,
    rank_candidates,
    scope_from_descriptor,
)

# -- scopes -----------------------------------------------------------------------------------


def test_scope_kinds_and_labels() -> None:
    g = parse_scope("global-control")
    assert (g.kind, g.labels) == ("global", {})
    s = parse_scope("shard/orders/7")
    assert (s.kind, dict(s.labels)) == ("shard", {"namespace": "orders", "shardId": "7"})
    c = parse_scope("nightly-report")
    assert c.kind == "custom"
    assert LeadershipScope.shard("orders", "7") == s


def test_scope_ids_are_case_insensitive_but_keep_their_casing() -> None:
    a, b = parse_scope("Shard/Orders/7"), parse_scope("shard/orders/7")
    assert a == b and hash(a) == hash(b)
    assert a.scope_id == "shard/Orders/7"  # the prefix is canonical, the rest keeps its case
    assert parse_scope("GLOBAL-CONTROL").kind == "global"
    assert a.matches("SHARD/orders/*") and not a.matches("shard/payments/*")


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "  ",
        "shard/",
        "shard/orders",
        "shard//7",
        "shard/orders/",
        "has space",
        "tab\tid",
        "x" * 300,
    ],
)
def test_invalid_scope_ids_name_themselves(bad: str) -> None:
    with pytest.raises(InvalidScopeError) as info:
        parse_scope(bad)
    assert repr(bad) in str(info.value)


def test_scope_descriptors() -> None:
    assert scope_from_descriptor({"kind": "shard", "namespace": "orders", "shardId": 3}) == (
        parse_scope("shard/orders/3")
    )
    assert scope_from_descriptor({"kind": "global"}).scope_id == "global-control"
    custom = scope_from_descriptor({"scopeId": "billing", "kind": "batch", "labels": {"team": "x"}})
    assert (custom.kind, dict(custom.labels)) == ("batch", {"team": "x"})
    with pytest.raises(InvalidScopeError, match=r"scopes\[2\].*contradicts"):
        scope_from_descriptor({"scopeId": "global-control", "kind": "shard"}, "scopes[2]")
    with pytest.raises(InvalidScopeError, match="unknown key"):
        scope_from_descriptor({"scopeId": "a", "color": "red"})
    with pytest.raises(InvalidScopeError, match="needs scopeId"):
        scope_from_descriptor({"labels": {}})
    with pytest.raises(InvalidScopeError, match="namespace may not contain"):
        scope_from_descriptor({"namespace": "a/b", "shardId": "1"})


# -- scoring ----------------------------------------------------------------------------------


def test_order_is_priority_then_health_then_hash() -> None:
    scope = parse_scope("global-control")
    low = Candidate("low", priority=1)
    high_sick = Candidate("high-sick", priority=5, healthy=False)
    high = Candidate("high", priority=5)
    ranked = rank_candidates(scope, [low, high_sick, high])
    assert [c.node_id for c in ranked] == ["high", "high-sick", "low"]
    only_orders = Candidate("orders-only", priority=9, patterns=("shard/orders/*",))
    assert only_orders not in rank_candidates(scope, [only_orders, low])
    assert rank_candidates(parse_scope("shard/orders/1"), [only_orders, low])[0] is only_orders


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.tuples(st.integers(-3, 3), st.booleans()), min_size=1, max_size=12, unique_by=None),
    st.randoms(use_true_random=False),
    st.text(min_size=1, max_size=12).filter(lambda s: s.strip() == s and s.isprintable()),
)
def test_every_node_computes_the_same_order(
    specs: list[tuple[int, bool]], rnd: random.Random, scope_name: str
) -> None:
    scope = LeadershipScope.custom("s-" + scope_name.replace(" ", "_").replace("\t", "_"))
    candidates = [Candidate(f"n{i}", p, h) for i, (p, h) in enumerate(specs)]
    reference = rank_candidates(scope, candidates)
    for _ in range(5):
        shuffled = candidates[:]
        rnd.shuffle(shuffled)
        assert rank_candidates(scope, shuffled) == reference
    for better, worse in itertools.pairwise(reference):
        assert (-better.priority, not better.healthy) <= (-worse.priority, not worse.healthy)


def test_shard_leadership_spreads_evenly() -> None:
    nodes = [Candidate(f"node-{i:02d}") for i in range(20)]
    leaders = Counter(
        rank_candidates(LeadershipScope.shard("orders", str(s)), nodes)[0].node_id
        for s in range(1000)
    )
    fair = 1000 / 20
    assert len(leaders) == 20
    assert max(leaders.values()) <= 1.5 * fair, leaders.most_common(3)


def test_the_spread_moves_little_when_a_node_goes() -> None:
    """Rendezvous hashing: only the shards of the removed node change hands."""
    nodes = [Candidate(f"node-{i:02d}") for i in range(20)]
    shards = [LeadershipScope.shard("orders", str(s)) for s in range(500)]
    before = {s.key: rank_candidates(s, nodes)[0].node_id for s in shards}
    after = {s.key: rank_candidates(s, nodes[1:])[0].node_id for s in shards}
    moved = [k for k in before if before[k] != after[k]]
    assert moved and all(before[k] == "node-00" for k in moved)


def test_scopes_that_ask_for_roles() -> None:
    scope = scope_from_descriptor({"scopeId": "global-control", "roles": ["dispatcher"]})
    worker = candidate_from("w", {**candidate_metadata(9, True, ["*"]), "role": "worker"})
    dispatcher = candidate_from("d", {**candidate_metadata(0, True, ["*"]), "role": "dispatcher"})
    extra = candidate_from("x", candidate_metadata(0, True, ["*"], roles=["ops", "dispatcher"]))
    assert worker is not None and dispatcher is not None and extra is not None
    assert extra.roles == {"ops", "dispatcher"}
    ranked = [c.node_id for c in rank_candidates(scope, [worker, dispatcher, extra])]
    assert sorted(ranked) == ["d", "x"]  # the higher-priority worker may not lead it
    assert worker.eligible_for(parse_scope("global-control"))  # a scope without roles
    with pytest.raises(InvalidScopeError, match=r"roles: expected a list"):
        scope_from_descriptor({"scopeId": "a", "roles": "dispatcher"})


def test_candidate_metadata_round_trip_and_bad_values() -> None:
    md = candidate_metadata(7, False, ["shard/*", "global-control"])
    c = candidate_from("n1", md)
    assert c == Candidate("n1", 7, False, ("shard/*", "global-control"))
    assert candidate_from("n1", {"role": "worker"}) is None
    assert candidate_from("n1", {**md, "leadership.priority": "high"}) is None
    assert candidate_from("n1", {**md, "leadership.priority": str(2**40)}) is None
    assert candidate_from("n1", {"leadership.scopes": ""}) == Candidate("n1", patterns=())


# -- configuration ----------------------------------------------------------------------------


def test_omnirelay_defaults() -> None:
    cfg = LeadershipConfig()
    assert (cfg.lease_duration, cfg.renewal_lead_time, cfg.evaluation_interval) == (8, 3, 0.75)
    assert (cfg.max_election_window, cfg.election_backoff) == (5, 0.5)
    assert [s.scope_id for s in cfg.scopes] == ["global-control"]
    assert cfg.validity(8.0) == pytest.approx(8 * 0.95 / 1.05)


def test_omnirelay_section_with_timespans_scopes_and_shards() -> None:
    cfg = LeadershipConfig.from_mapping(
        {
            "enabled": True,
            "leaseDuration": "00:00:10",
            "renewalLeadTime": "2s",
            "evaluationInterval": "00:00:00.500",
            "maxElectionWindow": "00:00:04",
            "electionBackoff": "250ms",
            "nodeId": "node-a",
            "scopes": [{"scopeId": "global-control"}, {"scopeId": "billing", "labels": {"t": "1"}}],
            "shards": [{"namespace": "orders", "shards": ["1", 2]}],
            "priority": 10,
            "eligibleScopes": ["shard/orders/*"],
            "quorum": "none",
            "maxClockDrift": 0.02,
            "preempt": True,
            "stableAfter": "00:00:30",
            "roles": ["dispatcher"],
            "historySize": 64,
            "auditFile": "audit.jsonl",
        }
    )
    assert (cfg.preempt, cfg.stable_after, cfg.roles) == (True, 30.0, ("dispatcher",))
    assert (cfg.history_size, cfg.audit_file) == (64, "audit.jsonl")
    assert (cfg.lease_duration, cfg.renewal_lead_time, cfg.evaluation_interval) == (10, 2, 0.5)
    assert (cfg.election_backoff, cfg.node_id, cfg.priority) == (0.25, "node-a", 10)
    assert [s.scope_id for s in cfg.scopes] == [
        "global-control",
        "billing",
        "shard/orders/1",
        "shard/orders/2",
    ]
    me = Candidate("node-a", cfg.priority, True, cfg.eligible_scopes)
    assert me.eligible_for(parse_scope("shard/orders/9")) and not me.eligible_for(cfg.scopes[0])


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ({"leaseDuration": "500ms"}, r"mesh.leadership.leaseDuration: 0.5s is outside 1s..600s"),
        ({"leaseDuration": "00:11:00"}, r"leaseDuration: 660s is outside"),
        ({"renewalLeadTime": "0.5s"}, r"renewalLeadTime: 0.5s is outside"),
        ({"evaluationInterval": "50ms"}, r"evaluationInterval: 0.05s is outside 0.1s..10s"),
        ({"maxElectionWindow": "31s"}, r"maxElectionWindow: 31s is outside"),
        ({"electionBackoff": "6s"}, r"electionBackoff: 6s is outside 0.1s..5s"),
        ({"leaseDuration": "3s", "renewalLeadTime": "3s"}, r"renewalLeadTime: 3s leaves no time"),
        ({"leaseDuration": "soon"}, r"leaseDuration: 'soon' is not a duration"),
        ({"priority": "high"}, r"priority: expected an integer"),
        ({"priority": 2**40}, r"priority: .* is outside"),
        ({"quorum": "raft"}, r"quorum: 'raft' is not one of none, static"),
        ({"maxClockDrift": 0.5}, r"maxClockDrift: 0.5 is outside"),
        ({"eligibleScopes": ["a,b"]}, r"eligibleScopes: 'a,b' is not a valid entry"),
        ({"roles": [""]}, r"roles: '' is not a valid entry"),
        ({"scopes": [{"scopeId": "shard/x"}]}, r"scopes\[0\]: .*shard/<namespace>/<shardId>"),
        ({"shards": [{"namespace": "o", "shards": [""]}]}, r"shards\[0\].shards\[0\]"),
        ({"scopes": [{"scopeId": "a"}, {"scopeId": "A"}]}, r"duplicate scope"),
        ({"enabled": "maybe"}, r"enabled: expected true or false"),
        ({"stableAfter": "11m"}, r"stableAfter: 660s is outside 0s..600s"),
        ({"historySize": 3}, r"historySize: 3 is below 16"),
        ({"colour": 1}, r"mesh.leadership.colour: unknown key"),
    ],
)
def test_config_errors_name_the_key(section: dict[str, object], message: str) -> None:
    with pytest.raises(LeadershipConfigError, match=message):
        LeadershipConfig.from_mapping(section)


# -- fencing ----------------------------------------------------------------------------------


def token(fence: int, leader: str = "a", scope: str = "global-control") -> LeadershipToken:
    now = datetime.now(UTC)
    return LeadershipToken(scope, "global", leader, fence, fence, now, now)


def test_fence_guard_rejects_lower_fences_and_equal_fences_from_others() -> None:
    guard = FenceGuard()
    guard.check(token(3))
    guard.check(token(3))  # the same leader's term again: fine
    guard.check(token(1, scope="other"))  # scopes are independent
    with pytest.raises(StaleFenceError, match=r"fence 2 from 'b'.*fence 3 from 'a'"):
        guard.check(token(2, "b"))
    with pytest.raises(StaleFenceError):
        guard.check(token(3, "b"))
    guard.check(token(4, "b"))
    with pytest.raises(StaleFenceError):
        guard.check(token(3, "a", scope="GLOBAL-CONTROL"))
    assert guard.highest("global-control") == 4 and guard.rejected == 3


def test_fenced_wrappers_reject_stale_writers() -> None:
    writes: list[str] = []
    guard = FenceGuard()
    write = guard.fenced(writes.append)
    write(token(5), "from 5")
    with pytest.raises(StaleFenceError):
        write(token(4, "old"), "from 4")
    resource = FencedResource(writes, guard)
    with resource.use(token(6, "new")) as held:
        held.append("from 6")
    with pytest.raises(StaleFenceError), resource.use(token(5)) as stale:
        stale.append("from 5 again")
    assert writes == ["from 5", "from 6"]


def _race(guarded: Callable[[LeadershipToken, Callable[[], None]], None]) -> list[str]:
    """An old-term writer passes its check, then stalls before writing; meanwhile a new-term
    writer (another thread) checks and writes. Returns the order the writes landed in."""
    writes: list[str] = []
    old_checked, new_checked = threading.Event(), threading.Event()

    def old_write() -> None:
        old_checked.set()
        new_checked.wait(timeout=0.5)  # with an atomic guard the new writer cannot get here
        writes.append("old")

    def new_write() -> None:
        new_checked.set()
        writes.append("new")

    old = threading.Thread(target=guarded, args=(token(7, "old"), old_write))
    old.start()
    assert old_checked.wait(timeout=5)
    newer = threading.Thread(target=guarded, args=(token(8, "new"), new_write))
    newer.start()
    old.join(timeout=5)
    newer.join(timeout=5)
    return writes


@pytest.mark.parametrize("how", ["fenced", "resource"])
def test_a_stale_writer_that_passed_its_check_cannot_write_after_a_newer_term(how: str) -> None:
    guard = FenceGuard()

    def guarded(tok: LeadershipToken, write: Callable[[], None]) -> None:
        if how == "fenced":
            guard.fenced(write)(tok)
        else:
            with FencedResource(write, guard).use(tok) as act:
                act()

    assert _race(guarded) == ["old", "new"]  # never "new" then "old"


# -- the in-memory store ----------------------------------------------------------------------

A, A2, B = Holder("a", "boot1"), Holder("a", "boot2"), Holder("b", "boot1")
SCOPE = parse_scope("global-control")


async def test_store_terms_and_fences_only_grow() -> None:
    store = InMemoryLeaseStore()
    first = await store.acquire(SCOPE, A, 5.0)
    assert first.outcome is LeaseOutcome.GRANTED and first.lease is not None
    assert (first.lease.term, first.lease.fence_token, first.lease.holder) == (1, 1, A)
    held = await store.acquire(SCOPE, B, 5.0)
    assert held.outcome is LeaseOutcome.LEASE_HELD and held.lease is not None
    assert held.lease.holder == A
    # A restarted process of the same node is another holder: it may not take over.
    assert (await store.acquire(SCOPE, A2, 5.0)).outcome is LeaseOutcome.LEASE_HELD
    renewed = await store.renew(SCOPE, A, 1, 5.0)
    assert renewed.ok and renewed.lease is not None and renewed.lease.term == 1
    assert (await store.renew(SCOPE, B, 1, 5.0)).outcome is LeaseOutcome.NOT_CURRENT_LEADER
    assert (await store.release(SCOPE, B, 1)).outcome is LeaseOutcome.NOT_CURRENT_LEADER
    assert (await store.release(SCOPE, A, 1)).outcome is LeaseOutcome.RELEASED
    assert (await store.get(SCOPE)).outcome is LeaseOutcome.VACANT
    # A released holder cannot renew its old term back.
    assert (await store.renew(SCOPE, A, 1, 5.0)).outcome is LeaseOutcome.NOT_CURRENT_LEADER
    second = await store.acquire(SCOPE, B, 5.0)
    assert second.lease is not None and second.lease.fence_token == 2
    assert store.last_term(SCOPE) == 2


async def test_store_expiry_on_its_clock(autojump_clock: trio.testing.MockClock) -> None:
    store = InMemoryLeaseStore(max_lease=4.0)
    granted = await store.acquire(SCOPE, A, 10.0)
    assert granted.lease is not None and granted.lease.duration == 4.0  # capped
    await trio.sleep(3.9)
    got = await store.get(SCOPE)
    assert got.outcome is LeaseOutcome.LEASE_HELD and got.lease is not None
    assert got.lease.remaining == pytest.approx(0.1) and got.lease.age == pytest.approx(3.9)
    await trio.sleep(0.2)
    assert (await store.renew(SCOPE, A, 1, 4.0)).outcome is LeaseOutcome.LEASE_EXPIRED
    after = await store.acquire(SCOPE, B, 4.0)
    assert after.lease is not None and after.lease.term == 2


async def test_store_partition_reservation_and_watch(
    autojump_clock: trio.testing.MockClock,
) -> None:
    store = InMemoryLeaseStore(latency=0.01)
    changes = []

    async def watch(task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        watcher = store.watch()
        task_status.started()
        async for change in watcher:
            changes.append(change)

    async with trio.open_nursery() as nursery:
        await nursery.start(watch)
        await trio.sleep(0)
        await store.acquire(SCOPE, A, 5.0)
        store.partition("a")
        assert (await store.renew(SCOPE, A, 1, 5.0)).outcome is LeaseOutcome.STORE_UNAVAILABLE
        store.heal("a")
        assert (await store.release(SCOPE, A, 1, successor="c", reserve=2.0)).ok
        refused = await store.acquire(SCOPE, B, 5.0)
        assert refused.outcome is LeaseOutcome.LEASE_HELD and refused.reserved_for == "c"
        got = await store.get(SCOPE)
        assert got.outcome is LeaseOutcome.VACANT and got.reserved_for == "c"
        assert (await store.acquire(SCOPE, Holder("c", "x"), 5.0)).ok
        await trio.sleep(0.1)
        nursery.cancel_scope.cancel()
    assert [c.kind for c in changes] == [
        LeaseChangeKind.ACQUIRED,
        LeaseChangeKind.RELEASED,
        LeaseChangeKind.ACQUIRED,
    ]
    assert changes[1].successor == "c"
    assert (changes[1].term, changes[1].holder) == (1, A)  # a release names what it ended
    assert (changes[2].term, changes[2].holder) == (2, Holder("c", "x"))
    assert changes[2].lease is not None and changes[2].lease.fence_token == 2
