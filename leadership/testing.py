"""In-process helpers for tests, simulations and benchmarks: a shared membership view and a
group of coordinators that can be started, crashed, stopped and given skewed clocks."""

from __future__ import annotations

import math
import random
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from typing import Any

import trio

from .clock import Clock
from .config import LeadershipConfig
from .coordinator import LeadershipCoordinator
from .memory import InMemoryLeaseStore
from .messenger import MessengerError, RequestHandler, ToldHandler
from .store import LeaseStore
from .view import ALIVE, SUSPECT, ViewMember


class JumpClock:
    """A lease clock for tests that runs with Trio's clock until :meth:`jump` moves it ahead:
    what ``CLOCK_BOOTTIME`` does when the host wakes from suspend (Trio's monotonic clock
    stopped meanwhile). Share one with an :class:`InMemoryLeaseStore` (``clock=``) to suspend
    the host while the store, elsewhere, kept counting."""

    def __init__(self) -> None:
        self.offset = 0.0

    def now(self) -> float:
        return trio.current_time() + self.offset

    def trio_time(self, local: float) -> float:
        return local - self.offset

    def jump(self, seconds: float) -> None:
        """The host slept ``seconds``: this clock moves ahead, Trio's does not."""
        self.offset += seconds


class LocalMesh:
    """Membership for many nodes in one process; every view sees every change at once."""

    def __init__(self) -> None:
        self._members: dict[str, ViewMember] = {}
        self._feeds: list[trio.MemorySendChannel[str]] = []
        self._handlers: dict[tuple[str, str], RequestHandler] = {}
        self._told: dict[tuple[str, str], ToldHandler] = {}
        self.unreachable: set[str] = set()
        """Nodes whose messages are lost both ways (a partition of the messenger)."""

    def add(self, node_id: str, metadata: Mapping[str, str] | None = None) -> None:
        self._members[node_id] = ViewMember(node_id, ALIVE, dict(metadata or {}))
        self._changed(node_id)

    def set_status(self, node_id: str, status: str) -> None:
        member = self._members[node_id]
        self._members[node_id] = ViewMember(node_id, status, member.metadata)
        self._changed(node_id)

    def status(self, node_id: str) -> str | None:
        member = self._members.get(node_id)
        return member.status if member is not None else None

    def messenger(self, node_id: str) -> LocalMessenger:
        """Node ``node_id``'s :class:`~leadership.messenger.PeerMessenger` in this process."""
        return LocalMessenger(self, node_id)

    def view(self, node_id: str) -> LocalView:
        if node_id not in self._members:
            self.add(node_id)
        return LocalView(self, node_id)

    def _publish(self, node_id: str, metadata: Mapping[str, str]) -> None:
        member = self._members[node_id]
        self._members[node_id] = ViewMember(node_id, member.status, {**member.metadata, **metadata})
        self._changed(node_id)

    def _changed(self, node_id: str) -> None:
        for feed in list(self._feeds):
            try:
                feed.send_nowait(node_id)
            except trio.BrokenResourceError:
                self._feeds.remove(feed)


class _LocalHandle:
    """One node's handle on a :class:`LocalMesh`."""

    def __init__(self, mesh: LocalMesh, node_id: str) -> None:
        self._mesh = mesh
        self._node_id = node_id

    @property
    def local_id(self) -> str:
        return self._node_id


class LocalView(_LocalHandle):
    """One node's :class:`~leadership.view.MembershipView` of a :class:`LocalMesh`."""

    def members(self) -> Iterable[ViewMember]:
        return list(self._mesh._members.values())

    def member(self, node_id: str) -> ViewMember | None:
        return self._mesh._members.get(node_id)

    def status(self, node_id: str) -> str | None:
        member = self._mesh._members.get(node_id)
        return member.status if member is not None else None

    async def publish(self, metadata: Mapping[str, str]) -> None:
        self._mesh._publish(self._node_id, metadata)
        await trio.lowlevel.checkpoint()

    async def changes(self) -> AsyncIterator[str]:
        send, receive = trio.open_memory_channel[str](math.inf)
        self._mesh._feeds.append(send)
        try:
            async for node_id in receive:
                yield node_id
        finally:
            if send in self._mesh._feeds:
                self._mesh._feeds.remove(send)


class LocalMessenger(_LocalHandle):
    """Requests between nodes of one :class:`LocalMesh` (a dead or unreachable node does not
    answer; a handler's exception is the requester's ``MessengerError``)."""

    def serve(self, kind: str, handler: RequestHandler) -> None:
        self._mesh._handlers[(self._node_id, kind)] = handler

    async def request(self, node_id: str, kind: str, payload: bytes, *, timeout: float) -> bytes:
        mesh = self._mesh
        with trio.move_on_after(timeout):
            handler = mesh._handlers.get((node_id, kind))
            lost = {self._node_id, node_id} & mesh.unreachable
            if handler is None or lost or mesh.status(node_id) not in (ALIVE, SUSPECT):
                await trio.sleep_forever()  # nobody answers: the caller times out
            try:
                return await handler(self._node_id, payload)
            except Exception as exc:
                raise MessengerError(f"{node_id} failed {kind!r}: {exc!r}") from exc
        raise MessengerError(f"no reply from {node_id} to {kind!r} within {timeout}s")

    def serve_told(self, kind: str, handler: ToldHandler) -> None:
        self._mesh._told[(self._node_id, kind)] = handler

        async def asked(sender: str, payload: bytes) -> bytes:
            handler(sender, payload)
            return b""

        self.serve(kind, asked)

    async def tell(self, node_id: str, kind: str, payload: bytes, *, timeout: float) -> None:
        """Delivered at once unless either end is unreachable or the peer is down (then lost,
        as a datagram would be)."""
        await trio.lowlevel.checkpoint()
        mesh = self._mesh
        handler = mesh._told.get((node_id, kind))
        lost = {self._node_id, node_id} & mesh.unreachable
        if handler is None or lost or mesh.status(node_id) not in (ALIVE, SUSPECT):
            return
        handler(self._node_id, payload)


class CoordinatorGroup:
    """Coordinators sharing one store and one :class:`LocalMesh`, each in its own cancel scope."""

    def __init__(
        self,
        nursery: trio.Nursery,
        store: LeaseStore,
        mesh: LocalMesh,
        make_config: Callable[[str], LeadershipConfig],
        seed: int = 0,
    ) -> None:
        self.store = store
        self.mesh = mesh
        self.coordinators: dict[str, LeadershipCoordinator] = {}
        self._nursery = nursery
        self._make_config = make_config
        self._seed = seed
        self._scopes: dict[str, trio.CancelScope] = {}
        self._boots: dict[str, int] = {}

    async def start(
        self,
        name: str,
        *,
        config: LeadershipConfig | None = None,
        clock: Clock | None = None,
        **options: Any,
    ) -> LeadershipCoordinator:
        """Start (or restart: a new boot id) the coordinator of node ``name``."""
        cfg = config if config is not None else self._make_config(name)
        boot = self._boots[name] = self._boots.get(name, 0) + 1
        rng = random.Random(f"{self._seed}/{name}/{boot}")
        options.setdefault("boot_id", f"{name}-boot{boot}")
        coordinator: LeadershipCoordinator = await self._nursery.start(
            self._run, name, cfg, clock, rng, options
        )
        self.coordinators[name] = coordinator
        return coordinator

    async def _run(
        self,
        name: str,
        cfg: LeadershipConfig,
        clock: Clock | None,
        rng: random.Random,
        options: dict[str, Any],
        task_status: Any = trio.TASK_STATUS_IGNORED,
    ) -> None:
        with trio.CancelScope() as scope:
            self._scopes[name] = scope
            store = (
                self.store.client(name)
                if isinstance(self.store, InMemoryLeaseStore)
                else self.store
            )
            async with LeadershipCoordinator.open(
                cfg, store, self.mesh.view(name), clock=clock, rng=rng, **options
            ) as coordinator:
                task_status.started(coordinator)
                await trio.sleep_forever()

    def crash(self, name: str, status: str | None = None) -> None:
        """Stop ``name`` without releasing anything; optionally mark it ``status`` in the view
        (``"dead"``, as failure detection would later)."""
        self.coordinators.pop(name).crash()
        self._scopes.pop(name).cancel()
        if status is not None:
            self.mesh.set_status(name, status)

    async def stop(self, name: str) -> None:
        """Graceful stop: step down, release, then go."""
        await self.coordinators.pop(name).stop()
        self._scopes.pop(name).cancel()

    def leaders(self, scope: str) -> list[str]:
        """Nodes that believe right now that they lead ``scope``."""
        return [n for n, c in self.coordinators.items() if c.is_leader(scope)]
