"""Helpers for users' own tests: the in-memory network and condition waits."""

from __future__ import annotations

from collections.abc import Callable

import trio

from .transport.memory import EndpointStats, MemoryNetwork, MemoryTransport

__all__ = ["EndpointStats", "MemoryNetwork", "MemoryTransport", "wait_for"]


async def wait_for(
    condition: Callable[[], bool], *, timeout: float, poll: float = 0.05, what: str = "condition"
) -> float:
    """Wait until ``condition()`` holds, checking every ``poll`` seconds of (virtual) time.
    Return the time it took; raise ``TimeoutError`` naming ``what`` after ``timeout``."""
    start = trio.current_time()
    with trio.move_on_after(timeout):
        while not condition():
            await trio.sleep(poll)
        return trio.current_time() - start
    raise TimeoutError(f"{what} did not hold within {timeout}s")
