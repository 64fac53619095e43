"""``GET /control/keys`` and ``POST /control/keys/{install,use,remove}`` (both guarded)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from ..crypto import KeyringError, decode_key
from ..keys import KEY_OPS
from .auth import Guard
from .host import ControlHost


def key_routes(host: ControlHost, guard: Guard) -> list[BaseRoute]:
    async def keys_list(request: Request) -> Response:
        return JSONResponse(host.keys.keys_json())

    async def key_op(request: Request) -> Response:
        op = request.path_params["op"]
        if op not in KEY_OPS:
            return JSONResponse({"error": f"unknown key operation {op!r}"}, 404)
        try:
            body = await request.json()
            key = decode_key(str(body["key"]))
        except (ValueError, KeyError, TypeError, KeyringError) as exc:
            return JSONResponse({"error": f'body must be {{"key": "<base64>"}}: {exc}'}, 400)
        result = await host.keys.cluster_op(op, key)
        return JSONResponse(result, 200 if not result["failed"] else 500)

    return [
        Route("/control/keys", guard(keys_list)),
        Route("/control/keys/{op:str}", guard(key_op), methods=["POST"]),
    ]
