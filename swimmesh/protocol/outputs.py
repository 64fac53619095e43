"""What the sans-IO core asks its driver to do."""

from __future__ import annotations

import enum

import attrs

from ..events import MemberEvent
from ..member import Address
from ..messages import StreamMessage


@attrs.frozen
class SendPacket:
    """Send this datagram (already encoded, before encryption) to ``address``."""

    address: Address
    data: bytes


class StreamPurpose(enum.Enum):
    """Why the core opened a stream request (how it handles the reply)."""

    PUSH_PULL = "push-pull"
    """Periodic anti-entropy with a random peer."""
    SETTLE = "settle"
    """One of the two extra exchanges right after a join."""
    REPAIR = "repair"
    """A pull from an unknown peer that probed us (we missed its news)."""
    RECONNECT = "reconnect"
    """A retry of a failed member or an absent seed."""
    FALLBACK_PING = "fallback-ping"
    """memberlist's TCP ping, alongside the indirect probes."""


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
