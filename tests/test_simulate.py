"""The scenarios of ``swimmesh simulate`` in small configurations: the same seed and options
give the same JSON byte for byte, each scenario's invariants hold, the safety checker fails a
run with an injected overlap, and bad options are one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import attrs
import pytest

from simulations.harness import NoProgress, Options
from simulations.scenarios import SCENARIOS
from swimmesh.cli import main

Capture = Any

SMALL: dict[str, Options] = {
    "partition": Options(nodes=6, duration=25.0, split=(50, 50)),
    "rolling-failures": Options(nodes=6, duration=12.0, kills=2),
    "packet-loss": Options(nodes=4, duration=8.0),
    "slow-nodes": Options(nodes=6, duration=20.0),
    "lifeguard-matrix": Options(nodes=4, duration=6.0),
    "leader-failover": Options(nodes=5, duration=10.0, kills=2),
    "clock-skew": Options(nodes=5, duration=10.0, kills=2, quorum="static"),
    "dissemination": Options(nodes=25, duration=20.0),
}


def run(name: str, options: Options | None = None) -> dict[str, Any]:
    scenario = SCENARIOS[name]
    return scenario.run(scenario.resolve(options or SMALL[name]), NoProgress())


def test_every_scenario_has_a_small_configuration() -> None:
    assert set(SMALL) == set(SCENARIOS)


# Each check runs in a fresh interpreter: importing Hypothesis (as pytest's plugin does) puts
# Trio into its own deterministic scheduling mode, which would hide what a user's run meets.
# Between the two runs, many cancel scopes are freed in a shuffled order, so the second run's
# timers land at other memory addresses (Trio's own tie-break between equal deadlines).
REPLAY = """
import json, random, sys
import trio
from simulations.harness import NoProgress, Options
from simulations.report import to_json
from simulations.scenarios import SCENARIOS

name, given = sys.argv[1], json.loads(sys.argv[2])
scenario = SCENARIOS[name]
options = scenario.resolve(Options(**{**given, "split": tuple(given["split"])}))
outs = []
for garbage in (0, 3000):
    holes = [trio.CancelScope() for _ in range(garbage)]
    random.Random(garbage).shuffle(holes)
    keep = holes[: garbage // 2]
    del holes
    outs.append(to_json(scenario.run(options, NoProgress())))
assert "hypothesis" not in sys.modules
sys.stdout.write(outs[0] if outs[0] == outs[1] else "DIFFER")
"""


def replayed(name: str, options: Options, where: Path) -> str:
    proc = subprocess.run(
        [sys.executable, "-c", REPLAY, name, json.dumps(options.config())],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=where,
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


@pytest.mark.parametrize("name", sorted(SMALL))
def test_same_seed_and_options_give_the_same_json_bytes(name: str, tmp_path: Path) -> None:
    # No jitter: many timers fall due at one instant, where the tie-break matters.
    options = attrs.evolve(SMALL[name], jitter=0.0)
    out = replayed(name, options, tmp_path)
    assert out != "DIFFER", f"two runs of {name} with one seed differ"
    assert json.loads(out)["seed"] == options.seed


def test_another_seed_gives_another_run() -> None:
    a = run("rolling-failures")
    b = run("rolling-failures", attrs.evolve(SMALL["rolling-failures"], seed=2))
    assert a["figures"] != b["figures"]


@pytest.mark.parametrize("quorum", ["none", "static"])
def test_partition_splits_and_reconverges(quorum: str) -> None:
    out = run("partition", attrs.evolve(SMALL["partition"], quorum=quorum, split=(60, 40)))
    f = out["figures"]
    assert f["sides"] == [4, 2]
    assert all(v is not None for v in f["time_to_mark_other_side_dead_s"].values())
    assert f["reconvergence_after_heal_s"] is not None
    assert f["every_scope_led_once_after_heal_s"] is not None
    assert f["scopes_with_a_leader_on_more_than_one_side"] == 0
    assert out["safety"]["verdict"] == "ok"
    views = out["series"]["views"]
    # during the cut, side 1 (2 nodes) saw only itself alive; at the end every node sees all 6
    assert min(v["side1"] for v in views) == 2 and views[-1]["side1"] == 6
    if quorum == "static":
        assert out["lease_store"].startswith("quorum")
        # only the side with a majority of voters leads anything during the cut
        led = f["leaders_per_side_per_scope"]
        assert all(per["side0"] and not per["side1"] for per in led.values())
    else:
        assert out["lease_store"].startswith("in-memory")


def test_partition_three_ways() -> None:
    out = run("partition", attrs.evolve(SMALL["partition"], split=(40, 30, 30)))
    assert len(out["figures"]["sides"]) == 3
    assert out["figures"]["reconvergence_after_heal_s"] is not None


@pytest.mark.parametrize("restart", [False, True])
def test_rolling_failures_are_all_detected_without_false_deaths(restart: bool) -> None:
    out = run("rolling-failures", attrs.evolve(SMALL["rolling-failures"], restart=restart))
    f = out["figures"]
    assert len(f["failures"]) == 2 and f["undetected_failures"] == 0
    assert all(0 < x["dead_everywhere_s"] < 30 for x in f["failures"])
    assert f["false_deaths"] == 0
    assert out["safety"]["verdict"] == "ok"


def test_packet_loss_sweep_suspects_more_under_more_loss() -> None:
    out = run("packet-loss")
    rows = out["figures"]["sweep"]
    assert len(rows) == 10 and {r["lifeguard"] for r in rows} == {True, False}
    clean = [r for r in rows if r["loss"] == 0.0]
    lossy = [r for r in rows if r["loss"] == 0.3]
    assert all(r["false_suspicions_per_node_hour"] == 0 for r in clean)
    assert sum(r["false_suspicions_per_node_hour"] for r in lossy) > 0


def test_slow_nodes_stalls_bite_in_both_modes() -> None:
    out = run("slow-nodes")
    modes = out["figures"]["modes"]
    assert [m["lifeguard"] for m in modes] == [True, False]
    assert all(m["stalls_observed"] > 0 and m["detection_seconds"] for m in modes)


def test_lifeguard_matrix_fills_every_cell() -> None:
    out = run("lifeguard-matrix")
    f = out["figures"]
    assert f["cells"] == 9 and len(out["series"]["cells"]) == 9
    for mode in ("lifeguard", "swim"):
        assert 0 <= f[f"{mode}_fraction_of_runs_with_false_death"] <= 1
        assert f[f"{mode}_detection_median_s"] is not None
    assert f["anchor"]["lifeguard_fraction"] == 0.03


@pytest.mark.parametrize("name", ["leader-failover", "clock-skew"])
def test_leader_failover_fails_over_with_rising_fences(name: str) -> None:
    out = run(name)
    f = out["figures"]
    assert len(f["kills"]) == 2 and f["scopes_not_failed_over"] == 0
    assert all(k["scopes_it_led"] >= 1 for k in f["kills"])
    assert f["fences_only_rose"] and out["safety"]["verdict"] == "ok"
    if name == "clock-skew":
        rates = [c["rate"] for c in f["clocks"].values()]
        assert len(set(rates)) == len(rates) and all(0.98 <= x <= 1.02 for x in rates)


def test_dissemination_reaches_every_node() -> None:
    f = run("dissemination")["figures"]
    assert f["reached"] == f["of"] == 24
    assert 0 < f["p50_s"] <= f["p95_s"] <= f["p99_s"] <= f["p100_s"] < 5


def test_a_formed_start_disseminates_to_every_node_and_replays(tmp_path: Path) -> None:
    options = Options(nodes=25, duration=20.0, start="formed", jitter=0.0)
    out = replayed("dissemination", options, tmp_path)
    assert out != "DIFFER", "two runs of a formed dissemination with one seed differ"
    doc = json.loads(out)
    f = doc["figures"]
    assert doc["options"]["start"] == "formed" and f["formation_virtual_s"] == 0
    assert f["reached"] == f["of"] == 24
    assert 0 < f["p50_s"] <= f["p100_s"] < 5


def test_the_checker_fails_a_run_with_an_injected_overlap(capsys: Capture) -> None:
    args = ["--nodes", "5", "--duration", "10s", "--kills", "2", "--quorum", "static"]
    assert main(["simulate", "leader-failover", *args, "--inject", "slow-clock"]) == 1
    err = capsys.readouterr().err
    assert "safety violation:" in err and "led until" in err and "began at" in err
    # the same run without the fault passes
    assert main(["simulate", "leader-failover", *args, "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["safety"]["verdict"] == "ok"


def test_the_checker_fails_a_run_whose_store_forgot_its_fences(capsys: Capture) -> None:
    args = ["--nodes", "5", "--duration", "10s", "--kills", "2", "--inject", "store-amnesia"]
    assert main(["simulate", "leader-failover", *args]) == 1
    assert "safety violation:" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["partition", "--nodes", "1"], "--nodes must be at least 2"),
        (["partition", "--loss", "1"], "--loss is a fraction in [0, 1)"),
        (["packet-loss", "--loss", "-0.1"], "--loss is a fraction in [0, 1)"),
        (["partition", "--split", "60"], "is not two or more positive sizes"),
        (["partition", "--split", "a/b"], "is not two or more positive sizes"),
        (["partition", "--nodes", "2", "--split", "1/1/1"], "3 sides but there are only 2"),
        (["split-everything"], "invalid choice: 'split-everything'"),
        (["partition", "--latency", "1ms:2ms"], "jitter must not exceed the mean"),
        (["leader-failover", "--inject", "slow-clock"], "needs --quorum static"),
        (["rolling-failures", "--nodes", "3", "--kills", "3"], "--kills must be at least 1"),
    ],
)
def test_bad_options_are_one_line_errors(capsys: Capture, args: list[str], says: str) -> None:
    try:
        code = main(["simulate", *args])
    except SystemExit as exit_:
        code = int(exit_.code or 0)
    assert code in (1, 2)
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and says in err[0], err
    assert "Traceback" not in err[0]


def test_json_output_and_file_are_the_result(capsys: Capture, tmp_path: Path) -> None:
    args = ["dissemination", "--nodes", "6", "--seed", "3", "--format", "json"]
    assert main(["simulate", *args, "--out", str(tmp_path)]) == 0
    printed = capsys.readouterr().out
    written = (tmp_path / "dissemination-seed3.json").read_text()
    assert printed == written
    doc = json.loads(written)
    assert doc["seed"] == 3 and doc["options"]["nodes"] == 6 and doc["swimmesh_version"]
    assert doc["figures"]["reached"] == 5


def test_table_output_names_the_figures(capsys: Capture) -> None:
    assert main(["simulate", "rolling-failures", "--nodes", "4", "--kills", "1"]) == 0
    out = capsys.readouterr().out
    assert "dead everywhere s" in out and "safety checker" in out and "failures" in out


WAKE_ORDER = """
import random, sys
import trio, trio.testing
from swimmesh.testing import replayable

def wake_order(garbage):
    holes = [trio.CancelScope() for _ in range(garbage)]
    random.Random(garbage).shuffle(holes)
    keep = holes[: garbage // 2]
    del holes
    woke = []

    async def sleeper(i):
        await trio.sleep_until(1.0)
        woke.append(i)

    async def main():
        async with trio.open_nursery() as nursery:
            for i in range(200):
                nursery.start_soon(sleeper, i)

    with replayable(7):
        trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    return woke

orders = [wake_order(g) for g in (0, 1000, 3000, 5000)]
assert sorted(orders[0]) == list(range(200))
print("same" if all(o == orders[0] for o in orders) else "differ")
"""


def test_timers_due_at_one_instant_fire_in_the_same_order_every_run(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", WAKE_ORDER], capture_output=True, text=True, timeout=60, cwd=tmp_path
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "same"


@pytest.mark.parametrize("name", sorted(SMALL))
def test_every_chart_of_a_scenario_renders(name: str, tmp_path: Path) -> None:
    from simulations.plots import KINDS, plot

    paths = plot(run(name), tmp_path)
    assert len(paths) == len(KINDS[name]) >= 1
    for path in paths:
        data = path.read_bytes()
        assert data.startswith(b"\x89PNG") and len(data) > 20_000, path  # a blank chart is ~12 kB


def test_plot_without_matplotlib_is_a_one_line_error(
    capsys: Capture, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import simulations.cli

    monkeypatch.setattr(simulations.cli, "plots_available", lambda: False)
    assert main(["simulate", "dissemination", "--plot", "--out", str(tmp_path)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["error: --plot needs matplotlib: pip install 'swimmesh[plots]'"]
    assert not list(tmp_path.iterdir())  # refused before running anything


def test_the_progress_bar_shows_virtual_time_on_a_terminal() -> None:
    import io

    from rich.console import Console

    from simulations.progress import BarProgress

    screen = io.StringIO()
    console = Console(file=screen, force_terminal=True, width=120)
    with BarProgress(console) as progress:
        scenario = SCENARIOS["dissemination"]
        scenario.run(scenario.resolve(Options(nodes=5, duration=5.0)), progress)
    shown = screen.getvalue()
    assert "dissemination" in shown and "virtual" in shown and "eta" in shown
    # and nothing at all without a terminal
    quiet = io.StringIO()
    with BarProgress(Console(file=quiet, force_terminal=False)) as progress:
        scenario.run(scenario.resolve(Options(nodes=5, duration=5.0)), progress)
    assert quiet.getvalue() == ""


@pytest.mark.parametrize("scenario", [None, *sorted(SCENARIOS)])
def test_help_lists_every_scenario_and_flag(capsys: Capture, scenario: str | None) -> None:
    with pytest.raises(SystemExit) as done:
        main(["simulate", *([scenario] if scenario else []), "--help"])
    assert done.value.code == 0
    text = capsys.readouterr().out
    if scenario is None:
        assert all(name in text for name in SCENARIOS)
    else:
        assert "--seed" in text and "--plot" in text and "--format" in text
        assert ("--quorum" in text) is SCENARIOS[scenario].leadership
