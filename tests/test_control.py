"""The control plane in process: the real Starlette app and the real agent host over a mesh on
the in-memory network, spoken to through httpx's ASGI transport (no sockets, virtual time)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
import trio.testing

from leadership import LeadershipConfig, TrioTime
from leadership.quorum.store import QuorumLeaseStore
from swimmesh.agent import Agent
from swimmesh.agentconfig import AgentSettings
from swimmesh.control import build_app
from swimmesh.crypto import Keyring, encode_key, generate_key
from swimmesh.elections import open_elections
from swimmesh.keys import ClusterKeys
from swimmesh.testing import Cluster, wait_for

TOKEN = "s3cret"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


class Plane:
    """Agents (hosts) on a cluster's nodes, each with an HTTP client bound to its app."""

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster
        self.agents: dict[str, Agent] = {}
        self.clients: dict[str, httpx.AsyncClient] = {}

    async def add(
        self,
        name: str,
        *,
        token: str | None = TOKEN,
        keyring: Keyring | None = None,
        path: Path | None = None,
        join: bool = False,
    ) -> Agent:
        node = await self.cluster.start(name)
        settings = AgentSettings(node_id=name, control_token=token, join=["seed:1"] if join else [])
        agent = Agent(settings, node, ClusterKeys(node, keyring, path), lambda: {})
        self.agents[name] = agent
        self.clients[name] = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=build_app(agent)), base_url="http://control"
        )
        return agent

    def leaders(self, scope: str) -> list[str]:
        """Agents whose coordinator believes it leads ``scope`` now."""
        return [
            n
            for n, a in self.agents.items()
            if a.coordinator is not None and a.coordinator.is_leader(scope)
        ]

    async def aclose(self) -> None:
        for client in self.clients.values():
            await client.aclose()


@asynccontextmanager
async def plane() -> AsyncIterator[Plane]:
    async with Cluster.open("fast", seed=7) as cluster:
        p = Plane(cluster)
        try:
            yield p
        finally:
            await p.aclose()


async def formed(p: Plane, n: int) -> None:
    names = list(p.cluster.nodes)
    for name in names[1:]:
        await p.cluster.nodes[name].join([(names[0], 7946)])
    await wait_for(
        lambda: all(len(node.alive_members()) == n for node in p.cluster.nodes.values()),
        timeout=30,
        what="mesh formed",
    )


async def elect(
    p: Plane,
    stack: AsyncExitStack,
    names: tuple[str, ...],
    voters: tuple[str, ...],
    data: Path,
    **config: Any,
) -> dict[str, QuorumLeaseStore]:
    """Agents ``names`` in a formed mesh, each running the agent's elections (TrioTime)."""
    for name in names:
        await p.add(name)
    await formed(p, len(names))
    stores = {}
    for name in names:
        running = await stack.enter_async_context(
            open_elections(
                p.cluster.nodes[name],
                LeadershipConfig(quorum="static", voters=voters, **config),
                data_dir=str(data / name),
                clock=TrioTime(),
            )
        )
        p.agents[name].coordinator = running.coordinator
        p.agents[name].voter_admin = stores[name] = running.store
    return stores


async def test_lease_health_serves_the_agents_tracker(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with plane() as p:
        agent = await p.add("a")
        agent.tracker.record_heartbeat("worker-1")
        agent.tracker.record_disconnect("worker-2", "dead")
        client = p.clients["a"]
        for _ in range(2):  # the second answer comes from the renderer's cache
            doc = (await client.get("/omnirelay/control/lease-health")).json()
            assert {q["peerId"]: q["isHealthy"] for q in doc["peers"]} == {
                "worker-1": True,
                "worker-2": False,
            }
            assert doc["summary"] == {
                "eligiblePeers": 1,
                "unhealthyPeers": 1,
                "pendingReassignments": 0,
            }


async def test_peers_and_the_omnirelay_alias_answer_the_same_document(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with plane() as p:
        await p.add("a")
        await p.add("b")
        await formed(p, 2)
        client = p.clients["a"]
        ours = (await client.get("/control/peers")).json()
        alias = (await client.get("/omnirelay/control/peers")).json()
        assert ours["schemaVersion"] == alias["schemaVersion"] == "v1"
        assert ours["localNodeId"] == alias["localNodeId"] == "a"
        for doc in (ours, alias):
            assert [(q["nodeId"], q["status"]) for q in doc["peers"]] == [
                ("a", "Alive"),
                ("b", "Alive"),
            ]
            assert doc["generatedAt"].endswith("Z") and doc["peers"][1]["lastSeen"].endswith("Z")


async def test_healthz_and_readyz_follow_joining_and_leaving(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with plane() as p:
        agent = await p.add("a", join=True)
        client = p.clients["a"]
        health = await client.get("/healthz")
        assert health.status_code == 200 and health.json() == {"status": "ok", "node": "a"}
        ready = await client.get("/readyz")
        assert ready.status_code == 503 and ready.json() == {
            "ready": False,
            "reason": "not joined yet",
        }
        agent.joined = True
        ready = await client.get("/readyz")
        assert ready.status_code == 200 and ready.json() == {"ready": True, "reason": "joined"}
        left = await client.post("/control/leave", headers=AUTH)
        assert left.status_code == 202 and left.json() == {"leaving": True}
        assert agent.shutdown.is_set()
        assert agent.shutdown_reason == "leave requested over the control plane"
        ready = await client.get("/readyz")
        assert ready.status_code == 503 and ready.json()["reason"] == "leaving"
        assert (await client.get("/healthz")).status_code == 200  # alive while it leaves


async def test_mutations_are_refused_without_a_configured_token(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with plane() as p:
        agent = await p.add("a", token=None, keyring=Keyring([generate_key()]))
        client = p.clients["a"]
        key = encode_key(generate_key())
        for method, path, body in (
            ("POST", "/control/leave", None),
            ("GET", "/control/keys", None),
            ("POST", "/control/keys/install", {"key": key}),
            ("POST", "/omnirelay/control/backpressure", {"pendingCount": 1}),
        ):
            reply = await client.request(method, path, json=body, headers=AUTH)
            assert reply.status_code == 403, path
            assert "no control token is configured" in reply.json()["error"]
        assert not agent.shutdown.is_set() and agent.keys.keyring is not None
        assert len(agent.keys.keyring.keys) == 1


async def test_a_wrong_or_missing_token_is_401(autojump_clock: trio.testing.MockClock) -> None:
    async with plane() as p:
        await p.add("a")
        client = p.clients["a"]
        assert (await client.post("/control/leave")).status_code == 401
        wrong = {"Authorization": "Bearer nope"}
        assert (await client.post("/control/leave", headers=wrong)).status_code == 401


KEYS, BACKPRESSURE = "/control/keys/install", "/omnirelay/control/backpressure"


@pytest.mark.parametrize(
    ("path", "body"),
    [
        *((KEYS, b) for b in (b"not json", b"{}", b'{"key": "not base64!"}', b'{"key": "c2g="}')),
        (KEYS, b"[1, 2]"),
        *((BACKPRESSURE, b) for b in (b"nope", b"{}", b'{"pendingCount": -1}')),
        *((BACKPRESSURE, b) for b in (b'{"pendingCount": "5"}', b'{"pendingCount": true}')),
    ],
)
async def test_a_malformed_key_or_backpressure_body_is_400_and_changes_nothing(
    autojump_clock: trio.testing.MockClock, path: str, body: bytes
) -> None:
    async with plane() as p:
        agent = await p.add("a", keyring=Keyring([generate_key()]))
        client = p.clients["a"]
        reply = await client.post(path, content=body, headers=AUTH)
        expected = 'body must be {"key"' if path == KEYS else 'body must be {"pendingCount"'
        assert reply.status_code == 400 and expected in reply.json()["error"]
        assert agent.keys.keyring is not None and len(agent.keys.keyring.keys) == 1
        assert agent.backpressure_diagnostics.latest is None
        assert (await client.get(BACKPRESSURE)).status_code == 204


async def test_an_unknown_key_operation_is_404(autojump_clock: trio.testing.MockClock) -> None:
    async with plane() as p:
        await p.add("a", keyring=Keyring([generate_key()]))
        unknown = await p.clients["a"].post(
            "/control/keys/rotate", json={"key": encode_key(generate_key())}, headers=AUTH
        )
        assert unknown.status_code == 404


async def test_a_backpressure_report_is_served_back(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with plane() as p:
        await p.add("a")
        client = p.clients["a"]
        busy = await client.post(
            "/omnirelay/control/backpressure", json={"pendingCount": 600}, headers=AUTH
        )
        assert busy.json() == {"isActive": True, "pendingCount": 600}
        doc = (await client.get("/omnirelay/control/backpressure")).json()
        assert doc["isActive"] is True and doc["pendingCount"] == 600
        assert doc["highWatermark"] == 512 and doc["observedAt"].endswith("Z")


async def test_key_rotation_over_the_mesh_and_a_partly_failed_operation_is_500(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    old, new = generate_key(), generate_key()
    async with plane() as p:
        a = await p.add("a", keyring=Keyring([old]), path=tmp_path / "a.json")
        b = await p.add("b", keyring=Keyring([old]))
        await formed(p, 2)
        client = p.clients["a"]
        listed = (await client.get("/control/keys", headers=AUTH)).json()
        assert listed == {"encrypted": True, "primary": encode_key(old), "keys": [encode_key(old)]}
        done = await client.post(
            "/control/keys/install", json={"key": encode_key(new)}, headers=AUTH
        )
        assert done.status_code == 200
        assert done.json() == {"op": "install", "members": 2, "succeeded": 2, "failed": {}}
        assert b.keys.keyring is not None and new in b.keys.keyring.keys
        saved = json.loads((tmp_path / "a.json").read_text())
        assert encode_key(new) in saved  # the file follows every change
        # A member without encryption refuses; the answer says who and why, with a 500.
        await p.add("c")
        await p.cluster.nodes["c"].join([("a", 7946)])
        await wait_for(lambda: len(a.node.alive_members()) == 3, timeout=30, what="c joined")
        partly = await client.post("/control/keys/use", json={"key": encode_key(new)}, headers=AUTH)
        assert partly.status_code == 500
        doc = partly.json()
        assert (doc["op"], doc["members"], doc["succeeded"]) == ("use", 3, 2)
        assert list(doc["failed"]) == ["c"] and "not enabled" in doc["failed"]["c"]
        assert a.keys.keyring is not None and a.keys.keyring.primary == new


async def test_leadership_routes_answer_503_without_a_coordinator(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with plane() as p:
        await p.add("a")
        client = p.clients["a"]
        for path in ("/control/leaders", "/control/events/leadership"):
            reply = await client.get(path)
            assert reply.status_code == 503, path
            assert reply.json() == {"error": "leadership is not running on this node"}


class _NoLeadershipHost:
    """Just enough of a host for the WebSocket route (the rest is never reached)."""

    coordinator = None
    control_token = None


async def test_the_leadership_websocket_closes_with_1013_without_a_coordinator() -> None:
    app = build_app(_NoLeadershipHost())  # type: ignore[arg-type]
    scope = {
        "type": "websocket",
        "asgi": {"version": "3.0"},
        "scheme": "ws",
        "path": "/control/events/leadership/ws",
        "raw_path": b"/control/events/leadership/ws",
        "query_string": b"",
        "headers": [],
        "subprotocols": [],
    }
    sent: list[dict[str, object]] = []

    async def receive() -> dict[str, object]:
        return {"type": "websocket.connect"}

    async def send(message: dict[str, object]) -> None:
        sent.append(message)

    with trio.fail_after(5):
        await app(scope, receive, send)
    assert sent == [
        {
            "type": "websocket.close",
            "code": 1013,
            "reason": "leadership is not running on this node",
        }
    ]


async def test_metrics_serve_the_node_and_peer_health_families(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with plane() as p:
        await p.add("a")
        reply = await p.clients["a"].get("/metrics")
        assert reply.status_code == 200 and reply.headers["content-type"].startswith("text/plain")
        assert "omnirelay_peer_lease_healthy" in reply.text
        assert "mesh_gossip_members" in reply.text


# -- the agent's --data-dir: peer snapshot and keyring file -------------------------------------


async def test_the_data_dir_snapshot_lists_alive_peers_and_survives_bad_files(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    async with plane() as p:
        a = await p.add("a")
        await p.add("b")
        await p.add("c")
        await formed(p, 3)
        a.settings.data_dir = str(tmp_path)
        a.save_snapshot()
        saved = json.loads((tmp_path / "peers.json").read_text())
        assert saved == {"node": "a", "peers": ["b:7946", "c:7946"]}
        assert a.load_snapshot() == ["b:7946", "c:7946"]
        (tmp_path / "peers.json").write_text('{"peers": ["no port here"]}')
        assert a.load_snapshot() == []  # unreadable: logged and ignored, never a crash
        (tmp_path / "peers.json").write_text("not json")
        assert a.load_snapshot() == []
        a.settings.data_dir = None
        a.save_snapshot()  # no data dir: nothing to write
        assert a.load_snapshot() == []


def test_a_new_keyring_file_is_written_from_key_and_then_is_the_truth(tmp_path: Path) -> None:
    from swimmesh.crypto import KeyringError
    from swimmesh.keys import keyring_path, open_keyring

    path = keyring_path(None, str(tmp_path))
    assert path == tmp_path / "keyring.json"
    assert keyring_path(str(tmp_path / "ring.json"), str(tmp_path)) == tmp_path / "ring.json"
    assert open_keyring(None, path) is None and not path.exists()
    old, new = generate_key(), generate_key()
    ring = open_keyring(encode_key(old), path)
    assert ring is not None and json.loads(path.read_text()) == [encode_key(old)]
    # The cluster rotated: the file now holds only the new key.
    Keyring([new]).save(path)
    with pytest.raises(KeyringError, match="is not in the keyring file") as refused:
        open_keyring(encode_key(old), path)
    assert "--install-key" in str(refused.value)
    assert json.loads(path.read_text()) == [encode_key(new)]  # untouched
    ring = open_keyring(None, path)  # no --key: the file's keys
    assert ring is not None and ring.keys == [new]
    ring = open_keyring(encode_key(new), path)  # a --key the file holds is fine
    assert ring is not None and ring.keys == [new]
    ring = open_keyring(encode_key(old), path, install_key=True)
    assert ring is not None and ring.primary == new and old in ring.keys
    assert set(json.loads(path.read_text())) == {encode_key(new), encode_key(old)}


async def test_an_unhealthy_report_steps_the_leader_down_and_peers_see_it(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    voters = ("a", "b", "c")
    async with plane() as p, AsyncExitStack() as stack:
        await elect(p, stack, voters, voters, tmp_path)

        def leaders() -> list[str]:
            return p.leaders("global-control")

        await wait_for(lambda: len(leaders()) == 1, timeout=30, what="a leader")
        (leader,) = leaders()
        client = p.clients[leader]
        assert (await client.post("/control/health", json={"healthy": False})).status_code == 401
        bad = await client.post("/control/health", json={"healthy": "no"}, headers=AUTH)
        assert bad.status_code == 400 and leaders() == [leader]
        reply = await client.post(
            "/control/health", json={"healthy": False, "reason": "disk full"}, headers=AUTH
        )
        assert reply.status_code == 200
        assert reply.json() == {"healthy": False, "reason": "disk full", "leading": []}
        await wait_for(
            lambda: len(leaders()) == 1 and leaders() != [leader], timeout=30, what="successor"
        )
        other = leaders()[0]

        async def peer_metadata() -> dict[str, Any]:
            doc = (await p.clients[other].get("/control/peers")).json()
            return next(x["metadata"] for x in doc["peers"] if x["nodeId"] == leader)

        with trio.fail_after(30):
            while (await peer_metadata())["labels"].get("leadership.healthy") != "false":
                await trio.sleep(0.1)
        await trio.sleep(10)  # an unhealthy node does not campaign again
        assert leader not in leaders()
        shown = (await client.get("/control/health")).json()
        assert shown["healthy"] is False and shown["reason"] == "disk full"
        again = await client.post("/control/health", json={"healthy": True}, headers=AUTH)
        assert again.status_code == 200 and again.json()["healthy"] is True
        for name in voters:
            await p.agents[name].coordinator.stop()


async def test_the_health_report_answers_503_without_a_coordinator(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with plane() as p:
        await p.add("a")
        client = p.clients["a"]
        assert (await client.get("/control/health")).status_code == 503
        reply = await client.post("/control/health", json={"healthy": False}, headers=AUTH)
        assert reply.status_code == 503


async def test_voters_are_added_and_removed_one_at_a_time_with_the_gap(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    names, voters = ("a", "b", "c", "d"), ("a", "b", "c")
    async with plane() as p, AsyncExitStack() as stack:
        stores = await elect(
            p, stack, names, voters, tmp_path, lease_duration=4.0, renewal_lead_time=1.5
        )

        def leaders() -> list[str]:
            return p.leaders("global-control")

        await wait_for(lambda: len(leaders()) == 1, timeout=30, what="a leader")
        term = p.agents[leaders()[0]].coordinator.election("global-control").token.term
        client = p.clients["d"]
        shown = (await client.get("/control/voters")).json()
        assert shown["epoch"] == 1 and shown["voters"] == list(voters)
        assert shown["local"]["granting"] is False  # d keeps a voter, outside the set for now
        assert "not a member" in shown["local"]["reason"]
        voting = (await p.clients["a"].get("/control/voters")).json()["local"]
        assert voting == {"granting": True, "reason": "", "remaining": 0.0}
        assert (await client.post("/control/voters/add", json={"node": "e"})).status_code == 401
        bad = await client.post("/control/voters/add", json={"nodes": "e"}, headers=AUTH)
        assert bad.status_code == 400
        assert (
            await client.post("/control/voters/swap", json={"node": "e"}, headers=AUTH)
        ).status_code == 404
        added = await client.post("/control/voters/add", json={"node": "d"}, headers=AUTH)
        assert added.status_code == 200, added.text
        assert added.json() == {"epoch": 2, "voters": ["a", "b", "c", "d"]}
        assert stores["d"].voter.promised("global-control") >= term  # inherited
        too_soon = await client.post("/control/voters/remove", json={"node": "c"}, headers=AUTH)
        assert too_soon.status_code == 409 and "committed too recently" in too_soon.json()["error"]
        await trio.sleep(4.0 * 1.05 / 0.95 + 1)
        removed = await client.post("/control/voters/remove", json={"node": "c"}, headers=AUTH)
        assert removed.status_code == 200, removed.text
        assert removed.json() == {"epoch": 3, "voters": ["a", "b", "d"]}
        shown = await p.clients["a"].get("/control/voters")
        assert shown.json()["epoch"] == 3
        assert not stores["c"].voter.in_config()
        # elections go on under the new voters: a graceful stop hands over
        leader = leaders()[0]
        await p.agents[leader].coordinator.stop()
        await wait_for(
            lambda: len(leaders()) == 1 and leaders() != [leader], timeout=30, what="successor"
        )
        for name in names:
            await p.agents[name].coordinator.stop()


async def test_the_voter_routes_answer_503_without_elections(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with plane() as p:
        await p.add("a")
        assert (await p.clients["a"].get("/control/voters")).status_code == 503
        reply = await p.clients["a"].post("/control/voters/add", json={"node": "b"}, headers=AUTH)
        assert reply.status_code == 503
