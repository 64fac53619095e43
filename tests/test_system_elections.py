"""Leader elections across real agent processes on 127.0.0.1: the quorum lease store with three
static voters among five agents (``fast`` preset, real time)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import httpx
import pytest

from swimmesh.testing import AgentProcesses as Agents
from swimmesh.testing import wait_until

pytestmark = pytest.mark.system
NAMES = ["a", "b", "c", "d", "e"]
VOTERS = ["a", "b", "c"]
SCOPE = "global-control"


def start_mesh(
    agents: Agents,
    tmp_path: Path,
    lease: str = "4s",
    lead: str = "1500ms",
    voters: list[str] | None = VOTERS,
) -> Path:
    config = tmp_path / "swimmesh.toml"
    config.write_text(
        "[mesh.leadership]\n"
        + (f"voters = {json.dumps(voters)}\n" if voters else "")
        + f'leaseDuration = "{lease}"\n'
        + f'renewalLeadTime = "{lead}"\n'
    )
    for name in NAMES:
        start(agents, tmp_path, config, name)
    return config


def start(agents: Agents, tmp_path: Path, config: Path, name: str) -> None:
    seeds = [a for a in agents.live() if a != name]
    join = ["--join", agents.gossip(seeds[0])] if seeds else []
    agents.start(name, "--config", str(config), "--data-dir", str(tmp_path / name), *join)


def tokens(agents: Agents, name: str) -> dict[str, dict[str, object]]:
    try:
        doc = httpx.get(agents.url(name) + "/control/leaders", timeout=2).json()
    except httpx.HTTPError:
        return {}
    return {t["scope"]: t for t in doc["tokens"]}


def agreed(
    agents: Agents, not_leader: str | None = None, above: int = 0
) -> tuple[str, int] | None:
    """The leader and fence every live agent reports for the scope, when they all agree (on a
    leader other than ``not_leader``, at a fence above ``above``)."""
    seen = set()
    for name in agents.live():
        token = tokens(agents, name).get(SCOPE)
        if token is None:
            return None
        seen.add((str(token["leaderId"]), int(token["fenceToken"])))  # type: ignore[call-overload]
    if len(seen) != 1:
        return None
    (leader,) = seen
    return None if leader[0] == not_leader or leader[1] <= above else leader


def wait_agreed(
    agents: Agents, not_leader: str | None = None, timeout: float = 30.0, above: int = 0
):
    found: list[tuple[str, int]] = []

    def check() -> bool:
        result = agreed(agents, not_leader, above)
        if result is not None:
            found.append(result)
        return result is not None

    try:
        wait_until(
            check,
            timeout,
            f"every agent agreeing on a leader other than {not_leader} at a fence above {above}",
        )
    except TimeoutError as exc:
        raise TimeoutError(f"{exc}\n{what_each_agent_says(agents)}") from None
    return found[-1]


def what_each_agent_says(agents: Agents) -> str:
    """Each live agent's token for the scope and the end of its log, for a failure message."""
    parts = []
    for name in agents.live():
        token = tokens(agents, name).get(SCOPE)
        parts.append(f"--- {name}: {token}\n{agents.log_tail(name)}")
    return "\n".join(parts)


def test_every_agent_agrees_and_the_cli_shows_the_same_leader(agents: Agents, tmp_path) -> None:
    start_mesh(agents, tmp_path)
    leader, fence = wait_agreed(agents)
    for name in NAMES:
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "swimmesh",
                "mesh",
                "leaders",
                "status",
                "--url",
                agents.url(name),
                "--format",
                "json",
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert proc.returncode == 0, proc.stderr
        (token,) = [t for t in json.loads(proc.stdout)["tokens"] if t["scope"] == SCOPE]
        assert (token["leaderId"], token["fenceToken"]) == (leader, fence)
    messages = "swimmesh_leadership_messages_total"
    for voter in VOTERS:
        assert (tmp_path / voter / "leadership-promised-terms.json").exists()
        if voter != leader:  # the leader's rounds reach every other voter
            assert agents.metric(voter, messages + '{direction="in",kind="voter"}') > 0
    assert agents.metric(leader, messages + '{direction="out",kind="voter"}') > 0
    assert agents.metric(leader, messages + '{direction="out",kind="notice"}') > 0
    follower = next(n for n in NAMES if n != leader)
    assert agents.metric(follower, messages + '{direction="in",kind="notice"}') > 0


def test_kill_9_of_the_leader_elects_another_with_a_higher_fence(agents: Agents, tmp_path):
    start_mesh(agents, tmp_path)
    leader, fence = wait_agreed(agents)
    agents.kill(leader, signal.SIGKILL)
    successor, new_fence = wait_agreed(agents, not_leader=leader)
    assert successor != leader and new_fence > fence


def test_without_voters_every_agent_agrees_and_a_kill_fails_over(agents: Agents, tmp_path):
    # quorum = "none": each agent decides on its own view; no data directory is needed
    start_mesh(agents, tmp_path, voters=None)
    leader, fence = wait_agreed(agents)
    doc = httpx.get(agents.url(leader) + "/control/voters", timeout=2)
    assert doc.status_code == 503
    agents.kill(leader, signal.SIGKILL)
    _, new_fence = wait_agreed(agents, not_leader=leader)
    assert new_fence > fence


def test_two_hundred_shards_are_all_led_and_stay_led(agents: Agents, tmp_path):
    # 201 scopes on short leases: every campaign needs a durable promise at the voters, and
    # every leader renews dozens of scopes a second (a load that once never settled)
    config = tmp_path / "swimmesh.toml"
    config.write_text(
        "[mesh.leadership]\n"
        f"voters = {json.dumps(VOTERS)}\n"
        'leaseDuration = "2s"\nrenewalLeadTime = "1s"\n'
        f'scopes = [{{scopeId = "{SCOPE}"}}]\n'
        f'shards = [{{namespace = "orders", shards = {list(range(200))}}}]\n'
    )
    for name in NAMES:
        start(agents, tmp_path, config, name)

    def all_led() -> bool:
        return all(len(tokens(agents, name)) == 201 for name in NAMES)

    wait_until(all_led, 60, "every agent reporting a leader for all 201 scopes", every=1.0)

    def losses() -> float:
        """Scopes that any agent lost or let expire, so far (from each agent's /metrics)."""
        total = 0.0
        for name in NAMES:
            text = httpx.get(agents.url(name) + "/metrics", timeout=2).text
            assert "# TYPE mesh_leadership_transitions_total counter" in text
            for line in text.splitlines():
                if line.startswith("mesh_leadership_transitions_total{") and (
                    'transition="expired"' in line or 'transition="lost"' in line
                ):
                    total += float(line.rsplit(" ", 1)[1])
        return total

    before = losses()
    time.sleep(5)  # a span of steady state to measure, not a wait for a condition
    assert all_led()
    assert losses() == before, "scopes were lost or expired in steady state"


def voter_status(agents: Agents, name: str) -> dict[str, object]:
    try:
        doc = httpx.get(agents.url(name) + "/control/voters", timeout=2).json()
    except httpx.HTTPError:
        return {}
    local = doc.get("local")
    return local if isinstance(local, dict) else {}


def test_sigterm_hands_over_before_the_old_lease_could_expire(agents: Agents, tmp_path):
    # a long lease, renewed early: waiting for it to run out would take 10 s or more
    start_mesh(agents, tmp_path, lease="20s", lead="8s")
    leader, fence = wait_agreed(agents)
    # A voter that started blank after another had promised a term sits out one lease (it
    # cannot tell a new mesh from a lost data directory). With the leader gone too, one voter
    # of three grants and nobody can be elected before that ends: wait for every voter.
    sitting = voter_status(agents, "c")
    wait_until(
        lambda: all(voter_status(agents, v).get("granting") is True for v in VOTERS),
        30,
        "every voter granting",
    )
    listed = subprocess.run(
        [sys.executable, "-m", "swimmesh", "mesh", "voters", "list", "--url", agents.url("c")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert listed.returncode == 0, listed.stderr
    assert "epoch 1: a, b, c" in listed.stdout
    assert "this node's voter grants leases" in listed.stdout
    if sitting.get("granting") is False:
        assert float(sitting["remaining"]) > 0 or "recovering" in str(sitting["reason"])
    leader, fence = wait_agreed(agents)
    old = tokens(agents, leader)[SCOPE]
    expires = datetime.fromisoformat(str(old["expiresAt"]).replace("Z", "+00:00")).timestamp()
    # the old lease's end as its holder has it, read last (renewals move it on): a follower's
    # copy moves only with the holder's notices, every few leases
    proc = agents.procs.pop(leader)
    proc.send_signal(signal.SIGTERM)
    successor, new_fence = wait_agreed(agents, not_leader=leader)
    handed_over_at = datetime.now().timestamp()
    assert proc.wait(timeout=30) == 0
    assert new_fence > fence
    assert handed_over_at < expires - 5, "the successor waited for the old lease to expire"
    statuses = agents.peers(successor)
    assert statuses[leader] == "Left"


def test_restarted_voters_keep_their_promises_and_fences_never_go_back(agents: Agents, tmp_path):
    config = start_mesh(agents, tmp_path)
    fences = [wait_agreed(agents)[1]]
    for voter in VOTERS:
        leader, before = wait_agreed(agents)
        agents.kill(voter, signal.SIGKILL)
        start(agents, tmp_path, config, voter)
        if voter == leader:
            # the restarted voter is a new incarnation and may win again (it may rank first for
            # the scope): what must hold is a new term, never the old one coming back
            leader, fence = wait_agreed(agents, above=before)
        else:
            leader, fence = wait_agreed(agents)
        fences.append(fence)
    assert fences == sorted(fences)
    # every voter restarted once: a new leader after a kill still gets a higher fence
    leader, fence = wait_agreed(agents)
    agents.kill(leader, signal.SIGKILL)
    _, after = wait_agreed(agents, not_leader=leader)
    assert after > fence


class EventStream:
    """An SSE stream of ``/control/events/leadership`` read in a thread into ``frames``."""

    def __init__(self, url: str, last_event_id: str | None = None) -> None:
        import threading

        self.frames: list[dict[str, object]] = []
        self.error: BaseException | None = None
        headers = {"Last-Event-ID": last_event_id} if last_event_id else {}
        self._client = httpx.Client(timeout=httpx.Timeout(5, read=None))
        self._response = self._client.send(
            self._client.build_request(
                "GET",
                url + "/control/events/leadership",
                params={"scope": SCOPE},
                headers=headers,
            ),
            stream=True,
        )
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        frame: dict[str, object] = {}
        try:
            for line in self._response.iter_lines():
                if not line:
                    if "data" in frame:
                        self.frames.append(frame)
                    frame = {}
                elif not line.startswith(":"):
                    field, _, value = line.partition(":")
                    frame[field] = json.loads(value) if field == "data" else value.strip()
        except (httpx.HTTPError, RuntimeError) as exc:  # closed under it: the normal end
            self.error = exc

    def close(self) -> None:
        self._response.close()
        self._client.close()
        self._thread.join(timeout=10)


def test_the_event_stream_shows_a_handover_in_order_and_resumes_exactly(
    agents: Agents, tmp_path
) -> None:
    start_mesh(agents, tmp_path)
    leader, _ = wait_agreed(agents)
    follower = next(n for n in NAMES if n != leader)
    stream = EventStream(agents.url(follower))
    try:
        wait_until(lambda: len(stream.frames) >= 1, 10, "the snapshot")
        assert stream.frames[0]["event"] == "snapshot"
        proc = agents.procs.pop(leader)
        proc.send_signal(signal.SIGTERM)
        successor, _ = wait_agreed(agents, not_leader=leader)

        def kinds() -> list[tuple[object, object]]:
            return [(f["event"], f["data"]["leaderId"]) for f in stream.frames[1:]]  # type: ignore[index]

        wait_until(
            lambda: any(leader_id == successor for _, leader_id in kinds()),
            10,
            "the successor on the follower's stream",
        )
        seen = kinds()
        ended = seen.index(("steppedDown", leader))
        took = next(i for i, (_, who) in enumerate(seen) if who == successor)
        assert ended < took, seen
        assert proc.wait(timeout=30) == 0
    finally:
        stream.close()
    # reconnect from the first live event: exactly the events after it, in order, no snapshot
    first, rest = stream.frames[1], stream.frames[2:]
    resumed = EventStream(agents.url(follower), last_event_id=str(first["id"]))
    try:
        wait_until(lambda: len(resumed.frames) >= len(rest), 10, "the replay")
        assert [(f["id"], f["event"]) for f in resumed.frames[: len(rest)]] == [
            (f["id"], f["event"]) for f in rest
        ]
    finally:
        resumed.close()


def test_the_demo_elects_kills_the_leader_and_reports_its_successor() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "swimmesh", "demo"], capture_output=True, text=True, timeout=180
    )
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "voters node-0, node-1, node-2 elected a leader" in out
    killed = out.split("kill -9 ")[1].split(":")[0]
    agreed_line = next(line for line in out.splitlines() if "agreed on the new leader" in line)
    successor = agreed_line.split("new leader ")[1].split(" ")[0]
    assert successor != killed and "up from" in agreed_line
    assert "every agent saw it Left" in out
