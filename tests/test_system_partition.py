"""A real partition on a real network: five agents, each in a network namespace of its own on
one bridge, cut by nftables rules in the bridge (root only; the test makes and removes every
namespace, link, rule and process itself, and is skipped, saying why, where it cannot)."""

from __future__ import annotations

import concurrent.futures
import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from swimmesh.crypto import encode_key, generate_key
from swimmesh.testing import AgentProcesses, wait_until

pytestmark = pytest.mark.system
NAMES = ["n0", "n1", "n2", "n3", "n4"]
VOTERS = ["n0", "n1", "n2"]
SCOPE = "global-control"


def sh(*cmd: str) -> None:
    subprocess.run(cmd, check=True, capture_output=True, timeout=30)


def why_not() -> str | None:
    if os.geteuid() != 0:
        return "needs root for network namespaces"
    for tool in ("ip", "nft"):
        if shutil.which(tool) is None:
            return f"needs the {tool!r} command (scripts/test installs nftables as root)"
    probe = f"swmprobe{os.getpid() % 10000}"
    try:
        sh("ip", "netns", "add", probe)
    except (subprocess.CalledProcessError, OSError) as exc:
        return f"cannot make a network namespace here: {exc}"
    sh("ip", "netns", "del", probe)
    return None


class Lab:
    """A bridge, one namespace and veth pair per node, and an nftables table on the bridge."""

    def __init__(self) -> None:
        tag = os.getpid() % 10000
        self.bridge = f"swmbr{tag}"
        self.table = f"swmcut{tag}"
        self.subnet = f"10.251.{tag % 250}"
        self.ns = {n: f"swm{tag}{n}" for n in NAMES}
        self.veth = {n: f"swv{tag}{n}" for n in NAMES}
        self.made: list[tuple[str, ...]] = []

    def address(self, name: str) -> str:
        return f"{self.subnet}.{10 + NAMES.index(name)}"

    def up(self) -> None:
        sh("ip", "link", "add", self.bridge, "type", "bridge")
        self.made.append(("ip", "link", "del", self.bridge))
        sh("ip", "addr", "add", f"{self.subnet}.1/24", "dev", self.bridge)
        sh("ip", "link", "set", self.bridge, "up")
        for name in NAMES:
            ns, veth = self.ns[name], self.veth[name]
            sh("ip", "netns", "add", ns)
            self.made.append(("ip", "netns", "del", ns))
            sh("ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns)
            sh("ip", "link", "set", veth, "master", self.bridge, "up")
            sh("ip", "-n", ns, "addr", "add", f"{self.address(name)}/24", "dev", "eth0")
            sh("ip", "-n", ns, "link", "set", "eth0", "up")
            sh("ip", "-n", ns, "link", "set", "lo", "up")
        sh("nft", "add", "table", "bridge", self.table)
        self.made.append(("nft", "delete", "table", "bridge", self.table))
        sh(
            "nft",
            "add",
            "chain",
            "bridge",
            self.table,
            "forward",
            "{ type filter hook forward priority 0 ; }",
        )

    def cut(self, side_a: list[str], side_b: list[str]) -> None:
        a = ", ".join(self.veth[n] for n in side_a)
        b = ", ".join(self.veth[n] for n in side_b)
        for src, dst in ((a, b), (b, a)):
            sh(
                "nft",
                "add",
                "rule",
                "bridge",
                self.table,
                "forward",
                "iifname",
                f"{{ {src} }}",
                "oifname",
                f"{{ {dst} }}",
                "drop",
            )

    def heal(self) -> None:
        sh("nft", "flush", "chain", "bridge", self.table, "forward")

    def down(self) -> None:
        for cmd in reversed(self.made):
            subprocess.run(cmd, capture_output=True, timeout=30)


@pytest.fixture
def lab() -> Iterator[Lab]:
    reason = why_not()
    if reason is not None:
        pytest.skip(reason)
    made = Lab()
    try:
        made.up()
        yield made
    finally:
        made.down()


def leading(url: str) -> list[str] | None:
    try:
        return list(httpx.get(url + "/control/health", timeout=1).json()["leading"])
    except (httpx.HTTPError, ValueError, KeyError):
        return None


def token(url: str) -> tuple[str, int] | None:
    try:
        doc = httpx.get(url + "/control/leaders", timeout=1).json()
    except (httpx.HTTPError, ValueError):
        return None
    found = [t for t in doc["tokens"] if t["scope"] == SCOPE]
    return (found[0]["leaderId"], found[0]["fenceToken"]) if found else None


def test_only_the_majority_side_elects_and_the_cut_off_leader_stops_first(
    lab: Lab, tmp_path: Path
) -> None:
    key = encode_key(generate_key())
    config = tmp_path / "swimmesh.toml"
    config.write_text(
        f"[mesh.leadership]\nvoters = {json.dumps(VOTERS)}\n"
        'leaseDuration = "2s"\nrenewalLeadTime = "1s"\n'
    )
    agents = AgentProcesses()
    try:
        for name in NAMES:
            addr = lab.address(name)
            join = ["--join", f"{lab.address(NAMES[0])}:7946"] if name != NAMES[0] else []
            agents.start(
                name,
                "--key",
                key,
                "--config",
                str(config),
                "--data-dir",
                str(tmp_path / name),
                *join,
                bind=f"{addr}:7946",
                control=f"{addr}:7947",
                wrapper=["ip", "netns", "exec", lab.ns[name]],
            )
        urls = {n: agents.url(n) for n in NAMES}

        def agreed(names: list[str], other_than: str | None = None) -> tuple[str, int] | None:
            seen = {token(urls[n]) for n in names}
            if len(seen) != 1:
                return None
            (found,) = seen
            return found if found is not None and found[0] != other_than else None

        wait_until(lambda: agreed(NAMES) is not None, 60, "every agent agreeing on a leader")
        leader, fence = agreed(NAMES)  # type: ignore[misc]
        partner = "n4" if leader in VOTERS else "n2"
        minority = sorted({leader, partner if partner != leader else "n3"})
        majority = [n for n in NAMES if n not in minority]
        assert sum(n in VOTERS for n in minority) <= 1

        samples: list[dict[str, list[str] | None]] = []
        pool = concurrent.futures.ThreadPoolExecutor(len(NAMES))
        dead_seen: set[tuple[str, str]] = set()
        """(observer, member) pairs each side was seen to mark Dead: recorded from the cut on,
        since a dead member is forgotten a while later (gossip_to_the_dead)."""

        def sample() -> dict[str, list[str] | None]:
            found = dict(zip(NAMES, pool.map(leading, [urls[n] for n in NAMES]), strict=True))
            samples.append(found)
            for observer, statuses in zip(NAMES, pool.map(agents.peers, NAMES), strict=True):
                dead_seen.update((observer, n) for n, s in statuses.items() if s == "Dead")
            return found

        def each_side_saw_the_other_dead() -> bool:
            sample()
            return all(
                (m, n) in dead_seen and (n, m) in dead_seen for m in majority for n in minority
            )

        lab.cut(minority, majority)
        start = time.monotonic()
        while time.monotonic() - start < 30:
            now = sample()
            if agreed(majority, other_than=leader) and not any(
                SCOPE in (now[n] or []) for n in minority
            ):
                break
        else:
            raise AssertionError("the majority side did not elect within 30 s")
        new_leader, new_fence = agreed(majority, other_than=leader)  # type: ignore[misc]
        assert new_leader in majority and new_fence > fence
        for _ in range(50):  # hold the cut: the minority never leads again
            now = sample()
            assert not any(SCOPE in (now[n] or []) for n in minority), now
        wait_until(each_side_saw_the_other_dead, 30, "each side marking the other dead")
        lab.heal()
        wait_until(
            lambda: all(list(agents.peers(n).values()).count("Alive") == 5 for n in NAMES),
            60,
            "the mesh re-formed",
        )
        wait_until(lambda: agreed(NAMES) is not None, 60, "every agent agreeing after heal")
        assert agreed(NAMES)[1] >= new_fence  # type: ignore[index]
        pool.shutdown()
        for found in samples:
            leaders = [n for n, scopes in found.items() if SCOPE in (scopes or [])]
            assert len(leaders) <= 1, found
    finally:
        agents.stop_all()
