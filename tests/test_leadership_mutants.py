"""Leadership rules that surviving mutants showed no test pinned down (docs/testing.md,
mutation testing): each test here fails with its mutant applied."""

from __future__ import annotations

import math
from datetime import timedelta

import attrs
import pytest

from leadership import (
    InMemoryLeaseStore,
    LeadershipConfig,
    LeadershipConfigError,
    LeaseOutcome,
    LeaseResult,
)
from leadership.candidacy import Candidacy
from leadership.config import MAX_PRIORITY, parse_duration
from leadership.hub import utc_now as hub_utc_now
from leadership.metrics import LeadershipMetrics
from leadership.rounds import StoreRounds
from leadership.scopes import LeadershipScope
from leadership.scoring import candidate_metadata
from leadership.testing import LocalMesh
from leadership.tokens import Holder

GLOBAL = LeadershipScope.global_control()


class FixedClock:
    """A lease clock that stays where the test puts it."""

    def __init__(self, now: float = 0.0) -> None:
        self.t = now

    def now(self) -> float:
        return self.t

    def trio_time(self, local: float) -> float:
        return local


def test_a_timespan_with_days_counts_whole_days() -> None:
    assert parse_duration("1.02:03:04", "k") == 86400 + 2 * 3600 + 3 * 60 + 4
    assert parse_duration("00:00:01.5", "k") == 1.5


def test_omnirelay_string_values_for_booleans_and_integers() -> None:
    cfg = LeadershipConfig.from_mapping({"enabled": "true", "preempt": "Yes", "priority": "-3"})
    assert cfg.enabled is True and cfg.preempt is True and cfg.priority == -3
    cfg = LeadershipConfig.from_mapping({"enabled": "false", "preempt": "0"})
    assert cfg.enabled is False and cfg.preempt is False


def test_voters_without_a_quorum_mode_mean_a_static_quorum() -> None:
    cfg = LeadershipConfig.from_mapping({"nodeId": "a", "voters": ["a", "b", "c"]})
    assert cfg.quorum == "static" and cfg.voters == ("a", "b", "c")


@pytest.mark.parametrize("node_id", ["", "   ", 7])
def test_a_blank_or_non_string_node_id_is_refused(node_id: object) -> None:
    with pytest.raises(LeadershipConfigError, match="nodeId"):
        LeadershipConfig.from_mapping({"nodeId": node_id})


def test_the_store_reports_term_zero_for_a_scope_it_never_saw() -> None:
    assert InMemoryLeaseStore().last_term(GLOBAL) == 0


@pytest.mark.parametrize("preempt", [False, True])
def test_a_preferred_successor_exists_only_with_preempt(preempt: bool) -> None:
    mesh = LocalMesh()
    mesh.add("me", candidate_metadata(0, True, ("*",)))
    mesh.add("boss", candidate_metadata(10, True, ("*",)))
    clock = FixedClock(5.0)
    config = LeadershipConfig(node_id="me", scopes=(GLOBAL,), preempt=preempt, stable_after=3.0)
    candidacy = Candidacy(config, mesh.view("me"), "me", clock)
    candidacy.note_stability("boss")
    if preempt:
        assert candidacy.preferred(GLOBAL) == ("boss", 8.0)
    else:
        assert candidacy.preferred(GLOBAL) == (None, math.inf)


def test_a_well_known_scope_declared_as_custom_keeps_its_roles() -> None:
    scope = LeadershipScope.custom("global-control", roles=("dispatcher",))
    assert scope == attrs.evolve(LeadershipScope.global_control(), roles=("dispatcher",))
    assert LeadershipScope.custom("global-control") == LeadershipScope.global_control()


def test_event_times_are_utc() -> None:
    assert hub_utc_now().utcoffset() == timedelta(0)


@pytest.mark.parametrize("priority", [-MAX_PRIORITY, MAX_PRIORITY])
def test_the_priority_bounds_themselves_are_allowed(priority: int) -> None:
    assert LeadershipConfig(node_id="a", priority=priority).priority == priority
    with pytest.raises(LeadershipConfigError, match="priority"):
        LeadershipConfig(node_id="a", priority=priority + (1 if priority > 0 else -1))


class FixedStore:
    """A lease store whose every call has the same outcome."""

    def __init__(self, outcome: LeaseOutcome) -> None:
        self.outcome = outcome

    async def get(self, scope: LeadershipScope) -> LeaseResult:
        return LeaseResult(self.outcome)


@pytest.mark.parametrize(
    ("outcome", "counted"), [(LeaseOutcome.VACANT, 0), (LeaseOutcome.STORE_UNAVAILABLE, 2)]
)
async def test_only_unavailable_store_calls_are_counted(
    outcome: LeaseOutcome, counted: int
) -> None:
    metrics = LeadershipMetrics()
    store = FixedStore(outcome)
    rounds = StoreRounds(store, Holder("a", "boot"), metrics, timeout=1.0)  # type: ignore[arg-type]
    for _ in range(2):
        assert (await rounds.get(GLOBAL)).outcome is outcome
    value = metrics.registry.get_sample_value(
        "swimmesh_leadership_store_unavailable_total", {"operation": "get"}
    )
    assert (value or 0) == counted
