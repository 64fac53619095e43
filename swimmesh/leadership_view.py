"""The bridge from membership to the leadership package (an edge: the core never imports it).

:class:`MeshMembershipView` gives a coordinator a running :class:`MeshNode`'s view: members with
their statuses and gossip metadata, change notifications from membership events, and publishing
the node's candidacy (``leadership.*`` keys) into its own gossip metadata.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Mapping

from leadership.view import ViewMember

from .member import Member
from .runtime import MeshNode


def view_member(member: Member) -> ViewMember:
    return ViewMember(member.name, member.status.name.lower(), member.metadata)


class MeshMembershipView:
    """:class:`leadership.view.MembershipView` over a :class:`MeshNode`."""

    def __init__(self, node: MeshNode) -> None:
        self._node = node

    @property
    def local_id(self) -> str:
        return self._node.name

    def members(self) -> Iterable[ViewMember]:
        return [view_member(m) for m in self._node.members()]

    def member(self, node_id: str) -> ViewMember | None:
        found = self._node.member(node_id)
        return view_member(found) if found is not None else None

    async def publish(self, metadata: Mapping[str, str]) -> None:
        current = self._node.local_member.metadata
        if all(current.get(k) == v for k, v in metadata.items()):
            return
        await self._node.update_metadata({**current, **metadata})

    async def changes(self) -> AsyncIterator[str]:
        async with self._node.events() as events:
            async for event in events:
                yield event.member.name
