"""Starlette application of the control plane (served by hypercorn on Trio).

Reads are open (the plane binds to loopback by default); mutating endpoints need
``Authorization: Bearer <control token>`` and are refused when no token is configured.
"""

from __future__ import annotations

import hmac
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from peerhealth import BackpressureSignal, merge_snapshots

from ..crypto import KeyringError, decode_key
from ..member import Member
from .leadership import leadership_routes

if TYPE_CHECKING:
    from ..agent import Agent

Handler = Callable[[Request], Awaitable[Response]]


def rfc3339(wall: float) -> str:
    return (
        datetime.fromtimestamp(wall, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    )


def peer_json(member: Member, mono_now: float, wall_now: float, local: bool) -> dict[str, Any]:
    """One peer in OmniRelay's ``/control/peers`` shape (plus ``incarnation`` and ``address``)."""
    md = dict(member.metadata)
    seen = (
        mono_now
        if local
        else (member.last_seen if member.last_seen is not None else member.last_change)
    )
    host, port = member.address
    labels = {
        k.removeprefix("label."): v
        for k, v in md.items()
        if k not in ("role", "clusterId", "region", "meshVersion")
    }
    return {
        "nodeId": member.name,
        "status": member.status.label,
        "incarnation": member.incarnation,
        "address": f"{host}:{port}",
        "lastSeen": rfc3339(wall_now - (mono_now - seen)),
        "rttMs": None if member.rtt_ms is None else round(member.rtt_ms, 3),
        "metadata": {
            "role": md.get("role"),
            "clusterId": md.get("clusterId"),
            "region": md.get("region"),
            "meshVersion": md.get("meshVersion"),
            "endpoint": f"{host}:{port}",
            "metadataVersion": member.meta_version,
            "labels": labels,
        },
    }


def signal_json(signal: BackpressureSignal) -> dict[str, Any]:
    return {
        "isActive": signal.is_active,
        "pendingCount": signal.pending_count,
        "observedAt": rfc3339(signal.observed_at.timestamp()),
        "highWatermark": signal.high_watermark,
        "lowWatermark": signal.low_watermark,
    }


def build_app(agent: Agent) -> Starlette:
    def guarded(handler: Handler) -> Handler:
        async def check(request: Request) -> Response:
            token = agent.control_token
            if not token:
                return JSONResponse(
                    {"error": "mutating endpoints are disabled: no control token is configured"},
                    403,
                )
            given = request.headers.get("authorization", "")
            if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
                return JSONResponse({"error": "missing or wrong bearer token"}, 401)
            return await handler(request)

        return check

    async def peers(request: Request) -> Response:
        node = agent.node
        mono, wall = agent.clock_now(), time.time()
        members = sorted(node.members(), key=lambda m: m.name)
        return JSONResponse(
            {
                "schemaVersion": "v1",
                "generatedAt": rfc3339(wall),
                "localNodeId": node.name,
                "peers": [peer_json(m, mono, wall, m.name == node.name) for m in members],
            }
        )

    async def metrics(request: Request) -> Response:
        return Response(generate_latest(agent.registry), media_type=CONTENT_TYPE_LATEST)

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok", "node": agent.node.name})

    async def readyz(request: Request) -> Response:
        ready, why = agent.readiness()
        return JSONResponse({"ready": ready, "reason": why}, 200 if ready else 503)

    async def leave(request: Request) -> Response:
        agent.request_shutdown("leave requested over the control plane")
        return JSONResponse({"leaving": True}, 202)

    async def keys_list(request: Request) -> Response:
        return JSONResponse(agent.keys_json())

    async def key_op(request: Request) -> Response:
        op = request.path_params["op"]
        if op not in ("install", "use", "remove"):
            return JSONResponse({"error": f"unknown key operation {op!r}"}, 404)
        try:
            body = await request.json()
            key = decode_key(str(body["key"]))
        except (ValueError, KeyError, TypeError, KeyringError) as exc:
            return JSONResponse({"error": f'body must be {{"key": "<base64>"}}: {exc}'}, 400)
        result = await agent.cluster_key_op(op, key)
        return JSONResponse(result, 200 if not result["failed"] else 500)

    async def lease_health(request: Request) -> Response:
        snapshot = merge_snapshots(agent.health_providers)
        body = agent.lease_health_renderer.render(snapshot)
        return Response(body, media_type="application/json")

    async def backpressure(request: Request) -> Response:
        latest = agent.backpressure_diagnostics.latest
        if latest is None:
            return Response(status_code=204)
        return JSONResponse(signal_json(latest))

    async def backpressure_report(request: Request) -> Response:
        try:
            body = await request.json()
            depth = body["pendingCount"]
            if isinstance(depth, bool) or not isinstance(depth, int) or depth < 0:
                raise ValueError("pendingCount must be a non-negative integer")
        except (ValueError, KeyError, TypeError) as exc:
            return JSONResponse({"error": f'body must be {{"pendingCount": n}}: {exc}'}, 400)
        agent.backpressure.observe(depth)
        return JSONResponse({"isActive": agent.backpressure.is_active, "pendingCount": depth})

    async def backpressure_stream(request: Request) -> Response:
        diagnostics = agent.backpressure_diagnostics

        async def lines() -> AsyncIterator[str]:
            if diagnostics.latest is not None:
                yield json.dumps(signal_json(diagnostics.latest)) + "\n"
            while True:
                yield json.dumps(signal_json(await diagnostics.next_signal())) + "\n"

        return StreamingResponse(lines(), media_type="application/x-ndjson")

    routes = [
        *leadership_routes(lambda: agent.coordinator),
        Route("/omnirelay/control/lease-health", lease_health),
        Route("/omnirelay/control/backpressure", backpressure),
        Route("/omnirelay/control/backpressure", guarded(backpressure_report), methods=["POST"]),
        Route("/omnirelay/control/backpressure/stream", backpressure_stream),
        Route("/control/peers", peers),
        Route("/omnirelay/control/peers", peers),
        Route("/metrics", metrics),
        Route("/healthz", healthz),
        Route("/readyz", readyz),
        Route("/control/leave", guarded(leave), methods=["POST"]),
        Route("/control/keys", guarded(keys_list)),
        Route("/control/keys/{op:str}", guarded(key_op), methods=["POST"]),
    ]
    return Starlette(routes=routes)
