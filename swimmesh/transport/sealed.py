"""Encryption around any transport: every datagram and stream frame is sealed (AES-GCM with
the cluster label bound) and opened on the way in; what fails to open is counted and dropped."""

from __future__ import annotations

import logging
from collections import Counter

from ..codec import DecodeError
from ..crypto import OVERHEAD, SEAL_VERSION, Sealer
from ..member import Address
from ..ratelog import RateLimitedLog
from .base import StreamHandler, Transport, TransportError

log = logging.getLogger("swimmesh.transport")


class SealedTransport:
    """Wraps ``inner``; datagrams and streams use separate sealers (separate replay windows)."""

    def __init__(self, inner: Transport, datagrams: Sealer, streams: Sealer) -> None:
        self.inner = inner
        self._undecryptable = RateLimitedLog(log)  # a warning a minute per peer host
        self._datagrams = datagrams
        self._streams = streams
        self.dropped: Counter[str] = Counter()

    @property
    def packet_overhead(self) -> int:
        """The inner transport's overhead plus this seal's version byte, nonce and tag."""
        return self.inner.packet_overhead + self._datagrams.overhead

    @property
    def local_address(self) -> Address:
        return self.inner.local_address

    async def send(self, address: Address, data: bytes) -> None:
        await self.inner.send(address, self._datagrams.seal(data))

    async def receive(self) -> tuple[Address, bytes]:
        while True:
            source, data = await self.inner.receive()
            try:
                return source, self._datagrams.open(data)
            except DecodeError as exc:
                self.dropped[exc.reason] += 1
                if exc.reason == "decrypt":
                    peer = f"{source[0]}:{source[1]}"
                    why = refusal("datagram", exc, data)
                    self._undecryptable.warning(
                        source[0], f"dropped a datagram from {peer}: {why}", {"peer": peer}
                    )

    def serve_streams(self, handler: StreamHandler) -> None:
        async def opened(source: Address, data: bytes) -> bytes:
            try:
                request = self._streams.open(data)
            except DecodeError as exc:
                self.dropped[f"stream_{exc.reason}"] += 1
                raise TransportError(refusal("request", exc, data)) from None
            return self._streams.seal(await handler(source, request))

        self.inner.serve_streams(opened)

    async def request(self, address: Address, data: bytes) -> bytes:
        reply = await self.inner.request(address, self._streams.seal(data))
        try:
            return self._streams.open(reply)
        except DecodeError as exc:
            self.dropped[f"stream_{exc.reason}"] += 1
            raise TransportError(refusal("reply", exc, reply)) from None

    async def aclose(self) -> None:
        await self.inner.aclose()


def refusal(what: str, exc: DecodeError, data: bytes) -> str:
    """Why a stream ``request`` or ``reply`` was refused, in words that point at the cause."""
    if exc.reason != "decrypt":
        return f"{what} refused: {exc}"
    if len(data) < OVERHEAD or data[0] != SEAL_VERSION:
        return f"the {what} was not encrypted: gossip encryption is on here but not there"
    return f"no installed key could decrypt the {what}: the gossip keys (or cluster labels) differ"
