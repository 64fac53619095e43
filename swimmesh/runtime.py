"""The Trio driver: runs a :class:`SwimInstance` over a transport, in a nursery it owns.

``async with MeshNode.open(config, transport=...) as node:`` binds, starts the receive and
timer loops, and stops them when the block exits. Leaving the block without ``leave()`` stops
the node silently, which is what a crash looks like to its peers.
"""

from __future__ import annotations

import logging
import math
import random
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from contextlib import asynccontextmanager
from types import TracebackType

import trio

from . import codec
from .clock import Clock, TrioClock
from .config import MeshConfig, format_address, parse_address
from .errors import SwimmeshError
from .events import MemberEvent
from .member import Address, Member, MemberStatus
from .messages import PushPull, StreamMessage, UserRequest, UserResponse
from .protocol import (
    DeliverUser,
    EmitEvent,
    FormedMesh,
    Output,
    SendPacket,
    StartStream,
    Stats,
    SwimInstance,
)
from .ratelog import RateLimitedLog
from .transport.base import DrivenTransport, Transport, TransportError

log = logging.getLogger("swimmesh.node")

UserHandler = Callable[[Address, bytes], None]
RequestHandler = Callable[[Address, bytes], Awaitable[bytes]]

EVENT_BUFFER = 10_000


class JoinError(SwimmeshError):
    """No seed could be reached within the join timeout."""


class RequestError(SwimmeshError):
    """An overlay request failed: unreachable peer, timeout, or an error from its handler."""


class EventSubscription:
    """An async iterator of :class:`MemberEvent`; events queue from the moment it is created."""

    def __init__(self, node: MeshNode) -> None:
        self._node = node
        self._send, self._receive = trio.open_memory_channel[MemberEvent](EVENT_BUFFER)
        self.dropped = 0

    def _offer(self, event: MemberEvent) -> None:
        try:
            self._send.send_nowait(event)
        except trio.WouldBlock:
            self.dropped += 1
            log.warning(
                "event subscriber is not keeping up; event dropped",
                extra={"node": self._node.name, "kind": str(event.kind)},
            )

    def __aiter__(self) -> EventSubscription:
        return self

    async def __anext__(self) -> MemberEvent:
        try:
            return await self._receive.receive()
        except trio.EndOfChannel:
            raise StopAsyncIteration from None

    def close(self) -> None:
        self._node._subscribers.pop(self, None)
        self._send.close()

    async def __aenter__(self) -> EventSubscription:
        return self

    async def __aexit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class MeshNode:
    """A running mesh member. Create it with :meth:`open`."""

    def __init__(
        self,
        config: MeshConfig,
        transport: Transport,
        clock: Clock,
        nursery: trio.Nursery,
        rng: random.Random,
        formed: FormedMesh | None = None,
    ) -> None:
        self.config = config
        self.name = config.name
        self._transport = transport
        self._clock = clock
        self._nursery = nursery
        self._instance = SwimInstance(
            config, clock.now(), rng, packet_overhead=transport.packet_overhead, formed=formed
        )
        # Insertion-ordered (a dict, not a set): delivery order must not depend on memory
        # addresses, or simulations with the same seed would not replay.
        self._subscribers: dict[EventSubscription, None] = {}
        self._user_handlers: dict[str, UserHandler] = {}
        self._request_handlers: dict[str, RequestHandler] = {}
        self._stream_slots = trio.Semaphore(config.max_concurrent_push_pulls)
        self._timer_scope: trio.CancelScope | None = None
        self._armed_deadline = math.inf
        self._progress = trio.Event()
        self.closed = False
        self._refusals = RateLimitedLog(log)  # refused stream requests: once a minute per cause
        # A transport that can push to us (the in-memory network) runs our datagrams and timer
        # from its own task: no receive or timer task here, and sends that never block.
        self._pusher = transport if isinstance(transport, DrivenTransport) else None
        self._failure: BaseException | None = None

    @classmethod
    @asynccontextmanager
    async def open(
        cls,
        config: MeshConfig,
        transport: Transport,
        *,
        clock: Clock | None = None,
        rng: random.Random | None = None,
        formed: FormedMesh | None = None,
    ) -> AsyncIterator[MeshNode]:
        """Start a node on ``transport`` (a ``NetTransport``, or a ``MemoryNetwork`` endpoint in
        tests) and stop it when the block exits. ``formed``: start as a member of that formed
        mesh (simulations; see :func:`swimmesh.protocol.formed_mesh`)."""
        clock = clock if clock is not None else TrioClock()
        rng = rng if rng is not None else random.Random(config.seed)
        async with trio.open_nursery() as nursery:
            node = cls(config, transport, clock, nursery, rng, formed)
            transport.serve_streams(node._serve_stream)
            if node._pusher is not None:
                await nursery.start(node._driven, node._pusher)
            else:
                nursery.start_soon(node._receive_loop)
                nursery.start_soon(node._timer_loop)
            try:
                yield node
            finally:
                node.closed = True
                nursery.cancel_scope.cancel()
                for sub in list(node._subscribers):
                    sub.close()
                with trio.CancelScope(shield=True):
                    await transport.aclose()

    # -- views -----------------------------------------------------------------------------

    @property
    def local_member(self) -> Member:
        return self._instance.local_member()

    @property
    def stats(self) -> Stats:
        return self._instance.stats

    @property
    def health_score(self) -> int:
        return self._instance.health_score

    @property
    def instance(self) -> SwimInstance:
        """The sans-IO core (read-only use: metrics, diagnostics)."""
        return self._instance

    def members(self) -> list[Member]:
        """Every member this node knows, itself included, tombstones until they are reaped."""
        return self._instance.members()

    def member(self, name: str) -> Member | None:
        return self._instance.member(name)

    def status_of(self, name: str) -> MemberStatus | None:
        """The status of ``name``, or None if unknown (cheaper than :meth:`member`)."""
        return self._instance.status_of(name)

    def alive_members(self) -> list[Member]:
        return [m for m in self._instance.members() if m.status is MemberStatus.ALIVE]

    def on_ack(self, listener: Callable[[str], None] | None) -> None:
        """Call ``listener(member_name)`` on every ack a probe of ours gets (direct or relayed):
        the cheapest liveness signal, for heartbeat-style overlays. Keep it fast."""
        self._instance.ack_listener = listener

    def events(self) -> EventSubscription:
        """Subscribe to membership events (join, update, suspect, alive, dead, leave)."""
        sub = EventSubscription(self)
        self._subscribers[sub] = None
        return sub

    # -- operations ------------------------------------------------------------------------

    async def join(self, seeds: Iterable[str | Address], *, timeout: float | None = None) -> int:
        """Push-pull with each seed, retrying with backoff until ``timeout`` (``join_timeout``).
        Return how many seeds answered; raise :class:`JoinError` if none did."""
        addresses = [parse_address(s, "seed") for s in seeds]
        addresses = [a for a in addresses if a != self._instance.address]
        self._instance.start_join(addresses)
        if not addresses:
            return 0
        deadline = trio.current_time() + (
            timeout if timeout is not None else self.config.join_timeout
        )
        errors: dict[Address, str] = {}
        contacted = 0

        async def contact(seed: Address) -> None:
            nonlocal contacted
            delay = 0.05
            while True:
                reply = await self._exchange_or_why(
                    seed,
                    self._instance.push_pull_message(join=True),
                    min(self.config.tcp_timeout, deadline - trio.current_time()),
                )
                if isinstance(reply, PushPull):
                    self._instance.merge_remote_state(
                        reply, self._clock.now(), seed, initiator=True
                    )
                    await self._flush()
                    contacted += 1
                    return
                why = reply if isinstance(reply, str) else _unexpected(reply)
                # A retry cut short by the join deadline must not hide the real cause.
                if not why.startswith(_NO_ANSWER) or seed not in errors:
                    errors[seed] = why
                wait = min(
                    delay * (1 + self._instance.rng.random()), deadline - trio.current_time()
                )
                if wait <= 0:
                    return
                await trio.sleep(wait)
                delay = min(delay * 2, 2.0)

        async with trio.open_nursery() as nursery:
            for seed in addresses:
                nursery.start_soon(contact, seed)
        if contacted:
            self._instance.joined(self._clock.now())
            await self._flush()
        if contacted == 0:
            tried = ", ".join(
                f"{format_address(a)} ({errors.get(a, 'no answer')})" for a in addresses
            )
            raise JoinError(f"{self.name}: no seed answered within the join timeout: {tried}")
        log.info(
            "joined mesh",
            extra={
                "node": self.name,
                "seeds_contacted": contacted,
                "members": len(self.alive_members()),
            },
        )
        return contacted

    async def leave(self, *, timeout: float | None = None) -> None:
        """Announce a graceful departure and wait (bounded) until it has been gossiped."""
        key = self._instance.leave(self._clock.now())
        await self._flush()
        limit = timeout if timeout is not None else self.config.leave_timeout
        with trio.move_on_after(limit):
            # Wait until gossiped its full count, unless there is nobody left to tell.
            while self._instance.pending_broadcast(key) and self._instance.live_count() > 1:
                self._progress = trio.Event()
                await self._progress.wait()
        log.info("left mesh", extra={"node": self.name})

    async def update_metadata(self, metadata: Mapping[str, str]) -> None:
        """Publish new metadata (a new incarnation); raises ``MetadataTooLarge`` past the limit."""
        self._instance.update_metadata(metadata, self._clock.now())
        await self._flush()

    # -- overlay hooks ---------------------------------------------------------------------

    def register_handler(self, kind: str, handler: UserHandler) -> None:
        """Deliver datagram overlay messages of ``kind`` to ``handler(source, payload)``."""
        self._user_handlers[kind] = handler

    def register_request_handler(self, kind: str, handler: RequestHandler) -> None:
        """Answer stream requests of ``kind`` with ``await handler(source, payload)``."""
        self._request_handlers[kind] = handler

    async def broadcast(self, kind: str, payload: bytes, key: str | None = None) -> None:
        """Gossip ``payload`` to every node (each handler sees each distinct payload once per
        key); a newer payload under the same ``key`` supersedes the older one in the queues.
        Delivery is epidemic and best effort: make handlers idempotent."""
        self._instance.broadcast_user(kind, payload, key, self._clock.now())
        await self._flush()

    async def send(self, member: str, kind: str, payload: bytes) -> None:
        """Send an overlay datagram to one member (best effort, like UDP); raises
        ``MessageTooLarge`` when it would not fit in one datagram."""
        target = self._instance.member(member)
        if target is None:
            raise RequestError(f"unknown member {member!r}")
        self._instance.send_user(target.address, kind, payload)
        await self._flush()

    async def request(
        self, member: str | Address, kind: str, payload: bytes, *, timeout: float | None = None
    ) -> bytes:
        """Request/response with a member's handler for ``kind`` over the stream channel."""
        if isinstance(member, str):
            target = self._instance.member(member)
            if target is None:
                raise RequestError(f"unknown member {member!r}")
            address = target.address
        else:
            address = member
        limit = timeout if timeout is not None else self.config.tcp_timeout
        reply = await self._exchange(address, UserRequest(kind, payload), limit)
        if not isinstance(reply, UserResponse):
            raise RequestError(f"no valid reply from {format_address(address)} within {limit}s")
        if not reply.ok:
            raise RequestError(reply.error or "request failed")
        return reply.payload

    # -- loops -----------------------------------------------------------------------------

    async def _receive_loop(self) -> None:
        instance = self._instance
        while True:
            try:
                source, data = await self._transport.receive()
            except trio.ClosedResourceError:
                return
            instance.receive_datagram(source, data, self._clock.now())
            await self._flush()

    async def _timer_loop(self) -> None:
        instance = self._instance
        while True:
            deadline = instance.next_deadline()
            self._armed_deadline = deadline
            with trio.move_on_at(self._clock.trio_time(deadline)) as scope:
                self._timer_scope = scope
                await trio.sleep_forever()
            self._timer_scope = None
            self._armed_deadline = math.inf
            instance.tick(self._clock.now())
            await self._flush()

    async def _driven(
        self, pusher: DrivenTransport, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Hand our datagrams and timer to a transport that drives them (see
        :meth:`MemoryTransport.drive`), then wait: only to re-raise, in this node's nursery,
        what a callback raised in the transport's task (the receive and timer loops would
        have raised it here)."""
        failed = trio.Event()

        def on_failure(exc: BaseException) -> None:
            self._failure = exc
            failed.set()

        pusher.drive(self._on_datagram, self._on_timer, on_failure)
        self._armed_deadline = math.inf
        self._rearm()
        task_status.started()
        await failed.wait()
        assert self._failure is not None
        raise self._failure

    def _on_datagram(self, source: Address, data: bytes) -> None:
        if self.closed:
            return
        self._instance.receive_datagram(source, data, self._clock.now())
        self._flush_now()

    def _on_timer(self) -> None:
        if self.closed:
            return
        self._armed_deadline = math.inf
        self._instance.tick(self._clock.now())
        self._flush_now()

    def _rearm(self) -> None:
        """Tell a driving transport when our next timer is due, if that moved."""
        deadline = self._instance.next_deadline()
        if deadline != self._armed_deadline and self._pusher is not None:
            self._armed_deadline = deadline
            self._pusher.arm(self._clock.trio_time(deadline) if deadline != math.inf else math.inf)

    async def _flush(self) -> None:
        """Carry out what the core asked for, and re-arm the timer loop if needed."""
        if self._pusher is not None:
            self._flush_now()
            return
        outputs: list[Output] = self._instance.drain()
        for out in outputs:
            if isinstance(out, SendPacket):
                try:
                    await self._transport.send(out.address, out.data)
                except (OSError, trio.ClosedResourceError) as exc:
                    self._instance.stats.dropped["send_error"] += 1
                    log.debug("send failed", extra={"node": self.name, "error": str(exc)})
            else:
                self._carry_out(out)
        # Re-arm the sleeping timer loop when the next deadline moved: earlier (a new timer) or
        # later (its timer was cancelled, e.g. a probe timeout after the ack). Moving its cancel
        # scope's deadline costs no task switch, and sleeping to a dead deadline would cost a
        # whole wake-up.
        scope = self._timer_scope
        if scope is not None:
            deadline = self._instance.next_deadline()
            if deadline != self._armed_deadline:
                self._armed_deadline = deadline
                scope.deadline = self._clock.trio_time(deadline)
        self._progress.set()

    def _flush_now(self) -> None:
        """:meth:`_flush` for a driving transport, whose sends never block: it runs from the
        transport's task as well as from ours."""
        assert self._pusher is not None
        send = self._pusher.send_nowait
        for out in self._instance.drain():
            if isinstance(out, SendPacket):
                try:
                    send(out.address, out.data)
                except (OSError, trio.ClosedResourceError) as exc:
                    self._instance.stats.dropped["send_error"] += 1
                    log.debug("send failed", extra={"node": self.name, "error": str(exc)})
            else:
                self._carry_out(out)
        if not self.closed:
            self._rearm()
        self._progress.set()

    def _carry_out(self, out: Output) -> None:
        """Every output but a datagram to send: events, streams, overlay deliveries."""
        if isinstance(out, EmitEvent):
            for sub in list(self._subscribers):
                sub._offer(out.event)
        elif isinstance(out, StartStream):
            self._nursery.start_soon(self._run_stream, out)
        elif isinstance(out, DeliverUser):
            handler = self._user_handlers.get(out.kind)
            if handler is None:
                self._instance.stats.dropped["no_handler"] += 1
                return
            try:
                handler(out.source, out.payload)
            except Exception:
                log.exception("overlay handler failed", extra={"node": self.name, "kind": out.kind})

    async def _run_stream(self, directive: StartStream) -> None:
        reply = await self._exchange(directive.address, directive.message, directive.timeout)
        self._instance.stream_reply(directive.request_id, reply, self._clock.now())
        await self._flush()

    async def _exchange(
        self, address: Address, message: StreamMessage, timeout: float
    ) -> StreamMessage | None:
        """One stream request/reply; ``None`` on timeout, transport failure or bad reply."""
        reply = await self._exchange_or_why(address, message, timeout)
        return None if isinstance(reply, str) else reply

    async def _exchange_or_why(
        self, address: Address, message: StreamMessage, timeout: float
    ) -> StreamMessage | str:
        """One stream request/reply, or in words why there was none (a join names it)."""
        label = self.config.cluster_label
        async with self._stream_slots:
            with trio.move_on_after(max(timeout, 0.0)):
                try:
                    data = await self._transport.request(
                        address, codec.encode_frame(label, message)
                    )
                    return codec.decode_frame(data, label)
                except TransportError as exc:
                    log.debug(
                        "stream request failed",
                        extra={"node": self.name, "peer": address, "error": str(exc)},
                    )
                    return str(exc)
                except codec.DecodeError as exc:
                    self._instance.stats.dropped[exc.reason] += 1
                    return _frame_problem("reply", exc, label)
        return f"{_NO_ANSWER} {max(timeout, 0.0):.1f} s"

    async def _serve_stream(self, source: Address, data: bytes) -> bytes:
        label = self.config.cluster_label
        try:
            msg = codec.decode_frame(data, label)
        except codec.DecodeError as exc:
            self._instance.stats.dropped[exc.reason] += 1
            peer = format_address(source)
            why = _frame_problem("request", exc, label)
            self._refusals.warning(
                (source[0], exc.reason),
                f"refused a stream request from {peer}: {why}",
                {"node": self.name, "peer": peer, "reason": exc.reason},
            )
            return codec.encode_frame(label, UserResponse(False, b"", f"rejected: {exc.reason}"))
        if isinstance(msg, UserRequest):
            handler = self._request_handlers.get(msg.kind)
            if handler is None:
                reply: StreamMessage = UserResponse(False, b"", f"no handler for {msg.kind!r}")
            else:
                try:
                    reply = UserResponse(True, await handler(source, msg.payload))
                except Exception as exc:
                    log.exception(
                        "request handler failed", extra={"node": self.name, "kind": msg.kind}
                    )
                    reply = UserResponse(False, b"", f"{type(exc).__name__}: {exc}")
            return codec.encode_frame(label, reply)
        answer = self._instance.handle_stream_request(source, msg, self._clock.now())
        await self._flush()
        if answer is None:
            answer = UserResponse(False, b"", "unsupported request")
        return codec.encode_frame(label, answer)


_NO_ANSWER = "no answer within"


def _frame_problem(what: str, exc: codec.DecodeError, label: str) -> str:
    """Why a stream frame (a ``request`` or a ``reply``) was refused, pointing at the likely
    misconfiguration rather than at the decoder."""
    if exc.reason == "label":
        return f"the {what} carries another cluster label than ours ({label!r})"
    if exc.reason == "version":
        return f"the {what} speaks another protocol version ({exc})"
    if exc.reason == "malformed":
        return (
            f"the {what} is not a swimmesh frame ({exc}); is gossip encryption on there "
            "but off here?"
        )
    return f"the {what} was refused: {exc}"


def _unexpected(reply: StreamMessage) -> str:
    if isinstance(reply, UserResponse) and not reply.ok:
        return f"the seed refused the request: {reply.error}"
    return f"unexpected reply {type(reply).__name__}"
