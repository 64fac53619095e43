"""The bridge from membership to the leadership package (an edge: the core never imports it).

:class:`MeshMembershipView` gives a coordinator a running :class:`MeshNode`'s view: members with
their statuses and gossip metadata, change notifications from membership events, and publishing
the node's candidacy (``leadership.*`` keys) into its own gossip metadata. :class:`MeshMessenger`
carries leadership requests between nodes over the stream channel, and one-way messages in a
datagram where they fit.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Iterable, Mapping

import trio

from leadership.messenger import MessengerError, RequestHandler, ToldHandler
from leadership.view import ViewMember

from .member import Address, Member
from .protocol import MessageTooLarge
from .runtime import MeshNode, RequestError

KIND_PREFIX = "leadership."


def view_member(member: Member) -> ViewMember:
    return ViewMember(member.name, member.status.name.lower(), member.metadata)


SENDER_TABLE_AGE = 1.0
"""Seconds a table of members by address answers who sent a request."""


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

    def status(self, node_id: str) -> str | None:
        status = self._node.status_of(node_id)
        return status.name.lower() if status is not None else None

    async def publish(self, metadata: Mapping[str, str]) -> None:
        current = self._node.local_member.metadata
        if all(current.get(k) == v for k, v in metadata.items()):
            return
        await self._node.update_metadata({**current, **metadata})

    async def changes(self) -> AsyncIterator[str]:
        async with self._node.events() as events:
            async for event in events:
                yield event.member.name


class MeshMessenger:
    """:class:`leadership.messenger.PeerMessenger` over a :class:`MeshNode`'s stream channel
    (encrypted and authenticated like the rest of the mesh's traffic). Requests carry no name:
    the sender is known by its address, looked up in the member table."""

    def __init__(self, node: MeshNode) -> None:
        self._node = node
        self._names: dict[Address, str] = {}
        self._names_at = -math.inf

    @property
    def local_id(self) -> str:
        return self._node.name

    def _sender(self, address: Address) -> str:
        """The member at ``address``, or "" (a stream request usually comes from another
        port than the member's own). The table is rebuilt at most once a second, not a list of
        every member's view per request served."""
        now = trio.current_time()
        if now - self._names_at >= SENDER_TABLE_AGE:
            self._names = {member.address: member.name for member in self._node.members()}
            self._names_at = now
        return self._names.get(address, "")

    def serve(self, kind: str, handler: RequestHandler) -> None:
        async def answer(source: Address, payload: bytes) -> bytes:
            return await handler(self._sender(source), payload)

        self._node.register_request_handler(KIND_PREFIX + kind, answer)

    async def request(self, node_id: str, kind: str, payload: bytes, *, timeout: float) -> bytes:
        try:
            return await self._node.request(node_id, KIND_PREFIX + kind, payload, timeout=timeout)
        except RequestError as exc:
            raise MessengerError(str(exc)) from exc

    def serve_told(self, kind: str, handler: ToldHandler) -> None:
        """One-way messages arrive as overlay datagrams, or as stream requests (answered
        empty) when they were too large for one."""

        def datagram(source: Address, payload: bytes) -> None:
            handler(self._sender(source), payload)

        async def stream(source: Address, payload: bytes) -> bytes:
            handler(self._sender(source), payload)
            return b""

        self._node.register_handler(KIND_PREFIX + kind, datagram)
        self._node.register_request_handler(KIND_PREFIX + kind, stream)

    async def tell(self, node_id: str, kind: str, payload: bytes, *, timeout: float) -> None:
        """A sealed datagram (no reply, no stream exchange) when it fits in one, else a stream
        request whose empty reply is dropped."""
        try:
            await self._node.send(node_id, KIND_PREFIX + kind, payload)
            return
        except MessageTooLarge:
            pass
        except RequestError as exc:
            raise MessengerError(str(exc)) from exc
        await self.request(node_id, kind, payload, timeout=timeout)
