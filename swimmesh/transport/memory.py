"""An in-memory network for tests and simulations: latency, loss, partitions and stalls.

Two ways to receive. A node that calls :meth:`MemoryTransport.drive` hands the network two
callbacks (a datagram arrived; its timer is due) and one task of the network's own, the
*driver*, calls them when they are due, in order of due time and then of arrival: one heap and
one sleeping task for the whole network instead of a receive task and a timer task per node,
each waking through a cancel scope per datagram and per timer (the cost that dominated a
1,000-node simulation). Anything else reads datagrams with ``await receive()`` from the
endpoint's own heap. All timing reads Trio's clock, so a whole mesh runs under
``trio.testing.MockClock(autojump_threshold=0)`` in virtual time.
"""

from __future__ import annotations

import heapq
import math
import random
from collections.abc import Callable, Iterable

import attrs
import trio
import trio.lowlevel
import trio.testing

from ..config import parse_address
from ..member import Address
from .base import StreamHandler, TransportError

JUMP_LIMIT = 0.05
"""Virtual seconds the driver may run ahead by jumping a mock clock before it sleeps once."""

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
        self._due: list[_Due] = []
        """What the driver will hand to driven endpoints: datagrams and timers, by due time."""
        self._driver: trio.lowlevel.TrioToken | None = None
        """The run whose system task drives this network (None: not started)."""
        self._driver_sleep: trio.CancelScope | None = None
        """The driver's sleep until the next due item (None: it is not sleeping)."""

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
        at = trio.current_time() + self._delay()
        if ep.driven:
            self._push((at, self._seq, ep, src, data, at))
        else:
            ep.enqueue(at, self._seq, src, data)

    # -- the driver ------------------------------------------------------------------------

    def _push(self, item: _Due) -> None:
        heapq.heappush(self._due, item)
        sleep = self._driver_sleep
        if sleep is not None and item[0] < sleep.deadline:
            sleep.deadline = item[0]  # wake earlier without a task switch now

    def _start_driver(self) -> None:
        """Start the driver in this run (once per run: a network can outlive a run)."""
        token = trio.lowlevel.current_trio_token()
        if self._driver is token:
            return
        self._driver = token
        self._driver_sleep = None
        self._due.clear()  # what an earlier run left is for endpoints of that run
        trio.lowlevel.spawn_system_task(self._drive, name=f"MemoryNetwork driver {id(self):x}")

    async def _drive(self) -> None:
        """Hand every due datagram and timer to its endpoint, then sleep until the next one.
        Items due at one instant go in the order they were queued, so a seeded run replays.

        Under ``MockClock(autojump_threshold=0)`` (virtual time that jumps whenever every task
        is blocked) the driver saves the sleeps it can: once every other task is blocked, a
        sleep until its next item would only let the clock jump there with nothing else
        happening, so it jumps the clock itself and goes on (see :meth:`_run_ahead`). That
        saves a scheduler pass and a cancel scope per instant, most of the instants of a big
        mesh."""
        heap = self._due
        clock = trio.lowlevel.current_clock()
        virtual = (
            isinstance(clock, trio.testing.MockClock)
            and clock.autojump_threshold == 0
            and clock.rate == 0
        )
        while True:
            self._run_due(trio.current_time())
            if virtual and heap:
                assert isinstance(clock, trio.testing.MockClock)
                await trio.testing.wait_all_tasks_blocked()
                if self._run_ahead(clock):
                    continue
            with trio.CancelScope(deadline=heap[0][0] if heap else math.inf) as sleep:
                self._driver_sleep = sleep
                await trio.sleep_forever()
            self._driver_sleep = None

    def _run_ahead(self, clock: trio.testing.MockClock) -> bool:
        """Called when every other task is blocked: jump the clock from item to item while
        nothing else could run in between, i.e. while no task is runnable and no other task's
        deadline comes first (neither can change without this task yielding, except through
        what its callbacks wake, which it checks before each jump). At most ``JUMP_LIMIT``
        virtual seconds, so that tasks waiting for the run to go idle with a cushion get their
        turn. Returns True when some task became runnable (yield to it), False when the
        driver should sleep until its next item."""
        heap = self._due
        now = trio.current_time()
        horizon = now + JUMP_LIMIT
        self._run_due(now)
        while heap:
            load = trio.lowlevel.current_statistics()
            if load.tasks_runnable:
                return True
            due = heap[0][0]
            if due > now:
                if due >= horizon or due >= now + load.seconds_to_next_deadline:
                    return False
                clock.jump(due - now)
                now = trio.current_time()
            self._run_due(now)
        return False

    def _run_due(self, now: float) -> None:
        """Hand out every item due at or before ``now``."""
        heap = self._due
        stats = self._stats
        while heap and heap[0][0] <= now:
            _, seq, ep, src, data, due = heapq.heappop(heap)
            if ep.closed or ep.failed is not None:
                continue
            if src is None:  # a timer: ``due`` holds the arming it belongs to
                if due == ep.timer_token:
                    ep.timer_token = -1
                    ep.call(ep.on_timer)
                continue
            if ep.paused_until > now:
                heapq.heappush(heap, (ep.paused_until, seq, ep, src, data, due))
                continue
            received = stats[ep.local_address]
            received.packets_received += 1
            received.bytes_received += len(data)
            if due < ep.paused_until:
                ep.count_hold(received, max(due, ep.paused_from), now)
            ep.call(ep.on_datagram, src, data)

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


_Due = tuple[float, int, "MemoryTransport", Address | None, bytes, float]
"""``(at, seq, endpoint, source, data, due)``: a datagram due at ``due`` (``at`` is later
when a pause holds it back), or with ``source`` None a timer whose ``due`` is its arming."""

DatagramCallback = Callable[[Address, bytes], None]
TimerCallback = Callable[[], None]


def _nothing(*_: object) -> None:
    """The callbacks of an endpoint nobody drives."""


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
        self.driven = False
        self.on_datagram: DatagramCallback = _nothing
        self.on_timer: TimerCallback = _nothing
        self.timer_token = -1
        """The current arming of the timer (-1: none); older armings in the heap are stale."""
        self._armings = 0
        self.failed: BaseException | None = None
        """What a callback raised; the endpoint gets nothing more once one failed."""
        self._on_failure: Callable[[BaseException], None] = _nothing

    @property
    def local_address(self) -> Address:
        return self._address

    # -- driven delivery -------------------------------------------------------------------

    def drive(
        self,
        on_datagram: DatagramCallback,
        on_timer: TimerCallback,
        on_failure: Callable[[BaseException], None],
    ) -> None:
        """Let the network push to this endpoint: ``on_datagram(source, data)`` for each
        datagram when it is due, ``on_timer()`` at the time last given to :meth:`arm`. The
        callbacks run in the network's driver task and must not block; if one raises,
        ``on_failure(exc)`` is told (the owner re-raises it in its own task) and the endpoint
        gets nothing more. Datagrams already queued for ``receive()`` move to the driver."""
        self.on_datagram, self.on_timer, self._on_failure = on_datagram, on_timer, on_failure
        self.driven = True
        self._network._start_driver()
        for item in self._heap:
            at, seq, src, data = item
            self._network._push((at, seq, self, src, data, at))
        self._heap.clear()

    def arm(self, at: float) -> None:
        """Call ``on_timer`` at Trio time ``at`` (``inf``: never), instead of any earlier
        arming."""
        self._armings += 1
        if at == math.inf:
            self.timer_token = -1
            return
        self.timer_token = self._armings
        self._network._seq += 1
        self._network._push((at, self._network._seq, self, None, b"", self.timer_token))

    def call(self, callback: Callable[..., None], *args: object) -> None:
        """Run one of the owner's callbacks; a failure stops the endpoint and goes to the
        owner."""
        try:
            callback(*args)
        except Exception as exc:
            self.failed = exc
            self._on_failure(exc)

    def send_nowait(self, address: Address, data: bytes) -> None:
        """:meth:`send` without the ``await`` (the in-memory network never blocks a sender),
        for callbacks that run in the driver."""
        if self.closed:
            raise trio.ClosedResourceError("endpoint is closed")
        self._network._deliver(self._address, address, data)

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
                    self.count_hold(stats, max(at, self.paused_from), now)
                return src, data
            wake_at = heap[0][0] if heap else math.inf
            with trio.CancelScope(deadline=max(wake_at, self.paused_until)) as waiting:
                self._waiting = waiting
                await trio.sleep_forever()
            self._waiting = None

    def count_hold(self, stats: EndpointStats, since: float, now: float) -> None:
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
        self.on_datagram, self.on_timer, self._on_failure = _nothing, _nothing, _nothing
        self.wake()
