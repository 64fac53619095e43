"""Membership and process routes: ``/control/peers`` (and OmniRelay's alias), ``/metrics``,
``/healthz``, ``/readyz`` and ``POST /control/leave``."""

from __future__ import annotations

import time
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from peerhealth.timefmt import rfc3339

from ..member import Member
from .auth import Guard
from .host import ControlHost

_WELL_KNOWN = ("role", "clusterId", "region", "meshVersion")


def peer_json(member: Member, mono_now: float, wall_now: float, local: bool) -> dict[str, Any]:
    """One peer in OmniRelay's ``/control/peers`` shape (plus ``incarnation`` and ``address``);
    ``lastSeen`` maps the member's monotonic timestamp onto the wall clock (now for ourselves)."""
    md = dict(member.metadata)
    seen = (
        mono_now
        if local
        else (member.last_seen if member.last_seen is not None else member.last_change)
    )
    host, port = member.address
    labels = {k.removeprefix("label."): v for k, v in md.items() if k not in _WELL_KNOWN}
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


def mesh_routes(host: ControlHost, guard: Guard) -> list[BaseRoute]:
    async def peers(request: Request) -> Response:
        mono, wall = host.clock_now(), time.time()
        members = sorted(host.members(), key=lambda m: m.name)
        return JSONResponse(
            {
                "schemaVersion": "v1",
                "generatedAt": rfc3339(wall),
                "localNodeId": host.name,
                "peers": [peer_json(m, mono, wall, m.name == host.name) for m in members],
            }
        )

    async def metrics(request: Request) -> Response:
        return Response(generate_latest(host.registry), media_type=CONTENT_TYPE_LATEST)

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok", "node": host.name})

    async def readyz(request: Request) -> Response:
        ready, why = host.readiness()
        return JSONResponse({"ready": ready, "reason": why}, 200 if ready else 503)

    async def leave(request: Request) -> Response:
        host.request_shutdown("leave requested over the control plane")
        return JSONResponse({"leaving": True}, 202)

    return [
        Route("/control/peers", peers),
        Route("/omnirelay/control/peers", peers),
        Route("/metrics", metrics),
        Route("/healthz", healthz),
        Route("/readyz", readyz),
        Route("/control/leave", guard(leave), methods=["POST"]),
    ]
