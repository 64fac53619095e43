"""Codec round trips, and fuzzing: garbage only ever raises DecodeError."""

from __future__ import annotations

from collections.abc import Callable

import cbor2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from swimmesh import codec
from swimmesh.member import Claim, MemberStatus
from swimmesh.messages import (
    Ack,
    ClaimMessage,
    Nack,
    Ping,
    PingReq,
    PushPull,
    StreamPing,
    UserMessage,
    UserRequest,
    UserResponse,
)

names = st.text(min_size=1, max_size=20)
addresses = st.tuples(st.text(min_size=1, max_size=20), st.integers(0, 65535))
seqs = st.integers(0, 2**32)
incs = st.integers(0, 2**63 - 1)
metas = st.dictionaries(st.text(max_size=8), st.text(max_size=8), max_size=4)

alive = st.builds(
    lambda n, i, a, v, m: Claim(n, i, MemberStatus.ALIVE, a, v, m),
    names,
    incs,
    addresses,
    incs,
    metas,
)
others = st.builds(
    lambda n, i, s, a, src: Claim(n, i, s, a, source=src if s is not MemberStatus.LEFT else ""),
    names,
    incs,
    st.sampled_from([MemberStatus.SUSPECT, MemberStatus.DEAD, MemberStatus.LEFT]),
    addresses,
    st.text(max_size=20),
)
packet_messages = st.one_of(
    st.builds(Ping, seqs, names, names),
    st.builds(PingReq, seqs, names, addresses, names, st.booleans()),
    st.builds(Ack, seqs),
    st.builds(Nack, seqs),
    st.builds(ClaimMessage, st.one_of(alive, others)),
    st.builds(
        UserMessage, st.text(min_size=1, max_size=10), st.binary(max_size=50), st.text(max_size=10)
    ),
)
state_claims = st.one_of(
    alive, others.map(lambda c: Claim(c.name, c.incarnation, c.status, c.address))
)
stream_messages = st.one_of(
    st.builds(PushPull, st.booleans(), st.lists(state_claims, max_size=5).map(tuple)),
    st.builds(UserRequest, st.text(min_size=1, max_size=10), st.binary(max_size=50)),
    st.builds(UserResponse, st.booleans(), st.binary(max_size=50), st.text(max_size=20)),
    st.builds(StreamPing, seqs, names),
)


def packet(msgs: list[object], label: str = "") -> bytes:
    return codec.encode_packet(label, [codec.encode_message(m) for m in msgs])  # type: ignore[arg-type]


@given(st.lists(packet_messages, max_size=10), st.text(max_size=10))
def test_packet_round_trip(msgs: list[object], label: str) -> None:
    assert codec.decode_packet(packet(msgs, label), label) == msgs


@given(stream_messages, st.text(max_size=10))
def test_frame_round_trip(msg: object, label: str) -> None:
    assert codec.decode_frame(codec.encode_frame(label, msg), label) == msg  # type: ignore[arg-type]


def test_label_mismatch_is_typed() -> None:
    data = packet([Ack(1)], "blue")
    with pytest.raises(codec.DecodeError) as err:
        codec.decode_packet(data, "green")
    assert err.value.reason == "label"


def test_version_and_size_are_checked() -> None:
    bad_version = cbor2.dumps([99, "", [[3, 1]]])
    with pytest.raises(codec.DecodeError) as err:
        codec.decode_packet(bad_version)
    assert err.value.reason == "version"
    with pytest.raises(codec.DecodeError) as err:
        codec.decode_packet(packet([Ack(1)] * 10), max_size=20)
    assert err.value.reason == "oversize"


@pytest.mark.parametrize(
    "body",
    [
        [[1, -1, "a", "b"]],  # negative seq
        [[1, 1, "", "b"]],  # empty name
        [[5, "a", 1, "h", 70000, 0, {}]],  # port out of range
        [[5, "a", 1, "h", 1, 0, {"k": 1}]],  # non-string metadata
        [[5, "a", True, "h", 1, 0, {}]],  # bool is not an int
        [[3]],  # missing field
        [[9, "k", b"p"]],  # user message without its key
        [[42, 1]],  # unknown type
        [["x"]],
        "not a list",
        [[2, 1, "t", "h", 1, "s", "yes"]],  # nack not a bool
    ],
)
def test_invalid_fields_raise_decode_error(body: object) -> None:
    with pytest.raises(codec.DecodeError):
        codec.decode_packet(cbor2.dumps([codec.PROTOCOL_VERSION, "", body]))


def test_tags_are_rejected() -> None:
    data = cbor2.dumps([codec.PROTOCOL_VERSION, "", [cbor2.CBORTag(1, 0)]])
    with pytest.raises(codec.DecodeError):
        codec.decode_packet(data)


def decoded_or_rejected(decode: Callable[[bytes], object], data: bytes) -> object | None:
    """Decode ``data``; a DecodeError is the one accepted failure (returns None). Any other
    exception propagates and fails the test."""
    try:
        return decode(data)
    except codec.DecodeError:
        return None


@settings(max_examples=500)
@given(st.binary(max_size=300))
def test_random_bytes_only_raise_decode_error(data: bytes) -> None:
    out = decoded_or_rejected(codec.decode_packet, data)
    assert out is None or isinstance(out, list)
    frame = decoded_or_rejected(codec.decode_frame, data)
    assert frame is None or isinstance(frame, PushPull | UserRequest | UserResponse | StreamPing)


@settings(max_examples=400)
@given(st.lists(packet_messages, min_size=1, max_size=6), st.data())
def test_truncated_and_mutated_packets_only_raise_decode_error(
    msgs: list[object], data: st.DataObject
) -> None:
    raw = bytearray(packet(msgs))
    cut = data.draw(st.integers(0, len(raw)))
    flips = data.draw(
        st.lists(st.tuples(st.integers(0, len(raw) - 1), st.integers(0, 255)), max_size=4)
    )
    for pos, value in flips:
        raw[pos] = value
    for candidate in (bytes(raw), bytes(raw[:cut])):
        out = decoded_or_rejected(codec.decode_packet, candidate)
        assert out is None or isinstance(out, list)


@settings(max_examples=200)
@given(stream_messages, st.data())
def test_mutated_frames_only_raise_decode_error(msg: object, data: st.DataObject) -> None:
    raw = bytearray(codec.encode_frame("", msg))  # type: ignore[arg-type]
    pos = data.draw(st.integers(0, len(raw) - 1))
    raw[pos] = data.draw(st.integers(0, 255))
    out = decoded_or_rejected(codec.decode_frame, bytes(raw[: data.draw(st.integers(0, len(raw)))]))
    assert out is None or isinstance(out, PushPull | UserRequest | UserResponse | StreamPing)


def test_deeply_nested_input_is_a_decode_error() -> None:
    nested = b"\x81" * 100_000 + b"\x00"
    with pytest.raises(codec.DecodeError):
        codec.decode_packet(nested)


def test_huge_declared_length_is_a_decode_error() -> None:
    # An array header announcing 2**32 items in a tiny packet.
    with pytest.raises(codec.DecodeError):
        codec.decode_packet(b"\x83\x01\x60\x9a\xff\xff\xff\xff")
