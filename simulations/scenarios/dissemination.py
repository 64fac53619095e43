"""``dissemination``: one node changes its metadata; how long until 50, 95, 99 and 100% of the
other nodes know (the convergence curve of Serf's simulator), on a formed mesh.

Each node's view of the origin is read every ``POLL`` virtual seconds (no event log: at 10,000
nodes one would hold a hundred million events), so times are exact to ``POLL``. ``--duration``
bounds the wait for the update to reach everyone.
"""

from __future__ import annotations

from typing import Any

import trio

from ..harness import Options, Progress, percentile, r, result, run_virtual
from ..mesh import SimMesh

POLL = 0.05
SETTLE = 1.0
MARK = "sim-update"


def planned(options: Options) -> float:
    return float(options.duration or 0)


def run(options: Options, progress: Progress) -> dict[str, Any]:
    progress.plan(planned(options), "dissemination")
    return run_virtual(lambda: _run(options), seed=options.seed, progress=progress)


async def _run(options: Options) -> dict[str, Any]:
    n = int(options.nodes or 0)
    async with SimMesh.open(options, events=False) as mesh:
        formed_at = trio.current_time()
        await trio.sleep(SETTLE)
        origin_name = mesh.names[n // 2]
        origin = mesh.cluster.nodes[origin_name]
        others = [mesh.cluster.nodes[x] for x in mesh.names if x != origin_name]
        start = trio.current_time()
        await origin.update_metadata({MARK: "1"})
        reached: list[float] = []
        waiting = list(others)
        with trio.move_on_after(float(options.duration or 0)):
            while waiting:
                now = trio.current_time()
                still = []
                for node in waiting:
                    m = node.member(origin_name)
                    if m is not None and m.metadata.get(MARK) == "1":
                        reached.append(now - start)
                    else:
                        still.append(node)
                waiting = still
                if waiting:
                    await trio.sleep(POLL)
        total = len(others)
        reached.sort()
        curve = [
            {"t": r(t), "fraction": r((i + 1) / total, 4)}
            for i, t in enumerate(reached)
            if i == total - 1 or reached[i + 1] != t
        ]
        figures = {
            "nodes": n,
            "formation_virtual_s": r(formed_at),
            "reached": len(reached),
            "of": total,
            **{
                f"p{q}_s": r(percentile(reached, q)) if len(reached) * 100 >= q * total else None
                for q in (50, 95, 99, 100)
            },
        }
        return result("dissemination", options, figures, series={"curve": curve})
