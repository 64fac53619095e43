"""What the sans-IO core asks its driver to do."""

from __future__ import annotations

import attrs

from ..events import MemberEvent
from ..member import Address
from ..messages import StreamMessage


@attrs.frozen
class SendPacket:
    """Send this datagram (already encoded, before encryption) to ``address``."""

    address: Address
    data: bytes


@attrs.frozen
class StartStream:
    """Open a stream request; report the outcome with ``stream_reply(request_id, ...)``."""

    request_id: int
    address: Address
    message: StreamMessage
    timeout: float


@attrs.frozen
class EmitEvent:
    event: MemberEvent


@attrs.frozen
class DeliverUser:
    """An overlay datagram for the handler registered for ``kind``."""

    kind: str
    payload: bytes
    source: Address


Output = SendPacket | StartStream | EmitEvent | DeliverUser
