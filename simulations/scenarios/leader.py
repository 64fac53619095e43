"""``leader-failover`` and ``clock-skew``: crash the node leading the global scope ``--kills``
times (each comes back with a new boot id) and time the failover of every scope it led.

``clock-skew`` runs the same with every node's lease clock offset by up to 100 s and running
fast or slow by up to ``--drift`` (rate in ``[1 - drift, 1 + drift]``). Both report the
failover distribution, whether fences only ever rose, and the safety checker's verdict.
Two negative controls the checker must catch (``--inject``): ``store-amnesia`` wipes the
in-memory store's records before the last kill (a store that lost its data: fences start over);
``slow-clock`` (``--quorum static``) does not crash the last leader but cuts it off from
everyone with its lease clock slowed to a fifth, far outside ``max_clock_drift``, so it
believes in its lease long after the majority elected a successor (two leaders at once).
"""

from __future__ import annotations

import random
from typing import Any

import trio

from ..harness import Options, Progress, SimulationError, r, result, run_virtual, spread, sub_seed
from ..mesh import Leadership, SimMesh

SETTLE = 10.0
FAILOVER_WITHIN = 60.0
INJECTIONS = {"store-amnesia": "none", "slow-clock": "static"}
"""Each negative control, and the --quorum it needs."""
SLOW = 0.2
"""The rate of the cut-off leader's lease clock under ``--inject slow-clock``."""


class SimClock:
    """A lease clock with an offset and a rate error whose rate can change mid-run (time stays
    continuous): what the ``slow-clock`` negative control needs."""

    def __init__(self, offset: float = 0.0, rate: float = 1.0) -> None:
        self.offset = offset
        self.rate = rate

    def now(self) -> float:
        return self.offset + self.rate * trio.current_time()

    def trio_time(self, local: float) -> float:
        return (local - self.offset) / self.rate

    def set_rate(self, rate: float) -> None:
        now = trio.current_time()
        self.offset += (self.rate - rate) * now
        self.rate = rate


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
        if options.quorum != INJECTIONS[options.inject]:
            raise SimulationError(
                f"--inject {options.inject} needs --quorum {INJECTIONS[options.inject]}"
            )
    progress.plan(planned(options), name)
    return run_virtual(lambda: _run(name, options, skew), seed=options.seed, progress=progress)


async def _run(name: str, options: Options, skew: bool) -> dict[str, Any]:
    gap = float(options.duration or 0)
    rng = random.Random(sub_seed(options.seed, "failover"))
    clock_rng = random.Random(sub_seed(options.seed, "clocks"))
    skews: dict[str, SimClock] = {}

    def clock(node: str) -> SimClock:
        if node not in skews:
            if skew:
                skews[node] = SimClock(
                    offset=clock_rng.uniform(-100, 100),
                    rate=clock_rng.uniform(1 - options.drift, 1 + options.drift),
                )
            else:
                skews[node] = SimClock()
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
            last = i == options.kills - 1
            if options.inject == "store-amnesia" and last:
                assert leadership.memory_store is not None
                leadership.memory_store._records.clear()  # the store forgot every lease
            cut_off = options.inject == "slow-clock" and last
            if cut_off:
                clock(victim).set_rate(SLOW)
                others = [mesh.address(n) for n in mesh.names if n != victim]
                mesh.net.partition([mesh.address(victim)], others)
            else:
                leadership.crash(victim)
                mesh.crash(victim)
            at = trio.current_time()
            took: dict[str, float | None] = {}

            async def failover(
                scope: str, victim: str = victim, took: dict[str, float | None] = took
            ) -> None:
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
            if cut_off:
                await trio.sleep(gap)  # the cut-off leader still believes meanwhile
                break
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
