"""Leader elections across real agent processes on 127.0.0.1 (the quorum lease store, or with
``--voters 0`` the availability store of ``quorum = "none"``).

Starts N agents (the first ``--voters`` of them voting), then measures, until every live agent
reports it on ``/control/leaders`` (read again at each leadership event an agent streams, so
the watching adds no polling load):

* failover after ``kill -9`` of the ``global-control`` leader (the victim restarts between runs),
  each stop at a random point of the renewal cycle (``--phase``, ``--seed``);
* handover after SIGTERM of the leader;
* idle CPU per agent (ms per s, from /proc) and messages per second per node (SWIM datagrams;
  lease store requests) with 1 global + ``--shards`` shard scopes, against the same mesh
  without leadership, with the scopes each node leads (``--preempt`` spreads them).

Prints JSON, then a table (median, p90/p99, min, max).

    python -m benchmarks.elections_bench --nodes 5 --kills 20 --preset fast --lease 2s
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import trio

from leadership import parse_duration
from swimmesh.testing import AgentProcesses

SCOPE = "global-control"


def quantiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    ordered = sorted(values)

    def q(p: float) -> float:
        return ordered[min(len(ordered) - 1, round(p * (len(ordered) - 1)))]

    return {
        "n": len(values),
        "median": round(statistics.median(values), 3),
        "p90": round(q(0.9), 3),
        "p99": round(q(0.99), 3),
        "min": round(ordered[0], 3),
        "max": round(ordered[-1], 3),
    }


class Mesh:
    def __init__(self, n: int, voters: int, preset: str, section: str | None) -> None:
        self.dir = tempfile.TemporaryDirectory(prefix="swimmesh-elections-")
        self.names = [f"n{i:02d}" for i in range(n)]
        self.voters = self.names[:voters]
        self.preset = preset
        self.config = Path(self.dir.name) / "swimmesh.toml"
        self.config.write_text(section or "")
        self.procs = AgentProcesses()

    def start(self, name: str) -> None:
        live = [n for n in self.procs.live() if n != name]
        join = ["--join", self.procs.gossip(live[0])] if live else []
        self.procs.start(
            name,
            "--config",
            str(self.config),
            "--data-dir",
            str(Path(self.dir.name) / name),
            *join,
            preset=self.preset,
        )

    def close(self) -> None:
        self.procs.stop_all()
        self.dir.cleanup()


async def leader_of(client: httpx.AsyncClient, url: str) -> tuple[str, int] | None:
    try:
        doc = (await client.get(url + "/control/leaders", timeout=2)).json()
    except (httpx.HTTPError, ValueError):
        return None
    for token in doc.get("tokens", []):
        if token["scope"] == SCOPE:
            return token["leaderId"], token["fenceToken"]
    return None


async def until_agreed(mesh: Mesh, not_leader: str | None, timeout: float) -> tuple[str, int]:
    """Poll every live agent every 20 ms until all report one leader other than ``not_leader``."""
    urls = {n: mesh.procs.url(n) for n in mesh.procs.live()}
    async with httpx.AsyncClient() as client:
        with trio.fail_after(timeout):
            while True:
                seen: dict[str, tuple[str, int] | None] = {}

                async def look(name: str, url: str, seen: dict[str, Any] = seen) -> None:
                    seen[name] = await leader_of(client, url)

                async with trio.open_nursery() as nursery:
                    for name, url in urls.items():
                        nursery.start_soon(look, name, url)
                values = set(seen.values())
                if len(values) == 1:
                    (found,) = values
                    if found is not None and found[0] != not_leader:
                        return found
                await trio.sleep(0.02)


async def until_reported(
    mesh: Mesh, victim: str, fence: int, stop: Any, timeout: float
) -> tuple[float, str, int]:
    """Call ``stop()``, then wait until every other live agent's ``/control/leaders`` names one
    leader other than ``victim`` above ``fence``; return the seconds that took, the leader, its
    fence. Each agent is read once at the start and then once per leadership event it streams
    (SSE), so the measurement adds no polling load to a machine the agents share."""
    names = [n for n in mesh.procs.live() if n != victim]
    reports: dict[str, tuple[str, int] | None] = {}
    started: float | None = None  # set when ``stop()`` is called
    found: tuple[float, str, int] | None = None
    agreed = trio.Event()

    def take(name: str, report: tuple[str, int] | None) -> None:
        nonlocal found
        reports[name] = report
        values = {reports.get(n) for n in names}
        if started is None or found is not None or len(values) != 1:
            return
        (value,) = values
        if value is not None and value[0] != victim and value[1] > fence:
            found = (time.monotonic() - started, *value)
            agreed.set()

    async def follow(
        client: httpx.AsyncClient, name: str, *, task_status: Any = trio.TASK_STATUS_IGNORED
    ) -> None:
        url = mesh.procs.url(name)
        params = {"scope": SCOPE}
        async with client.stream("GET", url + "/control/events/leadership", params=params) as resp:
            lines = resp.aiter_lines()
            await lines.__anext__()  # the stream's opening comment: subscribed from here on
            take(name, await leader_of(client, url))
            task_status.started()
            async for line in lines:
                if line.startswith("data:"):
                    take(name, await leader_of(client, url))

    timeouts = httpx.Timeout(5.0, read=None)
    async with httpx.AsyncClient(timeout=timeouts) as client, trio.open_nursery() as nursery:
        for name in names:
            await nursery.start(follow, client, name)
        started = time.monotonic()
        stop()
        with trio.fail_after(timeout):
            await agreed.wait()
        nursery.cancel_scope.cancel()
    assert found is not None
    return found


async def transitions(
    mesh: Mesh, sig: int, runs: int, settle: float, phase: float, seed: int
) -> list[float]:
    """Stop the leader ``runs`` times; each stop comes ``settle`` plus a random part of ``phase``
    seconds after every node agreed, so stops fall at every point of the renewal cycle, as real
    crashes do (a fixed delay would stop it at one phase, e.g. always just after a renewal)."""
    times = []
    rng = random.Random(seed)
    for _ in range(runs):
        leader, fence = await until_agreed(mesh, None, 60)
        await trio.sleep(settle + rng.uniform(0.0, phase))
        proc = mesh.procs.procs.pop(leader)
        took, _, new_fence = await until_reported(
            mesh, leader, fence, lambda p=proc: p.send_signal(sig), 60
        )
        times.append(took)
        assert new_fence > fence, (fence, new_fence)
        await trio.to_thread.run_sync(proc.wait)
        await trio.to_thread.run_sync(mesh.start, leader)
    return times


def cpu_ms_per_s(pids: list[int], seconds: float) -> list[float]:
    tick = os.sysconf("SC_CLK_TCK")

    def cpu(pid: int) -> float:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / tick

    before = {p: cpu(p) for p in pids}
    time.sleep(seconds)
    return [(cpu(p) - before[p]) * 1000 / seconds for p in pids]


def messages(mesh: Mesh, name: str) -> dict[str, float]:
    """Messages a node sent and received so far: SWIM datagrams, and lease store requests."""
    text = httpx.get(mesh.procs.url(name) + "/metrics", timeout=5).text
    counts = {"datagrams": 0.0, "leadership": 0.0}
    for line in text.splitlines():
        if line.startswith("mesh_gossip_messages_total{") and 'outcome="dropped"' not in line:
            counts["datagrams"] += float(line.rsplit(" ", 1)[1])
        elif line.startswith("swimmesh_leadership_messages_total{"):
            counts["leadership"] += float(line.rsplit(" ", 1)[1])
    return counts


def section(voters: list[str], lease: str, renew: str, shards: int, preempt: bool = False) -> str:
    """The ``mesh.leadership`` section; no voters means ``quorum = "none"``; ``preempt`` hands
    each scope to its best-ranked node (spreading the shards), else the first to come keeps it."""
    text = "[mesh.leadership]\n" + (f"voters = {json.dumps(voters)}\n" if voters else "")
    if preempt:
        text += 'preempt = true\nstableAfter = "5s"\n'
    text += f'leaseDuration = "{lease}"\n'
    text += f'renewalLeadTime = "{renew}"\n'
    if shards:
        text += f'scopes = [{{scopeId = "{SCOPE}"}}]\n'
        text += f'shards = [{{namespace = "bench", shards = {list(range(shards))}}}]\n'
    return text


def run(args: argparse.Namespace) -> dict[str, Any]:
    names = [f"n{i:02d}" for i in range(args.nodes)]
    out: dict[str, Any] = {"config": vars(args)}
    phase = args.phase if args.phase is not None else parse_duration(args.lease, "--lease")
    mesh = Mesh(
        args.nodes,
        args.voters,
        args.preset,
        section(names[: args.voters], args.lease, args.renew, 0),
    )
    try:
        for name in mesh.names:
            mesh.start(name)
        trio.run(until_agreed, mesh, None, 60)
        out["kill9_failover_s"] = quantiles(
            trio.run(transitions, mesh, signal.SIGKILL, args.kills, args.settle, phase, args.seed)
        )
        out["sigterm_handover_s"] = quantiles(
            trio.run(
                transitions, mesh, signal.SIGTERM, args.handovers, args.settle, phase, args.seed
            )
        )
    finally:
        mesh.close()
    cpu_lease, cpu_renew = args.cpu_lease or args.lease, args.cpu_renew or args.renew
    for label, text in (
        (
            "with_leadership",
            section(names[: args.voters], cpu_lease, cpu_renew, args.shards, args.preempt),
        ),
        ("without_leadership", None),
    ):
        mesh = Mesh(args.nodes, args.voters, args.preset, text)
        try:
            for name in mesh.names:
                mesh.start(name)
            time.sleep(args.warmup)
            pids = [p.pid for p in mesh.procs.procs.values()]
            before = {n: messages(mesh, n) for n in mesh.names}
            started = time.monotonic()
            cpu = dict(zip(mesh.procs.procs, cpu_ms_per_s(pids, args.cpu_seconds), strict=True))
            out[f"idle_cpu_ms_per_s_{label}"] = quantiles(list(cpu.values()))
            out[f"idle_cpu_ms_per_s_{label}_non_voters"] = quantiles(
                [ms for name, ms in cpu.items() if name not in mesh.voters]
            )
            took = time.monotonic() - started
            for kind in ("datagrams", "leadership"):
                out[f"{kind}_per_s_per_node_{label}"] = quantiles(
                    [(messages(mesh, n)[kind] - before[n][kind]) / took for n in mesh.names]
                )
            if text is not None:
                led = scopes_led(mesh)
                out["scopes_led_per_node"] = quantiles([float(led.get(n, 0)) for n in cpu])
                out["idle_cpu_ms_per_s_with_leadership_leading_nothing"] = quantiles(
                    [ms for n, ms in cpu.items() if not led.get(n) and n not in mesh.voters]
                )
                out["per_node_with_leadership"] = {
                    n: {"voter": n in mesh.voters, "scopes_led": led.get(n, 0), "cpu_ms_per_s": ms}
                    for n, ms in cpu.items()
                }
        finally:
            mesh.close()
    return out


def scopes_led(mesh: Mesh) -> dict[str, int]:
    """How many scopes each node leads, as the last node reports it."""
    doc = httpx.get(mesh.procs.url(mesh.names[-1]) + "/control/leaders", timeout=5).json()
    led: dict[str, int] = {}
    for token in doc.get("tokens", []):
        led[token["leaderId"]] = led.get(token["leaderId"], 0) + 1
    return led


def table(result: dict[str, Any]) -> str:
    rows = [f"{'measure':<52} {'n':>4} {'median':>8} {'p90':>8} {'p99':>8} {'min':>8} {'max':>8}"]
    for key, value in result.items():
        if key == "config" or not value or "n" not in value:
            continue
        rows.append(
            f"{key:<52} {value['n']:>4} {value['median']:>8} {value['p90']:>8} {value['p99']:>8} "
            f"{value['min']:>8} {value['max']:>8}"
        )
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", type=int, default=5)
    parser.add_argument("--voters", type=int, default=3, help="0: quorum = none")
    parser.add_argument("--preset", default="fast", choices=["fast", "lan", "local", "wan"])
    parser.add_argument("--lease", default="2s", help="leaseDuration")
    parser.add_argument("--renew", default="1s", help="renewalLeadTime")
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--handovers", type=int, default=10)
    parser.add_argument("--settle", type=float, default=1.0, help="seconds between runs")
    parser.add_argument(
        "--phase",
        type=float,
        default=None,
        help="each stop waits a further uniform random 0..PHASE s (default: one lease)",
    )
    parser.add_argument("--seed", type=int, default=1, help="seed of the stop times")
    parser.add_argument("--shards", type=int, default=200, help="shard scopes for the CPU run")
    parser.add_argument(
        "--warmup", type=float, default=30.0, help="seconds before the CPU run (elections settle)"
    )
    parser.add_argument("--cpu-lease", default=None, help="leaseDuration of the CPU run")
    parser.add_argument("--cpu-renew", default=None, help="renewalLeadTime of the CPU run")
    parser.add_argument("--cpu-seconds", type=float, default=20.0)
    parser.add_argument(
        "--preempt",
        action="store_true",
        help="CPU run: spread the scopes over their best-ranked nodes (agents start one by one, "
        "so without it the first few keep most scopes)",
    )
    args = parser.parse_args(argv)
    result = run(args)
    json.dump(result, sys.stdout, indent=2)
    print()
    print(table(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
