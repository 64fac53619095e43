"""Split-brain detection and reporting: a warning, a metric and an event under one correlation
id, for each situation DESIGN.md 5 names."""

from __future__ import annotations

import logging

from .announce import Announcer
from .clock import Clock
from .state import ScopeState
from .tokens import EventKind, LeadershipToken
from .view import ALIVE, MembershipView

log = logging.getLogger("leadership.coordinator")


class SplitBrainReporter:
    """Watches the incumbents one node knows of and reports what looks like two leaders."""

    def __init__(self, announcer: Announcer, view: MembershipView, clock: Clock) -> None:
        self._announce = announcer
        self._view = view
        self._clock = clock
        self.node_id = announcer.node_id

    def check_incumbent(self, state: ScopeState) -> None:
        """Report once per term if the known incumbent dropped out of the membership view
        while its token is still valid."""
        known = state.known
        if known is None or self._clock.now() >= state.known_until:
            return
        if state.split_reported == known.fence_token:
            return
        member = self._view.member(known.leader_id)
        status = member.status if member is not None else None
        if status == ALIVE or (member is None and known.leader_id == self.node_id):
            return
        state.split_reported = known.fence_token
        self.report(
            state,
            known,
            f"incumbent is {status or 'unknown'} in the membership view while its token is valid",
            status=status or "unknown",
        )

    def report(
        self, state: ScopeState, token: LeadershipToken | None, reason: str, **fields: object
    ) -> None:
        """One split-brain report: the metric, a structured warning and the event, all with
        one correlation id."""
        leader = token.leader_id if token is not None else self.node_id
        correlation = self._announce.new_id()
        self._announce.metrics.split_brain.labels(state.scope.scope_id, leader).inc()
        log.warning(
            "split brain: %s",
            reason,
            extra={
                "node": self.node_id,
                "scope": state.scope.scope_id,
                "leader": leader,
                "fence": token.fence_token if token is not None else None,
                "correlation_id": correlation,
                **fields,
            },
        )
        self._announce.emit(state.scope, EventKind.SPLIT_BRAIN, token, reason, correlation, leader)
