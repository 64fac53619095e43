"""What the coordinator needs from membership, as a protocol of its own (no swimmesh import).

``swimmesh.leadership_view.MeshMembershipView`` adapts a running mesh node;
``leadership.testing.LocalMesh`` is an in-process view for tests and benchmarks.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Mapping
from typing import Protocol

import attrs

ALIVE = "alive"
SUSPECT = "suspect"
DEAD = "dead"
LEFT = "left"
LIVE_STATUSES = frozenset({ALIVE, SUSPECT})
"""Members that may still be running; suspect ones rank as unhealthy."""


@attrs.frozen
class ViewMember:
    node_id: str
    status: str
    """One of ``alive``, ``suspect``, ``dead``, ``left``."""
    metadata: Mapping[str, str] = attrs.field(factory=dict)


class MembershipView(Protocol):
    @property
    def local_id(self) -> str: ...

    def members(self) -> Iterable[ViewMember]:
        """Every member this node knows (itself included), in any status."""
        ...

    def member(self, node_id: str) -> ViewMember | None: ...

    def status(self, node_id: str) -> str | None:
        """``node_id``'s status (None if unknown): :meth:`member` without its metadata, cheap
        enough to ask for every notice a follower takes."""
        ...

    async def publish(self, metadata: Mapping[str, str]) -> None:
        """Merge ``metadata`` into this node's own gossip metadata."""
        ...

    def changes(self) -> AsyncIterator[str]:
        """Node ids whose status or metadata changed, from the moment of the call."""
        ...
