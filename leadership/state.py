"""What one node knows about one scope: the record the coordinator's scope task keeps, and
the small read-only surface the election handle uses.

A scope is, for this node, in one of three situations at a time:

- **leading**: it holds a term (``token``) and believes it until ``deadline`` on its lease
  clock; it renews at ``renew_at``;
- **following**: it knows another holder's term (``known``) valid until ``known_until``, and
  reads the store again at ``next_read``;
- **vacant**: neither; ``vacant_since`` says since when, and the campaign fields say when it
  may campaign.

The coordinator owns every write. The election handle only reads, through :meth:`believes`,
:meth:`leader_of` and ``token``, and is driven through :class:`ScopeListener`.
"""

from __future__ import annotations

import math
from typing import Protocol

import attrs
import trio

from .scopes import LeadershipScope
from .store import Lease, LeaseChange, LeaseChangeKind
from .tokens import LeadershipToken


class ScopeListener(Protocol):
    """What the coordinator tells the scope's election handle (if a service asked for one)."""

    def elected(self, token: LeadershipToken) -> None: ...

    def extended(self, deadline: float) -> None: ...

    def ended(self, token: LeadershipToken, reason: str) -> None: ...

    def leader_seen(self, leader: str | None) -> None: ...


@attrs.define(eq=False)
class ScopeState:
    """One scope's state on this node. Every deadline is on the coordinator's lease clock."""

    scope: LeadershipScope
    node_id: str
    wake: trio.Event = attrs.Factory(trio.Event)
    next_at: float = -math.inf
    """When the scope task evaluates the scope next (it may be woken earlier)."""
    sleep: trio.CancelScope | None = None
    """The scope task's sleep, whose deadline moves when a store change postpones the next
    read."""
    # while this node leads
    leading: bool = False
    token: LeadershipToken | None = None
    deadline: float = -math.inf
    renew_at: float = math.inf
    correlation: str = ""
    generation: int = 0
    """Bumped whenever this node stops believing: a round started under an older generation
    is abandoned when its reply lands."""
    # what this node knows of another holder
    known: LeadershipToken | None = None
    known_until: float = -math.inf
    """Until when this node believes the known incumbent: its lease, or longer while it is
    alive in the view when its notice allows a belief (see ``Lease.believe``)."""
    known_lease_until: float = -math.inf
    """Until when the known incumbent's lease could run, as last reported."""
    next_read: float = -math.inf
    """When to read the store again about a known incumbent: the end of its lease with a
    watchable store, at most one evaluation interval away without one."""
    known_correlation: str = ""
    split_reported: int = 0
    conflict_reported: tuple[int, int] = (0, 0)
    """(own fence, other's fence) of the last conflicting claim reported (quorum none)."""
    suspect_since: float | None = None
    """Since when the known incumbent has been suspect in the view (split-brain grace)."""
    # campaigning
    vacant_since: float | None = None
    reserved_for: str | None = None
    reserved_until: float = -math.inf
    failures: int = 0
    ended_term: int = 0
    ended_correlation: str = ""
    """The last term this node led and its correlation id (a restored term keeps both)."""
    stale_term: int = 0
    """A term the store says this holder has but this node does not believe (a reply it gave
    up on): renewed to learn its validity, or released."""
    latest_term: int = 0
    """The highest term this node has seen for the scope (its own, read, or in a change)."""
    listener: ScopeListener | None = None
    rank: tuple[int, int | None] = (-1, None)
    """(view version, this node's rank) cached until the candidates change."""

    def poke(self) -> None:
        """Wake the scope task now."""
        self.wake.set()

    def believes(self, now: float) -> bool:
        """True while this node leads and its own deadline has not passed."""
        return self.leading and now < self.deadline

    def leader_of(self, now: float) -> str | None:
        """The leader this node knows of at ``now`` (itself included), or None."""
        if self.believes(now):
            return self.node_id
        if self.known is not None and now < self.known_until:
            return self.known.leader_id
        return None

    def follow(self, lease: Lease, now: float, holder_alive: bool) -> None:
        """Believe ``lease``'s holder for its lease, or for its belief while it is alive."""
        self.known_lease_until = self.known_until = now + lease.remaining
        if lease.believe > 0 and holder_alive:
            self.known_until = max(self.known_until, now + lease.believe)

    def is_stale(self, change: LeaseChange) -> bool:
        """True for a change about an older term than one this node has seen, or an
        acquisition of the very term this node leads (stale or reordered deliveries). A
        change that names no term (0) is taken as current."""
        if change.term == 0:
            return False
        if change.term < self.latest_term:
            return True
        return (
            change.kind is LeaseChangeKind.ACQUIRED
            and self.leading
            and change.term == self.latest_term
        )

    def saw_term(self, term: int) -> None:
        self.latest_term = max(self.latest_term, term)

    def current_token(self, now: float) -> LeadershipToken | None:
        """This node's token while it believes it leads."""
        return self.token if self.believes(now) else None
