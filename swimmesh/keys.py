"""Gossip key management for the agent: the keyring on disk and cluster-wide rotation.

``open_keyring`` decides which keys a starting agent uses. Once a keyring file exists it is the
truth: a ``--key`` the file does not hold is refused (it is most likely a key that was removed
cluster-wide, and quietly installing it again would undo the rotation) unless the operator asks
for it with ``install_key``. ``ClusterKeys`` applies ``install`` / ``use`` / ``remove`` on this
node and asks every alive member to do the same over the stream channel, like ``serf keys``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import cbor2
import trio

from .crypto import Keyring, KeyringError, decode_key, encode_key
from .runtime import MeshNode, RequestError

log = logging.getLogger("swimmesh.keys")

KEYS_KIND = "swimmesh.keys"
"""The request kind members answer key operations on."""
KEY_OPS = ("install", "use", "remove")
REQUEST_TIMEOUT = 5.0


def keyring_path(keyring_file: str | None, data_dir: str | None) -> Path | None:
    """``--keyring-file``, else ``<data-dir>/keyring.json``, else nowhere (keys in memory)."""
    if keyring_file:
        return Path(keyring_file)
    if data_dir:
        return Path(data_dir) / "keyring.json"
    return None


def open_keyring(
    key: str | None, path: Path | None, *, install_key: bool = False
) -> Keyring | None:
    """The keyring a starting agent uses: the file at ``path`` when it exists, else one made
    from ``key`` (and written to ``path``), else none (gossip unencrypted)."""
    if path is not None and path.exists():
        ring = Keyring.load(path)
        if key:
            wanted = decode_key(key)
            if wanted not in ring.keys:
                if not install_key:
                    raise KeyringError(
                        f"--key is not in the keyring file {path}: once that file exists it "
                        "holds the keys (a key removed with `swimmesh keys remove` stays "
                        "removed); drop --key to start with the file's keys, or add "
                        "--install-key to install it again"
                    )
                ring.install(wanted)
                ring.save(path)
                log.warning("installed --key into the keyring file", extra={"path": str(path)})
        return ring
    if key:
        ring = Keyring([decode_key(key)])
        if path is not None:
            ring.save(path)
        return ring
    return None


class ClusterKeys:
    """One node's keyring, the file it is saved to, and the cluster-wide key operations."""

    def __init__(self, node: MeshNode, keyring: Keyring | None, path: Path | None) -> None:
        self.node = node
        self.keyring = keyring
        self.path = path
        node.register_request_handler(KEYS_KIND, self._on_request)

    def keys_json(self) -> dict[str, Any]:
        """``{"encrypted", "primary", "keys"}`` as ``GET /control/keys`` serves it."""
        if self.keyring is None:
            return {"encrypted": False, "keys": [], "primary": None}
        return {
            "encrypted": True,
            "primary": encode_key(self.keyring.primary),
            "keys": [encode_key(k) for k in self.keyring.keys],
        }

    def apply(self, op: str, key: bytes) -> None:
        """Apply one operation on this node and save the file; ``KeyringError`` if it cannot."""
        if self.keyring is None:
            raise KeyringError("gossip encryption is not enabled on this node")
        if op == "install":
            self.keyring.install(key)
        elif op == "use":
            self.keyring.use(key)
        elif op == "remove":
            self.keyring.remove(key)
        else:
            raise KeyringError(f"unknown key operation {op!r}")
        if self.path is not None:
            self.keyring.save(self.path)
        log.info("keyring changed", extra={"node": self.node.name, "op": op})

    async def _on_request(self, source: tuple[str, int], payload: bytes) -> bytes:
        body = cbor2.loads(payload)
        if (
            not isinstance(body, dict)
            or not isinstance(body.get("op"), str)
            or not isinstance(body.get("key"), bytes)
        ):
            raise KeyringError("malformed key request")
        self.apply(body["op"], body["key"])
        return b"ok"

    async def cluster_op(self, op: str, key: bytes) -> dict[str, Any]:
        """Apply ``op`` on every alive member (this one first); ``failed`` names each member
        that refused or did not answer, with why."""
        try:
            self.apply(op, key)
        except KeyringError as exc:
            return {"op": op, "members": 1, "succeeded": 0, "failed": {self.node.name: str(exc)}}
        others = [m.name for m in self.node.alive_members() if m.name != self.node.name]
        payload = cbor2.dumps({"op": op, "key": key})
        failed: dict[str, str] = {}

        async def one(name: str) -> None:
            try:
                await self.node.request(name, KEYS_KIND, payload, timeout=REQUEST_TIMEOUT)
            except RequestError as exc:
                failed[name] = str(exc)

        async with trio.open_nursery() as nursery:
            for name in others:
                nursery.start_soon(one, name)
        total = len(others) + 1
        return {"op": op, "members": total, "succeeded": total - len(failed), "failed": failed}
