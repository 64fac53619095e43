"""``/control/voters``: the voter set of the quorum lease store, and changing it.

``GET`` answers ``{"epoch", "voters", "local"}``: the newest configuration this node knows, and
whether this node's own voter grants now (``null`` on a node that is no voter): a voter that
restarted sits out one lease, so a majority of voters may be up and still grant nothing.
``POST /control/voters/add`` and ``/control/voters/remove`` (bearer token) with
``{"node": "<node id>"}`` run one change from this node: one member more or less, prepared at a
majority of the current voters, committed at a majority of the new ones. 409 with the voters'
reasons when they refuse (a change too soon after the last one says how long to wait); 503
while the agent runs no elections.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from leadership.quorum import VoterConfig, VoterConfigError, VoterStatus

from .auth import Guard


class VoterAdmin(Protocol):
    def voter_config(self) -> VoterConfig: ...

    def voting(self) -> VoterStatus | None: ...

    async def change_voters(self, new: VoterConfig, *, timeout: float = 10.0) -> VoterConfig: ...


def config_json(config: VoterConfig) -> dict[str, object]:
    return {"epoch": config.epoch, "voters": sorted(config.voters)}


def status_json(status: VoterStatus | None) -> dict[str, object] | None:
    if status is None:
        return None
    return {
        "granting": status.granting,
        "reason": status.reason,
        "remaining": round(status.remaining, 3),
    }


def voter_routes(admin: Callable[[], VoterAdmin | None], guard: Guard) -> list[BaseRoute]:
    """Routes over ``admin()``: the node's :class:`VoterAdmin`, or None without elections."""

    def unavailable() -> Response:
        return JSONResponse(
            {
                "error": "no voters on this node: leadership is not running, or runs without "
                'voters (quorum = "none")'
            },
            503,
        )

    async def show(request: Request) -> Response:
        store = admin()
        if store is None:
            return unavailable()
        doc = config_json(store.voter_config())
        doc["local"] = status_json(store.voting())
        return JSONResponse(doc)

    async def change(request: Request) -> Response:
        store = admin()
        if store is None:
            return unavailable()
        op = request.path_params["op"]
        if op not in ("add", "remove"):
            return JSONResponse({"error": f"unknown operation {op!r}: add or remove"}, 404)
        try:
            body = await request.json()
            node = body["node"]
            if not isinstance(node, str) or not node.strip():
                raise ValueError("node must be a non-empty node id")
        except (ValueError, KeyError, TypeError) as exc:
            return JSONResponse({"error": f'body must be {{"node": "<node id>"}}: {exc}'}, 400)
        current = store.voter_config()
        try:
            new = current.with_added(node) if op == "add" else current.with_removed(node)
            done = await store.change_voters(new, timeout=8.0)  # within the CLI's 10 s
        except VoterConfigError as exc:
            return JSONResponse({"error": str(exc), **config_json(current)}, 409)
        return JSONResponse(config_json(done))

    return [
        Route("/control/voters", show, methods=["GET"]),
        Route("/control/voters/{op}", guard(change), methods=["POST"]),
    ]
