"""``leader-failover`` and ``clock-skew``: crash the node leading the global scope ``--kills``
times (each comes back with a new boot id) and time the failover of every scope it led.

``clock-skew`` runs the same with every node's lease clock offset by up to 100 s and running
fast or slow by up to ``--drift`` (rate in ``[1 - drift, 1 + drift]``). Both report the
failover distribution, whether fences only ever rose, and the safety checker's verdict.
``--inject store-amnesia`` wipes the in-memory store's records mid-run (a store that lost its
data): a negative control the checker must catch.
"""

from __future__ import annotations

import random
from typing import Any

import trio

from swimmesh import SkewedClock

from ..harness import Options, Progress, SimulationError, r, result, run_virtual, spread, sub_seed
from ..mesh import Leadership, SimMesh

SETTLE = 10.0
FAILOVER_WITHIN = 60.0
INJECTIONS = ("store-amnesia",)


def planned(options: Options) -> float:
    return SETTLE + options.kills * float(options.duration or 0)


def run_failover(options: Options, progress: Progress) -> dict[str, Any]:
    return _start("leader-failover", options, progress, skew=False)


def run_skew(options: Options, progress: Progress) -> dict[str, Any]:
    if not 0 <= options.drift < 0.5:
        raise SimulationError(f"--drift is a rate error in [0, 0.5) (got {options.drift:g})")
    return _start("clock-skew", options, progress, skew=True)


def _start(name: str, options: Options, progress: Progress, *, skew: bool) -> dict[str, Any]:
    if options.kills < 1:
        raise SimulationError(f"--kills must be at least 1 (got {options.kills})")
    if options.inject is not None:
        if options.inject not in INJECTIONS:
            raise SimulationError(f"--inject knows {', '.join(INJECTIONS)} (got {options.inject})")
        if options.quorum != "none":
            raise SimulationError("--inject store-amnesia needs --quorum none (the shared store)")
    progress.plan(planned(options), name)
    return run_virtual(lambda: _run(name, options, skew), seed=options.seed, progress=progress)


async def _run(name: str, options: Options, skew: bool) -> dict[str, Any]:
    gap = float(options.duration or 0)
    rng = random.Random(sub_seed(options.seed, "failover"))
    clock_rng = random.Random(sub_seed(options.seed, "clocks"))
    skews: dict[str, SkewedClock] = {}

    def clock(node: str) -> SkewedClock:
        if node not in skews:
            if skew:
                skews[node] = SkewedClock(
                    offset=clock_rng.uniform(-100, 100),
                    rate=clock_rng.uniform(1 - options.drift, 1 + options.drift),
                )
            else:
                skews[node] = SkewedClock()
        return skews[node]

    async with (
        SimMesh.open(options) as mesh,
        Leadership.open(mesh, options, clocks=clock) as leadership,
    ):
        await mesh.until(leadership.all_led, timeout=60, what="every scope led")
        await trio.sleep(SETTLE)
        start = trio.current_time()
        failovers: list[float] = []
        kills: list[dict[str, Any]] = []
        global_scope = leadership.scopes[0].key
        for i in range(options.kills):
            leaders = leadership.leaders(global_scope)
            victim = leaders[0] if leaders else rng.choice(mesh.names)
            led = [s.key for s in leadership.scopes if leadership.leaders(s.key) == [victim]]
            if options.inject == "store-amnesia" and i == options.kills - 1:
                assert leadership.memory_store is not None
                leadership.memory_store._records.clear()  # the store forgot every lease
            leadership.crash(victim)
            mesh.crash(victim)
            at = trio.current_time()
            took: dict[str, float | None] = {}

            async def failover(scope: str, victim: str = victim) -> None:
                took[scope] = await mesh.until(
                    lambda: len([n for n in leadership.leaders(scope) if n != victim]) == 1,
                    timeout=FAILOVER_WITHIN,
                    what="failed over",
                )

            async with trio.open_nursery() as nursery:
                for scope in led:
                    nursery.start_soon(failover, scope)
            done = [v for v in took.values() if v is not None]
            failovers += done
            kills.append(
                {
                    "node": victim,
                    "at": r(at - start),
                    "scopes_it_led": len(led),
                    "failed_over": len(done),
                    "slowest_s": r(max(done)) if done else None,
                }
            )
            await mesh.restart(victim)
            await leadership.start(victim)
            rest = gap - (trio.current_time() - at)
            if rest > 0:
                await trio.sleep(rest)
        safety = leadership.verdict()
        fences = _fences_rose(leadership.timeline())
        figures: dict[str, Any] = {
            "kills": kills,
            "failover_s": spread(failovers),
            "scopes_not_failed_over": sum(k["scopes_it_led"] - k["failed_over"] for k in kills),
            "elections": len(leadership.elected(start)),
            "fences_only_rose": fences,
            "split_brain_reports": leadership.split_brain_reports(since=start),
            "safety_verdict": safety["verdict"],
        }
        if skew:
            figures["clocks"] = {
                n: {"offset_s": r(c.offset), "rate": r(c.rate, 4)} for n, c in sorted(skews.items())
            }
        return result(
            name,
            options,
            figures,
            series={"failover_s": [r(v) for v in failovers], "leadership": leadership.timeline()},
            safety=safety,
            lease_store=leadership.store_kind,
        )


def _fences_rose(timeline: list[dict[str, Any]]) -> bool:
    """Per scope, in the order terms began, fences never went back."""
    highest: dict[str, int] = {}
    for term in sorted(timeline, key=lambda t: t["start"]):
        if term["fence"] < highest.get(term["scope"], 0):
            return False
        highest[term["scope"]] = max(highest.get(term["scope"], 0), term["fence"])
    return True
