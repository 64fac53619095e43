"""The event hub: one sequenced, bounded history of leadership events and the current tokens.

Subscribers are cursors over the history, not queues: publishing never waits for anyone, a
slow subscriber only falls behind, and one that falls behind the history (or resumes from a
sequence the hub no longer has) gets an explicit ``gap`` event and a fresh snapshot, never a
silent drop.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Collection
from datetime import UTC, datetime
from types import TracebackType

import attrs
import trio

from .scopes import scope_matches
from .tokens import ENDING_KINDS, EventKind, LeadershipEvent, LeadershipToken

log = logging.getLogger("leadership.hub")

EventListener = Callable[[LeadershipEvent], None]
TokenSource = Callable[[], dict[str, tuple[LeadershipToken, str]]]
"""Current tokens by folded scope id, with the correlation id of the term each belongs to."""
_SETS_TOKEN = frozenset({EventKind.ELECTED, EventKind.RENEWED, EventKind.OBSERVED})


def utc_now() -> datetime:
    return datetime.now(UTC)


class LeadershipEventHub:
    """Publishes events with per-hub sequence numbers; keeps ``history_size`` of them."""

    def __init__(self, history_size: int = 1024, *, wall: Callable[[], datetime] = utc_now) -> None:
        self._history: deque[LeadershipEvent] = deque(maxlen=history_size)
        self._sequence = 0
        self._tokens: dict[str, tuple[LeadershipToken, str]] = {}
        self._lot = trio.lowlevel.ParkingLot()
        self._listeners: list[EventListener] = []
        self._wall = wall
        self._source: TokenSource | None = None

    @property
    def sequence(self) -> int:
        """The sequence number of the newest event (0 before any)."""
        return self._sequence

    @property
    def oldest_sequence(self) -> int:
        """The oldest sequence still in the history (``sequence + 1`` when it is empty)."""
        return self._history[0].sequence if self._history else self._sequence + 1

    def set_token_source(self, source: TokenSource | None) -> None:
        """Read current tokens from ``source`` (a coordinator knows them better than its
        events: renewals it hears of move expiries without an event) instead of from events."""
        self._source = source

    def _current(self) -> dict[str, tuple[LeadershipToken, str]]:
        return self._source() if self._source is not None else self._tokens

    def tokens(self, scope: str | None = None) -> list[LeadershipToken]:
        """Current tokens (sorted by scope), optionally for one scope (exact, any case)."""
        if scope is not None:
            found = self.token(scope)
            return [found] if found is not None else []
        return [t for _, (t, _) in sorted(self._current().items())]

    def token(self, scope: str) -> LeadershipToken | None:
        found = self._current().get(scope.casefold())
        return found[0] if found else None

    def history(self) -> list[LeadershipEvent]:
        return list(self._history)

    def add_listener(self, listener: EventListener) -> None:
        """Call ``listener(event)`` synchronously on every publish (keep it fast)."""
        self._listeners.append(listener)

    def remove_listener(self, listener: EventListener) -> None:
        self._listeners.remove(listener)

    def publish(self, event: LeadershipEvent) -> LeadershipEvent:
        """Sequence ``event``, record it, wake subscribers; returns the sequenced event."""
        self._sequence += 1
        event = attrs.evolve(event, sequence=self._sequence)
        self._history.append(event)
        key = event.scope.casefold()
        if event.kind in _SETS_TOKEN and event.token is not None:
            self._tokens[key] = (event.token, event.correlation_id)
        elif event.kind in ENDING_KINDS:
            current = self._tokens.get(key)
            if current is not None and (
                event.token is None or current[0].fence_token <= event.token.fence_token
            ):
                del self._tokens[key]
        for listener in list(self._listeners):
            try:
                listener(event)
            except Exception:
                log.exception("leadership event listener failed")
        self._lot.unpark_all()
        return event

    def subscribe(
        self,
        scope: str = "*",
        *,
        kinds: Collection[EventKind | str] | None = None,
        leader: str | None = None,
        after_sequence: int | None = None,
    ) -> Subscription:
        """Events whose scope matches the glob ``scope``, of ``kinds``, led by ``leader``.

        Without ``after_sequence``: a ``snapshot`` event per current token, then live events.
        With it: every retained event after that sequence, then live ones; if the history no
        longer reaches back that far, a ``gap`` event and a snapshot instead."""
        return Subscription(self, scope, kinds, leader, after_sequence)

    def _snapshot(self, sub: Subscription) -> list[LeadershipEvent]:
        out = []
        for _, (token, correlation) in sorted(self._current().items()):
            event = LeadershipEvent(
                EventKind.SNAPSHOT,
                token.scope,
                token.leader_id,
                token,
                "snapshot",
                correlation,
                self._wall(),
                self._sequence,
            )
            if sub.accepts(event):
                out.append(event)
        return out

    def _gap(self, reason: str) -> LeadershipEvent:
        return LeadershipEvent(
            EventKind.GAP, "*", None, None, reason, "", self._wall(), self._sequence
        )


class Subscription:
    """An async iterator of :class:`LeadershipEvent`; see :meth:`LeadershipEventHub.subscribe`."""

    def __init__(
        self,
        hub: LeadershipEventHub,
        scope: str,
        kinds: Collection[EventKind | str] | None,
        leader: str | None,
        after_sequence: int | None,
    ) -> None:
        self._hub = hub
        self.scope = scope
        self.kinds = frozenset(EventKind(k) for k in kinds) if kinds is not None else None
        self.leader = leader
        self._pending: deque[LeadershipEvent] = deque()
        if after_sequence is None:
            self._cursor = hub.sequence
            self._pending.extend(hub._snapshot(self))
        elif after_sequence > hub.sequence:
            self._jump(f"sequence {after_sequence} is ahead of this hub (it restarted?)")
        else:
            self._cursor = max(after_sequence, 0)
        self.gaps = 0

    def accepts(self, event: LeadershipEvent) -> bool:
        if event.kind is EventKind.GAP:
            return True
        if self.kinds is not None and event.kind not in self.kinds:
            return False
        if self.leader is not None and event.leader_id != self.leader:
            return False
        return event.scope == "*" or scope_matches(self.scope, event.scope)

    def _jump(self, reason: str) -> LeadershipEvent:
        hub = self._hub
        gap = hub._gap(reason)
        self._cursor = hub.sequence
        self._pending.append(gap)
        self._pending.extend(hub._snapshot(self))
        return gap

    def next_nowait(self) -> LeadershipEvent | None:
        """The next event if one is ready, else None."""
        hub = self._hub
        while True:
            if self._pending:
                return self._pending.popleft()
            if self._cursor >= hub.sequence:
                return None
            first = hub.oldest_sequence
            wanted = self._cursor + 1
            if wanted < first:
                self.gaps += 1
                log.warning(
                    "leadership subscriber fell behind the history",
                    extra={"missed_from": wanted, "missed_to": first - 1},
                )
                self._jump(f"missed events {wanted}..{first - 1}")
                continue
            event = hub._history[wanted - first]
            self._cursor = wanted
            if self.accepts(event):
                return event

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> LeadershipEvent:
        while True:
            event = self.next_nowait()
            if event is not None:
                await trio.lowlevel.checkpoint()
                return event
            await self._hub._lot.park()

    async def __aenter__(self) -> Subscription:
        return self

    async def __aexit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        return None
