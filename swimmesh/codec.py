"""CBOR encoding of packets and stream frames, with strict validation on the way in.

A datagram is ``[version, label, [message, ...]]`` (a compound packet); a stream frame is
``[version, label, message]``. Every message is a CBOR array led by its type code. Messages
are encoded once (``encode_message``) so the broadcast queue can pack pre-encoded bytes into
packets without re-encoding. Any malformed input raises :class:`DecodeError` and nothing else.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Any

import cbor2

from .errors import SwimmeshError
from .member import Address, Claim, MemberStatus
from .messages import (
    Ack,
    ClaimMessage,
    MessageType,
    Nack,
    PacketMessage,
    Ping,
    PingReq,
    PushPull,
    StreamMessage,
    StreamPing,
    UserMessage,
    UserRequest,
    UserResponse,
)

PROTOCOL_VERSION = 1

MAX_NAME_CHARS = 256
MAX_HOST_CHARS = 255
MAX_LABEL_CHARS = 256
MAX_KIND_CHARS = 64
MAX_METADATA_ENTRIES = 256
MAX_METADATA_CHARS = 64 * 1024
MAX_MESSAGES_PER_PACKET = 512
MAX_DATAGRAM_BYTES = 65_507
MAX_STATES = 200_000
MAX_U63 = 2**63 - 1
DEFAULT_MAX_FRAME_BYTES = 8 * 1024 * 1024


class DecodeError(SwimmeshError, ValueError):
    """Input that is not a valid swimmesh packet or frame; ``reason`` names the metric label."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def _bad(message: str) -> DecodeError:
    return DecodeError("malformed", message)


def _reject_tag(_decoder: object, tag: object) -> object:
    raise _bad("CBOR tags are not used by this protocol")


def _loads(data: bytes) -> Any:
    try:
        return cbor2.loads(data, tag_hook=_reject_tag)
    except DecodeError:
        raise
    except Exception as exc:  # cbor2 raises several types on garbage; all mean "malformed"
        raise _bad(f"not CBOR: {type(exc).__name__}") from None


# -- field validators ---------------------------------------------------------------------


def _int(value: Any, what: str, lo: int = 0, hi: int = MAX_U63) -> int:
    if type(value) is not int or not lo <= value <= hi:
        raise _bad(f"{what}: expected an integer in [{lo}, {hi}]")
    return value


def _str(value: Any, what: str, max_chars: int = MAX_NAME_CHARS, allow_empty: bool = False) -> str:
    if type(value) is not str or len(value) > max_chars or (not allow_empty and not value):
        raise _bad(f"{what}: expected a string of 1..{max_chars} characters")
    return value


def _name(value: Any, what: str) -> str:
    """A member name, interned (as hosts are): the nodes of an in-process mesh share one copy
    of each instead of keeping one per table entry."""
    return sys.intern(_str(value, what))


def _bool(value: Any, what: str) -> bool:
    if type(value) is not bool:
        raise _bad(f"{what}: expected a boolean")
    return value


def _bytes(value: Any, what: str, max_len: int) -> bytes:
    if type(value) is not bytes or len(value) > max_len:
        raise _bad(f"{what}: expected at most {max_len} bytes")
    return value


def _list(value: Any, what: str, max_len: int) -> list[Any]:
    if type(value) is not list or len(value) > max_len:
        raise _bad(f"{what}: expected an array of at most {max_len} items")
    return value


def _address(host: Any, port: Any) -> Address:
    return (sys.intern(_str(host, "host", MAX_HOST_CHARS)), _int(port, "port", 0, 65_535))


def _metadata(value: Any) -> Mapping[str, str]:
    if type(value) is not dict or len(value) > MAX_METADATA_ENTRIES:
        raise _bad(f"metadata: expected a map of at most {MAX_METADATA_ENTRIES} entries")
    if not value:
        return _NO_METADATA  # one shared empty view, not a dict and a view per entry
    total = 0
    for key, item in value.items():
        if type(key) is not str or type(item) is not str:
            raise _bad("metadata: keys and values must be strings")
        total += len(key) + len(item)
    if total > MAX_METADATA_CHARS:
        raise _bad("metadata: too large")
    return MappingProxyType(value)  # freshly decoded: share it read-only instead of copying


_NO_METADATA: Mapping[str, str] = MappingProxyType({})


def _arity(items: list[Any], n: int, what: str) -> None:
    if len(items) != n:
        raise _bad(f"{what}: expected {n} fields, got {len(items)}")


# -- messages -----------------------------------------------------------------------------


def _claim_fields(claim: Claim) -> list[Any]:
    host, port = claim.address
    status = claim.status
    if status is MemberStatus.ALIVE:
        return [
            int(MessageType.ALIVE),
            claim.name,
            claim.incarnation,
            host,
            port,
            claim.meta_version,
            dict(claim.metadata),
        ]
    if status is MemberStatus.SUSPECT:
        return [int(MessageType.SUSPECT), claim.name, claim.incarnation, host, port, claim.source]
    if status is MemberStatus.DEAD:
        return [int(MessageType.DEAD), claim.name, claim.incarnation, host, port, claim.source]
    return [int(MessageType.LEFT), claim.name, claim.incarnation, host, port]


def _message_fields(msg: PacketMessage | StreamMessage) -> list[Any]:
    match msg:
        case Ping(seq, target, source):
            return [int(MessageType.PING), seq, target, source]
        case PingReq(seq, target, (host, port), source, nack):
            return [int(MessageType.PING_REQ), seq, target, host, port, source, nack]
        case Ack(seq):
            return [int(MessageType.ACK), seq]
        case Nack(seq):
            return [int(MessageType.NACK), seq]
        case ClaimMessage(claim):
            return _claim_fields(claim)
        case UserMessage(kind, payload, key):
            return [int(MessageType.USER), kind, payload, key]
        case PushPull(join, states):
            return [int(MessageType.PUSH_PULL), join, [_state_fields(s) for s in states]]
        case UserRequest(kind, payload):
            return [int(MessageType.USER_REQUEST), kind, payload]
        case UserResponse(ok, payload, error):
            return [int(MessageType.USER_RESPONSE), ok, payload, error]
        case StreamPing(seq, target):
            return [int(MessageType.STREAM_PING), seq, target]
    raise TypeError(f"not a swimmesh message: {msg!r}")


def _state_fields(claim: Claim) -> list[Any]:
    host, port = claim.address
    return [
        claim.name,
        host,
        port,
        claim.incarnation,
        int(claim.status),
        claim.meta_version,
        dict(claim.metadata) if claim.status is MemberStatus.ALIVE else {},
    ]


def encode_message(msg: PacketMessage | StreamMessage) -> bytes:
    """Encode one message as a CBOR array (to be packed into a packet or frame)."""
    if isinstance(msg, PushPull) and msg.encoded is not None:
        return b"".join(
            (
                b"\x83",
                cbor2.dumps(int(MessageType.PUSH_PULL)),
                cbor2.dumps(msg.join),
                _array_header(len(msg.encoded)),
                *msg.encoded,
            )
        )
    return cbor2.dumps(_message_fields(msg))


def encode_state(claim: Claim) -> bytes:
    """Encode one push-pull state entry (cached by the member table)."""
    return cbor2.dumps(_state_fields(claim))


def _array_header(n: int) -> bytes:
    if n < 24:
        return bytes((0x80 + n,))
    if n < 256:
        return bytes((0x98, n))
    if n < 65536:
        return bytes((0x99,)) + n.to_bytes(2, "big")
    return bytes((0x9A,)) + n.to_bytes(4, "big")


def packet_header_size(label: str, n_messages: int = MAX_MESSAGES_PER_PACKET) -> int:
    """Bytes a packet spends around its messages (for packing within a size budget)."""
    return (
        1
        + len(cbor2.dumps(PROTOCOL_VERSION))
        + len(cbor2.dumps(label))
        + len(_array_header(n_messages))
    )


def encode_packet(label: str, encoded_messages: Sequence[bytes]) -> bytes:
    """Join pre-encoded messages into one compound packet."""
    return b"".join(
        (
            b"\x83",
            cbor2.dumps(PROTOCOL_VERSION),
            cbor2.dumps(label),
            _array_header(len(encoded_messages)),
            *encoded_messages,
        )
    )


def encode_frame(label: str, msg: StreamMessage) -> bytes:
    """Encode one stream-channel message with its envelope."""
    return b"".join(
        (b"\x83", cbor2.dumps(PROTOCOL_VERSION), cbor2.dumps(label), encode_message(msg))
    )


def _envelope(data: bytes, label: str, max_size: int) -> Any:
    if len(data) > max_size:
        raise DecodeError("oversize", f"{len(data)} bytes exceeds the limit of {max_size}")
    top = _loads(data)
    if type(top) is not list or len(top) != 3:
        raise _bad("envelope: expected [version, label, body]")
    version, their_label, body = top
    if type(version) is not int or version != PROTOCOL_VERSION:
        raise DecodeError("version", f"unsupported protocol version {version!r}")
    if type(their_label) is not str or their_label != label:
        raise DecodeError("label", "cluster label does not match")
    return body


def decode_packet(
    data: bytes, label: str = "", max_size: int = MAX_DATAGRAM_BYTES
) -> list[PacketMessage]:
    """Decode and validate a compound packet; raise :class:`DecodeError` on any defect."""
    body = _envelope(data, label, max_size)
    items = _list(body, "messages", MAX_MESSAGES_PER_PACKET)
    return [_decode_packet_message(item) for item in items]


def decode_frame(
    data: bytes, label: str = "", max_size: int = DEFAULT_MAX_FRAME_BYTES
) -> StreamMessage:
    """Decode and validate one stream frame; raise :class:`DecodeError` on any defect."""
    return _decode_stream_message(_envelope(data, label, max_size))


def _type_of(item: Any) -> tuple[int, list[Any]]:
    if type(item) is not list or not item:
        raise _bad("message: expected a non-empty array")
    code = item[0]
    if type(code) is not int:
        raise _bad("message: type code must be an integer")
    return code, item


def _decode_claim(code: int, f: list[Any]) -> Claim:
    if code == MessageType.ALIVE:
        _arity(f, 7, "alive")
        return Claim(
            name=_name(f[1], "name"),
            incarnation=_int(f[2], "incarnation"),
            status=MemberStatus.ALIVE,
            address=_address(f[3], f[4]),
            meta_version=_int(f[5], "meta_version"),
            metadata=_metadata(f[6]),
        )
    if code in (MessageType.SUSPECT, MessageType.DEAD):
        _arity(f, 6, "suspect/dead")
        return Claim(
            name=_name(f[1], "name"),
            incarnation=_int(f[2], "incarnation"),
            status=MemberStatus.SUSPECT if code == MessageType.SUSPECT else MemberStatus.DEAD,
            address=_address(f[3], f[4]),
            source=_str(f[5], "source", allow_empty=True),
        )
    _arity(f, 5, "left")
    return Claim(
        name=_str(f[1], "name"),
        incarnation=_int(f[2], "incarnation"),
        status=MemberStatus.LEFT,
        address=_address(f[3], f[4]),
    )


_CLAIM_CODES = frozenset(
    (MessageType.ALIVE, MessageType.SUSPECT, MessageType.DEAD, MessageType.LEFT)
)


def _decode_packet_message(item: Any) -> PacketMessage:
    code, f = _type_of(item)
    if code == MessageType.PING:
        _arity(f, 4, "ping")
        return Ping(_int(f[1], "seq"), _str(f[2], "target"), _str(f[3], "source"))
    if code == MessageType.PING_REQ:
        _arity(f, 7, "ping-req")
        return PingReq(
            _int(f[1], "seq"),
            _str(f[2], "target"),
            _address(f[3], f[4]),
            _str(f[5], "source"),
            _bool(f[6], "nack"),
        )
    if code == MessageType.ACK:
        _arity(f, 2, "ack")
        return Ack(_int(f[1], "seq"))
    if code == MessageType.NACK:
        _arity(f, 2, "nack")
        return Nack(_int(f[1], "seq"))
    if code in _CLAIM_CODES:
        return ClaimMessage(_decode_claim(code, f))
    if code == MessageType.USER:
        _arity(f, 4, "user")
        return UserMessage(
            _str(f[1], "kind", MAX_KIND_CHARS),
            _bytes(f[2], "payload", MAX_DATAGRAM_BYTES),
            _str(f[3], "key", MAX_NAME_CHARS, allow_empty=True),
        )
    raise _bad(f"unknown datagram message type {code}")


_STATE_CACHE_SIZE = 1 << 16
_state_cache: dict[tuple[Any, ...], Claim] = {}
"""Push-pull entries already decoded, by their fields: a table is sent whole at every
exchange and mostly unchanged since the last one, so an entry is decoded (validated, its
strings interned, its :class:`Claim` built) once and the next exchanges reuse the claim.
Keys are built only from fields whose types were checked exactly, so an equal key means the
same validated values (``True == 1`` cannot alias an integer field). Claims are immutable,
so sharing one between the decodes, and between the nodes of an in-process mesh, is safe.
Bounded: emptied when full (the entries of the current tables come straight back)."""


def _state_key(item: Any) -> tuple[Any, ...] | None:
    """The cache key of a push-pull entry whose fields have the right types, else None."""
    if type(item) is not list or len(item) != 7:
        return None
    name, host, port, incarnation, status, meta_version, metadata = item
    if (
        type(name) is not str
        or type(host) is not str
        or type(port) is not int
        or type(incarnation) is not int
        or type(status) is not int
        or type(meta_version) is not int
        or type(metadata) is not dict
    ):
        return None
    if not metadata:
        return (name, host, port, incarnation, status, meta_version)
    if len(metadata) > 8:
        return None  # large maps are rare and costly to key: decode them each time
    pairs = tuple(metadata.items())
    for k, v in pairs:
        if type(k) is not str or type(v) is not str:
            return None
    return (name, host, port, incarnation, status, meta_version, pairs)


def _decode_state(item: Any) -> Claim:
    key = _state_key(item)
    if key is not None:
        hit = _state_cache.get(key)
        if hit is not None:
            return hit
    claim = _decode_state_fields(item)
    if key is not None:
        if len(_state_cache) >= _STATE_CACHE_SIZE:
            _state_cache.clear()
        _state_cache[key] = claim
    return claim


def _decode_state_fields(item: Any) -> Claim:
    f = _list(item, "state", 7)
    _arity(f, 7, "state")
    status_code = _int(f[4], "status", 0, 3)
    status = MemberStatus(status_code)
    return Claim(
        name=_name(f[0], "name"),
        address=_address(f[1], f[2]),
        incarnation=_int(f[3], "incarnation"),
        status=status,
        meta_version=_int(f[5], "meta_version"),
        metadata=_metadata(f[6]),
    )


def _decode_stream_message(item: Any) -> StreamMessage:
    code, f = _type_of(item)
    if code == MessageType.PUSH_PULL:
        _arity(f, 3, "push-pull")
        states = _list(f[2], "states", MAX_STATES)
        return PushPull(_bool(f[1], "join"), tuple(_decode_state(s) for s in states))
    if code == MessageType.USER_REQUEST:
        _arity(f, 3, "user-request")
        return UserRequest(
            _str(f[1], "kind", MAX_KIND_CHARS), _bytes(f[2], "payload", DEFAULT_MAX_FRAME_BYTES)
        )
    if code == MessageType.USER_RESPONSE:
        _arity(f, 4, "user-response")
        return UserResponse(
            _bool(f[1], "ok"),
            _bytes(f[2], "payload", DEFAULT_MAX_FRAME_BYTES),
            _str(f[3], "error", 4096, allow_empty=True),
        )
    if code == MessageType.STREAM_PING:
        _arity(f, 3, "stream-ping")
        return StreamPing(_int(f[1], "seq"), _str(f[2], "target"))
    raise _bad(f"unknown stream message type {code}")


def metadata_size(metadata: Mapping[str, str]) -> int:
    """Encoded size of a metadata map, the figure ``max_metadata_bytes`` bounds."""
    return len(cbor2.dumps(dict(metadata)))
