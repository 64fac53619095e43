"""The transport a node runs on: datagrams for probes and gossip, a stream channel for
push-pull and overlay request/response."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Protocol, runtime_checkable

from ..errors import SwimmeshError
from ..member import Address

StreamHandler = Callable[[Address, bytes], Awaitable[bytes]]
"""Serves one stream request: ``(source, request bytes) -> reply bytes``."""


class TransportError(SwimmeshError):
    """A stream request that could not be delivered or answered."""


class Transport(Protocol):
    @property
    def local_address(self) -> Address: ...

    @property
    def packet_overhead(self) -> int:
        """Bytes this transport adds to every datagram (0 for plain ones; a sealing transport
        its header and tag), so the core can keep what goes on the wire within
        ``udp_buffer_size``."""
        ...

    async def send(self, address: Address, data: bytes) -> None:
        """Send one datagram; loss is silent, as with UDP."""
        ...

    async def receive(self) -> tuple[Address, bytes]:
        """Wait for the next datagram."""
        ...

    def serve_streams(self, handler: StreamHandler) -> None:
        """Answer incoming stream requests with ``handler``."""
        ...

    async def request(self, address: Address, data: bytes) -> bytes:
        """Send a request over the stream channel and wait for the reply. The caller bounds
        the wait with a cancel scope; failures raise :class:`TransportError`."""
        ...

    async def aclose(self) -> None: ...


@runtime_checkable
class DrivenTransport(Transport, Protocol):
    """A transport that pushes to its node instead of being read: it calls the node back for
    each datagram and when its timer is due, from a task of its own, and its sends never
    block (the in-memory network; see :meth:`MemoryTransport.drive`)."""

    def drive(
        self,
        on_datagram: Callable[[Address, bytes], None],
        on_timer: Callable[[], None],
        on_failure: Callable[[BaseException], None],
    ) -> None: ...

    def arm(self, at: float) -> None:
        """Call ``on_timer`` at Trio time ``at`` (``inf``: never), replacing any earlier
        arming."""
        ...

    def send_nowait(self, address: Address, data: bytes) -> None: ...
