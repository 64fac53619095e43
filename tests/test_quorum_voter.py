"""The voter's grant rule and the candidate's rounds, with plain function calls (DESIGN.md 5)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import trio

from leadership.quorum import (
    Abandoned,
    Elected,
    FilePromises,
    LeaseCandidate,
    LeaseReply,
    LeaseRequest,
    LeaseVoter,
    MemoryPromises,
    PromiseState,
    Refused,
    ReleaseRequest,
    Renewed,
    RoundEntry,
    VoterConfig,
    VoterConfigError,
)
from leadership.quorum.candidate import Outbound
from leadership.quorum.durable import PromiseFileError
from leadership.quorum.saving import GroupCommit
from leadership.quorum.wire import ConfigPrepare
from leadership.tokens import Holder

D = 10.0
CONFIG = VoterConfig(1, {"v1", "v2", "v3"})
A = Holder("a", "boot-a")
B = Holder("b", "boot-b")


def request(holder: Holder, term: int, round_id: int = 1, duration: float = D, scope: str = "s"):
    return LeaseRequest(holder, 1, (RoundEntry(scope, term, round_id, duration),))


def voter(promises: MemoryPromises | None = None, now: float = 0.0, **kw) -> LeaseVoter:
    return LeaseVoter(
        "v1", max_duration=D, promises=promises or MemoryPromises(), now=now, config=CONFIG, **kw
    )


def verdict(v: LeaseVoter, holder: Holder, term: int, now: float, **kw):
    (out,) = v.on_request(request(holder, term, **kw), now).verdicts
    return out


def test_a_higher_term_is_granted_and_promised_durably():
    promises = MemoryPromises()
    v = voter(promises)
    out = verdict(v, A, 1, now=0.0)
    assert out.granted and out.promised == 1 and out.duration == D
    assert promises.load().terms == {"s": 1}


def test_no_grant_to_another_holder_while_a_grant_is_unexpired():
    v = voter()
    assert verdict(v, A, 1, now=0.0).granted
    refused = verdict(v, B, 2, now=D - 0.001)
    assert not refused.granted and refused.promised == 1
    assert verdict(v, B, 2, now=D + 0.001).granted


def test_a_voter_says_whether_it_grants_and_for_how_long_it_sits_out():
    assert voter().status(now=0.0).granting
    restarted = voter(MemoryPromises(PromiseState(terms={"s": 3}, config=CONFIG)), now=100.0)
    status = restarted.status(now=104.0)
    assert not status.granting and status.remaining == pytest.approx(D - 4.0)
    assert "sitting out" in status.reason
    assert not verdict(restarted, A, 4, now=104.0).granted  # what it says is what it does
    assert restarted.status(now=100.0 + D).granting
    assert verdict(restarted, A, 4, now=100.0 + D).granted
    blank = voter(recover_if_blank=True)
    assert not blank.status(now=0.0).granting and "recovering" in blank.status(now=0.0).reason


def test_equal_term_renews_for_the_same_holder_even_after_local_expiry():
    v = voter()
    assert verdict(v, A, 1, now=0.0).granted
    assert verdict(v, A, 1, now=3 * D, round_id=2).granted  # no higher term promised in between
    assert not verdict(v, B, 1, now=3 * D).granted  # equal term, other holder


def test_a_lower_term_is_refused_with_the_promised_term():
    v = voter()
    verdict(v, A, 5, now=0.0)
    out = verdict(v, B, 3, now=2 * D)
    assert not out.granted and out.promised == 5


def test_durations_are_clamped_to_the_longest_lease():
    v = voter()
    assert verdict(v, A, 1, now=0.0, duration=5 * D).duration == D


def test_a_grant_never_moves_earlier_for_its_holder():
    v = voter()
    verdict(v, A, 1, now=0.0, duration=D)
    verdict(v, A, 1, now=1.0, round_id=2, duration=1.0)  # a shorter renewal
    assert v.holder_of("s", D - 0.01) == A  # the first grant still runs
    assert not verdict(v, B, 2, now=D - 0.01).granted


def test_a_new_term_is_saved_once_and_a_renewal_not_at_all():
    promises = MemoryPromises()
    v = voter(promises)
    saves = promises.saves
    verdict(v, A, 1, now=0.0)
    verdict(v, A, 1, now=1.0, round_id=2)
    verdict(v, A, 1, now=2.0, round_id=3)
    assert promises.saves == saves + 1


def test_release_clears_the_grant_keeps_the_term_and_refuses_the_released_holder():
    v = voter()
    verdict(v, A, 1, now=0.0)
    assert v.on_release(ReleaseRequest(A, "s", 1), now=1.0)
    assert not verdict(v, A, 1, now=1.1, round_id=2).granted
    assert verdict(v, B, 2, now=1.2).granted
    assert not v.on_release(ReleaseRequest(A, "s", 1), now=1.3)  # nothing of A's to clear


def test_a_restarted_voter_sits_out_one_lease_and_keeps_its_promises():
    promises = MemoryPromises()
    v = voter(promises, now=0.0)
    verdict(v, A, 4, now=0.0)
    again = voter(promises, now=100.0)
    assert again.promised("s") == 4
    assert not verdict(again, B, 5, now=100.0 + D - 0.01).granted
    out = verdict(again, B, 5, now=100.0 + D)
    assert out.granted and out.promised == 5
    assert again.stats.sit_out_refusals == 1


def test_a_fresh_voter_has_nothing_to_sit_out():
    assert verdict(voter(now=0.0), A, 1, now=0.0).granted


def test_a_voter_outside_its_own_configuration_grants_nothing():
    v = LeaseVoter("v9", max_duration=D, promises=MemoryPromises(), now=0.0, config=CONFIG)
    assert not verdict(v, A, 1, now=0.0).granted


def test_a_voter_without_any_configuration_is_an_error():
    with pytest.raises(VoterConfigError, match="no configuration"):
        LeaseVoter("v1", max_duration=D, promises=MemoryPromises(), now=0.0)


def test_a_failed_save_grants_nothing(caplog):
    class Broken(MemoryPromises):
        full = True

        def save(self, state: PromiseState) -> None:
            if state.terms and self.full:
                raise OSError(28, "No space left on device")
            super().save(state)

    promises = Broken()
    v = voter(promises)
    out = verdict(v, A, 1, now=0.0)
    assert not out.granted
    assert v.stats.persist_failures == 1 and v.stats.granted == 0
    assert "could not store promised terms" in caplog.text
    # the term stays undurable: a retry of the same grant must save before it is granted
    assert not verdict(v, A, 1, now=0.1).granted
    promises.full = False
    assert verdict(v, A, 1, now=0.2).granted
    assert promises.load().terms == {"s": 1}


def test_adopting_a_newer_configuration_inherits_promised_terms():
    promises = MemoryPromises()
    v = voter(promises)
    assert v.adopt_config(CONFIG.with_added("v4"), {"s": 7, "t": 2})
    assert v.promised("s") == 7 and v.promised("t") == 2
    assert promises.load().config == VoterConfig(2, {"v1", "v2", "v3", "v4"})
    assert not v.adopt_config(CONFIG, {})  # an older epoch is ignored


def test_config_changes_are_one_member_at_a_time():
    with pytest.raises(VoterConfigError):
        CONFIG.with_added("v1")
    with pytest.raises(VoterConfigError):
        VoterConfig(1, {"only"}).with_removed("only")
    assert CONFIG.majority == 2 and VoterConfig(1, {"a", "b", "c", "d", "e"}).majority == 3


# ---------------------------------------------------------------- promise file


def test_promise_file_round_trip(tmp_path):
    path = tmp_path / "voter" / "promised.json"
    store = FilePromises(path)
    assert store.load() == PromiseState()
    store.save(PromiseState({"s": 3}, CONFIG))
    assert FilePromises(path).load() == PromiseState({"s": 3}, CONFIG)
    assert not path.with_name("promised.json.tmp").exists()


def test_a_damaged_promise_file_refuses_to_start_empty(tmp_path):
    path = tmp_path / "promised.json"
    path.write_text(json.dumps({"terms": {"s": -1}}))
    with pytest.raises(PromiseFileError, match="fences could go backwards"):
        FilePromises(path).load()
    path.write_text("{not json")
    with pytest.raises(PromiseFileError, match=str(path)):
        FilePromises(path).load()


# ---------------------------------------------------------------- candidate


def reply(
    voter_name: str,
    holder: Holder,
    out_request: LeaseRequest,
    granted: bool,
    promised: int | None = None,
    duration: float = D,
    config: VoterConfig = CONFIG,
):
    from leadership.quorum import Verdict

    verdicts = tuple(
        Verdict(
            e.scope,
            e.round_id,
            e.term,
            granted,
            e.term if promised is None else promised,
            duration if granted else 0.0,
        )
        for e in out_request.entries
    )
    return LeaseReply(voter_name, holder, config, verdicts)


def test_a_majority_elects_until_start_plus_min_granted_times_the_drift_factor():
    cand = LeaseCandidate(A, CONFIG, duration=D, max_drift=0.05)
    out = cand.campaign(["s"], now=100.0)
    assert out.targets == CONFIG.voters
    req = out.message
    assert isinstance(req, LeaseRequest)
    assert cand.on_reply(reply("v1", A, req, True, duration=8.0), now=100.5).decisions == ()
    (decision,) = cand.on_reply(reply("v2", A, req, True), now=101.0).decisions
    assert isinstance(decision, Elected) and decision.term == 1
    assert decision.deadline == pytest.approx(100.0 + 8.0 * 0.95 / 1.05)
    assert cand.is_leader("s", decision.deadline - 1e-6)
    assert not cand.is_leader("s", decision.deadline)


def test_a_grant_for_another_round_or_holder_does_not_count():
    cand = LeaseCandidate(A, CONFIG, duration=D)
    first = cand.campaign(["s"], now=0.0).message
    cand.abandon("s")
    second = cand.campaign(["s"], now=1.0).message
    assert isinstance(first, LeaseRequest) and isinstance(second, LeaseRequest)
    late = reply("v1", A, first, True)
    assert cand.on_reply(late, now=1.5).decisions == ()
    assert cand.on_reply(reply("v2", B, second, True), now=1.6).decisions == ()
    assert cand.foreign_replies == 1
    assert cand.on_reply(reply("v2", A, second, True), now=1.7).decisions == ()  # one of three


def test_a_quorum_that_lands_after_its_own_deadline_is_abandoned():
    cand = LeaseCandidate(A, CONFIG, duration=D)
    req = cand.campaign(["s"], now=0.0).message
    assert isinstance(req, LeaseRequest)
    cand.on_reply(reply("v1", A, req, True), now=5.0)
    (decision,) = cand.on_reply(reply("v2", A, req, True), now=9.5).decisions
    assert isinstance(decision, Abandoned)
    assert not cand.is_leader("s", 9.5)


def test_refusals_retry_above_the_promised_term():
    cand = LeaseCandidate(A, CONFIG, duration=D)
    req = cand.campaign(["s"], now=0.0).message
    assert isinstance(req, LeaseRequest)
    # one voter that promised a term at or above the campaign's fails it at once: waiting for
    # the others would only wait out the round when one is down
    (decision,) = cand.on_reply(reply("v1", A, req, False, promised=7), now=0.1).decisions
    assert isinstance(decision, Refused) and decision.promised == 7
    assert cand.on_reply(reply("v2", A, req, True), now=0.2).decisions == ()
    again = cand.campaign(["s"], now=0.3).message
    assert isinstance(again, LeaseRequest) and again.entries[0].term == 8


def test_a_refused_campaign_gives_its_term_back_to_the_voters_that_may_hold_it():
    cand = LeaseCandidate(A, CONFIG, duration=D)
    req = cand.campaign(["s"], now=0.0).message
    assert isinstance(req, LeaseRequest)
    cand.on_reply(reply("v2", A, req, False, promised=0), now=0.1)
    step = cand.on_reply(reply("v3", A, req, False, promised=0), now=0.2)
    assert isinstance(step.decisions[0], Refused)
    (out,) = step.outbound
    assert out.targets == {"v1"}  # it had not answered: its grant may be on the way
    assert out.message == ReleaseRequest(A, "s", 1)
    assert cand.released("s") and cand.terms_given_back == 1
    # the grant lands after the refusal decided the round: it goes back to that voter again
    late = cand.on_reply(reply("v1", A, req, True), now=0.3)
    assert late.decisions == ()
    assert [(o.targets, o.message) for o in late.outbound] == [({"v1"}, ReleaseRequest(A, "s", 1))]
    assert cand.stray_grants_given_back == 1
    again = cand.campaign(["s"], now=0.4).message
    assert isinstance(again, LeaseRequest) and again.entries[0].term == 2


def test_an_abandoned_campaign_gives_its_term_back_and_a_renewal_keeps_it():
    cand = LeaseCandidate(A, CONFIG, duration=D)
    req = cand.campaign(["s"], now=0.0).message
    assert isinstance(req, LeaseRequest)
    cand.on_reply(reply("v1", A, req, True), now=0.1)
    cand.on_reply(reply("v2", A, req, False, promised=0), now=0.1)
    out = cand.abandon("s")  # timed out with one grant of three
    assert out is not None and out.targets == {"v1", "v3"}
    assert out.message == ReleaseRequest(A, "s", 1)
    assert cand.abandon("s") is None  # nothing in flight any more
    # a leader's renewal that times out keeps its term: it may still be renewed or restored
    won = cand.campaign(["s"], now=1.0).message
    for name in ("v1", "v2"):
        cand.on_reply(reply(name, A, won, True), now=1.1)
    assert cand.is_leader("s", 1.2)
    renewal = cand.renew(["s"], now=5.0)
    assert renewal is not None
    assert cand.abandon("s") is None and not cand.released("s")
    # and its late grant is kept too, where a grant of the term left behind goes back
    late = cand.on_reply(reply("v3", A, renewal.message, True), now=5.5)
    assert late.outbound == ()
    stray = cand.on_reply(reply("v3", A, req, True), now=5.6)
    assert [o.message for o in stray.outbound] == [ReleaseRequest(A, "s", 1)]


def deliver(voters: dict[str, LeaseVoter], cand: LeaseCandidate, out, now: float) -> list:
    """Hand ``out`` to the voters that are up and their replies back; the decisions made."""
    decisions = []
    for target in sorted(out.targets & voters.keys()):
        if isinstance(out.message, ReleaseRequest):
            voters[target].on_release(out.message, now)
            continue
        step = cand.on_reply(voters[target].on_request(out.message, now), now)
        decisions += step.decisions
        for more in step.outbound:
            decisions += deliver(voters, cand, more, now)
    return decisions


def test_a_voter_that_cannot_store_its_grant_does_not_fail_the_campaign():
    """Its refusal carries the promised term (the grant stays recorded) but names this holder:
    not another holder's term, so the two voters with working disks still elect."""

    class Full(MemoryPromises):
        def save(self, state: PromiseState) -> None:
            if state.terms:
                raise OSError(28, "No space left on device")
            super().save(state)

    full = LeaseVoter("v3", max_duration=D, promises=Full(), now=0.0, config=CONFIG)
    cand = LeaseCandidate(A, CONFIG, duration=D)
    out = cand.campaign(["s"], now=0.0)
    step = cand.on_reply(full.on_request(out.message, 0.0), 0.0)  # the full disk answers first
    assert step.decisions == () and step.outbound == ()
    for v in (
        voter(),
        LeaseVoter("v2", max_duration=D, promises=MemoryPromises(), now=0.0, config=CONFIG),
    ):
        step = cand.on_reply(v.on_request(out.message, 0.1), 0.1)
    (decision,) = step.decisions
    assert isinstance(decision, Elected) and decision.term == 1
    # a campaign that fails gives its term back to that voter too: it holds the grant it could
    # not store, which would keep every other candidate out for a lease
    other = LeaseCandidate(B, CONFIG, duration=D)
    other.observe_term("s", 1)
    out = other.campaign(["s"], now=D + 1)
    other.on_reply(full.on_request(out.message, D + 1), D + 1)
    step = other.on_reply(reply("v2", B, out.message, False, promised=0), D + 1)
    assert isinstance(step.decisions[0], Refused)
    (back,) = step.outbound
    assert back.targets == {"v1", "v3"} and back.message == ReleaseRequest(B, "s", 2)
    assert full.holder_of("s", D + 1) == B
    full.on_release(back.message, D + 1)
    assert full.holder_of("s", D + 1) is None


@pytest.mark.parametrize("give_back", [True, False])
def test_a_voter_freed_by_a_failed_campaign_grants_the_next_candidate(give_back: bool):
    """One voter down, one sitting out after a restart: A's campaign gets one grant and times
    out. Kept, that grant would refuse B for a whole lease once the other voter is back; given
    back, B is elected by the two voters up."""
    restarted = MemoryPromises(PromiseState(terms={"other": 1}, config=CONFIG))
    v2 = LeaseVoter("v2", max_duration=D, promises=restarted, now=0.0, config=CONFIG)
    voters = {"v1": voter(), "v2": v2}  # v3 is down
    a = LeaseCandidate(A, CONFIG, duration=D)
    b = LeaseCandidate(B, CONFIG, duration=D)
    assert deliver(voters, a, a.campaign(["s"], 1.0), 1.0) == []  # v1 grants, v2 sits out
    given = a.abandon("s")
    assert given is not None
    if give_back:
        deliver(voters, a, given, 3.0)
    b.observe_term("s", 1)  # as a reject from v1 would tell it
    decisions = deliver(voters, b, b.campaign(["s"], D + 0.5), D + 0.5)  # v2 is back
    if give_back:
        (decision,) = decisions
        assert isinstance(decision, Elected) and decision.term == 2
    else:  # v1 refuses, v2 grants: one of three, and the round waits for its timeout
        assert decisions == [] and not b.is_leader("s", D + 0.5)


def test_renewal_keeps_the_term_and_the_later_deadline():
    cand = LeaseCandidate(A, CONFIG, duration=D, max_drift=0.0)
    req = cand.campaign(["s"], now=0.0).message
    for name in ("v1", "v2"):
        cand.on_reply(reply(name, A, req, True), now=0.1)
    out = cand.renew(["s"], now=5.0)
    assert out is not None and isinstance(out.message, LeaseRequest)
    assert out.message.entries[0].term == 1
    cand.on_reply(reply("v1", A, out.message, True, duration=1.0), now=5.1)
    (decision,) = cand.on_reply(reply("v2", A, out.message, True, duration=1.0), now=5.2).decisions
    assert isinstance(decision, Renewed) and decision.deadline == pytest.approx(D)


def test_a_late_renewal_restores_the_same_term():
    cand = LeaseCandidate(A, CONFIG, duration=D, max_drift=0.0)
    req = cand.campaign(["s"], now=0.0).message
    for name in ("v1", "v2"):
        cand.on_reply(reply(name, A, req, True), now=0.1)
    out = cand.renew(["s"], now=9.0)
    assert out is not None
    cand.step_down("s")  # the lease ran out at 10 before the renewal landed
    for name in ("v1", "v2"):
        step = cand.on_reply(reply(name, A, out.message, True), now=10.5)  # type: ignore[arg-type]
    (decision,) = step.decisions
    assert isinstance(decision, Elected) and decision.restored and decision.term == 1


def test_release_stops_believing_abandons_the_round_and_is_never_renewed():
    cand = LeaseCandidate(A, CONFIG, duration=D)
    req = cand.campaign(["s"], now=0.0).message
    for name in ("v1", "v2"):
        cand.on_reply(reply(name, A, req, True), now=0.1)
    renewal = cand.renew(["s"], now=1.0)
    out = cand.release("s")
    assert out is not None and out.message == ReleaseRequest(A, "s", 1)
    assert not cand.is_leader("s", 1.1)
    assert renewal is not None
    for name in ("v1", "v2"):
        assert cand.on_reply(reply(name, A, renewal.message, True), now=1.2).decisions == ()  # type: ignore[arg-type]
    assert cand.renew(["s"], now=1.3) is None


def test_a_newer_configuration_in_a_reply_widens_the_round():
    cand = LeaseCandidate(A, CONFIG, duration=D)
    req = cand.campaign(["s"], now=0.0).message
    newer = VoterConfig(2, {"v1", "v2", "v3", "v4"})
    step = cand.on_reply(reply("v1", A, req, True, config=newer), now=0.1)
    (widen,) = step.outbound
    assert widen.targets == {"v4"}
    step = cand.on_reply(reply("v2", A, req, True), now=0.2)
    assert step.decisions == ()  # a majority of epoch 1, not yet of epoch 2 (needs 3 of 4)
    (decision,) = cand.on_reply(reply("v3", A, req, True), now=0.3).decisions
    assert isinstance(decision, Elected)
    assert cand.config == newer


def test_the_drift_factor_is_checked():
    with pytest.raises(ValueError):
        LeaseCandidate(A, CONFIG, duration=D, max_drift=1.0)
    assert math.isinf(LeaseCandidate(A, CONFIG, duration=D).deadline("s"))


def test_a_restarted_voter_sits_out_the_longest_lease_it_ever_granted():
    promises = MemoryPromises()
    v = LeaseVoter("v1", max_duration=10.0, promises=promises, now=0.0, config=CONFIG)
    assert verdict(v, A, 1, now=0.0, duration=10.0).granted  # A may lead until ~10
    # restarted with the lease shortened to 2 s: a grant of the old length may still run
    again = LeaseVoter("v1", max_duration=2.0, promises=promises, now=1.0, config=CONFIG)
    assert not verdict(again, B, 2, now=3.5, duration=2.0).granted
    assert verdict(again, B, 2, now=11.0, duration=2.0).granted
    assert again.change_gap == pytest.approx(10.0 * 1.05 / 0.95)


def test_the_longest_lease_survives_in_the_promise_file(tmp_path):
    path = tmp_path / "promised.json"
    v = LeaseVoter("v1", max_duration=10.0, promises=FilePromises(path), now=0.0, config=CONFIG)
    verdict(v, A, 1, now=0.0)
    assert FilePromises(path).load().longest == 10.0
    LeaseVoter("v1", max_duration=2.0, promises=FilePromises(path), now=1.0, config=CONFIG)
    assert FilePromises(path).load().longest == 10.0


class CountingFilePromises(FilePromises):
    """Real files; counts the writes and how many ran at once (there must never be two)."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.running = 0
        self.most_at_once = 0

    def save(self, state: PromiseState) -> None:
        self.running += 1
        self.most_at_once = max(self.most_at_once, self.running)
        try:
            super().save(state)
        finally:
            self.running -= 1


@pytest.mark.parametrize("offload", [False, True])
async def test_requests_decided_together_share_one_durable_save(tmp_path: Path, offload: bool):
    """Group commit, on the real clock: 40 campaigns arriving at once are answered after far
    fewer saves than 40, every grant only once its term is on disk."""
    promises = CountingFilePromises(tmp_path / "promises.json")
    v = voter(promises)
    commits = GroupCommit(v, offload=offload)
    replies: dict[str, bool] = {}

    async def campaign(i: int) -> None:
        decision = v.decide(request(Holder(f"c{i}", "b"), 1, scope=f"s{i}"), trio.current_time())
        assert decision.needs_save
        reply = v.settle(decision, await commits.durable())
        (verdict,) = reply.verdicts
        # what was granted is on disk by the time the reply exists
        assert not verdict.granted or FilePromises(promises.path).load().terms[f"s{i}"] == 1
        replies[f"s{i}"] = verdict.granted

    async with trio.open_nursery() as nursery:
        for i in range(40):
            nursery.start_soon(campaign, i)
    assert replies == {f"s{i}": True for i in range(40)}
    assert 1 <= commits.saves <= 3, commits.saves
    assert promises.most_at_once == 1


async def test_a_failed_group_save_refuses_every_grant_that_waited_for_it(tmp_path: Path):
    class Full(MemoryPromises):
        def save(self, state: PromiseState) -> None:
            if state.terms:
                raise OSError(28, "No space left on device")
            super().save(state)

    v = voter(Full())
    commits = GroupCommit(v, offload=True)
    granted: list[bool] = []

    async def campaign(i: int) -> None:
        decision = v.decide(request(Holder(f"c{i}", "b"), 1, scope=f"s{i}"), trio.current_time())
        granted.append(v.settle(decision, await commits.durable()).verdicts[0].granted)

    async with trio.open_nursery() as nursery:
        for i in range(10):
            nursery.start_soon(campaign, i)
    assert granted == [False] * 10
    assert v.stats.granted == 0 and v.stats.persist_failures >= 1


def test_a_blank_voter_votes_only_after_recovering_and_sits_out_if_terms_existed():
    promises = MemoryPromises()
    v = voter(promises, recover_if_blank=True)
    assert v.recovering
    assert not verdict(v, A, 1, now=0.0).granted
    assert promises.load() == PromiseState()  # nothing written: a crash now is blank again
    assert not v.on_prepare(ConfigPrepare(CONFIG, CONFIG.with_added("v4")), 0.0).accepted
    assert v.recovered({"s": 4}, now=1.0)
    assert v.promised("s") == 4 and promises.load().terms == {"s": 4}
    # it sits out the longest lease counted from its start (at 0): older grants end by then
    assert not verdict(v, A, 5, now=D - 0.1).granted
    assert verdict(v, A, 5, now=D).granted


def test_a_blank_voter_of_a_new_mesh_votes_at_once_and_a_stored_one_never_recovers():
    v = voter(MemoryPromises(), recover_if_blank=True)
    assert v.recovered({}, now=0.0)
    assert verdict(v, A, 1, now=0.0).granted
    promises = MemoryPromises()
    voter(promises)  # a first start stores its configuration
    assert not voter(promises, recover_if_blank=True).recovering


# ---------------------------------------------------------------- thrifty renewals


def elected(cand: LeaseCandidate, voters: dict[str, LeaseVoter], now: float = 0.0) -> None:
    (decision,) = deliver(voters, cand, cand.campaign(["s"], now), now)
    assert isinstance(decision, Elected)


def three_voters() -> dict[str, LeaseVoter]:
    return {
        name: LeaseVoter(name, max_duration=D, promises=MemoryPromises(), now=0.0, config=CONFIG)
        for name in sorted(CONFIG.voters)
    }


def test_a_thrifty_renewal_asks_a_majority_preferring_its_own_voter_and_the_live():
    voters = three_voters()
    cand = LeaseCandidate(Holder("v2", "boot"), CONFIG, duration=D, thrifty=True)
    elected(cand, voters)
    out = cand.renew(["s"], 1.0)
    assert out is not None and len(out.targets) == 2 and "v2" in out.targets  # its own first
    (decision,) = deliver(voters, cand, out, 1.0)
    assert isinstance(decision, Renewed)
    other = next(iter(out.targets - {"v2"}))
    out = cand.renew(["s"], 2.0, down=[other])
    assert out is not None and out.targets == CONFIG.voters - {other}
    # without thrift every voter is asked, as before
    plain = LeaseCandidate(A, CONFIG, duration=D)
    elected(plain, three_voters())
    assert (renewal := plain.renew(["s"], 1.0)) is not None and renewal.targets == CONFIG.voters


def test_leaders_spread_their_thrifty_renewals_over_the_voters():
    asked: dict[str, int] = dict.fromkeys(CONFIG.voters, 0)
    for i in range(60):
        cand = LeaseCandidate(Holder(f"node-{i}", "b"), CONFIG, duration=D, thrifty=True)
        elected(cand, three_voters())
        out = cand.renew(["s"], 1.0)
        assert out is not None
        for name in out.targets:
            asked[name] += 1
    assert sum(asked.values()) == 120 and min(asked.values()) >= 25  # each about 40 of 60


def thrifty_leader() -> tuple[dict[str, LeaseVoter], LeaseCandidate, Outbound]:
    """A's thrifty candidate elected by three voters, and its first renewal (at 1.0)."""
    voters = three_voters()
    cand = LeaseCandidate(A, CONFIG, duration=D, thrifty=True)
    elected(cand, voters)
    out = cand.renew(["s"], 1.0)
    assert out is not None and isinstance(out.message, LeaseRequest)
    return voters, cand, out


def test_a_thrifty_renewal_widens_when_a_voter_is_silent_and_then_avoids_it():
    voters, cand, out = thrifty_leader()
    assert isinstance(out.message, LeaseRequest)
    silent = sorted(out.targets)[0]
    up = {name: v for name, v in voters.items() if name != silent}
    assert deliver(up, cand, out, 1.0) == []  # one grant of the two asked: undecided
    wide = cand.widen({e.round_id for e in out.message.entries})
    assert wide is not None and wide.targets == CONFIG.voters - out.targets
    (decision,) = deliver(up, cand, wide, 1.2)
    assert isinstance(decision, Renewed) and cand.widened == 1
    assert cand.widen({e.round_id for e in out.message.entries}) is None  # decided: nothing
    nxt = cand.renew(["s"], 2.0)
    assert nxt is not None and silent not in nxt.targets  # asked last until it answers
    (decision,) = deliver(voters, cand, nxt, 2.0)
    assert isinstance(decision, Renewed)
    # it answers a campaign or a widened round again: preferred again
    cand.on_reply(reply(silent, A, nxt.message, True), 2.1)  # type: ignore[arg-type]
    assert cand.renew(["s"], 3.0).targets == out.targets  # type: ignore[union-attr]


def test_a_thrifty_renewal_refused_by_one_voter_asks_the_voter_it_left_out():
    voters, cand, out = thrifty_leader()
    refusing = sorted(out.targets)[0]
    voters[refusing] = LeaseVoter(  # restarted without its grants: it sits out
        refusing,
        max_duration=D,
        promises=MemoryPromises(PromiseState(terms={"s": 1}, config=CONFIG)),
        now=1.0,
        config=CONFIG,
    )
    (decision,) = deliver(voters, cand, out, 1.0)  # the refusal widens to the third at once
    assert isinstance(decision, Renewed) and decision.term == 1 and cand.widened == 1


def test_a_campaign_always_asks_every_voter():
    cand = LeaseCandidate(A, CONFIG, duration=D, thrifty=True)
    assert cand.campaign(["s"], 0.0).targets == CONFIG.voters
