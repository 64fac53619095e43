"""Shared fixtures: a MockClock for simulations, and real agent processes for system tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import trio.testing

from swimmesh.testing import AgentProcesses, seed_scheduler


@pytest.fixture
def sim_clock() -> trio.testing.MockClock:
    """Every simulation runs on a MockClock that jumps straight to the next timer."""
    seed_scheduler(12345)
    return trio.testing.MockClock(autojump_threshold=0)


@pytest.fixture
def agents() -> Iterator[AgentProcesses]:
    """Agent processes started by one test; each is stopped by its PID at the end."""
    manager = AgentProcesses()
    try:
        yield manager
    finally:
        manager.stop_all()
