"""``ControlHost``: what the control plane needs from the process that serves it.

The routes depend on this protocol, not on the agent, so they can be served by any composition
(the agent, a test's fake, an embedding service) and the agent module is free to import the app.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from prometheus_client import CollectorRegistry

from leadership import LeadershipCoordinator
from peerhealth import BackpressureDiagnostics, BackpressureMonitor, PeerHealthSnapshotProvider

from ..member import Member
from .voters import VoterAdmin


class KeyOperations(Protocol):
    """Gossip keys as ``/control/keys`` shows and changes them."""

    def keys_json(self) -> dict[str, Any]: ...

    async def cluster_op(self, op: str, key: bytes) -> dict[str, Any]:
        """``{"op", "members", "succeeded", "failed": {member: why}}``."""
        ...


class ControlHost(Protocol):
    """A running node as the control plane sees it."""

    @property
    def name(self) -> str: ...

    @property
    def control_token(self) -> str | None:
        """Bearer token of the mutating endpoints; None disables them (403)."""
        ...

    @property
    def registry(self) -> CollectorRegistry: ...

    @property
    def keys(self) -> KeyOperations: ...

    @property
    def health_providers(self) -> Sequence[PeerHealthSnapshotProvider]: ...

    @property
    def backpressure(self) -> BackpressureMonitor: ...

    @property
    def backpressure_diagnostics(self) -> BackpressureDiagnostics: ...

    @property
    def coordinator(self) -> LeadershipCoordinator | None:
        """Leadership on this node, or None while it runs no elections (503)."""
        ...

    @property
    def voter_admin(self) -> VoterAdmin | None:
        """The quorum lease store, for voter-set changes; None without elections (503)."""
        ...

    def members(self) -> list[Member]: ...

    def clock_now(self) -> float:
        """The monotonic clock that member timestamps (``last_seen``) are read on."""
        ...

    def readiness(self) -> tuple[bool, str]:
        """``(ready, why)``: ready once joined and while not leaving."""
        ...

    def request_shutdown(self, reason: str) -> None: ...
