"""The availability-mode lease store (``quorum = "none"`` across agents): every node decides on
its own membership view, without voters.

A node grants itself a scope no live holder claims in its view, at a term above the highest it has
seen, and tells every live member at once. A follower believes a claim for as long as its view has
the holder alive: renewal costs no message, membership liveness is the lease. A holder that dies
or leaves loses its claims on every node that sees it go, so failover takes one failure detection.

The price is safety: a partition elects on both sides. When the sides meet again (a member comes
back alive, every holder sends it its claims) the two holders learn of each other, both report
split brain (a ``CONFLICT`` change), and the higher claim, by term and then holder, keeps the
scope; the other loses it at its next renewal, which the conflict brings forward to at once.
Terms are not persisted: after the whole mesh restarts, fences start again from 1.
"""

from __future__ import annotations

import logging
import math
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager

import attrs
import cbor2
import trio

from .messenger import MessengerError, PeerMessenger
from .quorum.wire import LeaseNotice, NoticeEntry, QuorumWireError, decode, encode
from .scopes import LeadershipScope
from .store import (
    ChangeWatcher,
    Lease,
    LeaseChange,
    LeaseChangeKind,
    LeaseOutcome,
    LeaseResult,
    watching,
)
from .tokens import Holder
from .view import LIVE_STATUSES, MembershipView

log = logging.getLogger("leadership.availability")

CLAIMS_KIND = "claims"
"""The messenger request kind every member serves: a holder's claims (acquired or released)."""
WATCH_BUFFER = 1024
RECONCILE_INTERVAL = 1.0
"""Seconds between full comparisons of the view with the members this node counts live."""


@attrs.frozen
class Claim:
    """A holder's claim of a scope at ``term``, as this node knows it."""

    holder: Holder
    term: int
    since: float
    """When this node learned of it (its own clock)."""

    @property
    def order(self) -> tuple[int, str, str]:
        """Which of two claims of one scope wins: the higher term, then the holder."""
        return (self.term, self.holder.node_id, self.holder.boot_id)


def _entry_order(entry: NoticeEntry) -> tuple[int, str, str]:
    return (entry.term, entry.holder.node_id, entry.holder.boot_id)


@attrs.define
class AvailabilityStats:
    claims_sent: int = 0
    claims_received: int = 0
    conflicts: int = 0
    """Claims of a scope this node held, by another holder (split brain seen here)."""
    unanswered: int = 0
    bad_messages: int = 0


class AvailabilityLeaseStore:
    """:class:`~leadership.store.WatchableLeaseStore` of one node in ``quorum = "none"``."""

    def __init__(
        self,
        messenger: PeerMessenger,
        view: MembershipView,
        *,
        now: Callable[[], float],
        max_duration: float,
        settle: float,
        request_timeout: float = 2.0,
    ) -> None:
        self.messenger = messenger
        self.view = view
        self._now = now
        self.max_duration = max_duration
        self.request_timeout = request_timeout
        self._settled_at = now() + settle
        self.death_grace = settle
        """How long a holder may be down in the view before its claims end here: a false death
        (the dead rumours that cross when a partition heals) is refuted well within it."""
        self._claims: dict[str, Claim] = {}
        self._highest: dict[str, int] = {}
        self._scopes: dict[str, LeadershipScope] = {}
        self._watchers: list[ChangeWatcher] = []
        self._alive: set[str] = set()
        self._down: dict[str, float] = {}
        """Members not live in the view, and since when this node has seen them so."""
        self._nursery: trio.Nursery | None = None
        self.stats = AvailabilityStats()

    @classmethod
    @asynccontextmanager
    async def open(
        cls,
        messenger: PeerMessenger,
        view: MembershipView,
        *,
        now: Callable[[], float],
        max_duration: float,
        settle: float,
        request_timeout: float = 2.0,
    ) -> AsyncIterator[AvailabilityLeaseStore]:
        """Serve claims and follow the view until the block ends. For ``settle`` seconds after
        opening this node grants nothing (members that see it join send it their claims first),
        and a holder's claims end ``settle`` seconds after the view lost it."""
        store = cls(
            messenger,
            view,
            now=now,
            max_duration=max_duration,
            settle=settle,
            request_timeout=request_timeout,
        )
        messenger.serve(CLAIMS_KIND, store._serve)
        async with trio.open_nursery() as nursery:
            store._nursery = nursery
            store._alive = store._live_members()
            for peer in sorted(store._alive):  # learn every claim (and term) known out there
                nursery.start_soon(store._send, peer, ())
            nursery.start_soon(store._follow_view)
            yield store
            nursery.cancel_scope.cancel()

    # ---------------------------------------------------------------- the store protocol

    async def acquire(self, scope: LeadershipScope, holder: Holder, duration: float) -> LeaseResult:
        key = self._remember(scope)
        claim = self._valid(key)
        if claim is not None and claim.holder == holder:
            return LeaseResult(LeaseOutcome.GRANTED, self._lease(scope, claim, duration))
        if claim is not None:
            return LeaseResult(
                LeaseOutcome.LEASE_HELD, self._lease(scope, claim), detail="claimed"
            )
        if self._now() < self._settled_at:
            return LeaseResult(
                LeaseOutcome.STORE_UNAVAILABLE,
                detail="learning the current leaders from the members that saw this node join",
            )
        term = self._highest.get(key, 0) + 1
        claim = self._claims[key] = Claim(holder, term, self._now())
        self._highest[key] = term
        self._send_everywhere(NoticeEntry("acquired", key, holder, term, 0.0))
        log.info(
            "claimed a scope (quorum none)",
            extra={"node": holder.node_id, "scope": scope.scope_id, "term": term},
        )
        return LeaseResult(LeaseOutcome.GRANTED, self._lease(scope, claim, duration))

    async def renew(
        self, scope: LeadershipScope, holder: Holder, term: int, duration: float
    ) -> LeaseResult:
        key = self._remember(scope)
        claim = self._claims.get(key)
        if claim is not None and (claim.holder, claim.term) == (holder, term):
            return LeaseResult(LeaseOutcome.GRANTED, self._lease(scope, claim, duration))
        incumbent = self._valid(key)
        lease = self._lease(scope, incumbent) if incumbent is not None else None
        return LeaseResult(LeaseOutcome.NOT_CURRENT_LEADER, lease, detail="claim superseded")

    async def release(
        self,
        scope: LeadershipScope,
        holder: Holder,
        term: int,
        *,
        successor: str | None = None,
        reserve: float = 0.0,
    ) -> LeaseResult:
        key = self._remember(scope)
        claim = self._claims.get(key)
        if claim is None or (claim.holder, claim.term) != (holder, term):
            return LeaseResult(LeaseOutcome.NOT_CURRENT_LEADER)
        del self._claims[key]
        self._send_everywhere(NoticeEntry("released", key, holder, term, 0.0))
        return LeaseResult(LeaseOutcome.RELEASED)

    async def get(self, scope: LeadershipScope) -> LeaseResult:
        key = self._remember(scope)
        claim = self._valid(key)
        if claim is None:
            return LeaseResult(LeaseOutcome.VACANT)
        return LeaseResult(LeaseOutcome.LEASE_HELD, self._lease(scope, claim))

    def watch(self) -> AsyncIterator[LeaseChange]:
        """Other holders' claims and releases, conflicts with this node's own claims, and
        claims dropped because their holder died or left, from now on."""
        return watching(self._watchers, ChangeWatcher())

    def highest_term(self, scope: LeadershipScope) -> int:
        return self._highest.get(scope.key, 0)

    # ---------------------------------------------------------------- claims

    def _remember(self, scope: LeadershipScope) -> str:
        self._scopes.setdefault(scope.key, scope)
        return scope.key

    def _mine(self, claim: Claim) -> bool:
        return claim.holder.node_id == self.messenger.local_id

    def _valid(self, key: str) -> Claim | None:
        """The scope's claim if its holder is this node or live in this node's view; down for
        less than ``death_grace``; or heard of within one lease, after the view lost the holder
        (news can overtake the view: a holder across a healed partition sends its claims before
        this node's view has it alive again)."""
        claim = self._claims.get(key)
        if claim is None or self._mine(claim):
            return claim
        member = self.view.member(claim.holder.node_id)
        if member is not None and member.status in LIVE_STATUSES:
            return claim
        now = self._now()
        down = self._down.get(claim.holder.node_id, now)
        if down < claim.since:
            return claim if now < claim.since + self.max_duration else None
        return claim if now < down + self.death_grace else None

    def _lease(self, scope: LeadershipScope, claim: Claim, duration: float = math.inf) -> Lease:
        granted = min(duration, self.max_duration)
        return Lease(
            scope_id=scope.scope_id,
            scope_kind=scope.kind,
            holder=claim.holder,
            term=claim.term,
            fence_token=claim.term,
            duration=granted,
            remaining=granted,
            age=self._now() - claim.since,
            labels=scope.labels,
        )

    def _take(self, entry: NoticeEntry, sender: str) -> NoticeEntry | None:
        """Apply one claim or release from ``sender``; returns the claim this node knows that
        beats the entry (the sender must learn of it in reply), else None."""
        key, now = entry.scope, self._now()
        self._highest[key] = max(self._highest.get(key, 0), entry.term)
        current = self._claims.get(key)
        if entry.kind == "released":
            if current is not None and (current.holder, current.term) == (entry.holder, entry.term):
                del self._claims[key]
                self._publish(LeaseChangeKind.RELEASED, key, entry.holder, entry.term)
            return None
        if entry.holder.node_id == self.messenger.local_id:
            if current is None or current.holder != entry.holder:
                # a claim of an earlier life of this node (a restart): give it up everywhere
                self._send_everywhere(NoticeEntry("released", key, entry.holder, entry.term, 0.0))
            return None
        current = self._valid(key)  # a claim whose holder this node saw die counts for nothing
        if current is not None and current.order >= _entry_order(entry):
            if self._mine(current) and current.holder != entry.holder:
                self._conflict(key, current, entry, sender, kept=True)
            if current.order > _entry_order(entry):
                return NoticeEntry("acquired", key, current.holder, current.term, 0.0)
            return None
        self._claims[key] = Claim(entry.holder, entry.term, now)
        if current is not None and self._mine(current):
            self._conflict(key, current, entry, sender, kept=False)
            # this node's followers believe its claim: tell them which one won; and tell the
            # winner of the claim it beat, so it reports the split brain too
            self._send_everywhere(entry, but=sender)
            beaten = NoticeEntry("acquired", key, current.holder, current.term, 0.0)
            self._spawn(self._send, entry.holder.node_id, (beaten,))
        else:
            scope = self._scopes.get(key)
            lease = self._lease(scope, self._claims[key]) if scope is not None else None
            if lease is not None:
                self._publish(LeaseChangeKind.ACQUIRED, key, entry.holder, entry.term, lease)
        return None

    def _conflict(self, key: str, mine: Claim, entry: NoticeEntry, sender: str, kept: bool) -> None:
        self.stats.conflicts += 1
        log.warning(
            "split brain (quorum none): another holder claims a scope this node holds",
            extra={
                "node": self.messenger.local_id,
                "scope": key,
                "term": mine.term,
                "other": entry.holder.node_id,
                "other_term": entry.term,
                "kept": kept,
                "via": sender,
            },
        )
        scope = self._scopes.get(key)
        if scope is None:
            return
        other = self._lease(scope, Claim(entry.holder, entry.term, self._now()))
        self._publish(LeaseChangeKind.CONFLICT, key, entry.holder, entry.term, other)

    def _publish(
        self,
        kind: LeaseChangeKind,
        key: str,
        holder: Holder,
        term: int,
        lease: Lease | None = None,
    ) -> None:
        change = LeaseChange(kind, key, lease, term=term, holder=holder)
        for watcher in self._watchers:
            watcher.offer(change, WATCH_BUFFER)

    # ---------------------------------------------------------------- the view

    def _live_members(self) -> set[str]:
        local = self.messenger.local_id
        return {
            m.node_id
            for m in self.view.members()
            if m.status in LIVE_STATUSES and m.node_id != local
        }

    async def _follow_view(self) -> None:
        """Keep the live set in step with the view: on every change, and once a second for a
        change that came before this task subscribed."""
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._reconcile_every, RECONCILE_INTERVAL)
            async for _ in self.view.changes():
                self._reconcile()

    async def _reconcile_every(self, interval: float) -> None:
        while True:
            await trio.sleep(interval)
            self._reconcile()

    def _reconcile(self) -> None:
        live, now = self._live_members(), self._now()
        for member in self.view.members():
            if member.node_id in live:
                self._down.pop(member.node_id, None)
            else:
                self._down.setdefault(member.node_id, now)
        for node_id in sorted(live - self._alive):
            # a member joined or came back: tell it what this node holds (holding nothing,
            # ask it for every claim it knows: an empty message asks for them)
            self._spawn(self._send, node_id, self._own_entries())
        for node_id in sorted(self._alive - live):
            self._spawn(self._drop_after_grace, node_id, self._down[node_id])
        self._alive = live

    async def _drop_after_grace(self, node_id: str, down: float) -> None:
        await trio.sleep(max(0.0, down + self.death_grace - self._now()))
        if self._down.get(node_id) == down:  # still down, since the same moment
            self._drop_claims_of(node_id)

    def _drop_claims_of(self, node_id: str) -> None:
        """A holder died or left this node's view: its claims (learned before) end here now."""
        for key, claim in list(self._claims.items()):
            if claim.holder.node_id == node_id and claim.since <= self._down[node_id]:
                del self._claims[key]
                self._publish(LeaseChangeKind.RELEASED, key, claim.holder, claim.term)

    def _own_entries(self) -> tuple[NoticeEntry, ...]:
        return tuple(
            NoticeEntry("acquired", key, claim.holder, claim.term, 0.0)
            for key, claim in sorted(self._claims.items())
            if self._mine(claim)
        )

    # ---------------------------------------------------------------- messages

    def _spawn(self, fn: Callable[..., object], *args: object) -> None:
        if self._nursery is not None:
            self._nursery.start_soon(fn, *args)  # type: ignore[arg-type]

    def _send_everywhere(self, entry: NoticeEntry, but: str = "") -> None:
        for peer in sorted(self._alive - {but}):
            self._spawn(self._send, peer, (entry,))

    async def _send(self, peer: str, entries: Iterable[NoticeEntry]) -> None:
        self.stats.claims_sent += 1
        payload = cbor2.dumps(encode(LeaseNotice(tuple(entries))))
        try:
            raw = await self.messenger.request(
                peer, CLAIMS_KIND, payload, timeout=self.request_timeout
            )
        except MessengerError:
            self.stats.unanswered += 1
            return
        answer = self._decode(peer, raw) if raw else None
        if answer is not None:
            for entry in answer.entries:
                self._take(entry, peer)

    async def _serve(self, sender: str, payload: bytes) -> bytes:
        notice = self._decode(sender, payload)
        if notice is None:
            raise QuorumWireError("expected a claims message")
        self.stats.claims_received += 1
        if not notice.entries:  # a node that holds nothing asks for every claim known here
            known = tuple(
                NoticeEntry("acquired", key, claim.holder, claim.term, 0.0)
                for key in sorted(self._claims)
                if (claim := self._valid(key)) is not None
            )
            return cbor2.dumps(encode(LeaseNotice(known))) if known else b""
        beaten = [b for b in (self._take(e, sender) for e in notice.entries) if b is not None]
        return cbor2.dumps(encode(LeaseNotice(tuple(beaten)))) if beaten else b""

    def _decode(self, sender: str, payload: bytes) -> LeaseNotice | None:
        try:
            message = decode(cbor2.loads(payload))
        except (QuorumWireError, cbor2.CBORDecodeError, ValueError) as exc:
            message = None
            error: object = exc
        else:
            error = "not a claims message"
        if isinstance(message, LeaseNotice):
            return message
        self.stats.bad_messages += 1
        log.warning(
            "dropped a malformed leadership claims message (a peer of another version?)",
            extra={"node": self.messenger.local_id, "peer": sender, "error": str(error)},
        )
        return None
