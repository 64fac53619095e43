"""``partition``: split the mesh into groups, hold the cut, heal it.

Measures how long each side takes to mark every node of the other side dead, split-brain
reports, leaders per side per scope at the end of the hold, the time until every node sees
every node alive again after the heal, false deaths after the heal, and the leader changes the
heal caused. The safety checker samples every coordinator throughout.
"""

from __future__ import annotations

from typing import Any

import trio

from swimmesh import MemberStatus

from ..harness import Options, Progress, SimulationError, r, result, run_virtual
from ..mesh import Leadership, SimMesh

SETTLE = 10.0
"""Virtual seconds between formation and the cut (every scope gets a leader)."""
AFTER_HEAL = 60.0
"""Longest wait for re-convergence after the heal, and then the time watched for churn."""
SAMPLE = 1.0
"""Virtual seconds between two samples of the per-side membership views."""


def sides_of(names: list[str], split: tuple[int, ...]) -> list[list[str]]:
    """Cut ``names`` in list order into groups proportional to ``split`` (each at least one)."""
    if len(split) < 2 or any(p <= 0 for p in split):
        raise SimulationError(
            f"--split needs two or more positive parts, like 60/40 or 40/30/30 (got {split})"
        )
    if len(split) > len(names):
        raise SimulationError(f"--split has {len(split)} parts but there are {len(names)} nodes")
    total = sum(split)
    sides: list[list[str]] = []
    start = 0
    for i, part in enumerate(split):
        remaining_parts = len(split) - i - 1
        size = max(1, round(len(names) * part / total))
        size = min(size, len(names) - start - remaining_parts)
        if i == len(split) - 1:
            size = len(names) - start
        sides.append(names[start : start + size])
        start += size
    return sides


def planned(options: Options) -> float:
    return SETTLE + float(options.duration or 0) + 2 * AFTER_HEAL


def run(options: Options, progress: Progress) -> dict[str, Any]:
    progress.plan(planned(options), "partition")
    return run_virtual(lambda: _run(options), seed=options.seed, progress=progress)


async def _run(options: Options) -> dict[str, Any]:
    hold = float(options.duration or 0)
    async with SimMesh.open(options) as mesh, Leadership.open(mesh, options) as leadership:
        sides = sides_of(mesh.names, options.split)
        await mesh.until(leadership.all_led, timeout=60, what="every scope led")
        await trio.sleep(SETTLE)
        views: list[dict[str, Any]] = []
        cut_at = trio.current_time()
        fences_before = {
            s.key: max((f for _, _, sc, f in leadership.elected() if sc == s.key), default=0)
            for s in leadership.scopes
        }

        def sample() -> None:
            row: dict[str, Any] = {"t": r(trio.current_time() - cut_at)}
            for i, side in enumerate(sides):
                row[f"side{i}"] = r(mesh.alive_seen(side, mesh.names), 2)
            views.append(row)

        async def sampler() -> None:
            while True:
                sample()
                await trio.sleep(SAMPLE)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(sampler)
            mesh.net.partition(*([mesh.address(n) for n in side] for side in sides))
            marked: dict[str, float | None] = {}

            def side_marks_others_dead(i: int) -> bool:
                others = [n for j, side in enumerate(sides) if j != i for n in side]
                return all(
                    mesh.status_of(o, n) is MemberStatus.DEAD for o in sides[i] for n in others
                )

            async def watch_side(i: int) -> None:
                marked[f"side{i}"] = await mesh.until(
                    lambda: side_marks_others_dead(i), timeout=hold, what="other side dead"
                )

            async with trio.open_nursery() as watchers:
                for i in range(len(sides)):
                    watchers.start_soon(watch_side, i)
                await trio.sleep(hold)
            leaders_per_side = {
                s.key: {f"side{i}": leadership.leaders(s.key, side) for i, side in enumerate(sides)}
                for s in leadership.scopes
            }
            split_brain = leadership.split_brain_reports(since=cut_at)
            healed_at = trio.current_time()
            leaders_before_heal = {s.key: leadership.leaders(s.key) for s in leadership.scopes}
            mesh.net.heal()
            reconverged = await mesh.until(mesh.converged, timeout=AFTER_HEAL, what="reunited")
            led_again = await mesh.until(
                leadership.all_led, timeout=AFTER_HEAL, what="one leader per scope"
            )
            await trio.sleep(AFTER_HEAL)
            nursery.cancel_scope.cancel()
        changed = [
            scope
            for scope, before in leaders_before_heal.items()
            if leadership.leaders(scope) != before[:1] or len(before) != 1
        ]
        fences_during = {
            s.key: max((f for t, _, sc, f in leadership.elected(cut_at) if sc == s.key), default=0)
            for s in leadership.scopes
        }
        figures = {
            "sides": [len(s) for s in sides],
            "time_to_mark_other_side_dead_s": {k: r(v) for k, v in marked.items()},
            "split_brain_reports": split_brain,
            "leaders_per_side_per_scope": leaders_per_side,
            "scopes_with_a_leader_on_more_than_one_side": sum(
                1 for per in leaders_per_side.values() if sum(1 for v in per.values() if v) > 1
            ),
            "elections_during_cut": len(leadership.elected(cut_at))
            - len(leadership.elected(healed_at)),
            "scopes_whose_fence_rose_during_cut": sum(
                1 for k, f in fences_during.items() if f > fences_before[k]
            ),
            "reconvergence_after_heal_s": r(reconverged),
            "every_scope_led_once_after_heal_s": r(led_again),
            "false_deaths_after_heal": len(mesh.dead_events(since=healed_at)),
            "leader_changes_caused_by_heal": len(changed),
            "elections_after_heal": len(leadership.elected(healed_at)),
        }
        safety = leadership.verdict()
        return result(
            "partition",
            options,
            figures,
            series={
                "views": views,
                "leadership": leadership.timeline(),
                "cut_at": r(cut_at),
                "healed_at": r(healed_at),
            },
            safety=safety,
            lease_store=leadership.store_kind,
        )
