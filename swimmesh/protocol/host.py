"""What the mechanisms (prober, anti-entropy) ask of the instance that owns them.

A structural protocol, so the mechanisms need not import the instance (which imports them).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from ..member import Address, Claim
from ..messages import StreamMessage
from .outputs import StreamPurpose


class Host(Protocol):
    @property
    def leaving(self) -> bool:
        """True once a graceful leave began: no more probes or exchanges."""
        ...

    ack_listener: Callable[[str], None] | None

    def next_seq(self) -> int:
        """A fresh sequence number (probes, relays and stream requests share the space)."""
        ...

    def open_stream(
        self,
        address: Address,
        message: StreamMessage,
        purpose: StreamPurpose,
        timeout: float,
        request_id: int | None = None,
    ) -> None:
        """Ask the driver for a stream request; its reply comes back by ``purpose``."""
        ...

    def forget_stream(self, request_id: int) -> None: ...

    def probe_failed(self, target: str, now: float) -> None:
        """No ack by the end of a probe of ``target``: suspect it."""
        ...

    def apply_claim(
        self, claim: Claim, now: float, rebroadcast: bool = True, source: Address | None = None
    ) -> None:
        """Merge a claim and carry out its consequences."""
        ...
