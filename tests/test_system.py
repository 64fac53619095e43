"""Real agent processes on 127.0.0.1 with ephemeral ports (``fast`` preset, real time)."""

from __future__ import annotations

import json
import selectors
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from swimmesh.config import MeshConfig
from swimmesh.crypto import encode_key, generate_key
from swimmesh.protocol import suspicion_bounds
from swimmesh.testing import AgentProcesses as Agents
from swimmesh.testing import wait_until

pytestmark = pytest.mark.system
N = 5


def form_mesh(agents: Agents, n: int, *args: str) -> list[str]:
    names = [f"agent-{i}" for i in range(n)]
    agents.start(names[0], *args)
    for name in names[1:]:
        agents.start(name, "--join", agents.gossip(names[0]), *args)
    wait_until(
        lambda: all(list(agents.peers(a).values()).count("Alive") == n for a in names),
        20,
        f"{n} agents alive everywhere",
    )
    return names


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "swimmesh", *args], capture_output=True, text=True, timeout=60
    )


def detection_bound(n: int) -> float:
    """Crash to DEAD everywhere, from the fast preset: one probe round to the first failed
    probe, the longest suspicion, and the verdict's gossip."""
    c = MeshConfig.fast(name="x")
    _, maximum = suspicion_bounds(
        c.suspicion_mult, c.suspicion_max_timeout_mult, n, c.probe_interval
    )
    return n * c.probe_interval + maximum + 2 * c.gossip_interval * c.retransmit_mult


def test_five_agents_form_a_mesh_and_the_cli_shows_them(agents: Agents) -> None:
    names = form_mesh(agents, N)
    for name in names:
        proc = cli("mesh", "peers", "list", "--url", agents.url(name), "--format", "json")
        assert proc.returncode == 0, proc.stderr
        doc = json.loads(proc.stdout)
        assert doc["schemaVersion"] == "v1" and doc["localNodeId"] == name
        assert sorted(p["nodeId"] for p in doc["peers"]) == names
        assert {p["status"] for p in doc["peers"]} == {"Alive"}
        assert all(p["metadata"]["role"] == "worker" for p in doc["peers"])
    table = cli("mesh", "peers", "list", "--url", agents.url(names[0]))
    assert table.returncode == 0 and "agent-4" in table.stdout and "Alive" in table.stdout
    unreachable = cli("mesh", "peers", "list", "--url", "http://127.0.0.1:9", "--timeout", "1s")
    assert unreachable.returncode == 1 and "cannot reach" in unreachable.stderr
    # Elections across agents need the quorum store: the agent says so, in one clear line.
    leaders = cli("mesh", "leaders", "status", "--url", agents.url(names[0]))
    assert leaders.returncode == 1 and "HTTP 503: leadership is not running" in leaders.stderr


def test_kill_9_is_dead_everywhere_within_the_bound_and_a_restart_is_alive(agents: Agents) -> None:
    names = form_mesh(agents, N)
    victim, others = names[2], [n for n in names if n != names[2]]
    port = agents.gossip(victim)
    agents.kill(victim)
    took = wait_until(
        lambda: all(agents.peers(o).get(victim) == "Dead" for o in others),
        detection_bound(N),
        "dead everywhere",
    )
    print(f"kill -9 -> Dead at all others in {took:.2f}s (bound {detection_bound(N):.2f}s)")
    agents.start(victim, "--join", agents.gossip(names[0]), bind=port)
    wait_until(
        lambda: all(agents.peers(o).get(victim) == "Alive" for o in names),
        10,
        "restarted agent alive everywhere",
    )


def test_sigterm_is_left_everywhere_and_never_dead(agents: Agents) -> None:
    names = form_mesh(agents, N)
    leaver, others = names[3], [n for n in names if n != names[3]]
    suspicions = {o: agents.metric(o, "swimmesh_suspicions_total") for o in others}
    with pytest.raises(KeyError, match="no metric family"):  # a renamed metric is no zero
        agents.metric(others[0], "swimmesh_suspicion_total")
    seen_dead: list[str] = []

    def all_left() -> bool:
        views = {o: agents.peers(o).get(leaver) for o in others}
        seen_dead.extend(o for o, s in views.items() if s == "Dead")
        return all(s == "Left" for s in views.values())

    assert agents.kill(leaver, signal.SIGTERM) == 0
    took = wait_until(all_left, 5, "left everywhere")
    print(f"SIGTERM -> Left at all others in {took * 1000:.0f} ms")
    assert seen_dead == []
    assert {o: agents.metric(o, "swimmesh_suspicions_total") for o in others} == suspicions


def test_key_rotation_across_a_running_mesh_with_no_suspicion(agents: Agents) -> None:
    old, new = encode_key(generate_key()), encode_key(generate_key())
    names = form_mesh(agents, N, "--key", old, "--control-token", "s3cret")
    url = agents.url(names[1])
    denied = cli("keys", "install", new, "--url", url, "--token", "wrong")
    assert denied.returncode == 1 and "401" in denied.stderr
    for op in ("install", "use", "remove"):
        key = old if op == "remove" else new
        proc = cli("keys", op, key, "--url", url, "--token", "s3cret")
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert f"{op}: {N}/{N} members" in proc.stdout
        assert all(list(agents.peers(a).values()).count("Alive") == N for a in names)
    for name in names:
        listing = cli(
            "keys", "list", "--url", agents.url(name), "--token", "s3cret", "--format", "json"
        )
        doc = json.loads(listing.stdout)
        assert doc["keys"] == [new] and doc["primary"] == new
    # Gossip still flows under the new key only: a metadata-free round trip keeps RTTs fresh and
    # nobody was ever suspected during the rotation.
    assert sum(agents.metric(n, "swimmesh_suspicions_total") for n in names) == 0
    assert all(agents.metric(n, "swimmesh_dropped_packets_total") == 0 for n in names)


def test_meshes_with_different_labels_never_see_each_other(agents: Agents) -> None:
    agents.start("blue-0", "--cluster-label", "blue")
    agents.start("blue-1", "--cluster-label", "blue", "--join", agents.gossip("blue-0"))
    agents.start("green-0", "--cluster-label", "green", "--join", agents.gossip("blue-0"))
    agents.start("green-1", "--cluster-label", "green", "--join", agents.gossip("green-0"))
    wait_until(
        lambda: (
            agents.peers("blue-0").get("blue-1") == "Alive"
            and agents.peers("green-1").get("green-0") == "Alive"
        ),
        10,
        "each mesh formed",
    )
    # green-0 keeps retrying its (blue) seed in the background; the label keeps them apart.
    wait_until(
        lambda: agents.metric("blue-0", 'swimmesh_dropped_packets_total{reason="label"}') > 0,
        10,
        "blue dropped green's packets",
    )
    for name in ("blue-0", "blue-1"):
        assert set(agents.peers(name)) == {"blue-0", "blue-1"}
    for name in ("green-0", "green-1"):
        assert set(agents.peers(name)) == {"green-0", "green-1"}


def lease_health(agents: Agents, name: str) -> dict[str, dict[str, object]]:
    import httpx

    doc = httpx.get(agents.url(name) + "/omnirelay/control/lease-health", timeout=2).json()
    return {p["peerId"]: p for p in doc["peers"]}


def test_lease_health_marks_a_killed_agent_unhealthy_with_the_reason(agents: Agents) -> None:
    names = form_mesh(agents, 3)
    wait_until(
        lambda: all(
            "lastHeartbeat" in lease_health(agents, a).get(b, {})
            for a in names
            for b in names
            if a != b
        ),
        10,
        "heartbeats recorded",
    )
    first = lease_health(agents, names[0])[names[1]]
    assert first["isHealthy"] is True and first["metadata"]["mesh.role"] == "worker"  # type: ignore[index]
    victim, others = names[2], names[:2]
    agents.kill(victim)
    took = wait_until(
        lambda: all(
            lease_health(agents, o).get(victim, {}).get("isHealthy") is False for o in others
        ),
        detection_bound(3),
        "unhealthy in lease-health",
    )
    for o in others:
        entry = lease_health(agents, o)[victim]
        assert entry["metadata"]["disconnect.reason"] == "dead"  # type: ignore[index]
        assert "lastDisconnect" in entry
    proc = cli("mesh", "lease-health", "--url", agents.url(others[0]))
    assert proc.returncode == 0 and "NO" in proc.stdout and "1 unhealthy" in proc.stdout
    print(f"killed agent unhealthy in lease-health after {took:.2f}s")


def test_backpressure_is_published_in_gossip_metadata(agents: Agents) -> None:
    import httpx

    names = form_mesh(agents, 3, "--control-token", "t")
    busy = agents.url(names[1])
    assert httpx.get(busy + "/omnirelay/control/backpressure", timeout=2).status_code in (200, 204)
    denied = httpx.post(
        busy + "/omnirelay/control/backpressure", json={"pendingCount": 600}, timeout=2
    )
    assert denied.status_code == 401
    reply = httpx.post(
        busy + "/omnirelay/control/backpressure",
        json={"pendingCount": 600},
        headers={"Authorization": "Bearer t"},
        timeout=2,
    )
    assert reply.json()["isActive"] is True

    def labels_of(observer: str) -> dict[str, str]:
        doc = httpx.get(agents.url(observer) + "/control/peers", timeout=2).json()
        peer = next(p for p in doc["peers"] if p["nodeId"] == names[1])
        return dict(peer["metadata"]["labels"])

    wait_until(
        lambda: all(labels_of(o).get("backpressure") == "active" for o in names),
        10,
        "backpressure visible on every node",
    )
    reading = cli("mesh", "backpressure", "--url", busy, "--format", "json")
    assert (
        json.loads(reading.stdout)["isActive"] is True
        and json.loads(reading.stdout)["highWatermark"] == 512
    )
    with httpx.stream("GET", busy + "/omnirelay/control/backpressure/stream", timeout=5) as stream:
        first = next(line for line in stream.iter_lines() if line.strip())
    assert json.loads(first)["isActive"] is True and json.loads(first)["pendingCount"] == 600
    # The CLI's --watch prints the same signals, one per line, until stopped.
    watch = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "swimmesh",
            "mesh",
            "backpressure",
            "--url",
            busy,
            "--watch",
            "--format",
            "json",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert watch.stdout is not None
        with selectors.DefaultSelector() as sel:
            sel.register(watch.stdout, selectors.EVENT_READ)
            assert sel.select(timeout=20), "no signal from mesh backpressure --watch"
        line = watch.stdout.readline()
        # Ctrl+C is how a watch ends: a normal exit, no traceback.
        watch.send_signal(signal.SIGINT)
        assert watch.wait(timeout=10) == 0
    finally:
        if watch.poll() is None:
            watch.kill()
            watch.wait(timeout=10)
    assert json.loads(line)["isActive"] is True and json.loads(line)["pendingCount"] == 600


def agent_cli(*args: str, timeout: float = 20) -> subprocess.CompletedProcess[str]:
    """``swimmesh agent`` that is expected to refuse to start (bounded: it must not run)."""
    return subprocess.run(
        [sys.executable, "-m", "swimmesh", "agent", "--preset", "fast", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_ports_in_use_are_one_line_errors_naming_the_address(agents: Agents) -> None:
    agents.start("holder")
    gossip, control = agents.gossip("holder"), agents.url("holder").removeprefix("http://")
    taken = agent_cli("--bind", gossip, "--control", "127.0.0.1:0")
    assert taken.returncode == 1
    assert taken.stderr.strip().splitlines() == [
        f"error: cannot bind the gossip address {gossip} (UDP and TCP): Address already in use; "
        "stop whatever holds it or pick another --bind HOST:PORT"
    ]
    busy = agent_cli("--bind", "127.0.0.1:0", "--control", control)
    assert busy.returncode == 1
    assert busy.stderr.strip().splitlines() == [
        f"error: cannot serve the control plane on {control}: Address already in use; "
        "stop whatever holds it or pick another --control HOST:PORT"
    ]


def test_a_key_removed_from_the_keyring_file_is_not_installed_again(
    agents: Agents, tmp_path: Path
) -> None:
    old, new = encode_key(generate_key()), encode_key(generate_key())
    data = tmp_path / "data"
    start = ("--data-dir", str(data), "--control-token", "t")
    agents.start("keeper", "--key", old, *start)
    url = agents.url("keeper")
    for op, key in (("install", new), ("use", new), ("remove", old)):
        assert cli("keys", op, key, "--url", url, "--token", "t").returncode == 0
    agents.kill("keeper", signal.SIGTERM)
    assert json.loads((data / "keyring.json").read_text()) == [new]
    assert json.loads((data / "peers.json").read_text())["node"] == "keeper"
    # The same start command as before the rotation: refused, and the file says why.
    again = agent_cli(
        "--node-id",
        "keeper",
        "--bind",
        "127.0.0.1:0",
        "--control",
        "127.0.0.1:0",
        "--key",
        old,
        *start,
    )
    assert again.returncode == 1
    (line,) = again.stderr.strip().splitlines()
    assert "--key is not in the keyring file" in line and "--install-key" in line
    assert json.loads((data / "keyring.json").read_text()) == [new]
    # Without --key the file's keys are used; with --install-key the old key comes back.
    agents.start("keeper", *start)
    listing = cli("keys", "list", "--url", agents.url("keeper"), "--token", "t", "--format", "json")
    assert json.loads(listing.stdout)["keys"] == [new]
    agents.kill("keeper", signal.SIGTERM)
    agents.start("keeper", "--key", old, "--install-key", *start)
    assert set(json.loads((data / "keyring.json").read_text())) == {old, new}
