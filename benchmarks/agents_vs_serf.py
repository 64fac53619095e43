"""swimmesh agents against Serf agents, side by side, on 127.0.0.1 (lan timing for both).

For each system and each N it starts N agent processes, then measures: join convergence (from
the last agent's start until every agent sees all N alive), time from ``kill -9`` to failed at
every other agent (median over several kills), time from a graceful leave to left at every other
agent (and whether anyone saw it failed first), CPU per agent per second over an idle window,
and RSS per agent (CPU times tick at 10 ms: the mean over all agents is the precise figure).
Prints JSON, then a table with our/serf ratios.

    python -m benchmarks.agents_vs_serf --nodes 10 25 50 100

Needs Debian's ``serf`` package for the comparison (``--no-serf`` runs ours alone).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx

from swimmesh.testing import AgentProcesses

CLK = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    """A port free for both UDP and TCP on 127.0.0.1 right now."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as t:
            t.bind(("127.0.0.1", 0))
            port = int(t.getsockname()[1])
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
                try:
                    u.bind(("127.0.0.1", port))
                except OSError:
                    continue
            return port


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK


def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


class System:
    name = ""

    def __init__(self) -> None:
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.gossip: dict[str, int] = {}

    def start(self, node: str, seed: str | None) -> None:
        raise NotImplementedError

    def view(self, node: str) -> dict[str, str]:
        """Member name -> normalized status (alive, failed, left) as ``node`` sees it."""
        raise NotImplementedError

    def leave(self, node: str) -> None:
        raise NotImplementedError

    def kill(self, node: str) -> None:
        proc = self.procs.pop(node)
        proc.send_signal(signal.SIGKILL)
        proc.wait()

    def stop_all(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
        for proc in self.procs.values():
            proc.wait()
        self.procs.clear()


class Swimmesh(System):
    name = "swimmesh"

    def __init__(self) -> None:
        super().__init__()
        self.agents = AgentProcesses()
        self.procs = self.agents.procs  # type: ignore[assignment]
        self.client = httpx.Client(timeout=2.0)

    def start(self, node: str, seed: str | None) -> None:
        port = free_port()
        join = ["--join", f"127.0.0.1:{self.gossip[seed]}"] if seed else []
        self.agents.start(node, *join, bind=f"127.0.0.1:{port}", preset="lan")
        self.gossip[node] = port

    def view(self, node: str) -> dict[str, str]:
        try:
            doc = self.client.get(self.agents.url(node) + "/control/peers").json()
        except (httpx.HTTPError, ValueError):
            return {}
        norm = {"Alive": "alive", "Suspect": "alive", "Dead": "failed", "Left": "left"}
        return {p["nodeId"]: norm[p["status"]] for p in doc["peers"]}

    def leave(self, node: str) -> None:
        self.agents.kill(node, signal.SIGTERM)


class Serf(System):
    name = "serf"

    def __init__(self) -> None:
        super().__init__()
        self.rpc: dict[str, int] = {}

    def start(self, node: str, seed: str | None) -> None:
        port, rpc = free_port(), free_port()
        cmd = [
            "serf",
            "agent",
            f"-node={node}",
            f"-bind=127.0.0.1:{port}",
            f"-rpc-addr=127.0.0.1:{rpc}",
            "-profile=lan",
            "-log-level=err",
        ]
        if seed:
            cmd.append(f"-join=127.0.0.1:{self.gossip[seed]}")
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.procs[node], self.gossip[node], self.rpc[node] = proc, port, rpc
        deadline = time.monotonic() + 10
        while not self.view(node) and time.monotonic() < deadline:
            time.sleep(0.02)

    def view(self, node: str) -> dict[str, str]:
        try:
            out = subprocess.run(
                ["serf", "members", f"-rpc-addr=127.0.0.1:{self.rpc[node]}", "-format=json"],
                capture_output=True,
                timeout=5,
            ).stdout
            doc = json.loads(out)
        except (subprocess.TimeoutExpired, ValueError):
            return {}
        return {m["name"]: m["status"] for m in doc.get("members", [])}

    def leave(self, node: str) -> None:
        proc = self.procs.pop(node)
        proc.send_signal(signal.SIGINT)  # Serf leaves gracefully on interrupt
        proc.wait()


def poll(
    system: System,
    observers: list[str],
    done: Callable[[str, dict[str, str]], bool],
    timeout: float,
    pool: ThreadPoolExecutor,
) -> dict[str, float]:
    """Times (from now) at which each observer's view first satisfied ``done``."""
    start = time.monotonic()
    reached: dict[str, float] = {}
    while len(reached) < len(observers) and time.monotonic() - start < timeout:
        pending = [o for o in observers if o not in reached]
        for o, view in zip(pending, pool.map(system.view, pending), strict=True):
            if done(o, view):
                reached[o] = time.monotonic() - start
        time.sleep(0.02)
    return reached


def measure(system: System, n: int, kills: int, idle: float) -> dict[str, Any]:
    names = [f"{system.name}-{i:03d}" for i in range(n)]
    out: dict[str, Any] = {"system": system.name, "nodes": n}
    with ThreadPoolExecutor(max_workers=16) as pool:
        try:
            for i, node in enumerate(names):
                system.start(node, names[0] if i else None)
            last_start = time.monotonic()
            everyone = set(names)
            reached = poll(
                system,
                names,
                lambda o, v: {k for k, s in v.items() if s == "alive"} >= everyone,
                120,
                pool,
            )
            lag = time.monotonic() - last_start
            out["join_converged_all"] = len(reached) == n
            out["join_convergence_s"] = round(max(reached.values(), default=lag), 2)
            time.sleep(5)

            pids = [p.pid for p in system.procs.values()]
            before = {pid: cpu_seconds(pid) for pid in pids}
            time.sleep(idle)
            cpu = [(cpu_seconds(pid) - before[pid]) / idle * 1000 for pid in pids]
            out["idle_cpu_ms_per_s_mean"] = round(statistics.mean(cpu), 3)
            out["idle_cpu_ms_per_s_median"] = round(statistics.median(cpu), 3)
            out["idle_cpu_ms_per_s_max"] = round(max(cpu), 3)
            out["rss_mib_median"] = round(statistics.median(rss_mib(pid) for pid in pids), 1)

            detect = []
            for k in range(kills):
                victim = names[-1 - k]
                system.kill(victim)
                others = [x for x in names if x in system.procs]
                reached = poll(
                    system, others, lambda o, v, vic=victim: v.get(vic) == "failed", 120, pool
                )
                if len(reached) == len(others):
                    detect.append(max(reached.values()))
                time.sleep(2)
            out["kill9_to_failed_all_median_s"] = (
                round(statistics.median(detect), 2) if detect else None
            )
            out["kill9_samples"] = [round(d, 2) for d in detect]

            leaver = [x for x in names if x in system.procs][-1]
            others = [x for x in names if x in system.procs and x != leaver]
            saw_failed: set[str] = set()

            def left(o: str, v: dict[str, str]) -> bool:
                if v.get(leaver) == "failed":
                    saw_failed.add(o)
                return v.get(leaver) == "left"

            system.leave(leaver)
            reached = poll(system, others, left, 60, pool)
            out["leave_to_left_all_s"] = (
                round(max(reached.values()), 2) if len(reached) == len(others) else None
            )
            out["leave_seen_failed_first"] = len(saw_failed)
        finally:
            system.stop_all()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--nodes", type=int, nargs="+", default=[10, 25, 50, 100])
    parser.add_argument("--kills", type=int, default=5)
    parser.add_argument("--idle", type=float, default=30.0)
    parser.add_argument("--no-serf", action="store_true")
    args = parser.parse_args()
    systems: list[type[System]] = [Swimmesh]
    if not args.no_serf:
        if shutil.which("serf") is None:
            sys.exit(
                "serf is not installed (Debian package `serf`); use --no-serf to run ours alone"
            )
        systems.append(Serf)
    rows = []
    for n in args.nodes:
        for cls in systems:
            row = measure(cls(), n, args.kills, args.idle)
            print(json.dumps(row), file=sys.stderr, flush=True)
            rows.append(row)
    print(json.dumps(rows, indent=2))
    keys = [
        "join_convergence_s",
        "kill9_to_failed_all_median_s",
        "leave_to_left_all_s",
        "leave_seen_failed_first",
        "idle_cpu_ms_per_s_mean",
        "rss_mib_median",
    ]
    print(f"\n{'N':>4} {'metric':<30} {'swimmesh':>10} {'serf':>10} {'ratio':>7}")
    for n in args.nodes:
        ours = next(r for r in rows if r["nodes"] == n and r["system"] == "swimmesh")
        theirs = next((r for r in rows if r["nodes"] == n and r["system"] == "serf"), {})
        for k in keys:
            a, b = ours.get(k), theirs.get(k)
            ratio = (
                f"{a / b:.2f}"
                if isinstance(a, int | float) and isinstance(b, int | float) and b
                else "-"
            )
            print(f"{n:>4} {k:<30} {a!s:>10} {b!s:>10} {ratio:>7}")


if __name__ == "__main__":
    main()
