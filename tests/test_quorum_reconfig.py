"""Voter-set changes: two phases, one member at a time, the gap, and configurations in replies."""

from __future__ import annotations

import attrs
import pytest

from leadership.quorum import (
    Elected,
    LeaseCandidate,
    LeaseRequest,
    LeaseVoter,
    MemoryPromises,
    VoterConfig,
    VoterConfigError,
    decode,
    encode,
)
from leadership.quorum.reconfig import (
    ChangePhase,
    ChangeRefused,
    ConfigChange,
    VoterSetProposer,
    change_gap,
)
from leadership.quorum.wire import ConfigCommit, ConfigPrepare, LeaseReply
from leadership.tokens import Holder

D = 10.0
C1 = VoterConfig(1, {"v1", "v2", "v3"})
C2 = C1.with_added("v4")
C3 = C2.with_removed("v3")


def voters(*names: str, config: VoterConfig = C1, gap: float = 0.0) -> dict[str, LeaseVoter]:
    """Voters that leave the gap between changes to the proposer (``gap=0``), unless told."""
    return {
        n: LeaseVoter(
            n, max_duration=D, promises=MemoryPromises(), now=0.0, config=config, change_gap=gap
        )
        for n in names
    }


def run_change(
    proposer: VoterSetProposer,
    new: VoterConfig,
    vs: dict[str, LeaseVoter],
    now: float,
    reach: set[str] | None = None,
) -> None:
    """Drive a change to completion, delivering only to voters in ``reach`` (default: all)."""
    proposer.start(new, now)
    for _ in range(4):
        out = proposer.pending()
        if out is None:
            return
        for target in sorted(out.targets):
            if target not in vs or (reach is not None and target not in reach):
                continue
            message = decode(encode(out.message))
            if isinstance(message, ConfigPrepare):
                proposer.on_prepared(vs[target].on_prepare(message, now))
            elif isinstance(message, ConfigCommit):
                proposer.on_committed(vs[target].on_commit(message, now), now)
    assert not proposer.busy


def test_a_change_needs_the_old_majority_then_the_new_majority_and_carries_terms():
    vs = voters("v1", "v2", "v3") | voters("v4")
    vs["v2"].on_request(LeaseRequest(Holder("a", "1"), 1, ()), 0.0)
    vs["v2"].adopt_config(C1, {"s": 9})  # v2 promised term 9 for "s"
    proposer = VoterSetProposer(C1, max_duration=D, max_drift=0.05)
    change = proposer.start(C2, now=0.0)
    prep = change.pending()
    assert prep is not None and prep.targets == C1.voters
    change.on_prepared(vs["v1"].on_prepare(ConfigPrepare(C1, C2), 0.0))
    assert change.phase is ChangePhase.PREPARE
    change.on_prepared(vs["v2"].on_prepare(ConfigPrepare(C1, C2), 0.0))
    assert change.phase is ChangePhase.COMMIT and change.terms == {"s": 9}
    commit = change.pending()
    assert commit is not None and commit.targets == C2.voters
    for name in ("v1", "v4"):
        proposer.on_committed(vs[name].on_commit(ConfigCommit(C2, (("s", 9),)), 1.0), now=1.0)
    assert change.phase is ChangePhase.COMMIT  # 2 of 4 is no majority
    assert proposer.on_committed(vs["v2"].on_commit(ConfigCommit(C2, (("s", 9),)), 2.0), now=2.0)
    assert proposer.config == C2 and vs["v4"].promised("s") == 9
    assert proposer.next_allowed == pytest.approx(2.0 + D * 1.05 / 0.95)


def test_one_change_at_a_time_and_the_gap_after_it():
    vs = voters("v1", "v2", "v3") | voters("v4")
    proposer = VoterSetProposer(C1, max_duration=D, max_drift=0.05)
    proposer.start(C2, now=0.0)
    with pytest.raises(ChangeRefused, match="in progress"):
        proposer.start(C2, now=0.0)
    proposer.change = None
    run_change(proposer, C2, vs, now=0.0)
    with pytest.raises(ChangeRefused, match="wait"):
        proposer.start(C3, now=change_gap(D, 0.05) - 0.01)
    run_change(proposer, C3, vs, now=change_gap(D, 0.05))
    assert proposer.config == C3


def test_changes_are_one_member_and_one_epoch():
    with pytest.raises(VoterConfigError):
        ConfigChange(C1, VoterConfig(2, {"v1", "v4", "v5"}))
    with pytest.raises(VoterConfigError):
        ConfigChange(C1, VoterConfig(3, {"v1", "v2", "v3", "v4"}))


def test_a_voter_refuses_to_prepare_a_change_of_another_shape():
    """A proposer that skipped ConfigChange's checks (another version, a bug) still cannot make
    a voter store two members more, or an epoch that jumps: the voters hold the rule too."""
    (v1,) = voters("v1").values()
    for new in (
        VoterConfig(2, {"v1", "v2", "v3", "v4", "v5"}),  # two members at once
        VoterConfig(3, {"v1", "v2", "v3", "v4"}),  # an epoch skipped
        VoterConfig(2, {"v1", "v2", "v4"}),  # one out and one in
    ):
        refused = v1.on_prepare(ConfigPrepare(C1, new), 0.0)
        assert not refused.accepted and "exactly one voter" in refused.reason
    assert v1.config == C1
    assert v1.on_prepare(ConfigPrepare(C1, C2), 0.0).accepted


def test_voters_never_go_back_to_an_older_or_conflicting_configuration():
    (v1,) = voters("v1").values()
    assert v1.on_prepare(ConfigPrepare(C1, C2), 0.0).accepted
    assert not v1.on_commit(ConfigCommit(C1, ()), 0.0).accepted
    other = VoterConfig(2, {"v1", "v2", "v3", "v9"})
    assert not v1.on_prepare(ConfigPrepare(C1, other), 0.0).accepted
    assert v1.on_commit(ConfigCommit(C2, ()), 0.0).accepted  # the same change again is fine
    assert v1.config == C2


def test_a_removed_voter_stops_granting_once_it_stores_the_change():
    (v3,) = voters("v3", config=C2).values()
    assert v3.on_prepare(ConfigPrepare(C2, C3), 0.0).accepted
    request = LeaseRequest(Holder("a", "1"), 2, ())
    assert not v3.in_config()
    assert v3.on_request(request, 0.0).config == C3


def _two_leaders(views: bool, gap: bool) -> bool:
    """A leads with {v2, v3} under C1; the set changes twice (add v4, remove v3); B asks C3.

    Without the gap, B wins {v1, v4} while A's lease runs (quorums of C1 and C3 need not
    intersect). Without configurations in replies, a candidate that still knows only C1 wins
    {v2, v3} while B leads under C3 (v3 never stored the removal).
    """
    vs = voters("v1", "v2", "v3") | voters("v4")
    a = LeaseCandidate(Holder("a", "1"), C1, duration=D, max_drift=0.0)
    b = LeaseCandidate(Holder("b", "1"), C1, duration=D, max_drift=0.0)

    def ask(cand: LeaseCandidate, names: list[str], now: float) -> bool:
        out = cand.campaign(["s"], now)
        assert isinstance(out.message, LeaseRequest)
        elected = False
        for name in names:
            reply = vs[name].on_request(out.message, now)
            if not views:
                reply = attrs.evolve(reply, config=None)
            assert isinstance(reply, LeaseReply)
            step = cand.on_reply(reply, now)
            for widened in step.outbound:
                for extra in sorted(widened.targets & set(names)):
                    step2 = cand.on_reply(vs[extra].on_request(widened.message, now), now)
                    elected |= any(isinstance(d, Elected) for d in step2.decisions)
            elected |= any(isinstance(d, Elected) for d in step.decisions)
        return elected

    proposer = VoterSetProposer(C1, max_duration=D, max_drift=0.0)
    if gap:
        ok_a = ask(a, ["v2", "v3"], now=0.0)
        run_change(proposer, C2, vs, now=0.1)
        start = proposer.next_allowed  # A's lease (D) has run out by then
        run_change(proposer, C3, vs, now=start, reach={"v1", "v2", "v4"})
        b.learn_config(C3)
        b.observe_term("s", 1)
        ok_b = ask(b, ["v1", "v4"], now=start)
        assert ok_a and ok_b  # both elected, one after the other
        return a.is_leader("s", start)
    if not views:
        run_change(proposer, C2, vs, now=0.0)
        proposer.next_allowed = 0.0
        run_change(proposer, C3, vs, now=0.0, reach={"v1", "v2", "v4"})  # v3 misses it
        b.learn_config(C3)
        ok_b = ask(b, ["v1", "v4"], now=1.0)
        a.observe_term("s", 1)
        ok_a = ask(a, ["v2", "v3"], now=1.0)  # A still knows only C1
        return ok_a and ok_b and b.is_leader("s", 1.0)
    ok_a = ask(a, ["v2", "v3"], now=0.0)
    run_change(proposer, C2, vs, now=0.1)
    proposer.next_allowed = 0.0  # no gap
    run_change(proposer, C3, vs, now=0.2, reach={"v1", "v2", "v4"})
    b.learn_config(C3)
    b.observe_term("s", 1)
    ok_b = ask(b, ["v1", "v4"], now=0.3)
    return ok_a and ok_b and a.is_leader("s", 0.3)


def test_the_gap_keeps_quorums_of_two_changes_apart():
    assert _two_leaders(views=True, gap=False)
    assert not _two_leaders(views=True, gap=True)


def test_configurations_in_replies_keep_a_stale_candidate_out():
    assert _two_leaders(views=False, gap=False)


def test_with_configurations_in_replies_the_stale_candidate_needs_the_new_majority():
    vs = voters("v1", "v2", "v3") | voters("v4")
    proposer = VoterSetProposer(C1, max_duration=D, max_drift=0.0)
    run_change(proposer, C2, vs, now=0.0)
    proposer.next_allowed = 0.0
    run_change(proposer, C3, vs, now=0.0, reach={"v1", "v2", "v4"})
    b = LeaseCandidate(Holder("b", "1"), C3, duration=D, max_drift=0.0)
    out = b.campaign(["s"], 1.0)
    for name in ("v1", "v4"):
        b.on_reply(vs[name].on_request(out.message, 1.0), 1.0)  # type: ignore[arg-type]
    assert b.is_leader("s", 1.0)
    a = LeaseCandidate(Holder("a", "1"), C1, duration=D, max_drift=0.0)
    a.observe_term("s", 1)
    out = a.campaign(["s"], 1.0)
    for name in ("v2", "v3"):
        step = a.on_reply(vs[name].on_request(out.message, 1.0), 1.0)  # type: ignore[arg-type]
        for widened in step.outbound:
            for extra in sorted(widened.targets):
                a.on_reply(vs[extra].on_request(widened.message, 1.0), 1.0)  # type: ignore[arg-type]
    assert not a.is_leader("s", 1.0)


def test_voters_hold_the_gap_after_a_commit_whoever_proposes():
    (v1,) = voters("v1", gap=D * 1.05 / 0.95).values()
    assert v1.on_prepare(ConfigPrepare(C1, C2), 0.0).accepted  # epoch 1 has no predecessor
    early = v1.on_prepare(ConfigPrepare(C2, C3), 1.0)
    assert not early.accepted and "not committed" in early.reason
    assert v1.on_commit(ConfigCommit(C2, ()), 2.0).accepted
    refused = v1.on_prepare(ConfigPrepare(C2, C3), 3.0)
    assert not refused.accepted and refused.wait == pytest.approx(2.0 + D * 1.05 / 0.95 - 3.0)
    again = v1.on_commit(ConfigCommit(C2, ()), 5.0)  # a repeated commit does not move the gap
    assert again.accepted
    assert v1.on_prepare(ConfigPrepare(C2, C3), 2.0 + D * 1.05 / 0.95).accepted


def test_a_restarted_voter_counts_the_gap_from_its_restart():
    promises = MemoryPromises()
    v1 = LeaseVoter("v1", max_duration=D, promises=promises, now=0.0, config=C1)
    v1.on_prepare(ConfigPrepare(C1, C2), 0.0)
    v1.on_commit(ConfigCommit(C2, ()), 0.0)
    assert promises.load().committed_epoch == 2
    again = LeaseVoter("v1", max_duration=D, promises=promises, now=100.0, config=C1)
    assert again.config == C2
    assert not again.on_prepare(ConfigPrepare(C2, C3), 101.0).accepted
    assert again.on_prepare(ConfigPrepare(C2, C3), 100.0 + again.change_gap).accepted
