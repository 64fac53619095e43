"""Starlette application of the control plane (served by hypercorn on Trio).

Reads are open (the plane binds to loopback by default); mutating endpoints need
``Authorization: Bearer <control token>`` and are refused when no token is configured. Each
group of routes lives in its own module and reaches the node only through :class:`ControlHost`.
"""

from __future__ import annotations

from starlette.applications import Starlette

from .auth import bearer_guard
from .health import health_routes
from .host import ControlHost
from .keys import key_routes
from .leadership import leadership_routes
from .mesh import mesh_routes
from .service_health import service_health_routes
from .voters import voter_routes


def build_app(host: ControlHost) -> Starlette:
    guard = bearer_guard(lambda: host.control_token)
    return Starlette(
        routes=[
            *leadership_routes(lambda: host.coordinator),
            *service_health_routes(lambda: host.coordinator, guard),
            *voter_routes(lambda: host.voter_admin, guard),
            *health_routes(host, guard),
            *mesh_routes(host, guard),
            *key_routes(host, guard),
        ]
    )
