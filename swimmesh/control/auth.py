"""The bearer-token guard of the mutating endpoints."""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

Handler = Callable[[Request], Awaitable[Response]]
Guard = Callable[[Handler], Handler]


def bearer_guard(token_of: Callable[[], str | None]) -> Guard:
    """Wrap handlers so they run only with ``Authorization: Bearer <token>``: 403 when no token
    is configured (mutations are off), 401 when the header is missing or wrong."""

    def guard(handler: Handler) -> Handler:
        async def check(request: Request) -> Response:
            token = token_of()
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

    return guard
