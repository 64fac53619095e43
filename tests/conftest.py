"""Shared fixtures: every simulation runs on a MockClock that jumps straight to the next timer."""

from __future__ import annotations

import pytest
import trio.testing

from swimmesh.testing import seed_scheduler


@pytest.fixture
def sim_clock() -> trio.testing.MockClock:
    seed_scheduler(12345)
    return trio.testing.MockClock(autojump_threshold=0)
