"""PNG charts of a result (``--plot``; needs the ``[plots]`` extra, matplotlib).

One function per kind of chart, each drawn from the result's ``series`` and ``figures`` only, so
a saved JSON file can be plotted again later: convergence curves, detection and failover
latency histograms, membership views per partition side, leadership timelines per scope with
fence tokens, the loss sweep and the Lifeguard matrix as a heat map.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only, no display

import matplotlib.pyplot as plt
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

Result = Mapping[str, Any]


def _subtitle(result: Result) -> str:
    o = result["options"]
    nodes = o["nodes"] if o["nodes"] is not None else "50 and 200"
    return f"{nodes} nodes, preset {o['preset']}, seed {result['seed']}"


def _save(fig: Figure, out: Path, result: Result, kind: str) -> Path:
    path = out / f"{result['scenario']}-seed{result['seed']}-{kind}.png"
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def convergence(result: Result, out: Path) -> Path:
    """Fraction of nodes that know the update, against seconds since it was made."""
    curve = result["series"]["curve"]
    fig, ax = plt.subplots(figsize=(7, 4.2))
    ax.step(
        [0.0] + [p["t"] for p in curve],
        [0.0] + [p["fraction"] for p in curve],
        where="post",
        label="nodes that know the update",
    )
    for q in (0.5, 0.95, 0.99):
        ax.axhline(q, color="grey", linewidth=0.6, linestyle=":")
    ax.set_title(f"Dissemination of one update\n{_subtitle(result)}")
    ax.set_xlabel("time since the update (virtual s)")
    ax.set_ylabel("fraction of other nodes")
    ax.set_ylim(0, 1.02)
    ax.legend(loc="lower right")
    return _save(fig, out, result, "convergence")


def histogram(values: list[float], title: str, xlabel: str, label: str) -> tuple[Figure, Axes]:
    fig, ax = plt.subplots(figsize=(7, 4.2))
    ax.hist(values, bins=max(5, min(30, len(values))), label=f"{label} (n={len(values)})")
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("count")
    ax.legend()
    return fig, ax


def detection(result: Result, out: Path) -> Path:
    """Crash -> every live node has it dead, one bar per failure."""
    values = [v for v in result["series"]["detection_s"] if v is not None]
    fig, _ = histogram(
        values,
        f"Failure detection latency\n{_subtitle(result)}",
        "crash -> dead at every live node (virtual s)",
        "failures",
    )
    return _save(fig, out, result, "detection")


def failover(result: Result, out: Path) -> Path:
    values = result["series"]["failover_s"]
    fig, _ = histogram(
        values,
        f"Leader failover ({result['scenario']})\n{_subtitle(result)}",
        "crash -> one new leader for the scope (virtual s)",
        "scopes failed over",
    )
    return _save(fig, out, result, "failover")


def views(result: Result, out: Path) -> Path:
    """Mean number of nodes each side sees alive, over time; the cut and the heal marked."""
    rows = result["series"]["views"]
    fig, ax = plt.subplots(figsize=(7, 4.2))
    sides = [k for k in rows[0] if k != "t"]
    sizes = result["figures"]["sides"]
    for side, size in zip(sides, sizes, strict=True):
        ax.plot([r["t"] for r in rows], [r[side] for r in rows], label=f"{side} ({size} nodes)")
    ax.axvline(0, color="red", linestyle="--", linewidth=0.8, label="cut")
    hold = result["options"]["duration"]
    ax.axvline(hold, color="green", linestyle="--", linewidth=0.8, label="heal")
    ax.set_title(f"Membership views per side of the partition\n{_subtitle(result)}")
    ax.set_xlabel("time since the cut (virtual s)")
    ax.set_ylabel("members seen alive (mean per node)")
    ax.legend()
    return _save(fig, out, result, "views")


def timeline(result: Result, out: Path) -> Path:
    """One row per scope; a bar per believed-leader term, labelled with its node and fence."""
    terms = result["series"]["leadership"]
    scopes = sorted({t["scope"] for t in terms})
    end = max((t["end"] for t in terms), default=1.0)
    nodes = sorted({t["node"] for t in terms})
    colours = {n: plt.get_cmap("tab20")(i % 20) for i, n in enumerate(nodes)}
    fig, ax = plt.subplots(figsize=(9, 0.6 * len(scopes) + 1.8))
    for row, scope in enumerate(scopes):
        for t in (t for t in terms if t["scope"] == scope):
            stop = t["end"]
            ax.barh(
                row,
                stop - t["start"],
                left=t["start"],
                color=colours[t["node"]],
                edgecolor="black",
                linewidth=0.4,
            )
            ax.text(t["start"] + 0.2, row, f"{t['node']} f{t['fence']}", va="center", fontsize=7)
    ax.set_yticks(range(len(scopes)), scopes)
    series = result["series"]
    if "cut_at" in series:
        ax.axvline(series["cut_at"], color="red", linestyle="--", linewidth=0.8)
        ax.axvline(series["healed_at"], color="green", linestyle="--", linewidth=0.8)
        ax.text(series["cut_at"], len(scopes) - 0.45, " cut", color="red", fontsize=8)
        ax.text(series["healed_at"], len(scopes) - 0.45, " heal", color="green", fontsize=8)
    ax.set_title(f"Leaders per scope (label: node, fence token)\n{_subtitle(result)}")
    ax.set_xlabel("virtual time since the run began (s)")
    ax.set_xlim(0, end)
    handles = [Rectangle((0, 0), 1, 1, color=colours[n]) for n in nodes]
    ax.legend(
        handles, nodes, title="leader", fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0)
    )
    return _save(fig, out, result, "leadership")


def sweep(result: Result, out: Path) -> Path:
    rows = result["series"]["sweep"]
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for lifeguard, name in ((True, "Lifeguard"), (False, "plain SWIM")):
        mine = [r for r in rows if r["lifeguard"] is lifeguard]
        ax.plot(
            [100 * r["loss"] for r in mine],
            [r["false_suspicions_per_node_hour"] for r in mine],
            marker="o",
            label=f"{name}: false suspicions",
        )
        ax.plot(
            [100 * r["loss"] for r in mine],
            [r["false_deaths_per_node_hour"] for r in mine],
            marker="x",
            linestyle="--",
            label=f"{name}: false deaths",
        )
    ax.set_title(f"False suspicions and deaths under packet loss\n{_subtitle(result)}")
    ax.set_xlabel("packet loss (%)")
    ax.set_ylabel("events per node-hour")
    ax.legend()
    return _save(fig, out, result, "loss-sweep")


def modes(result: Result, out: Path) -> Path:
    rows = result["series"]["modes"]
    keys = ("false_suspicions", "false_deaths", "refutations")
    fig, ax = plt.subplots(figsize=(7, 4.2))
    width = 0.38
    for i, row in enumerate(rows):
        name = "Lifeguard" if row["lifeguard"] else "plain SWIM"
        ax.bar(
            [k + (i - 0.5) * width for k in range(len(keys))],
            [row[k] for k in keys],
            width,
            label=name,
        )
    ax.set_xticks(range(len(keys)), [k.replace("_", " ") for k in keys])
    ax.set_title(f"Stalling nodes, Lifeguard on and off\n{_subtitle(result)}")
    ax.set_ylabel("events during the fault phase (count)")
    ax.legend()
    return _save(fig, out, result, "modes")


def matrix(result: Result, out: Path) -> Path:
    """Heat maps: fraction of runs with a false death, per (size, loss) row and starved column."""
    cells = result["series"]["cells"]
    rows = sorted({(c["nodes"], c["loss"]) for c in cells})
    cols = sorted({c["starved"] for c in cells})
    fig, axes = plt.subplots(
        1, 2, figsize=(11, 0.5 * len(rows) + 2.5), sharey=True, layout="constrained"
    )
    for ax, mode, name in zip(
        axes, ("lifeguard", "swim"), ("Lifeguard", "plain SWIM"), strict=True
    ):
        grid = [[0.0] * len(cols) for _ in rows]
        for c in cells:
            grid[rows.index((c["nodes"], c["loss"]))][cols.index(c["starved"])] = (
                c[f"{mode}_runs_with_false_death"] / c["runs"]
            )
        image = ax.imshow(grid, vmin=0, vmax=1, cmap="Reds", aspect="auto")
        for y, line in enumerate(grid):
            for x, v in enumerate(line):
                ax.text(x, y, f"{v:.0%}", ha="center", va="center", fontsize=8)
        ax.set_xticks(range(len(cols)), [f"{100 * s:.0f}%" for s in cols])
        ax.set_yticks(range(len(rows)), [f"{n} nodes, {100 * lo:.0f}% loss" for n, lo in rows])
        ax.set_xlabel("starved nodes")
        ax.set_title(name)
    fig.colorbar(image, ax=axes, label="fraction of runs with a false death")
    fig.suptitle(
        f"Lifeguard matrix, {result['figures']['runs_per_cell']} run(s) per cell, "
        f"seed {result['seed']}"
    )
    path = out / f"{result['scenario']}-seed{result['seed']}-matrix.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


KINDS: dict[str, list[Callable[[Result, Path], Path]]] = {
    "partition": [views, timeline],
    "rolling-failures": [detection, timeline],
    "packet-loss": [sweep],
    "slow-nodes": [modes],
    "lifeguard-matrix": [matrix],
    "leader-failover": [failover, timeline],
    "clock-skew": [failover, timeline],
    "dissemination": [convergence],
}


def plot(result: Result, out: Path) -> list[Path]:
    """Every chart of ``result``'s scenario, written into ``out``; their paths."""
    return [draw(result, out) for draw in KINDS[result["scenario"]]]
