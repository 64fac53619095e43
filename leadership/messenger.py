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

ToldHandler = Callable[[str, bytes], None]
"""``handler(sender_node_id, payload)`` for one-way messages: no reply, nothing to wait for."""


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

    def serve_told(self, kind: str, handler: ToldHandler) -> None:
        """Take one-way messages of ``kind`` with ``handler``, told or asked (a request of
        ``kind`` gets an empty reply once ``handler`` has it: for a sender that must know)."""
        ...

    async def tell(self, node_id: str, kind: str, payload: bytes, *, timeout: float) -> None:
        """Send ``node_id`` a one-way message, best effort: it may be lost, and nothing says
        whether it arrived (a datagram where it fits, which costs neither side a reply); raise
        :class:`MessengerError` only for a peer it cannot even address, or a send that could
        not complete within ``timeout``."""
        ...
