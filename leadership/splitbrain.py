"""Split-brain detection and reporting: a warning, a metric and an event under one correlation
id, for what is real, never for what the store already arbitrates:

- the incumbent of a valid token is dead or has left the membership view (or is unknown to
  it), or has been suspect for longer than the grace (one ``leaseDuration``): a refuted
  Lifeguard suspicion lasts well under that, and the leader never changed;
- two holders with overlapping valid tokens (this node still believed its lease when another
  holder acquired the scope);
- a lower fence acting after a higher one: a :class:`~leadership.fencing.FenceGuard` from
  :meth:`SplitBrainReporter.fence_guard` rejected a stale token.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable

import trio

from .announce import Announcer
from .clock import Clock
from .config import LeadershipConfig
from .fencing import FenceGuard, StaleFenceError
from .state import ScopeState
from .tokens import EventKind, LeadershipToken
from .view import ALIVE, SUSPECT, MembershipView

log = logging.getLogger("leadership.coordinator")


class SplitBrainReporter:
    """Watches the incumbents one node knows of and reports what looks like two leaders."""

    def __init__(
        self,
        announcer: Announcer,
        view: MembershipView,
        clock: Clock,
        config: LeadershipConfig,
    ) -> None:
        self._announce = announcer
        self._view = view
        self._clock = clock
        self.node_id = announcer.node_id
        self.suspect_grace = config.lease_duration
        """How long an incumbent with a valid token may be suspect before it is reported."""
        self.watch_incumbents = True
        """Report a dead, left or long-suspect incumbent (off where the store itself ends such
        a holder's leases)."""

    def holder_alive(self, node_id: str) -> bool:
        """Whether ``node_id`` is alive (not suspect) in this node's view: only then may a
        follower believe it past its lease (``Lease.believe``)."""
        return self._view.status(node_id) == ALIVE

    def check_incumbent(self, state: ScopeState) -> float:
        """Report once per term if the known incumbent is dead, left or unknown in the
        membership view (or suspect past the grace) while its token is still valid. Returns
        when to check again (the end of a running grace), or infinity."""
        known, now = state.known, self._clock.now()
        if known is None or now >= state.known_lease_until or not self.watch_incumbents:
            return math.inf
        member = self._view.member(known.leader_id)
        status = member.status if member is not None else None
        if status != SUSPECT:
            state.suspect_since = None
        if state.split_reported == known.fence_token:
            return math.inf
        if status == ALIVE or (member is None and known.leader_id == self.node_id):
            return math.inf
        if status == SUSPECT:
            if state.suspect_since is None:
                state.suspect_since = now
            if now < state.suspect_since + self.suspect_grace:
                return state.suspect_since + self.suspect_grace
        state.split_reported = known.fence_token
        self.report(
            state,
            known,
            f"incumbent is {status or 'unknown'} in the membership view while its token is valid",
            status=status or "unknown",
        )
        return math.inf

    def fence_guard(self, scopes: Callable[[str], ScopeState | None]) -> FenceGuard:
        """A :class:`FenceGuard` whose rejections are reported here: a lower fence tried to
        act after a higher one (``scopes`` finds the state of a scope id, if this node has
        it)."""

        trio_token = trio.lowlevel.current_trio_token()

        def on_stale(error: StaleFenceError) -> None:
            # A guard may be checked from any thread; reports happen in the coordinator's.
            try:
                here = trio.lowlevel.current_trio_token() is trio_token
            except RuntimeError:
                here = False
            if here:
                report(error)
            else:
                trio_token.run_sync_soon(report, error)

        def report(error: StaleFenceError) -> None:
            token = error.token
            state = scopes(token.scope)
            if state is None:
                return
            self.report(
                state,
                token,
                f"fence {token.fence_token} from {token.leader_id} acted after fence "
                f"{error.highest} from {error.holder}",
                highest=error.highest,
                other=error.holder,
            )

        return FenceGuard(on_stale=on_stale)

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
