"""Leadership on the control plane: OmniRelay's ``/control/leaders`` and the event streams.

``leadership_routes(coordinator_of)`` gives Starlette routes for any app that runs a
:class:`leadership.LeadershipCoordinator` (the agent mounts them once it runs elections):

- ``GET /control/leaders[?scope=]``: ``{"generatedAt", "tokens": [...]}`` (scope exact, any case);
- ``GET /control/events/leadership[?scope=]``: Server-Sent Events, ``id:`` the hub's sequence,
  ``event:`` the kind, ``data:`` the event JSON; ``Last-Event-ID`` (or ``?lastEventId=``) resumes
  with no gap, or with an explicit ``gap`` event when the history no longer reaches back;
- ``GET /control/events/leadership/ws[?scope=&lastEventId=]``: the same events over a WebSocket.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime

import trio
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from leadership import LeadershipCoordinator, LeadershipEvent, Subscription, event_json, token_json
from peerhealth.timefmt import rfc3339

CoordinatorOf = Callable[[], LeadershipCoordinator | None]
KEEPALIVE = 15.0
"""Seconds between SSE comments on an idle stream (keeps proxies from closing it)."""


def sse_frame(event: LeadershipEvent) -> str:
    data = json.dumps(event_json(event), separators=(",", ":"))
    return f"id: {event.sequence}\nevent: {event.kind.value}\ndata: {data}\n\n"


def _resume_from(raw: str | None) -> int | None:
    if raw is None or not raw.strip():
        return None
    try:
        value = int(raw.strip())
    except ValueError:
        return None  # a malformed id: start over with a snapshot rather than fail
    return max(value, 0)


def leadership_routes(coordinator_of: CoordinatorOf) -> list[BaseRoute]:
    def unavailable() -> Response:
        return JSONResponse({"error": "leadership is not running on this node"}, 503)

    def subscribe(
        coordinator: LeadershipCoordinator, scope: str, after: int | None
    ) -> Subscription:
        return coordinator.hub.subscribe(scope or "*", after_sequence=after)

    async def leaders(request: Request) -> Response:
        coordinator = coordinator_of()
        if coordinator is None:
            return unavailable()
        scope = request.query_params.get("scope")
        tokens = coordinator.hub.tokens(scope) if scope else coordinator.hub.tokens()
        return JSONResponse(
            {"generatedAt": rfc3339(datetime.now(UTC)), "tokens": [token_json(t) for t in tokens]}
        )

    async def events(request: Request) -> Response:
        coordinator = coordinator_of()
        if coordinator is None:
            return unavailable()
        after = _resume_from(
            request.headers.get("last-event-id") or request.query_params.get("lastEventId")
        )
        subscription = subscribe(coordinator, request.query_params.get("scope", ""), after)

        async def frames() -> AsyncIterator[str]:
            yield ": leadership events\n\n"
            while True:
                event = None
                with trio.move_on_after(KEEPALIVE):
                    event = await subscription.__anext__()
                yield ": keep-alive\n\n" if event is None else sse_frame(event)

        return StreamingResponse(
            frames(),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    async def events_ws(websocket: WebSocket) -> None:
        coordinator = coordinator_of()
        if coordinator is None:
            await websocket.close(code=1013, reason="leadership is not running on this node")
            return
        await websocket.accept()
        params = websocket.query_params
        subscription = subscribe(
            coordinator, params.get("scope", ""), _resume_from(params.get("lastEventId"))
        )

        async def send(cancel: trio.CancelScope) -> None:
            try:
                async for event in subscription:
                    await websocket.send_text(json.dumps(event_json(event), separators=(",", ":")))
            except WebSocketDisconnect:
                pass
            cancel.cancel()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(send, nursery.cancel_scope)
            try:  # the client says nothing; this notices when it goes away
                while True:
                    await websocket.receive_text()
            except WebSocketDisconnect:
                nursery.cancel_scope.cancel()

    return [
        Route("/control/leaders", leaders),
        Route("/control/events/leadership", events),
        WebSocketRoute("/control/events/leadership/ws", events_ws),
    ]
