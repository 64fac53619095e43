"""Peer health routes: ``/omnirelay/control/lease-health`` and the backpressure signal (read,
report with the token, and an NDJSON stream)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Route

from peerhealth import BackpressureSignal, LeaseHealthRenderer, merge_snapshots
from peerhealth.timefmt import rfc3339

from .auth import Guard
from .host import ControlHost


def signal_json(signal: BackpressureSignal) -> dict[str, Any]:
    return {
        "isActive": signal.is_active,
        "pendingCount": signal.pending_count,
        "observedAt": rfc3339(signal.observed_at),
        "highWatermark": signal.high_watermark,
        "lowWatermark": signal.low_watermark,
    }


def _pending_count(body: Any) -> int:
    depth = body["pendingCount"]
    if isinstance(depth, bool) or not isinstance(depth, int) or depth < 0:
        raise ValueError("pendingCount must be a non-negative integer")
    return depth


def health_routes(host: ControlHost, guard: Guard) -> list[BaseRoute]:
    renderer = LeaseHealthRenderer()  # caches each unchanged peer's JSON between requests

    async def lease_health(request: Request) -> Response:
        snapshot = merge_snapshots(host.health_providers)
        return Response(renderer.render(snapshot), media_type="application/json")

    async def backpressure(request: Request) -> Response:
        latest = host.backpressure_diagnostics.latest
        if latest is None:
            return Response(status_code=204)
        return JSONResponse(signal_json(latest))

    async def backpressure_report(request: Request) -> Response:
        try:
            depth = _pending_count(await request.json())
        except (ValueError, KeyError, TypeError) as exc:
            return JSONResponse({"error": f'body must be {{"pendingCount": n}}: {exc}'}, 400)
        host.backpressure.observe(depth)
        return JSONResponse({"isActive": host.backpressure.is_active, "pendingCount": depth})

    async def backpressure_stream(request: Request) -> Response:
        diagnostics = host.backpressure_diagnostics

        async def lines() -> AsyncIterator[str]:
            if diagnostics.latest is not None:
                yield json.dumps(signal_json(diagnostics.latest)) + "\n"
            while True:
                yield json.dumps(signal_json(await diagnostics.next_signal())) + "\n"

        return StreamingResponse(lines(), media_type="application/x-ndjson")

    return [
        Route("/omnirelay/control/lease-health", lease_health),
        Route("/omnirelay/control/backpressure", backpressure),
        Route("/omnirelay/control/backpressure", guard(backpressure_report), methods=["POST"]),
        Route("/omnirelay/control/backpressure/stream", backpressure_stream),
    ]
