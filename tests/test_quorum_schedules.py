"""Randomized schedules over the real voter and candidate code, and the checker's negative controls.

Every broken variant removes one rule of DESIGN.md 5; the checker must catch each one, or a
clean run of the full rule set proves nothing.
"""

from __future__ import annotations

import pytest

from leadership.quorum import LeaseCandidate, LeaseVoter, MemoryPromises, VoterConfig
from leadership.quorum.candidate import Elected
from leadership.quorum.wire import LeaseRequest
from leadership.tokens import Holder
from simulations.quorum_schedules import VARIANTS, D, _TermOnlyReplies, run_many, run_schedule


@pytest.mark.parametrize(
    ("variant", "seeds"),
    [("static3", 300), ("static5", 60), ("thrifty3", 150), ("thrifty5", 40), ("reconfig", 40)],
)
def test_every_rule_in_place_gives_no_violation(variant, seeds):
    failing, _kinds, results = run_many(variant, range(seeds))
    assert failing == 0, [v for r in results for v in r.violations][:3]


def test_the_schedules_do_exercise_the_protocol():
    totals: dict[str, int] = {}
    for seed in range(40):
        for key, value in run_schedule("static3", seed).stats.items():
            totals[key] = totals.get(key, 0) + value
    for key in (
        "acquired",
        "renewed",
        "refused",
        "writes_ok",
        "writes_rejected",
        "crashes",
        "pauses",
        "partitions",
    ):
        assert totals[key] > 0, key
    thrifty: dict[str, int] = {}
    for seed in range(20):
        for key, value in run_schedule("thrifty3", seed).stats.items():
            thrifty[key] = thrifty.get(key, 0) + value
    assert thrifty["thrifty_renewals"] > 0 and thrifty["widened"] > 0 and thrifty["renewed"] > 0


@pytest.mark.parametrize(
    ("variant", "seeds"),
    [("timer-at-quorum", 100), ("no-sit-out", 100), ("no-persist", 100), ("whole-lease", 400)],
)
def test_the_checker_catches_each_broken_rule(variant, seeds):
    assert not VARIANTS[variant].expect_safe
    failing, kinds, _ = run_many(variant, range(seeds))
    assert failing > 0 and kinds.get("exclusion", 0) > 0


def test_the_checker_sees_fence_regressions_without_persisted_terms():
    _, kinds, _ = run_many("no-persist", range(100))
    assert kinds.get("fence-order", 0) > 0


def test_the_checker_sees_stale_writes_when_the_resource_checks_no_fence():
    _, kinds, _ = run_many("unguarded", range(40))
    assert kinds.get("stale-write", 0) > 0


def test_a_schedule_replays_exactly_from_its_seed():
    first = run_schedule("no-sit-out", 16)
    again = run_schedule("no-sit-out", 16)
    assert first.violations and first.violations == again.violations
    assert first.stats == again.stats


def _two_leaders_after_a_stale_grant(candidate_type: type[LeaseCandidate]) -> bool:
    """A grant of round 1 lands during round 2 of the same term (the voter never saw round 2).

    Counted for round 2, it lets A believe until 2 + D*f although v1's grant ends at D; B then
    wins v1 and v3 at D + 0.5 while A still believes.
    """
    config = VoterConfig(1, {"v1", "v2", "v3"})
    voters = {
        n: LeaseVoter(n, max_duration=D, promises=MemoryPromises(), now=0.0, config=config)
        for n in sorted(config.voters)
    }
    a = candidate_type(Holder("a", "1"), config, duration=D, max_drift=0.0)
    b = LeaseCandidate(Holder("b", "1"), config, duration=D, max_drift=0.0)
    b.observe_term("s", 1)  # B learnt of term 1 (gossip, a reject) and campaigns above it
    first = a.campaign(["s"], now=0.0).message
    assert isinstance(first, LeaseRequest)
    delayed = voters["v1"].on_request(first, now=0.0)  # its reply is held back
    a.on_reply(voters["v2"].on_request(first, now=0.0), now=0.1)
    a.on_reply(voters["v3"].on_request(first, now=0.0), now=0.1)
    renewal = a.renew(["s"], now=2.0)
    assert renewal is not None and isinstance(renewal.message, LeaseRequest)
    a.on_reply(voters["v2"].on_request(renewal.message, now=2.0), now=2.1)  # v1, v3 lost it
    a.on_reply(delayed, now=2.2)  # the stale grant of round 1
    second = b.campaign(["s"], now=D + 0.5).message
    assert isinstance(second, LeaseRequest)
    b.on_reply(voters["v1"].on_request(second, now=D + 0.5), now=D + 0.5)
    step = b.on_reply(voters["v3"].on_request(second, now=D + 0.5), now=D + 0.5)
    b_elected = any(isinstance(d, Elected) for d in step.decisions)
    return b_elected and a.is_leader("s", D + 0.5)


def test_replies_count_only_for_the_round_they_answer():
    assert not _two_leaders_after_a_stale_grant(LeaseCandidate)
    assert _two_leaders_after_a_stale_grant(_TermOnlyReplies)
