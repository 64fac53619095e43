"""Leadership tokens and events: the values every observer, log line and endpoint carries.

Timestamps are wall-clock ``datetime`` in UTC (the API edge); the coordinator decides validity
on its own monotonic clock and only maps deadlines to wall time for display.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from datetime import datetime

import attrs

from .scopes import labels_dict


@attrs.frozen
class Holder:
    """Who holds a lease: a node and the random id of its current process start. A restarted
    node is a new holder and never renews its previous incarnation's term."""

    node_id: str
    boot_id: str


@attrs.frozen
class LeadershipToken:
    """Proof of leadership for one term of one scope. ``fence_token`` strictly increases per
    scope across terms; resources reject any token whose fence is lower than one they saw."""

    scope: str
    scope_kind: str
    leader_id: str
    term: int
    fence_token: int
    issued_at: datetime
    expires_at: datetime
    labels: Mapping[str, str] = attrs.field(factory=dict, converter=labels_dict)


class EventKind(enum.StrEnum):
    SNAPSHOT = "snapshot"
    """A current token, sent to a new subscriber before live events."""
    OBSERVED = "observed"
    """This node saw another node lead a scope (a new leader or a new term)."""
    ELECTED = "elected"
    RENEWED = "renewed"
    LOST = "lost"
    """This node's lease was refused or revoked by the store."""
    EXPIRED = "expired"
    """This node could not renew in time and stepped down at its own deadline."""
    STEPPED_DOWN = "steppedDown"
    """This node gave the scope up: stop, unhealthy, or a transfer."""
    SPLIT_BRAIN = "splitBrain"
    """Two leaders may exist: an incumbent with a valid token is dead, left or long suspect;
    overlapping valid tokens; or a lower fence acted after a higher one (docs: leadership)."""
    GAP = "gap"
    """A subscriber fell behind the hub's history; events were skipped (never silently)."""


ENDING_KINDS = frozenset({EventKind.LOST, EventKind.EXPIRED, EventKind.STEPPED_DOWN})
"""Kinds after which this node no longer knows a leader for the scope."""


@attrs.frozen
class LeadershipEvent:
    kind: EventKind
    scope: str
    leader_id: str | None
    token: LeadershipToken | None
    reason: str
    correlation_id: str
    occurred_at: datetime
    sequence: int = 0
    """Set by the :class:`~leadership.hub.LeadershipEventHub` when it publishes the event."""
