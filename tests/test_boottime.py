"""``leadership.clock.BootTime``: the lease clock that keeps counting across suspend."""

from __future__ import annotations

import sys
import time

import pytest
import trio

from leadership.clock import BootTime

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="CLOCK_BOOTTIME is Linux only")


def test_boot_time_never_runs_behind_the_monotonic_clock_and_advances() -> None:
    clock = BootTime()
    first = clock.now()
    assert first >= time.monotonic() - 1e-3  # boottime = monotonic + time spent suspended
    assert first == pytest.approx(time.clock_gettime(time.CLOCK_BOOTTIME), abs=0.5)
    assert clock.now() >= first


async def test_a_boot_time_deadline_maps_onto_trio_time() -> None:
    clock = BootTime()
    deadline = clock.now() + 5.0
    mapped = clock.trio_time(deadline)
    assert mapped == pytest.approx(trio.current_time() + 5.0, abs=0.05)
    with trio.move_on_at(clock.trio_time(clock.now() + 0.05)) as scope:
        await trio.sleep(1)
    assert scope.cancelled_caught
