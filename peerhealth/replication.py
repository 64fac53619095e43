"""A replication source in the spirit of Hugo's ``TaskQueueReplicationSource``: monotonically
sequenced events (from 1), and a checkpointing sink that skips positions it already applied and
exposes its lag in sequence numbers and wall-clock time."""

from __future__ import annotations

import enum
import inspect
import threading
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from datetime import datetime
from types import MappingProxyType

import attrs
import trio

from .tracker import utc_now


class ReplicationEventKind(enum.StrEnum):
    ENQUEUED = "Enqueued"
    LEASE_GRANTED = "LeaseGranted"
    HEARTBEAT = "Heartbeat"
    COMPLETED = "Completed"
    FAILED = "Failed"
    REQUEUED = "Requeued"
    DEAD_LETTERED = "DeadLettered"
    LEASE_EXPIRED = "LeaseExpired"
    DRAINED = "Drained"


def _frozen(value: Mapping[str, str]) -> Mapping[str, str]:
    return MappingProxyType(dict(value))


@attrs.frozen
class ReplicationEvent:
    sequence: int
    kind: ReplicationEventKind
    peer: str | None
    payload: Mapping[str, str] = attrs.field(factory=dict, converter=_frozen)
    occurred_at: datetime = attrs.field(factory=utc_now)


class ReplicationSource:
    """Publishes sequenced events to subscribers, keeping a bounded history for catch-up."""

    def __init__(self, history: int = 4096, *, wall: Callable[[], datetime] = utc_now) -> None:
        self._lock = threading.Lock()
        self._sequence = 0
        self._history: deque[ReplicationEvent] = deque(maxlen=history)
        self._wall = wall
        self._changed = trio.Event()

    @property
    def last_sequence(self) -> int:
        return self._sequence

    def publish(
        self,
        kind: ReplicationEventKind,
        peer: str | None = None,
        payload: Mapping[str, str] | None = None,
    ) -> ReplicationEvent:
        """Append an event (call from the Trio thread; from others use ``trio.from_thread``)."""
        with self._lock:
            self._sequence += 1
            event = ReplicationEvent(self._sequence, kind, peer, payload or {}, self._wall())
            self._history.append(event)
        changed, self._changed = self._changed, trio.Event()
        changed.set()
        return event

    async def events(self, after: int = 0) -> AsyncIterator[ReplicationEvent]:
        """Events with a sequence above ``after``, from history then live, in order."""
        position = after
        while True:
            pending = [e for e in list(self._history) if e.sequence > position]
            for event in pending:
                position = event.sequence
                yield event
            if not pending:
                await self._changed.wait()


Apply = Callable[[ReplicationEvent], Awaitable[None] | None]


class CheckpointingSink:
    """Applies each event at most once: skips positions at or below its global checkpoint, or
    below the peer's own checkpoint, and records how far behind the source it is."""

    def __init__(
        self,
        apply: Apply,
        checkpoint: int = 0,
        peer_checkpoints: Mapping[str, int] | None = None,
        *,
        wall: Callable[[], datetime] = utc_now,
    ) -> None:
        self._apply = apply
        self.checkpoint = checkpoint
        self.peer_checkpoints: dict[str, int] = dict(peer_checkpoints or {})
        self.applied = 0
        self.skipped = 0
        self.last_applied_at: datetime | None = None
        self._wall = wall

    async def handle(self, event: ReplicationEvent) -> bool:
        """Apply ``event`` unless already applied; True if applied."""
        peer_mark = self.peer_checkpoints.get(event.peer, 0) if event.peer is not None else 0
        if event.sequence <= self.checkpoint or event.sequence <= peer_mark:
            self.skipped += 1
            return False
        result = self._apply(event)
        if inspect.isawaitable(result):
            await result
        self.checkpoint = event.sequence
        if event.peer is not None:
            self.peer_checkpoints[event.peer] = event.sequence
        self.applied += 1
        self.last_applied_at = event.occurred_at
        return True

    def sequence_lag(self, source: ReplicationSource) -> int:
        return max(0, source.last_sequence - self.checkpoint)

    def wall_lag(self) -> float:
        """Seconds between now and when the last applied event happened (0 before any)."""
        if self.last_applied_at is None:
            return 0.0
        return max(0.0, (self._wall() - self.last_applied_at).total_seconds())

    async def run(self, source: ReplicationSource) -> None:
        """Consume ``source`` from this sink's checkpoint until cancelled."""
        async for event in source.events(after=self.checkpoint):
            await self.handle(event)
