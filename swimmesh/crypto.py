"""Gossip encryption: an AES-GCM keyring, sealed packets and frames, and replay protection.

A sealed message is ``0x01 | nonce (12) | ciphertext + tag (16)``. The nonce is the sender's
random 8-byte boot epoch followed by a 4-byte counter, so it never repeats under one key, and
the receiver keeps a sliding window per epoch to refuse replays. The cluster label is bound as
associated data: a packet sealed for another cluster fails authentication. The primary key
seals; every installed key is tried to open, so a running cluster can rotate keys without
downtime (install everywhere, use everywhere, remove the old one everywhere).
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import secrets
import tempfile
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from .codec import DecodeError
from .errors import SwimmeshError

KEY_SIZES = (16, 24, 32)
SEAL_VERSION = 1
NONCE_SIZE = 12
TAG_SIZE = 16
OVERHEAD = 1 + NONCE_SIZE + TAG_SIZE
REPLAY_WINDOW = 1024
MAX_TRACKED_EPOCHS = 16_384


class KeyringError(SwimmeshError, ValueError):
    """A key that is malformed, unknown, or may not be removed (the primary)."""


def generate_key() -> bytes:
    """A new random 32-byte (AES-256) key."""
    return secrets.token_bytes(32)


def encode_key(key: bytes) -> str:
    return base64.b64encode(key).decode("ascii")


def decode_key(text: str) -> bytes:
    """Parse a base64 key and check its length (16, 24 or 32 bytes)."""
    try:
        key = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise KeyringError("key is not valid base64") from None
    if len(key) not in KEY_SIZES:
        raise KeyringError(f"key is {len(key)} bytes; AES-GCM keys are 16, 24 or 32 bytes")
    return key


class Keyring:
    """Installed keys with one primary; every change is checked."""

    def __init__(self, keys: Iterable[bytes], primary: bytes | None = None) -> None:
        self._keys: list[bytes] = []
        for key in keys:
            self.install(key)
        if not self._keys:
            raise KeyringError("a keyring needs at least one key")
        self._primary = primary if primary is not None else self._keys[0]
        if self._primary not in self._keys:
            raise KeyringError("the primary key is not installed")
        self._ciphers: dict[bytes, AESGCM] = {}

    @property
    def primary(self) -> bytes:
        return self._primary

    @property
    def keys(self) -> list[bytes]:
        """Installed keys, primary first."""
        return [self._primary] + [k for k in self._keys if k != self._primary]

    def cipher(self, key: bytes) -> AESGCM:
        c = self._ciphers.get(key)
        if c is None:
            c = self._ciphers[key] = AESGCM(key)
        return c

    def install(self, key: bytes) -> bool:
        """Add a key (it opens messages at once); False if it was already installed."""
        if len(key) not in KEY_SIZES:
            raise KeyringError(f"key is {len(key)} bytes; AES-GCM keys are 16, 24 or 32 bytes")
        if key in self._keys:
            return False
        self._keys.append(key)
        return True

    def use(self, key: bytes) -> None:
        """Make an installed key the primary (it seals from now on)."""
        if key not in self._keys:
            raise KeyringError("cannot use a key that is not installed")
        self._primary = key

    def remove(self, key: bytes) -> bool:
        """Remove a key other than the primary; False if it was not installed."""
        if key == self._primary:
            raise KeyringError("cannot remove the primary key; use another key first")
        if key not in self._keys:
            return False
        self._keys.remove(key)
        self._ciphers.pop(key, None)
        return True

    # -- keyring files (a JSON list of base64 keys, primary first, as Serf writes them) ----

    @classmethod
    def load(cls, path: Path) -> Keyring:
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise KeyringError(f"cannot read keyring file {path}: {exc}") from None
        if not isinstance(data, list) or not all(isinstance(k, str) for k in data):
            raise KeyringError(f"keyring file {path} must hold a JSON list of base64 keys")
        return cls([decode_key(k) for k in data])

    def save(self, path: Path) -> None:
        """Write the keyring atomically (temporary file, fsync, rename), mode 0600."""
        save_atomic(path, json.dumps([encode_key(k) for k in self.keys], indent=2).encode())


def save_atomic(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` so a crash leaves the old or the new file, never half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class _Window:
    __slots__ = ("bits", "top")

    def __init__(self) -> None:
        self.top = -1
        self.bits = 0

    def accept(self, counter: int) -> bool:
        """True the first time ``counter`` is seen within the window."""
        if counter > self.top:
            shift = counter - self.top
            self.bits = ((self.bits << shift) | 1) & ((1 << REPLAY_WINDOW) - 1)
            self.top = counter
            return True
        offset = self.top - counter
        if offset >= REPLAY_WINDOW or self.bits >> offset & 1:
            return False
        self.bits |= 1 << offset
        return True


class Sealer:
    """Seals and opens messages for one node with a keyring and a cluster label."""

    def __init__(self, keyring: Keyring, label: str = "") -> None:
        self.keyring = keyring
        self._aad = b"swimmesh/1|" + label.encode()
        self._epoch = secrets.token_bytes(8)
        self._counter = 0
        self._windows: OrderedDict[bytes, _Window] = OrderedDict()

    overhead = OVERHEAD

    def seal(self, plaintext: bytes) -> bytes:
        if self._counter >= 0xFFFF_FFFF:
            self._epoch, self._counter = secrets.token_bytes(8), 0
        self._counter += 1
        nonce = self._epoch + self._counter.to_bytes(4, "big")
        body = self.keyring.cipher(self.keyring.primary).encrypt(nonce, plaintext, self._aad)
        return bytes((SEAL_VERSION,)) + nonce + body

    def open(self, data: bytes) -> bytes:
        """Authenticate and decrypt; ``DecodeError`` with reason ``decrypt`` or ``replay``."""
        if len(data) < OVERHEAD or data[0] != SEAL_VERSION:
            raise DecodeError("decrypt", "not a sealed message")
        nonce, body = data[1 : 1 + NONCE_SIZE], data[1 + NONCE_SIZE :]
        plaintext = self._try_keys(nonce, body, self.keyring.keys)
        epoch, counter = nonce[:8], int.from_bytes(nonce[8:], "big")
        window = self._windows.get(epoch)
        if window is None:
            window = self._windows[epoch] = _Window()
            if len(self._windows) > MAX_TRACKED_EPOCHS:
                self._windows.popitem(last=False)
        else:
            self._windows.move_to_end(epoch)
        if not window.accept(counter):
            raise DecodeError("replay", "replayed or too old")
        return plaintext

    def _try_keys(self, nonce: bytes, body: bytes, keys: Sequence[bytes]) -> bytes:
        for key in keys:
            try:
                return self.keyring.cipher(key).decrypt(nonce, body, self._aad)
            except InvalidTag:
                continue
        raise DecodeError("decrypt", "no installed key opens this message (or another label)")
