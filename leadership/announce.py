"""How a coordinator says what happened: one event goes to the hub, the audit log, the
transition metric and a structured log line, all under one correlation id."""

from __future__ import annotations

import logging
import random
from datetime import UTC, datetime

from .audit import AuditLog
from .clock import Clock
from .config import LeadershipConfig
from .hub import LeadershipEventHub
from .metrics import LeadershipMetrics
from .scopes import LeadershipScope
from .store import Lease
from .tokens import EventKind, LeadershipEvent, LeadershipToken

log = logging.getLogger("leadership.coordinator")

COUNTED = frozenset(
    {
        EventKind.ELECTED,
        EventKind.RENEWED,
        EventKind.LOST,
        EventKind.EXPIRED,
        EventKind.STEPPED_DOWN,
    }
)
"""Transitions of this node's own leadership, counted in the transitions metric."""


class Announcer:
    """Publishes one node's leadership events and maps its lease clock to wall time."""

    def __init__(
        self,
        node_id: str,
        clock: Clock,
        rng: random.Random,
        hub: LeadershipEventHub,
        metrics: LeadershipMetrics,
        audit: AuditLog,
        wall0: float,
        config: LeadershipConfig,
    ) -> None:
        self.node_id = node_id
        self.max_election_window = config.max_election_window
        self.hub = hub
        self.metrics = metrics
        self.audit = audit
        self._clock = clock
        self._rng = rng
        self._mono0 = clock.now()
        self._wall0 = wall0

    def emit(
        self,
        scope: LeadershipScope,
        kind: EventKind,
        token: LeadershipToken | None,
        reason: str,
        correlation: str,
        leader: str | None,
    ) -> LeadershipEvent:
        event = self.hub.publish(
            LeadershipEvent(
                kind,
                scope.scope_id,
                leader,
                token,
                reason,
                correlation,
                self.to_wall(self._clock.now()),
            )
        )
        self.audit.append(event)
        if kind in COUNTED and leader == self.node_id:
            self.metrics.transitions.labels(
                scope.scope_id, scope.kind, leader, kind.value.lower()
            ).inc()
        level = logging.DEBUG if kind is EventKind.RENEWED else logging.INFO
        if log.isEnabledFor(level):
            fields = {
                "node": self.node_id,
                "scope": scope.scope_id,
                "kind": kind.value,
                "leader": leader,
                "term": token.term if token else None,
                "fence": token.fence_token if token else None,
                "reason": reason,
                "correlation_id": correlation,
                "sequence": event.sequence,
            }
            log.log(level, "leadership %s", kind.value, extra=fields)
        return event

    def election_took(self, scope: LeadershipScope, took: float, correlation: str) -> None:
        """Record how long a new term took to elect; warn past ``maxElectionWindow``."""
        self.metrics.election_duration.labels(scope.scope_id, scope.kind).observe(took * 1000)
        if took > self.max_election_window:
            log.warning(
                "election took longer than maxElectionWindow",
                extra={
                    "node": self.node_id,
                    "scope": scope.scope_id,
                    "seconds": round(took, 3),
                    "max_election_window": self.max_election_window,
                    "correlation_id": correlation,
                },
            )

    def token(
        self, scope: LeadershipScope, lease: Lease, issued: float, expires: float
    ) -> LeadershipToken:
        """The token for ``lease``, its lease-clock times mapped to wall time."""
        return LeadershipToken(
            scope=scope.scope_id,
            scope_kind=scope.kind,
            leader_id=lease.holder.node_id,
            term=lease.term,
            fence_token=lease.fence_token,
            issued_at=self.to_wall(issued),
            expires_at=self.to_wall(expires),
            labels=scope.labels,
        )

    def to_wall(self, mono: float) -> datetime:
        return datetime.fromtimestamp(self._wall0 + (mono - self._mono0), UTC)

    def new_id(self) -> str:
        """A fresh correlation id."""
        return f"{self._rng.getrandbits(64):016x}"
