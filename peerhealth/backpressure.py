"""``BackpressureMonitor`` with Hugo's semantics: watermarks with hysteresis and a cooldown on
notifications, listeners that get the current signal on registering, a latest-plus-history
diagnostics listener, drain waiters, and adapters for Trio channels and ``len()``-able queues.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Sized
from datetime import datetime
from typing import Any, Generic, TypeVar

import attrs
import trio

from .tracker import utc_now

T = TypeVar("T")
Listener = Callable[["BackpressureSignal"], None]


@attrs.frozen
class BackpressureSignal:
    is_active: bool
    pending_count: int
    high_watermark: int
    low_watermark: int
    observed_at: datetime


def resolve_low_watermark(high: int, low: int | None) -> int:
    """Hugo's rule: a low watermark <= 0 or >= high (or none) becomes ``max(1, high // 2)``."""
    if low is None or low <= 0 or low >= high:
        return max(1, high // 2)
    return low


class BackpressureMonitor:
    """Turns queue depths into active/inactive signals.

    Inactive and depth >= high: active. Active and depth <= low: inactive. The state flips at
    once; notifications to listeners are held back during ``cooldown`` after the last one, and
    the state as it then is gets announced at the first observation after the cooldown.
    """

    def __init__(
        self,
        high_watermark: int = 512,
        low_watermark: int | None = None,
        cooldown: float = 5.0,
        *,
        monotonic: Callable[[], float] = time.monotonic,
        wall: Callable[[], datetime] = utc_now,
    ) -> None:
        if high_watermark < 1:
            raise ValueError("high_watermark must be >= 1")
        if cooldown < 0:
            raise ValueError("cooldown must be >= 0")
        self.high_watermark = high_watermark
        self.low_watermark = resolve_low_watermark(high_watermark, low_watermark)
        self.cooldown = cooldown
        self._monotonic = monotonic
        self._wall = wall
        self._lock = threading.Lock()
        self._active = False
        self._depth = 0
        self._latest: BackpressureSignal | None = None
        self._last_notified_at = -float("inf")
        self._pending = False
        self._listeners: list[Listener] = []
        self._drained: list[trio.Event] = []
        self.transitions = 0
        self.notifications = 0

    @property
    def is_active(self) -> bool:
        return self._active

    @property
    def latest(self) -> BackpressureSignal | None:
        """The last signal announced to listeners (None before the first)."""
        return self._latest

    def _signal(self) -> BackpressureSignal:
        return BackpressureSignal(
            self._active, self._depth, self.high_watermark, self.low_watermark, self._wall()
        )

    def observe(self, depth: int) -> BackpressureSignal | None:
        """Record the current depth; return the signal if one was announced now."""
        with self._lock:
            self._depth = depth
            if not self._active and depth >= self.high_watermark:
                self._active = True
                self.transitions += 1
                self._pending = True
            elif self._active and depth <= self.low_watermark:
                self._active = False
                self.transitions += 1
                self._pending = True
                drained, self._drained = self._drained, []
                for event in drained:
                    event.set()
            if self._latest is None and not self._pending:
                self._pending = True  # the very first observation is announced too
            if not self._pending or self._monotonic() - self._last_notified_at < self.cooldown:
                return None
            if self._latest is not None and self._latest.is_active == self._active:
                self._pending = False  # flipped and flipped back during the cooldown
                return None
            signal = self._announce_locked()
            listeners = list(self._listeners)
        for listener in listeners:
            listener(signal)
        return signal

    def _announce_locked(self) -> BackpressureSignal:
        signal = self._signal()
        self._latest = signal
        self._pending = False
        self._last_notified_at = self._monotonic()
        self.notifications += 1
        return signal

    def add_listener(self, listener: Listener) -> None:
        """Register ``listener``; it gets the current signal at once (if there is one)."""
        with self._lock:
            self._listeners.append(listener)
            current = self._latest
        if current is not None:
            listener(current)

    def remove_listener(self, listener: Listener) -> None:
        with self._lock:
            if listener in self._listeners:
                self._listeners.remove(listener)

    async def wait_for_draining(self) -> None:
        """Return once backpressure is inactive (at once if it already is)."""
        with self._lock:
            if not self._active:
                return
            event = trio.Event()
            self._drained.append(event)
        await event.wait()


class BackpressureDiagnostics:
    """A listener keeping the latest signal and a bounded history (oldest dropped, counted)."""

    def __init__(self, capacity: int = 128) -> None:
        self.latest: BackpressureSignal | None = None
        self.history: deque[BackpressureSignal] = deque(maxlen=capacity)
        self.dropped = 0
        self._changed = trio.Event()

    def __call__(self, signal: BackpressureSignal) -> None:
        if len(self.history) == self.history.maxlen:
            self.dropped += 1
        self.history.append(signal)
        self.latest = signal
        self._changed.set()
        self._changed = trio.Event()

    async def next_signal(self) -> BackpressureSignal:
        """Wait for the next signal (for streaming endpoints)."""
        await self._changed.wait()
        assert self.latest is not None
        return self.latest


class MonitoredSendChannel(Generic[T]):
    """A Trio memory send channel that reports its buffer depth after every send."""

    def __init__(self, inner: trio.MemorySendChannel[T], monitor: BackpressureMonitor) -> None:
        self.inner = inner
        self.monitor = monitor

    async def send(self, value: T) -> None:
        await self.inner.send(value)
        self.monitor.observe(self.inner.statistics().current_buffer_used)

    def send_nowait(self, value: T) -> None:
        self.inner.send_nowait(value)
        self.monitor.observe(self.inner.statistics().current_buffer_used)


class MonitoredReceiveChannel(Generic[T]):
    """A Trio memory receive channel that reports its buffer depth after every receive."""

    def __init__(self, inner: trio.MemoryReceiveChannel[T], monitor: BackpressureMonitor) -> None:
        self.inner = inner
        self.monitor = monitor

    async def receive(self) -> T:
        value = await self.inner.receive()
        self.monitor.observe(self.inner.statistics().current_buffer_used)
        return value


def monitored_memory_channel(
    max_buffer: float, monitor: BackpressureMonitor
) -> tuple[MonitoredSendChannel[Any], MonitoredReceiveChannel[Any]]:
    """A Trio memory channel whose depth feeds ``monitor`` on every send and receive."""
    send, receive = trio.open_memory_channel[Any](max_buffer)
    return MonitoredSendChannel(send, monitor), MonitoredReceiveChannel(receive, monitor)


async def watch_depth(monitor: BackpressureMonitor, queue: Sized, interval: float = 0.1) -> None:
    """Sample ``len(queue)`` every ``interval`` seconds into ``monitor`` (for queues that cannot
    report their own changes); runs until cancelled."""
    while True:
        monitor.observe(len(queue))
        await trio.sleep(interval)
