"""``/control/health``: the service beside the agent says whether it is fit to lead.

``GET`` answers ``{"healthy", "reason", "leading": [scope ids]}``; ``POST`` (bearer token)
with ``{"healthy": false, "reason": "..."}`` makes this node step down from every scope it leads,
releasing the leases so the next candidate takes over at once, and stop campaigning until a
``{"healthy": true}``. The state travels in gossip metadata (``leadership.healthy``), so
``/control/peers`` shows it on every node. 503 while the agent runs no elections.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from .auth import Guard
from .leadership import CoordinatorOf

MAX_REASON = 256


def _report(body: Any) -> tuple[bool, str]:
    if not isinstance(body, dict) or not isinstance(body.get("healthy"), bool):
        raise ValueError('body must be {"healthy": true|false, "reason": "..."}')
    reason = body.get("reason", "")
    if not isinstance(reason, str) or len(reason) > MAX_REASON:
        raise ValueError(f"reason must be a string of at most {MAX_REASON} characters")
    return body["healthy"], reason


def service_health_routes(coordinator_of: CoordinatorOf, guard: Guard) -> list[BaseRoute]:
    reasons: dict[str, str] = {"reason": ""}

    def unavailable() -> Response:
        return JSONResponse({"error": "leadership is not running on this node"}, 503)

    def state() -> dict[str, Any]:
        coordinator = coordinator_of()
        assert coordinator is not None
        leading = [s.scope_id for s in coordinator.scopes if coordinator.is_leader(s.scope_id)]
        return {"healthy": coordinator.healthy, "reason": reasons["reason"], "leading": leading}

    async def read(request: Request) -> Response:
        if coordinator_of() is None:
            return unavailable()
        return JSONResponse(state())

    async def report(request: Request) -> Response:
        coordinator = coordinator_of()
        if coordinator is None:
            return unavailable()
        try:
            healthy, reason = _report(await request.json())
        except ValueError as exc:  # includes a body that is not JSON
            return JSONResponse({"error": str(exc)}, 400)
        reasons["reason"] = reason
        await coordinator.update_health(healthy, {"reason": reason} if reason else None)
        return JSONResponse(state())

    return [
        Route("/control/health", read, methods=["GET"]),
        Route("/control/health", guard(report), methods=["POST"]),
    ]
