"""The peer messenger: request/response between nodes by name, as a protocol of its own.

The quorum lease store (next release) asks voters through it. ``swimmesh.leadership_view
.MeshMessenger`` carries it over a mesh node's encrypted stream channel;
``leadership.testing.LocalMesh.messenger`` connects nodes of one process.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Protocol

RequestHandler = Callable[[str, bytes], Awaitable[bytes]]
"""``await handler(sender_node_id, payload) -> reply``; an exception is the requester's
:class:`MessengerError`."""


class MessengerError(Exception):
    """A request that got no reply: unknown or unreachable peer, timeout, or a handler error."""


class PeerMessenger(Protocol):
    @property
    def local_id(self) -> str: ...

    def serve(self, kind: str, handler: RequestHandler) -> None:
        """Answer requests of ``kind`` with ``handler``."""
        ...

    async def request(self, node_id: str, kind: str, payload: bytes, *, timeout: float) -> bytes:
        """Ask ``node_id``; raise :class:`MessengerError` if no reply comes within ``timeout``."""
        ...
