"""Keyring rules, sealing, label binding and replay protection."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from swimmesh.codec import DecodeError
from swimmesh.crypto import (
    OVERHEAD,
    Keyring,
    KeyringError,
    Sealer,
    decode_key,
    encode_key,
    generate_key,
)


def test_seal_open_round_trip_and_overhead() -> None:
    ring = Keyring([generate_key()])
    a, b = Sealer(ring, "blue"), Sealer(ring, "blue")
    sealed = a.seal(b"hello")
    assert len(sealed) == len(b"hello") + OVERHEAD
    assert b.open(sealed) == b"hello"


def test_wrong_key_wrong_label_and_tampering_are_refused() -> None:
    key = generate_key()
    sealed = Sealer(Keyring([key]), "blue").seal(b"x" * 40)
    with pytest.raises(DecodeError) as err:
        Sealer(Keyring([generate_key()]), "blue").open(sealed)
    assert err.value.reason == "decrypt"
    with pytest.raises(DecodeError):
        Sealer(Keyring([key]), "green").open(sealed)
    flipped = bytearray(sealed)
    flipped[-1] ^= 1
    with pytest.raises(DecodeError):
        Sealer(Keyring([key]), "blue").open(bytes(flipped))


def test_replays_are_refused_but_reordering_within_the_window_is_fine() -> None:
    ring = Keyring([generate_key()])
    tx, rx = Sealer(ring), Sealer(ring)
    packets = [tx.seal(bytes([i])) for i in range(10)]
    for p in reversed(packets):  # out of order is accepted once
        rx.open(p)
    for p in packets:
        with pytest.raises(DecodeError) as err:
            rx.open(p)
        assert err.value.reason == "replay"


def test_packets_older_than_the_window_are_refused() -> None:
    ring = Keyring([generate_key()])
    tx, rx = Sealer(ring), Sealer(ring)
    old = tx.seal(b"old")
    for _ in range(1100):
        rx.open(tx.seal(b"n"))
    with pytest.raises(DecodeError):
        rx.open(old)


def test_rotation_install_use_remove() -> None:
    old, new = generate_key(), generate_key()
    ring_a, ring_b = Keyring([old]), Keyring([old])
    a, b = Sealer(ring_a), Sealer(ring_b)
    assert ring_a.install(new) and ring_b.install(new)
    ring_a.use(new)  # a seals with new, b still seals with old: both open both
    assert b.open(a.seal(b"1")) == b"1" and a.open(b.seal(b"2")) == b"2"
    ring_b.use(new)
    assert ring_a.remove(old) and ring_b.remove(old)
    assert b.open(a.seal(b"3")) == b"3"
    with pytest.raises(KeyringError, match="primary"):
        ring_a.remove(new)
    with pytest.raises(KeyringError, match="not installed"):
        ring_a.use(old)


def test_keys_parse_and_files_round_trip(tmp_path: pytest.TempPathFactory) -> None:
    key = generate_key()
    assert decode_key(encode_key(key)) == key
    with pytest.raises(KeyringError, match="16, 24 or 32"):
        decode_key(encode_key(b"short"))
    with pytest.raises(KeyringError, match="base64"):
        decode_key("not base64!!")
    ring = Keyring([generate_key(), key], primary=key)
    path = tmp_path / "keyring.json"  # type: ignore[operator]
    ring.save(path)
    assert Keyring.load(path).keys == ring.keys
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    path.write_text("{}")
    with pytest.raises(KeyringError, match="JSON list"):
        Keyring.load(path)


@given(st.binary(max_size=200))
def test_garbage_only_raises_decode_error(data: bytes) -> None:
    with pytest.raises(DecodeError):
        Sealer(Keyring([generate_key()])).open(data)
