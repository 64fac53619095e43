"""An in-memory network for tests and simulations: latency, loss, partitions and stalls.

Every endpoint keeps its own delivery heap, so there is no background task: a node's receive
loop sleeps until its next packet is due. All timing reads Trio's clock, so a whole mesh runs
under ``trio.testing.MockClock(autojump_threshold=0)`` in virtual time.
"""

from __future__ import annotations

import heapq
import math
import random
from collections.abc import Iterable

import attrs
import trio

from ..config import parse_address
from ..member import Address
from .base import StreamHandler, TransportError

AddressLike = Address | str
"""``(host, port)`` or ``'host:port'``: every method of the network accepts both."""


@attrs.define
class EndpointStats:
    packets_sent: int = 0
    bytes_sent: int = 0
    packets_received: int = 0
    bytes_received: int = 0
    packets_lost: int = 0
    stream_requests: int = 0
    stream_bytes: int = 0
    largest_datagram: int = 0
    """The largest datagram this endpoint sent, in bytes as on the wire."""
    stalls: int = 0
    """Pauses that held back at least one datagram (a pause nobody sent to goes unseen)."""
    stalled_seconds: float = 0.0
    """Time during which a datagram was due here but held back by a pause."""


def _pair(a: Address, b: Address) -> frozenset[Address]:
    return frozenset((a, b))


class MemoryNetwork:
    """A simulated network connecting :class:`MemoryTransport` endpoints by address."""

    def __init__(self, seed: int = 0, *, latency: float = 0.0, jitter: float = 0.0) -> None:
        self._rng = random.Random(seed)
        self._endpoints: dict[Address, MemoryTransport] = {}
        self._stats: dict[Address, EndpointStats] = {}
        self._latency = latency
        self._jitter = jitter
        self._loss = 0.0
        self._pair_loss: dict[frozenset[Address], float] = {}
        self._way_loss: dict[tuple[Address, Address], float] = {}
        self._groups: dict[Address, int] = {}
        self._seq = 0

    # -- topology and faults ---------------------------------------------------------------

    def _known(self, address: AddressLike) -> Address:
        """``address`` parsed, if an endpoint was ever attached there; a fault aimed at an
        address that is not on the network would silently do nothing, so it is an error."""
        addr = parse_address(address, "address")
        if addr not in self._endpoints:
            raise ValueError(
                f"no endpoint at {addr[0]}:{addr[1]} on this network "
                f"(attach one with endpoint() first)"
            )
        return addr

    def endpoint(self, address: AddressLike) -> MemoryTransport:
        """Attach a new endpoint at ``address`` (a closed endpoint's address can be reused)."""
        addr = parse_address(address, "address")
        existing = self._endpoints.get(addr)
        if existing is not None and not existing.closed:
            raise ValueError(f"address {addr} is already in use on this network")
        ep = MemoryTransport(self, addr)
        self._endpoints[addr] = ep
        self._stats.setdefault(addr, EndpointStats())
        return ep

    def set_latency(self, mean: float, jitter: float = 0.0) -> None:
        """One-way delay of every packet: ``mean`` plus uniform noise in ``[-jitter, jitter]``."""
        if mean < 0 or jitter < 0 or jitter > mean:
            raise ValueError("latency needs 0 <= jitter <= mean")
        self._latency, self._jitter = mean, jitter

    def set_loss(
        self,
        p: float,
        between: tuple[AddressLike, AddressLike] | None = None,
        *,
        one_way: bool = False,
    ) -> None:
        """Drop datagrams with probability ``p`` everywhere, or only between two addresses
        (``one_way``: only those the first sends to the second, an asymmetric link)."""
        if not 0.0 <= p <= 1.0:
            raise ValueError("loss probability must be within [0, 1]")
        if between is None:
            if one_way:
                raise ValueError("one_way needs between=(sender, receiver)")
            self._loss = p
        else:
            a, b = self._known(between[0]), self._known(between[1])
            if one_way:
                self._way_loss[(a, b)] = p
            else:
                self._pair_loss[_pair(a, b)] = p

    def partition(self, *groups: Iterable[AddressLike]) -> None:
        """Cut the network into groups that cannot reach each other (datagrams or streams).
        Addresses in no group keep reaching everyone."""
        cut: dict[Address, int] = {}
        for i, group in enumerate(groups):
            for address in group:
                addr = self._known(address)
                if cut.setdefault(addr, i) != i:
                    raise ValueError(f"{addr[0]}:{addr[1]} is in two groups of the partition")
        self._groups = cut

    def heal(self) -> None:
        """Remove every partition and pair-specific (or one-way) loss."""
        self._groups = {}
        self._pair_loss = {}
        self._way_loss = {}

    def pause(self, address: AddressLike, seconds: float) -> None:
        """Stall an endpoint: packets to it queue up unprocessed for ``seconds`` (a CPU stall).
        What it held back shows in :attr:`EndpointStats.stalls` and ``stalled_seconds``."""
        if seconds < 0:
            raise ValueError("a pause needs seconds >= 0")
        ep = self._endpoints[self._known(address)]
        now = trio.current_time()
        if ep.paused_until <= now:
            ep.paused_from = now
        ep.paused_until = max(ep.paused_until, now + seconds)
        ep.wake()

    def stats(self, address: AddressLike) -> EndpointStats:
        return self._stats[self._known(address)]

    def reachable(self, src: AddressLike, dst: AddressLike) -> bool:
        """True unless a partition separates the two addresses."""
        return self._reachable(self._known(src), self._known(dst))

    def _reachable(self, src: Address, dst: Address) -> bool:
        a, b = self._groups.get(src), self._groups.get(dst)
        return a is None or b is None or a == b

    # -- delivery --------------------------------------------------------------------------

    def _delay(self) -> float:
        if self._jitter:
            return self._latency + self._rng.uniform(-self._jitter, self._jitter)
        return self._latency

    def _deliver(self, src: Address, dst: Address, data: bytes) -> None:
        sent = self._stats[src]
        sent.packets_sent += 1
        sent.bytes_sent += len(data)
        sent.largest_datagram = max(sent.largest_datagram, len(data))
        loss = self._loss
        if self._pair_loss:
            loss = self._pair_loss.get(_pair(src, dst), loss)
        if self._way_loss:
            loss = self._way_loss.get((src, dst), loss)
        if not self._reachable(src, dst) or (loss and self._rng.random() < loss):
            sent.packets_lost += 1
            return
        ep = self._endpoints.get(dst)
        if ep is None or ep.closed:
            sent.packets_lost += 1
            return
        self._seq += 1
        ep.enqueue(trio.current_time() + self._delay(), self._seq, src, data)

    async def _request(self, src: Address, dst: Address, data: bytes) -> bytes:
        self._stats[src].stream_requests += 1
        self._stats[src].stream_bytes += len(data)
        if not self._reachable(src, dst):
            await trio.sleep_forever()  # a partitioned connect hangs until the caller gives up
        await trio.sleep(self._delay())
        ep = self._endpoints.get(dst)
        if ep is None or ep.closed or ep.stream_handler is None:
            raise TransportError(f"connection refused by {dst}")
        while ep.paused_until > trio.current_time():
            await trio.sleep_until(ep.paused_until)
        handler = ep.stream_handler
        if ep.closed or handler is None:  # the node stopped while it was paused
            raise TransportError(f"connection refused by {dst}")
        reply = await handler(src, data)
        await trio.sleep(self._delay())
        if ep.closed or not self._reachable(src, dst):
            raise TransportError(f"connection to {dst} lost")
        self._stats[dst].stream_bytes += len(reply)
        return reply


class MemoryTransport:
    """One node's endpoint on a :class:`MemoryNetwork`."""

    packet_overhead = 0

    def __init__(self, network: MemoryNetwork, address: Address) -> None:
        self._network = network
        self._address = address
        self._heap: list[tuple[float, int, Address, bytes]] = []
        self._waiting: trio.CancelScope | None = None
        """The receiver's sleep while it waits for its next packet (None: not waiting)."""
        self.paused_from = self.paused_until = -math.inf
        self._held_counted_until = -math.inf
        self.closed = False
        self.stream_handler: StreamHandler | None = None

    @property
    def local_address(self) -> Address:
        return self._address

    def enqueue(self, at: float, seq: int, src: Address, data: bytes) -> None:
        heapq.heappush(self._heap, (at, seq, src, data))
        waiting = self._waiting
        if waiting is not None and at < waiting.deadline:
            # Move the sleeping receiver's wake-up earlier instead of waking it to re-arm: no
            # task switch until the packet is due (half the scheduler passes per datagram).
            waiting.deadline = max(at, self.paused_until)

    def wake(self) -> None:
        """Make a waiting receiver look again (a pause began, or the endpoint closed)."""
        if self._waiting is not None:
            self._waiting.cancel()

    async def send(self, address: Address, data: bytes) -> None:
        if self.closed:
            raise trio.ClosedResourceError("endpoint is closed")
        self._network._deliver(self._address, address, data)

    async def receive(self) -> tuple[Address, bytes]:
        while True:
            if self.closed:
                raise trio.ClosedResourceError("endpoint is closed")
            now = trio.current_time()
            heap = self._heap
            if heap and heap[0][0] <= now and self.paused_until <= now:
                at, _, src, data = heapq.heappop(heap)
                stats = self._network._stats[self._address]
                stats.packets_received += 1
                stats.bytes_received += len(data)
                if at < self.paused_until:
                    self._count_hold(stats, max(at, self.paused_from), now)
                return src, data
            wake_at = heap[0][0] if heap else math.inf
            with trio.CancelScope(deadline=max(wake_at, self.paused_until)) as waiting:
                self._waiting = waiting
                await trio.sleep_forever()
            self._waiting = None

    def _count_hold(self, stats: EndpointStats, since: float, now: float) -> None:
        """Record that a datagram due at ``since`` was held by the last pause until ``now``."""
        if self._held_counted_until < self.paused_from:
            stats.stalls += 1  # the first datagram this pause held back
        start = max(since, self._held_counted_until)
        if now > start:
            stats.stalled_seconds += now - start
            self._held_counted_until = now

    def serve_streams(self, handler: StreamHandler) -> None:
        self.stream_handler = handler

    async def request(self, address: Address, data: bytes) -> bytes:
        if self.closed:
            raise TransportError("endpoint is closed")
        return await self._network._request(self._address, address, data)

    async def aclose(self) -> None:
        self.closed = True
        self._heap.clear()
        self.stream_handler = None
        self.wake()
