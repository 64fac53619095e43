"""The scenarios ``swimmesh simulate`` runs, by name, with their defaults and extra flags.

The registry names each scenario's run function by module and name, imported when it runs:
building the CLI's parser (every ``swimmesh`` command does) imports no scenario code.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any

import attrs

from ..harness import Options, Progress


@attrs.frozen
class Scenario:
    name: str
    summary: str
    """One line for ``--help`` (argparse formats it: a percent sign is written ``%%``)."""
    runner: str
    """``module:function`` under ``simulations.scenarios``."""
    defaults: Mapping[str, Any]
    """Values of :class:`Options` fields the user left out (``nodes``, ``duration``, ...)."""
    flags: tuple[str, ...] = ()
    """Flags beyond the common ones (``split``, ``runs``, ``kills``, ...)."""
    leadership: bool = False
    """Runs coordinators (``--quorum``, ``--scopes``); the safety checker judges the run."""

    def run(self, options: Options, progress: Progress) -> dict[str, Any]:
        """Run the scenario with ``options`` (defaults already filled in)."""
        module, _, name = self.runner.partition(":")
        runner = getattr(importlib.import_module(f"{__name__}.{module}"), name)
        result: dict[str, Any] = runner(options, progress)
        return result

    def resolve(self, options: Options) -> Options:
        """``options`` with this scenario's defaults filled in."""
        fill = {k: v for k, v in self.defaults.items() if getattr(options, k) is None}
        if options.loss is None and "loss" not in fill:
            fill["loss"] = 0.0
        return attrs.evolve(options, **fill)


SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        Scenario(
            "partition",
            "split the mesh (--split 60/40, or three ways), hold, heal",
            "partition:run",
            {"nodes": 10, "duration": 60.0},
            ("split",),
            leadership=True,
        ),
        Scenario(
            "rolling-failures",
            "crash --kills nodes one after another (--restart: back with new boot ids)",
            "failures:run",
            {"nodes": 10, "duration": 20.0},
            ("kills", "restart"),
            leadership=True,
        ),
        Scenario(
            "packet-loss",
            "sweep loss 0-30%%: false suspicions and deaths per node-hour, Lifeguard on and off",
            "lifeguard_runs:run_packet_loss",
            {"nodes": 20, "duration": 60.0},
            ("runs",),
        ),
        Scenario(
            "slow-nodes",
            "loss plus stalling nodes: the Lifeguard A/B of 'lifeguard'",
            "lifeguard_runs:run_slow_nodes",
            {"nodes": 50, "duration": 300.0, "loss": 0.10, "stall_fraction": 0.04},
            ("stall_fraction",),
        ),
        Scenario(
            "lifeguard-matrix",
            "50 and 200 nodes x 1-5%% loss x 0-20%% starved nodes, --runs per cell",
            "lifeguard_runs:run_matrix",
            {"duration": 60.0},
            ("runs",),
        ),
        Scenario(
            "leader-failover",
            "crash the global leader --kills times: failover, fences, safety verdict",
            "leader:run_failover",
            {"nodes": 5, "duration": 20.0},
            ("kills", "inject"),
            leadership=True,
        ),
        Scenario(
            "clock-skew",
            "leader failover with every lease clock offset and drifting (--drift)",
            "leader:run_skew",
            {"nodes": 5, "duration": 20.0},
            ("kills", "drift", "inject"),
            leadership=True,
        ),
        Scenario(
            "dissemination",
            "time for one update to reach 50/95/99/100%% of nodes",
            "dissemination:run",
            {"nodes": 100, "duration": 60.0},
            ("start",),
        ),
    )
}
