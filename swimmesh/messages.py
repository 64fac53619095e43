"""The messages nodes exchange: probes, membership claims, push-pull state and overlay data.

Datagram messages travel in compound packets; stream messages travel one per frame. All are
plain frozen values; ``codec`` turns them into bytes and back.
"""

from __future__ import annotations

import enum

import attrs

from .member import Address, Claim


class MessageType(enum.IntEnum):
    """Wire type codes; never renumber a released code."""

    PING = 1
    PING_REQ = 2
    ACK = 3
    NACK = 4
    ALIVE = 5
    SUSPECT = 6
    DEAD = 7
    LEFT = 8
    USER = 9
    PUSH_PULL = 20
    USER_REQUEST = 21
    USER_RESPONSE = 22
    STREAM_PING = 23


@attrs.frozen
class Ping:
    """Direct probe; ``target`` guards against a ping reaching a different process."""

    seq: int
    target: str
    source: str


@attrs.frozen
class PingReq:
    """Ask a peer to probe ``target`` for us; ``nack`` asks for a Lifeguard negative ack."""

    seq: int
    target: str
    target_address: Address
    source: str
    nack: bool


@attrs.frozen
class Ack:
    seq: int


@attrs.frozen
class Nack:
    seq: int


@attrs.frozen
class ClaimMessage:
    """A membership claim (alive, suspect, dead or left) disseminated by gossip."""

    claim: Claim


@attrs.frozen
class UserMessage:
    """An overlay's datagram payload, delivered to the handler registered for ``kind``.

    A non-empty ``key`` marks a broadcast: receivers re-gossip it once per distinct
    ``(kind, key, payload)``; an empty key is a direct, one-hop message.
    """

    kind: str
    payload: bytes
    key: str = ""


PacketMessage = Ping | PingReq | Ack | Nack | ClaimMessage | UserMessage


@attrs.frozen
class PushPull:
    """Full state exchange over the stream channel (anti-entropy and join)."""

    join: bool
    states: tuple[Claim, ...]
    encoded: tuple[bytes, ...] | None = attrs.field(default=None, eq=False, repr=False)
    """The states already encoded, one per entry (a sender-side cache; never decoded)."""


@attrs.frozen
class UserRequest:
    kind: str
    payload: bytes


@attrs.frozen
class UserResponse:
    ok: bool
    payload: bytes
    error: str = ""


@attrs.frozen
class StreamPing:
    """A probe sent over the stream channel when datagrams seem blocked."""

    seq: int
    target: str


StreamMessage = PushPull | UserRequest | UserResponse | StreamPing
