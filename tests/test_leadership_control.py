"""Leadership on the control plane, over real HTTP on 127.0.0.1 (hypercorn on Trio)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from typing import Any

import httpx
import pytest
import trio
from hypercorn.config import Config as HypercornConfig
from hypercorn.trio import serve
from starlette.applications import Starlette
from trio_websocket import open_websocket_url

from leadership import InMemoryLeaseStore, LeadershipConfig, LeadershipCoordinator
from leadership.testing import CoordinatorGroup, LocalMesh
from swimmesh.cli import main
from swimmesh.control.leadership import leadership_routes
from swimmesh.testing import wait_for

FAST = {
    "leaseDuration": "2s",
    "renewalLeadTime": "1s",
    "evaluationInterval": "100ms",
    "electionBackoff": "100ms",
    "shards": [{"namespace": "t", "shards": ["0", "1"]}],
    "scopes": [{"scopeId": "global-control"}],
}


@asynccontextmanager
async def served(
    observer: str | None = "n1",
) -> AsyncIterator[tuple[str, CoordinatorGroup]]:
    """Three coordinators in real time; the routes serve ``observer``'s view."""
    async with trio.open_nursery() as nursery:

        def config(name: str) -> LeadershipConfig:
            return LeadershipConfig.from_mapping({**FAST, "nodeId": name})

        group = CoordinatorGroup(nursery, InMemoryLeaseStore(), LocalMesh(), config)
        for name in ("n1", "n2", "n3"):
            await group.start(name)

        def coordinator_of() -> LeadershipCoordinator | None:
            return group.coordinators.get(observer) if observer else None

        hc = HypercornConfig()
        hc.bind = ["127.0.0.1:0"]
        hc.accesslog = None
        stop = trio.Event()
        app = Starlette(routes=leadership_routes(coordinator_of))
        binds = await nursery.start(partial(serve, app, hc, shutdown_trigger=stop.wait))
        await wait_for(
            lambda: all(group.leaders(s) for s in ("global-control", "shard/t/0", "shard/t/1")),
            timeout=10,
        )
        try:
            yield binds[0], group
        finally:
            stop.set()
            nursery.cancel_scope.cancel()


async def sse_frames(response: httpx.Response) -> AsyncIterator[dict[str, Any]]:
    frame: dict[str, Any] = {}
    async for line in response.aiter_lines():
        if not line:
            if "data" in frame:
                yield frame
            frame = {}
        elif line.startswith(":"):
            continue
        else:
            field, _, value = line.partition(":")
            frame[field] = json.loads(value) if field == "data" else value.strip()


async def test_leaders_json_and_the_sse_stream_with_resume() -> None:
    async with served() as (url, group), httpx.AsyncClient(base_url=url, timeout=10) as client:
        doc = (await client.get("/control/leaders")).json()
        assert sorted(t["scope"] for t in doc["tokens"]) == [
            "global-control",
            "shard/t/0",
            "shard/t/1",
        ]
        one = (await client.get("/control/leaders", params={"scope": "GLOBAL-CONTROL"})).json()
        leader = group.leaders("global-control")[0]
        assert [(t["leaderId"], t["scopeKind"]) for t in one["tokens"]] == [(leader, "global")]

        seen: list[dict[str, Any]] = []
        async with client.stream(
            "GET", "/control/events/leadership", params={"scope": "global-control"}
        ) as response:
            assert response.headers["content-type"].startswith("text/event-stream")
            frames = sse_frames(response)
            with trio.fail_after(10):
                snapshot = await frames.__anext__()
            assert snapshot["event"] == "snapshot"
            assert snapshot["data"]["token"]["leaderId"] == leader
            assert int(snapshot["id"]) == snapshot["data"]["sequence"]
            if leader != "n1":  # the served node sees the leader leave, then its successor
                await group.stop(leader)
            else:
                await group.coordinators["n1"].update_health(False)
            with trio.fail_after(30):
                async for frame in frames:
                    seen.append(frame)
                    assert frame["event"] == frame["data"]["eventKind"]
                    if (
                        frame["event"] in ("elected", "observed")
                        and frame["data"]["leaderId"] != leader
                    ):
                        break
        assert seen[0]["event"] == "steppedDown"
        # Resuming after the first of those events replays the rest, with no snapshot and no gap.
        async with client.stream(
            "GET", "/control/events/leadership", headers={"Last-Event-ID": seen[0]["id"]}
        ) as response:
            frames = sse_frames(response)
            with trio.fail_after(10):
                replayed = await frames.__anext__()
            assert int(replayed["id"]) == int(seen[0]["id"]) + 1
            assert replayed["event"] not in ("snapshot", "gap")


async def test_the_websocket_stream_and_an_absent_coordinator() -> None:
    async with served() as (url, _):
        ws_url = url.replace("http://", "ws://") + "/control/events/leadership/ws?scope=shard/*"
        async with open_websocket_url(ws_url) as ws:
            with trio.fail_after(10):
                first = json.loads(await ws.get_message())
                second = json.loads(await ws.get_message())
        assert {first["scope"], second["scope"]} == {"shard/t/0", "shard/t/1"}
        assert first["eventKind"] == "snapshot"
    async with served(observer=None) as (url, _), httpx.AsyncClient(base_url=url) as client:
        response = await client.get("/control/leaders")
        assert response.status_code == 503 and "not running" in response.json()["error"]


async def test_mesh_leaders_status_prints_the_snapshot_and_watches(
    capsys: pytest.CaptureFixture[str],
) -> None:
    async with served() as (url, group):
        code = await trio.to_thread.run_sync(main, ["mesh", "leaders", "status", "--url", url])
        out = capsys.readouterr().out.splitlines()
        assert code == 0 and out[0].startswith("Generated at: ")
        assert out[2].split() == ["Scope", "Leader", "Term", "Fence", "Expires", "(UTC)", "Kind"]
        leader = group.leaders("global-control")[0]
        assert out[3].split()[:4] == ["global-control", leader, "1", "1"]
        code = await trio.to_thread.run_sync(
            main,
            ["mesh", "leaders", "status", "--url", url, "--scope", "shard/t/0", "--format", "json"],
        )
        doc = json.loads(capsys.readouterr().out)
        assert code == 0 and [t["scope"] for t in doc["tokens"]] == ["shard/t/0"]

        # --watch in a process of its own: the banner, then one line per event.
        proc = await trio.lowlevel.open_process(
            [
                sys.executable,
                "-m",
                "swimmesh",
                "mesh",
                "leaders",
                "status",
                "--url",
                url,
                "--watch",
                "--timeout",
                "2s",
            ],
            stdout=subprocess.PIPE,
        )
        text = b""
        try:
            assert proc.stdout is not None
            with trio.fail_after(30):
                while text.count(b"SNAPSHOT") < 3:
                    chunk = await proc.stdout.receive_some()
                    assert chunk, text
                    text += chunk
        finally:
            proc.kill()
            with trio.fail_after(10):
                await proc.wait()
        lines = text.decode().splitlines()
        assert (
            lines[0] == f"Streaming leadership events from {url} (scope=*). Press Ctrl+C to exit."
        )
        first = lines[1].split()
        assert first[0].startswith("[") and first[1] == "SNAPSHOT" and first[2].startswith("scope=")
        assert first[-1] == "reason=snapshot"
    async with served(observer=None) as (url, _):
        code = await trio.to_thread.run_sync(main, ["mesh", "leaders", "status", "--url", url])
        assert code == 1
