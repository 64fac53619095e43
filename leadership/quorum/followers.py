"""What a node knows of other holders' leases, from notices and refusals, and its change feed.

Holders send notices (acquired, renewed, released) to every member. A follower keeps the newest
incumbent per scope until that lease could have ended on its own clock, or, when the notice lets
it (``believe``), for longer while the holder stays alive in its view; it drops news of a term
already released (a reordered or late renewal notice). The change feed
(:meth:`IncumbentBoard.watch`) turns notices into :class:`~leadership.store.LeaseChange`s for a
coordinator; a watcher that falls behind gets one ``RESYNC`` instead of a silent loss. All of it is
advisory: the voters alone decide who leads.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Callable

import attrs

from ..store import ChangeWatcher, Lease, LeaseChange, LeaseChangeKind, watching
from ..tokens import Holder
from .wire import NoticeEntry

WATCH_BUFFER = 1024
MIN_REMAINING = 0.01
"""A lease with less than this left (seconds) is reported as gone: a caller that wakes at its
end would otherwise loop without time passing (the clock's float rounding)."""

_KINDS = {
    "acquired": LeaseChangeKind.ACQUIRED,
    "renewed": LeaseChangeKind.RENEWED,
    "released": LeaseChangeKind.RELEASED,
}


@attrs.frozen
class Known:
    """An incumbent: its holder and term, whose lease could end at ``until`` on this node's
    clock, believed up to ``believe_until`` while the holder is alive in this node's view."""

    holder: Holder
    term: int
    until: float
    believe_until: float = -math.inf


class IncumbentBoard:
    """Known incumbents per scope key, released terms, and the watchers of the change feed."""

    def __init__(self, factor: float, alive: Callable[[str], bool] | None = None) -> None:
        self.factor = factor
        """``(1 - eps) / (1 + eps)``: a lease reported on another clock, counted on ours."""
        self.alive = alive
        """Whether a node is alive in this node's view; without it, notices' ``believe`` is
        ignored and an incumbent is known for its lease only."""
        self._known: dict[str, Known] = {}
        self._released: dict[str, int] = {}
        self._watchers: list[ChangeWatcher] = []

    def learn(
        self,
        key: str,
        holder: Holder,
        term: int,
        remaining: float,
        now: float,
        believe: float = 0.0,
    ) -> None:
        """Remember an incumbent until its lease (as a voter or holder reported it) could end,
        or ``believe`` seconds while it stays alive."""
        known = self._known.get(key)
        if known is not None and known.term > term:
            return  # stale news
        believe_until = now + believe * self.factor if believe > 0 else -math.inf
        self._known[key] = Known(holder, term, now + remaining * self.factor, believe_until)

    def current(self, key: str, mine: Holder | None, now: float) -> Known | None:
        """The incumbent of ``key`` other than ``mine`` with at least MIN_REMAINING left of its
        lease, or of the belief its notice allows while its holder is alive."""
        known = self._known.get(key)
        if known is None or known.holder == mine:
            return None
        if known.until - now >= MIN_REMAINING:
            return known
        if known.believe_until - now >= MIN_REMAINING and self._alive(known.holder.node_id):
            return known
        del self._known[key]
        return None

    def _alive(self, node_id: str) -> bool:
        return self.alive is not None and self.alive(node_id)

    def take(self, entry: NoticeEntry, now: float, lease: Lease | None) -> None:
        """Apply a holder's notice; publish it to the watchers when the scope is one of ours
        (``lease`` is the notice as a lease, or None for a scope this node does not follow)."""
        known = self._known.get(entry.scope)
        if known is not None and entry.term < known.term:
            return  # older than what this node knows: reordered or stale
        if entry.kind != "released" and entry.term <= self._released.get(entry.scope, 0):
            return  # news of a term already released, overtaken by the release
        if entry.kind == "released":
            self._released[entry.scope] = max(self._released.get(entry.scope, 0), entry.term)
            if known is not None and (known.holder, known.term) == (entry.holder, entry.term):
                del self._known[entry.scope]
        else:
            self.learn(entry.scope, entry.holder, entry.term, entry.remaining, now, entry.believe)
        if lease is not None:
            self.publish(LeaseChange(_KINDS[entry.kind], entry.scope, lease))

    def watch(self) -> AsyncIterator[LeaseChange]:
        return watching(self._watchers, ChangeWatcher())

    def publish(self, change: LeaseChange) -> None:
        for watcher in self._watchers:
            watcher.offer(change, WATCH_BUFFER)  # behind: its backlog becomes one resync
