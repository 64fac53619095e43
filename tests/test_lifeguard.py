"""Lifeguard acceptance: loss plus stalling nodes produce no false deaths at N=50 over five
virtual minutes, while the same scenario with Lifeguard switched off declares live nodes dead.

Both runs first prove that their fault happened where it matters: datagrams were held back at
the stalled nodes for most of the requested stall time, and the stalled nodes were suspected
far more often than the others. Both end with a real crash, found within the time each mode
promises: Lifeguard's timeout starts at the maximum but shrinks with confirmations, plain
SWIM's is fixed at the minimum. (Each Lifeguard mechanism is also pinned on its own by the
sans-IO tests in test_instance.py.)
"""

from __future__ import annotations

import pytest

from simulations.lifeguard import Outcome, run
from swimmesh import MeshConfig
from swimmesh.protocol import suspicion_bounds

pytestmark = pytest.mark.slow

NODES, STALL = 50, 1.5


async def _scenario(lifeguard: bool) -> Outcome:
    return await run(
        lifeguard=lifeguard, nodes=NODES, seconds=300.0, loss=0.10, stall=STALL, seed=1
    )


def _bounds() -> tuple[float, float]:
    c = MeshConfig.lan(name="x", bind=("x", 1))
    return suspicion_bounds(c.suspicion_mult, c.suspicion_max_timeout_mult, NODES, c.probe_interval)


def _assert_the_stalls_bit(out: Outcome) -> None:
    assert out.stalls > 30
    assert out.stalls_observed >= 0.8 * out.stalls  # overlapping stalls count once
    assert out.stalled_seconds >= 0.4 * out.stalls * STALL
    assert out.suspicions_per_victim > 3 * out.suspicions_per_bystander


async def test_lifeguard_has_no_false_deaths_under_loss_and_stalls(sim_clock: object) -> None:
    out = await _scenario(lifeguard=True)
    print(out)
    _assert_the_stalls_bit(out)
    assert out.false_deaths == 0, out.nodes_ever_declared_dead
    minimum, maximum = _bounds()
    assert out.detection_seconds is not None
    assert out.detection_seconds < (minimum + maximum) / 2  # confirmations shrank the timeout


async def test_plain_swim_declares_live_nodes_dead_in_the_same_scenario(sim_clock: object) -> None:
    plain = await _scenario(lifeguard=False)
    print(plain)
    _assert_the_stalls_bit(plain)
    assert plain.false_deaths > 0
    minimum, _ = _bounds()
    assert plain.detection_seconds is not None
    assert plain.detection_seconds < minimum + 5  # the fixed, minimum timeout
