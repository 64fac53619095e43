"""Lifeguard acceptance: loss plus stalling nodes produce no false deaths at N=50 over five
virtual minutes, while the same scenario with Lifeguard switched off does suspect falsely."""

from __future__ import annotations

import pytest

from simulations.lifeguard import Outcome, run

pytestmark = pytest.mark.slow


async def _scenario(lifeguard: bool) -> Outcome:
    return await run(lifeguard=lifeguard, nodes=50, seconds=300.0, loss=0.10, stall=1.5, seed=1)


async def test_lifeguard_has_no_false_deaths_under_loss_and_stalls(sim_clock: object) -> None:
    out = await _scenario(lifeguard=True)
    print(out)
    assert out.stalls > 30  # the stalls did happen, many times
    assert out.false_suspicions > 0  # the scenario is hard enough to make nodes suspect
    assert out.false_deaths == 0, out.nodes_ever_declared_dead


async def test_plain_swim_suspects_falsely_in_the_same_scenario(sim_clock: object) -> None:
    plain = await _scenario(lifeguard=False)
    print(plain)
    assert plain.false_suspicions > 0
    assert plain.false_deaths > 0
