"""Runs with and without Lifeguard: ``packet-loss`` (a loss sweep), ``slow-nodes`` (the
Lifeguard A/B of ``simulations.lifeguard``) and ``lifeguard-matrix`` (the independent
replication's grid of sizes, loss and starved nodes, ``--runs`` per cell).

In the fault phase every node keeps running, so every DEAD event is a false death and every
SUSPECT a false suspicion. A starved node reads its packets late: it stalls for 0.5-2.5 s,
runs for a while (exponential, mean 2 s), stalls again. After the faults one healthy node
crashes for real and the time until the first node declares it dead is its detection time.
UDP only (no stream fallback ping), as in the Lifeguard paper.
"""

from __future__ import annotations

import random
import statistics
from typing import Any

import attrs
import trio

from swimmesh import MemberEventKind

from ..harness import Options, Progress, SimulationError, r, result, run_virtual, sub_seed
from ..lifeguard import run as lifeguard_ab
from ..mesh import SimMesh

DETECT_WITHIN = 60.0
STARVE_MIN, STARVE_MAX = 0.5, 2.5
"""Seconds a starved node reads its packets late, drawn uniformly per stall."""
STARVE_RUN = 2.0
"""Mean seconds a starved node runs between two stalls."""
SWEEP = (0.0, 0.05, 0.1, 0.2, 0.3)
MATRIX_SIZES = (50, 200)
MATRIX_LOSS = (0.01, 0.03, 0.05)
MATRIX_STARVED = (0.0, 0.1, 0.2)
ANCHOR = {
    "runs": 3600,
    "lifeguard_runs_with_false_death": 108,
    "plain_swim_runs_with_false_death": 2253,
}
"""The independent replication's figures this matrix is compared with."""


async def one_run(
    options: Options, *, lifeguard: bool, nodes: int, loss: float, starved: float, seed: int
) -> dict[str, Any]:
    """One fault phase of ``options.duration`` then one real crash; the run's figures."""
    opts = attrs.evolve(options, seed=seed, loss=loss)
    rng = random.Random(sub_seed(seed, "starve"))
    seconds = float(options.duration or 0)
    async with SimMesh.open(opts, lifeguard=lifeguard, nodes=nodes, stream_fallback=False) as mesh:
        start = trio.current_time()
        count = round(starved * nodes)
        victims = rng.sample(mesh.names[1:], min(count, nodes - 2))

        async def starve(name: str) -> None:
            while True:
                mesh.net.pause(mesh.address(name), rng.uniform(STARVE_MIN, STARVE_MAX))
                await trio.sleep(STARVE_MAX + rng.expovariate(1.0 / STARVE_RUN))

        async with trio.open_nursery() as nursery:
            for v in victims:
                nursery.start_soon(starve, v)
            await trio.sleep(seconds)
            nursery.cancel_scope.cancel()
        faults_over = trio.current_time()
        mesh.net.set_loss(0.0)
        deaths = [e for e in mesh.dead_events(start) if e[0] <= faults_over]
        suspicions = [
            t for t, _, _ in mesh.log.of(MemberEventKind.SUSPECT) if start <= t <= faults_over
        ]
        await mesh.until(mesh.converged, timeout=120, what="healthy again")
        healthy = [n for n in mesh.names[1:] if n not in victims]
        crashed = rng.choice(healthy)
        mesh.crash(crashed)
        at = trio.current_time()
        detected = await mesh.until(
            lambda: any(about == crashed for _, _, about in mesh.dead_events(at)),
            timeout=DETECT_WITHIN,
            what="detected",
        )
    return {
        "false_deaths": len(deaths),
        "false_suspicions": len(suspicions),
        "detection_s": r(detected),
        "starved": len(victims),
        "node_hours": nodes * seconds / 3600,
    }


def _cell_run(
    options: Options,
    progress: Progress,
    lifeguard: bool,
    nodes: int,
    loss: float,
    starved: float,
    i: int,
) -> dict[str, Any]:
    """Run ``i`` of one cell, in a Trio run of its own (its seed names the cell and the run,
    so Lifeguard on and off face the same faults)."""
    seed = sub_seed(options.seed, nodes, loss, starved, i)

    async def go() -> dict[str, Any]:
        return await one_run(
            options, lifeguard=lifeguard, nodes=nodes, loss=loss, starved=starved, seed=seed
        )

    return run_virtual(go, seed=seed, progress=progress)


def _check(options: Options) -> None:
    if options.runs < 1:
        raise SimulationError(f"--runs must be at least 1 (got {options.runs})")
    if options.stall_fraction is not None and not 0 <= options.stall_fraction < 1:
        raise SimulationError(
            f"--stall-fraction is a fraction in [0, 1) (got {options.stall_fraction:g})"
        )


def run_packet_loss(options: Options, progress: Progress) -> dict[str, Any]:
    """The loss sweep (``--loss`` adds one level), with and without Lifeguard."""
    _check(options)
    losses = sorted({*SWEEP, *([options.loss] if options.loss else [])})
    seconds = float(options.duration or 0)
    progress.plan(2 * len(losses) * options.runs * (seconds + 30), "packet-loss")
    rows = []
    for loss in losses:
        for lifeguard in (True, False):
            runs = [
                _cell_run(options, progress, lifeguard, int(options.nodes or 0), loss, 0.0, i)
                for i in range(options.runs)
            ]
            hours = sum(x["node_hours"] for x in runs)
            rows.append(
                {
                    "loss": loss,
                    "lifeguard": lifeguard,
                    "false_suspicions_per_node_hour": r(
                        sum(x["false_suspicions"] for x in runs) / hours, 2
                    ),
                    "false_deaths_per_node_hour": r(
                        sum(x["false_deaths"] for x in runs) / hours, 2
                    ),
                    "detection_median_s": _median([x["detection_s"] for x in runs]),
                }
            )
    return result("packet-loss", options, {"sweep": rows}, series={"sweep": rows})


def run_slow_nodes(options: Options, progress: Progress) -> dict[str, Any]:
    """The Lifeguard A/B: loss plus stalling nodes, same seed with and without Lifeguard."""
    _check(options)
    nodes = int(options.nodes or 0)
    fraction = options.stall_fraction or 0.0
    stallers = max(1, round(fraction * nodes)) if fraction else 0
    seconds = float(options.duration or 0)
    progress.plan(2 * (seconds + 60), "slow-nodes")
    rows = []
    for lifeguard in (True, False):

        async def ab(lifeguard: bool = lifeguard) -> Any:
            return await lifeguard_ab(
                lifeguard=lifeguard,
                nodes=nodes,
                seconds=seconds,
                loss=float(options.loss or 0),
                stallers=min(stallers, nodes - 2),
                seed=options.seed,
            )

        outcome = run_virtual(ab, seed=options.seed, progress=progress)
        row = attrs.asdict(outcome)
        row["suspicions_per_victim"] = r(row["suspicions_per_victim"], 3)
        row["suspicions_per_bystander"] = r(row["suspicions_per_bystander"], 3)
        row["stalled_seconds"] = r(row["stalled_seconds"], 3)
        row["detection_seconds"] = r(row["detection_seconds"])
        rows.append(row)
    return result("slow-nodes", options, {"modes": rows}, series={"modes": rows})


def run_matrix(options: Options, progress: Progress) -> dict[str, Any]:
    """The replication's matrix: sizes x loss x starved fraction, ``--runs`` per cell."""
    _check(options)
    sizes = (int(options.nodes),) if options.nodes else MATRIX_SIZES
    seconds = float(options.duration or 0)
    cells_n = len(sizes) * len(MATRIX_LOSS) * len(MATRIX_STARVED)
    progress.plan(cells_n * 2 * options.runs * (seconds + 30), "lifeguard-matrix")
    cells = []
    runs_done = {True: 0, False: 0}
    runs_bad = {True: 0, False: 0}
    detected: dict[bool, list[float]] = {True: [], False: []}
    for nodes in sizes:
        for loss in MATRIX_LOSS:
            for starved in MATRIX_STARVED:
                cell: dict[str, Any] = {"nodes": nodes, "loss": loss, "starved": starved}
                for lifeguard in (True, False):
                    runs = [
                        _cell_run(options, progress, lifeguard, nodes, loss, starved, i)
                        for i in range(options.runs)
                    ]
                    mode = "lifeguard" if lifeguard else "swim"
                    bad = sum(1 for x in runs if x["false_deaths"])
                    detections = [x["detection_s"] for x in runs if x["detection_s"] is not None]
                    cell[f"{mode}_runs_with_false_death"] = bad
                    cell[f"{mode}_detection_median_s"] = _median(detections)
                    runs_done[lifeguard] += len(runs)
                    runs_bad[lifeguard] += bad
                    detected[lifeguard] += detections
                cell["runs"] = options.runs
                cells.append(cell)
    figures: dict[str, Any] = {"runs_per_cell": options.runs, "cells": len(cells)}
    for lifeguard in (True, False):
        mode = "lifeguard" if lifeguard else "swim"
        fraction = runs_bad[lifeguard] / runs_done[lifeguard]
        figures[f"{mode}_fraction_of_runs_with_false_death"] = r(fraction, 4)
        figures[f"{mode}_detection_median_s"] = _median(detected[lifeguard])
    figures["anchor"] = {
        **ANCHOR,
        "lifeguard_fraction": r(ANCHOR["lifeguard_runs_with_false_death"] / ANCHOR["runs"], 4),
        "swim_fraction": r(ANCHOR["plain_swim_runs_with_false_death"] / ANCHOR["runs"], 4),
    }
    return result("lifeguard-matrix", options, figures, series={"cells": cells})


def _median(values: list[Any]) -> float | None:
    present = [v for v in values if v is not None]
    return r(statistics.median(present)) if present else None
