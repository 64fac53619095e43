"""``rolling-failures``: crash ``--kills`` nodes one after another (``--restart``: each comes
back with a new boot id before the next one fails).

Measures, per failure, the time from the crash to the first node declaring it dead and to every
live node having it dead; false deaths (a node declared dead that was running); and leader
churn: elections, and the failover time of every scope the crashed node led. A false death
is a DEAD event about a node that was running then: one never crashed, or a victim before its
crash (a DEAD about a victim's old incarnation after it restarted is not counted).
"""

from __future__ import annotations

import random
from typing import Any

import trio

from swimmesh import MemberStatus

from ..harness import Options, Progress, SimulationError, r, result, run_virtual, spread, sub_seed
from ..mesh import Leadership, SimMesh

SETTLE = 10.0
DETECT_WITHIN = 60.0


def planned(options: Options) -> float:
    return SETTLE + options.kills * float(options.duration or 0)


def run(options: Options, progress: Progress) -> dict[str, Any]:
    if options.kills < 1 or options.kills >= int(options.nodes or 0):
        raise SimulationError(
            f"--kills must be at least 1 and below --nodes (got {options.kills} of {options.nodes})"
        )
    progress.plan(planned(options), "rolling-failures")
    return run_virtual(lambda: _run(options), seed=options.seed, progress=progress)


async def _run(options: Options) -> dict[str, Any]:
    gap = float(options.duration or 0)
    rng = random.Random(sub_seed(options.seed, "victims"))
    async with SimMesh.open(options) as mesh, Leadership.open(mesh, options) as leadership:
        await mesh.until(leadership.all_led, timeout=60, what="every scope led")
        await trio.sleep(SETTLE)
        start = trio.current_time()
        failures: list[dict[str, Any]] = []
        crashed: dict[str, float] = {}
        failovers: list[float] = []
        down: set[str] = set()
        for _ in range(options.kills):
            candidates = [n for n in mesh.names[1:] if n not in down]
            victim = rng.choice(candidates)
            led = [s.key for s in leadership.scopes if leadership.leaders(s.key) == [victim]]
            leadership.crash(victim)
            mesh.crash(victim)
            at = trio.current_time()
            crashed.setdefault(victim, at)  # the first crash: a DEAD before it is false
            down.add(victim)

            def first_dead(victim: str = victim, at: float = at) -> list[float]:
                return [t - at for t, _, about in mesh.dead_events(at) if about == victim]

            def all_dead(victim: str = victim) -> bool:
                return all(
                    mesh.status_of(o, victim) is MemberStatus.DEAD
                    for o in mesh.names
                    if o in mesh.cluster.nodes
                )

            async def failover(scope: str, at: float = at) -> None:
                took = await mesh.until(
                    lambda: len(leadership.leaders(scope)) == 1, timeout=DETECT_WITHIN, what="led"
                )
                if took is not None:
                    failovers.append(took)

            async with trio.open_nursery() as nursery:
                for scope in led:
                    nursery.start_soon(failover, scope)
                everyone = await mesh.until(all_dead, timeout=DETECT_WITHIN, what="dead at all")
            firsts = first_dead()
            failures.append(
                {
                    "node": victim,
                    "at": r(at - start),
                    "first_dead_s": r(min(firsts)) if firsts else None,
                    "dead_everywhere_s": r(everyone),
                    "scopes_it_led": len(led),
                }
            )
            rest = gap - (trio.current_time() - at)
            if options.restart:
                await mesh.restart(victim)
                await leadership.start(victim)
                down.discard(victim)
            if rest > 0:
                await trio.sleep(rest)
        await mesh.until(
            lambda: mesh.converged([n for n in mesh.names if n in mesh.cluster.nodes]),
            timeout=DETECT_WITHIN,
            what="settled",
        )
        false_deaths = [
            (t, obs, about)
            for t, obs, about in mesh.dead_events(start)
            if about not in crashed or t < crashed[about]
        ]
        figures = {
            "failures": failures,
            "first_dead_s": spread([f["first_dead_s"] for f in failures if f["first_dead_s"]]),
            "dead_everywhere_s": spread(
                [f["dead_everywhere_s"] for f in failures if f["dead_everywhere_s"] is not None]
            ),
            "undetected_failures": sum(1 for f in failures if f["dead_everywhere_s"] is None),
            "false_deaths": len(false_deaths),
            "elections": len(leadership.elected(start)),
            "failover_s": spread(failovers),
            "split_brain_reports": leadership.split_brain_reports(since=start),
        }
        return result(
            "rolling-failures",
            options,
            figures,
            series={
                "detection_s": [f["dead_everywhere_s"] for f in failures],
                "first_detection_s": [f["first_dead_s"] for f in failures],
                "leadership": leadership.timeline(),
            },
            safety=leadership.verdict(),
            lease_store=leadership.store_kind,
        )
