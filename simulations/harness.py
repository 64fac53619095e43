"""Running a scenario in virtual time so that it replays byte for byte, and its result shape.

Every part of a scenario is one ``trio.run`` under ``MockClock(autojump_threshold=0)`` inside
:func:`swimmesh.testing.replayable`: Trio's scheduling RNG is seeded and timers due at the same
instant fire in the order they were armed. Everything random the scenario owns draws from RNGs
seeded from the run's seed. The result holds no wall time, so equal seeds give equal JSON.
"""

from __future__ import annotations

import logging
import math
import random
import statistics
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Protocol, TypeVar

import attrs
import trio
import trio.testing

from swimmesh import __version__

T = TypeVar("T")
log = logging.getLogger("simulations")

TICK = 1.0
"""Virtual seconds between two progress updates (the ticker always runs, shown or not, so
the interleaving does not depend on whether a terminal is attached)."""


class SimulationError(ValueError):
    """Options a scenario cannot run with; the message is one line naming the fix."""


@attrs.frozen
class Options:
    """What a user chose (``None``: the scenario's default)."""

    nodes: int | None = None
    seed: int = 1
    duration: float | None = None
    preset: str = "lan"
    loss: float | None = None
    latency: float = 0.002
    jitter: float = 0.001
    quorum: str = "none"
    split: tuple[int, ...] = (50, 50)
    runs: int = 1
    kills: int = 3
    restart: bool = False
    scopes: int = 4
    drift: float = 0.02
    stall_fraction: float | None = None
    inject: str | None = None
    """A fault the safety checker must catch (``store-amnesia``): a negative control."""
    start: str = "joined"
    """How the mesh forms: ``joined`` (every node joins through a seed, the real N x N
    formation) or ``formed`` (every node starts knowing every other, sharing the records: the
    only way to 10,000 nodes in memory; see :meth:`swimmesh.testing.Cluster.start_formed`)."""

    def config(self) -> dict[str, Any]:
        """The options as they go into the JSON result."""
        out = attrs.asdict(self)
        out["split"] = list(self.split)
        return out


class Progress(Protocol):
    def plan(self, virtual_seconds: float, label: str) -> None: ...

    def at(self, virtual_seconds: float) -> None: ...

    def done_part(self) -> None: ...


class NoProgress:
    """Progress that shows nothing (tests, ``--format json`` without a terminal)."""

    def plan(self, virtual_seconds: float, label: str) -> None:
        pass

    def at(self, virtual_seconds: float) -> None:
        pass

    def done_part(self) -> None:
        pass


async def _tick(progress: Progress) -> None:
    while True:
        progress.at(trio.current_time())
        await trio.sleep(TICK)


def run_virtual(
    fn: Callable[[], Awaitable[T]], *, seed: int, progress: Progress | None = None
) -> T:
    """Run ``fn`` in a fresh Trio run in virtual time, replayably, reporting progress."""
    from swimmesh.testing import replayable

    shown = progress if progress is not None else NoProgress()

    async def main() -> T:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_tick, shown)
            result = await fn()
            nursery.cancel_scope.cancel()
        return result

    with replayable(seed) as exact:
        if not exact:
            log.warning(
                "this Trio keeps its scheduler elsewhere: the run will not replay byte for byte",
                extra={"trio": trio.__version__},
            )
        out = trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    shown.done_part()
    return out


def sub_seed(seed: int, *parts: object) -> int:
    """A seed for one part of a run, derived from the run's seed and the part's name."""
    return random.Random("/".join(map(str, (seed, *parts)))).getrandbits(62)


def r(value: float | None, digits: int = 3) -> float | None:
    """A figure as it goes into the JSON result (rounded, so printing it is stable)."""
    if value is None or math.isnan(value):
        return None
    return round(float(value), digits)


def percentile(values: Sequence[float], q: float) -> float | None:
    """The nearest-rank ``q``-th percentile (0-100) of ``values``; None when there are none."""
    ordered = sorted(values)
    if not ordered:
        return None
    idx = min(len(ordered) - 1, max(0, math.ceil(q / 100 * len(ordered)) - 1))
    return ordered[idx]


def spread(values: Sequence[float]) -> dict[str, Any]:
    """Count, min, median, p90, p99 and max of ``values`` (seconds), rounded."""
    if not values:
        return {"n": 0}
    return {
        "n": len(values),
        "min": r(min(values)),
        "median": r(statistics.median(values)),
        "p90": r(percentile(values, 90)),
        "p99": r(percentile(values, 99)),
        "max": r(max(values)),
    }


def result(
    scenario: str,
    options: Options,
    figures: Mapping[str, Any],
    *,
    series: Mapping[str, Any] | None = None,
    safety: Mapping[str, Any] | None = None,
    lease_store: str | None = None,
) -> dict[str, Any]:
    """The JSON result: configuration, seed, version, every figure, the series behind plots."""
    out: dict[str, Any] = {
        "scenario": scenario,
        "swimmesh_version": __version__,
        "seed": options.seed,
        "options": options.config(),
        "figures": dict(figures),
    }
    if lease_store is not None:
        out["lease_store"] = lease_store
    if safety is not None:
        out["safety"] = dict(safety)
    out["series"] = dict(series or {})
    return out
