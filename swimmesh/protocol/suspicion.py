"""Lifeguard's local-health-aware suspicion: a timeout that shrinks with confirmations.

The timer starts at ``max`` and falls towards ``min`` as independent peers confirm the
suspicion, following memberlist: ``max(min, max - (max - min) * log(c + 1) / log(k + 1))``.
:class:`SuspicionTracker` holds every running suspicion of a node with its timers.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import partial

from ..config import MeshConfig
from ..member import MemberState, MemberStatus
from .table import MemberTable
from .timers import Timer, TimerQueue


def suspicion_bounds(
    suspicion_mult: int, max_timeout_mult: int, n: int, probe_interval: float
) -> tuple[float, float]:
    """Return ``(min, max)`` suspicion timeouts for a cluster of ``n`` nodes."""
    node_scale = max(1.0, math.log10(max(1, n)))
    minimum = suspicion_mult * node_scale * probe_interval
    return minimum, max_timeout_mult * minimum


def suspicion_timeout(minimum: float, maximum: float, confirmations: int, k: int) -> float:
    """Timeout after ``confirmations`` independent confirmations out of ``k`` expected."""
    if k < 1:
        return minimum
    frac = math.log(confirmations + 1) / math.log(k + 1)
    return max(minimum, maximum - (maximum - minimum) * frac)


class Suspicion:
    """The suspicion of one member at one incarnation, with its confirmers."""

    __slots__ = ("confirmers", "incarnation", "k", "maximum", "minimum", "start")

    def __init__(
        self,
        start: float,
        incarnation: int,
        first_source: str,
        k: int,
        minimum: float,
        maximum: float,
    ) -> None:
        self.start = start
        self.incarnation = incarnation
        self.confirmers = {first_source}
        self.k = k
        self.minimum = minimum
        self.maximum = maximum

    def confirm(self, source: str) -> bool:
        """Record an independent confirmation; True if it was new (and so worth re-gossiping)."""
        if len(self.confirmers) - 1 >= self.k or source in self.confirmers:
            return False
        self.confirmers.add(source)
        return True

    @property
    def confirmations(self) -> int:
        return len(self.confirmers) - 1

    def deadline(self) -> float:
        return self.start + suspicion_timeout(
            self.minimum, self.maximum, self.confirmations, self.k
        )


SuspicionCallback = Callable[[MemberState, float], None]
"""Called with ``(state of the suspect, now)``."""


class SuspicionTracker:
    """Every suspicion this node holds, each with its own timers (as memberlist's
    ``suspicion.go``): the expiry, brought forward by each new independent confirmation, and
    with Lifeguard two "last call" nudges shortly before it.

    Why nudge: epidemic gossip leaves a small chance (about e^-7 per node) that one node misses
    a refutation; if that node holds the suspicion it would run to its end and declare a live
    node dead. So the suspecter tells the suspect directly, twice, shortly before the
    deadline: a live suspect answers with its current incarnation at once; a dead one costs two
    packets.

    The tracker only keeps time. It calls ``on_expire`` when a suspicion runs out and
    ``on_nudge`` at each last call, and only while the member is still suspected at the
    incarnation the suspicion was about (the table may have moved on since).
    """

    def __init__(
        self,
        config: MeshConfig,
        table: MemberTable,
        timers: TimerQueue,
        *,
        on_expire: SuspicionCallback,
        on_nudge: SuspicionCallback,
    ) -> None:
        self._config = config
        self._table = table
        self._timers = timers
        self._on_expire = on_expire
        self._on_nudge = on_nudge
        lifeguard = config.lifeguard
        self._nudge_leads = (2 * config.probe_interval, config.probe_timeout) if lifeguard else ()
        self._running: dict[str, tuple[Suspicion, list[Timer]]] = {}

    def __contains__(self, name: str) -> bool:
        return name in self._running

    def __len__(self) -> int:
        return len(self._running)

    def get(self, name: str) -> Suspicion | None:
        entry = self._running.get(name)
        return None if entry is None else entry[0]

    def bounds(self) -> tuple[float, float]:
        """Current ``(min, max)`` timeouts for the live members of the table."""
        c = self._config
        return suspicion_bounds(
            c.suspicion_mult, c.suspicion_max_timeout_mult, self._table.live, c.probe_interval
        )

    def start(self, state: MemberState, source: str, now: float) -> None:
        """Suspect ``state``'s member at its incarnation, replacing any earlier suspicion.
        With Lifeguard, ``suspicion_mult - 2`` independent confirmations are expected (none
        when too few members could give them); without, the timeout is fixed at the minimum."""
        self.cancel(state.name)
        c = self._config
        minimum, maximum = self.bounds()
        k = c.suspicion_mult - 2
        if not c.lifeguard or self._table.live - 2 < k:
            k = 0
        suspicion = Suspicion(now, state.incarnation, source or "?", k, minimum, maximum)
        self._running[state.name] = (suspicion, self._arm(state.name, suspicion, now))

    def confirm(self, name: str, source: str, now: float) -> bool:
        """Count an independent confirmation and bring the deadline forward; True if it was
        new (and so worth re-gossiping)."""
        entry = self._running.get(name)
        if entry is None or not entry[0].confirm(source):
            return False
        suspicion, timers = entry
        for timer in timers:
            timer.cancel()
        self._running[name] = (suspicion, self._arm(name, suspicion, now))
        return True

    def cancel(self, name: str) -> None:
        entry = self._running.pop(name, None)
        if entry is not None:
            for timer in entry[1]:
                timer.cancel()

    def _arm(self, name: str, suspicion: Suspicion, now: float) -> list[Timer]:
        deadline = max(suspicion.deadline(), now)
        timers = [self._timers.schedule(deadline, partial(self._expire, name))]
        for lead in self._nudge_leads:
            at = deadline - lead
            if at > now:
                timers.append(self._timers.schedule(at, partial(self._nudge, name, suspicion)))
        return timers

    def _still_suspected(self, name: str, suspicion: Suspicion) -> MemberState | None:
        state = self._table.get(name)
        if state is None or state.status is not MemberStatus.SUSPECT:
            return None
        return state if state.incarnation == suspicion.incarnation else None

    def _expire(self, name: str, now: float) -> None:
        entry = self._running.pop(name, None)
        state = None if entry is None else self._still_suspected(name, entry[0])
        if state is not None:
            self._on_expire(state, now)

    def _nudge(self, name: str, suspicion: Suspicion, now: float) -> None:
        state = self._still_suspected(name, suspicion)
        if state is not None:
            self._on_nudge(state, now)
