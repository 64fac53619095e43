"""Quorum lease rules that surviving mutants showed no test pinned down (docs/testing.md,
mutation testing): each test here fails with its mutant applied."""

from __future__ import annotations

import json
from contextlib import AsyncExitStack
from typing import Any

import pytest
import trio
import trio.testing

from leadership import LeadershipScope, LeaseOutcome
from leadership.clock import TrioTime
from leadership.quorum import (
    Abandoned,
    FilePromises,
    LeaseCandidate,
    LeaseReply,
    LeaseRequest,
    LeaseVoter,
    MemoryPromises,
    PromiseState,
    QuorumWireError,
    Refused,
    RoundEntry,
    Verdict,
    VoterConfig,
    decode,
    encode,
)
from leadership.quorum.reconfig import ChangePhase, ConfigChange
from leadership.quorum.store import QuorumLeaseStore
from leadership.quorum.wire import (
    MAX_ENTRIES,
    READ_TERM,
    ConfigCommit,
    ConfigCommitted,
    ConfigPrepare,
    ConfigPrepared,
)
from leadership.testing import LocalMesh, LocalMessenger
from leadership.tokens import Holder

D = 10.0
CONFIG = VoterConfig(1, {"v1", "v2", "v3"})
A = Holder("a", "boot-a")
B = Holder("b", "boot-b")


def grant(voter: str, holder: Holder, request: LeaseRequest, duration: float = D) -> LeaseReply:
    verdicts = tuple(
        Verdict(e.scope, e.round_id, e.term, True, e.term, duration) for e in request.entries
    )
    return LeaseReply(voter, holder, CONFIG, verdicts)


def campaign(cand: LeaseCandidate, now: float) -> LeaseRequest:
    request = cand.campaign(["s"], now=now).message
    assert isinstance(request, LeaseRequest)
    return request


def ask(holder: Holder, term: int, duration: float = D) -> LeaseRequest:
    return LeaseRequest(holder, 1, (RoundEntry("s", term, 1, duration),))


# ---------------------------------------------------------------- candidate validity


def test_a_quorum_landing_exactly_at_its_deadline_is_abandoned() -> None:
    cand = LeaseCandidate(A, CONFIG, duration=D, max_drift=0.05)
    request = campaign(cand, now=0.0)
    deadline = D * cand.factor
    assert cand.on_reply(grant("v1", A, request), now=1.0).decisions == ()
    (decision,) = cand.on_reply(grant("v2", A, request), now=deadline).decisions
    assert isinstance(decision, Abandoned)


def test_grants_for_an_abandoned_round_elect_nobody() -> None:
    cand = LeaseCandidate(A, CONFIG, duration=D)
    request = campaign(cand, now=0.0)
    cand.abandon("s")  # timed out: its replies must be ignored, not counted
    assert cand.on_reply(grant("v1", A, request), now=0.5).decisions == ()
    assert cand.on_reply(grant("v2", A, request), now=0.6).decisions == ()
    assert not cand.is_leader("s", 0.7)


def test_every_foreign_reply_is_counted() -> None:
    cand = LeaseCandidate(A, CONFIG, duration=D)
    request = campaign(cand, now=0.0)
    for voter in ("v1", "v2"):
        assert cand.on_reply(grant(voter, B, request), now=0.5).decisions == ()
    assert cand.foreign_replies == 2


# ---------------------------------------------------------------- voter grant rule


def test_the_refusal_counter_counts_refusals_and_not_reads() -> None:
    v = LeaseVoter("v1", max_duration=D, promises=MemoryPromises(), now=0.0, config=CONFIG)
    v.on_request(ask(A, 1), 0.0)
    v.on_request(ask(B, READ_TERM, duration=0.0), 1.0)  # a read: neither granted nor refused
    assert v.stats.refused == 0
    v.on_request(ask(B, 2), 2.0)
    v.on_request(ask(B, 2), 3.0)
    assert v.stats.granted == 1 and v.stats.refused == 2


def test_a_restarted_voter_sits_out_the_configured_time_when_one_is_given() -> None:
    promises = MemoryPromises(PromiseState(terms={"s": 3}, config=CONFIG, longest=D))
    v = LeaseVoter("v1", max_duration=D, promises=promises, now=100.0, config=CONFIG, sit_out=2.0)
    assert v.sit_out_until == 102.0
    assert not v.on_request(ask(A, 4), 101.9).verdicts[0].granted
    assert v.on_request(ask(A, 4), 102.0).verdicts[0].granted


def test_a_configuration_the_disk_refused_is_not_adopted() -> None:
    class Full(MemoryPromises):
        def save(self, state: PromiseState) -> None:
            if state.config is not None and state.config.epoch > 1:
                raise OSError(28, "No space left on device")
            super().save(state)

    v = LeaseVoter("v1", max_duration=D, promises=Full(), now=0.0, config=CONFIG)
    assert not v.adopt_config(CONFIG.with_added("v4"), {"s": 5})
    assert v.config == CONFIG and v.promised("s") == 0
    assert v.on_request(ask(A, 1), 1.0).verdicts[0].granted  # and it still works


# ---------------------------------------------------------------- voter-set changes


def test_a_refused_prepare_does_not_count_towards_the_old_majority() -> None:
    change = ConfigChange(CONFIG, CONFIG.with_added("v4"))
    for voter in ("v1", "v2"):
        refused = ConfigPrepared(voter, 2, False, (("s", 9),), 1.0, "committed too recently")
        assert not change.on_prepared(refused)
    assert change.phase is ChangePhase.PREPARE and change.prepared == set()
    assert change.terms == {}
    assert not change.on_prepared(ConfigPrepared("v1", 2, True, (("s", 4),)))
    assert change.on_prepared(ConfigPrepared("v2", 2, True, (("s", 6),)))
    assert change.phase is ChangePhase.COMMIT and change.terms == {"s": 6}


def test_adding_and_removing_a_voter_gives_the_next_epoch_with_that_set() -> None:
    added = CONFIG.with_added("v4")
    assert added == VoterConfig(2, {"v1", "v2", "v3", "v4"})
    removed = added.with_removed("v2")
    assert removed == VoterConfig(3, {"v1", "v3", "v4"})
    assert removed.majority == 2


# ---------------------------------------------------------------- wire and promise file


def test_a_verdict_naming_the_holder_survives_the_wire() -> None:
    verdict = Verdict("s", 7, 3, False, 5, 0.0, holder=B, remaining=4.5, holder_term=5)
    reply = LeaseReply("v1", A, CONFIG, (verdict,))
    assert decode(encode(reply)) == reply


def test_a_boolean_duration_is_refused_on_the_wire() -> None:
    raw = encode(ask(A, 1))
    raw[3][0][3] = True
    with pytest.raises(QuorumWireError, match="duration"):
        decode(raw)


def test_a_promise_file_without_the_newer_fields_loads_with_their_defaults(tmp_path) -> None:
    path = tmp_path / "promises.json"
    path.write_text(json.dumps({"terms": {"s": 4}}), encoding="utf-8")
    state = FilePromises(path).load()
    assert state.terms == {"s": 4} and state.config is None
    assert state.committed_epoch == 0 and state.longest == 0.0


def test_a_refusal_names_the_holder_most_refusing_voters_named() -> None:
    five = VoterConfig(1, {"v1", "v2", "v3", "v4", "v5"})
    cand = LeaseCandidate(A, five, duration=D)
    cand.observe_term("s", 5)  # campaigns above every term the voters promised: no outbid
    request = campaign(cand, now=0.0)
    (entry,) = request.entries
    c = Holder("c", "boot-c")
    decisions = []
    for voter, holder, term in (("v1", c, 2), ("v2", B, 3), ("v3", B, 3)):
        no = Verdict("s", entry.round_id, entry.term, False, term, 0.0, holder, 4.0, term)
        decisions += cand.on_reply(LeaseReply(voter, A, five, (no,)), now=0.1).decisions
    (refused,) = decisions
    assert isinstance(refused, Refused)
    assert refused.incumbent == B and refused.incumbent_term == 3


def test_a_request_of_exactly_the_most_entries_allowed_is_accepted() -> None:
    entries = tuple(RoundEntry(f"s{i}", 1, i, D) for i in range(MAX_ENTRIES))
    request = LeaseRequest(A, 1, entries)
    assert decode(encode(request)) == request
    too_many = LeaseRequest(A, 1, (*entries, RoundEntry("one-more", 1, 0, D)))
    with pytest.raises(QuorumWireError, match="at most"):
        decode(encode(too_many))


# ---------------------------------------------------------------- the store's answers

STORE_SCOPE = LeadershipScope.custom("orders")


async def open_stores(stack: AsyncExitStack, mesh: LocalMesh, names: list[str], **kw: Any):
    stores: dict[str, QuorumLeaseStore] = {}
    for name in names:
        mesh.add(name)
        stores[name] = await stack.enter_async_context(
            QuorumLeaseStore.open(
                LocalMessenger(mesh, name),
                config=CONFIG,
                clock=TrioTime(),
                max_duration=D,
                promises=MemoryPromises() if name in CONFIG.voters else None,
                **kw,
            )
        )
    return stores


@pytest.fixture
def clock() -> trio.testing.MockClock:
    return trio.testing.MockClock(autojump_threshold=0)


async def test_the_leaders_own_read_says_it_holds_the_lease(clock: object) -> None:
    async with AsyncExitStack() as stack:
        stores = await open_stores(stack, LocalMesh(), ["v1", "v2", "v3", "c1"])
        a = Holder("c1", "x")
        assert (await stores["c1"].acquire(STORE_SCOPE, a, D)).outcome is LeaseOutcome.GRANTED
        mine = await stores["c1"].get(STORE_SCOPE)
        assert mine.outcome is LeaseOutcome.LEASE_HELD and mine.lease is not None
        assert mine.lease.holder == a and mine.lease.term == 1
        assert 0 < mine.lease.remaining <= D and mine.lease.duration == mine.lease.remaining


async def test_a_read_no_voter_majority_answers_is_unavailable(clock: object) -> None:
    mesh = LocalMesh()
    async with AsyncExitStack() as stack:
        stores = await open_stores(stack, mesh, ["v1", "v2", "v3", "c1"], round_timeout=1.0)
        mesh.unreachable.add("c1")
        read = await stores["c1"].get(STORE_SCOPE)
        assert read.outcome is LeaseOutcome.STORE_UNAVAILABLE and read.lease is None


async def test_an_answer_from_a_notice_carries_the_time_left(clock: object) -> None:
    names = ["v1", "v2", "v3", "c1", "c2"]
    async with AsyncExitStack() as stack:
        stores = await open_stores(stack, LocalMesh(), names, peers=lambda: list(names))
        a, b = Holder("c1", "x"), Holder("c2", "y")
        feed = stores["c2"].watch()
        await stores["c2"].get(STORE_SCOPE)  # c2 takes part in the scope
        assert (await stores["c1"].acquire(STORE_SCOPE, a, D)).outcome is LeaseOutcome.GRANTED
        with trio.fail_after(5):
            await feed.__anext__()
        held = await stores["c2"].acquire(STORE_SCOPE, b, D)
        assert held.detail == "known incumbent" and held.lease is not None
        assert held.lease.holder == a and 0 < held.lease.duration == held.lease.remaining <= D


@pytest.mark.parametrize(
    "message",
    [
        ConfigPrepare(CONFIG, CONFIG.with_added("v4")),
        ConfigPrepared("v1", 2, True, (("s", 3), ("t", 1))),
        ConfigPrepared("v2", 2, False, (), 4.5, "epoch 1 was committed too recently"),
        ConfigCommit(CONFIG.with_added("v4"), (("s", 3),)),
        ConfigCommitted("v4", 2, True),
        ConfigCommitted("v3", 2, False),
    ],
)
def test_every_voter_set_change_message_survives_the_wire(message: object) -> None:
    assert decode(encode(message)) == message  # type: ignore[arg-type]
