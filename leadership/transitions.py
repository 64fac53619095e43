"""What happens to a scope's state when something is learnt, and what is announced.

Every change of a scope's :class:`~leadership.state.ScopeState` that the outside world can
see goes through here, synchronously and without waiting for anything, so that believing and
announcing never drift apart: become leader, extend, end (which always stops believing
first), observe another holder, forget it, report a conflict.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import attrs

from .announce import Announcer
from .clock import Clock
from .config import LeadershipConfig
from .metrics import LeadershipMetrics
from .splitbrain import SplitBrainReporter
from .state import ScopeState
from .store import Lease
from .tokens import EventKind, Holder, LeadershipToken


class Transitions:
    """The state transitions of one node's scopes."""

    def __init__(
        self,
        config: LeadershipConfig,
        holder: Holder,
        clock: Clock,
        announcer: Announcer,
        split: SplitBrainReporter,
        metrics: LeadershipMetrics,
    ) -> None:
        self.config = config
        self.holder = holder
        self.node_id = holder.node_id
        self._clock = clock
        self._announce = announcer
        self._split = split
        self._metrics = metrics
        self.led = 0
        """How many scopes this node leads now."""

    def vacant(self, state: ScopeState, now: float) -> None:
        """The store says nobody holds the scope: forget a known incumbent."""
        self.forget_incumbent(state, EventKind.EXPIRED, "lease expired")
        if state.vacant_since is None:
            state.vacant_since = now

    def forget_incumbent(self, state: ScopeState, kind: EventKind, reason: str) -> None:
        """The incumbent this node knew of is gone: say so under its term's correlation id."""
        token, state.known = state.known, None
        if token is not None:
            correlation = state.known_correlation
            self._announce.emit(state.scope, kind, token, reason, correlation, token.leader_id)
            self.leader_seen(state)

    def become_leader(self, state: ScopeState, lease: Lease, start: float) -> None:
        # The term this node led before, which the store still has it hold (a renewal whose
        # reply came too late): the same term and fence, the same correlation id.
        restored = lease.term in (state.stale_term, state.ended_term)
        state.saw_term(lease.term)
        state.stale_term = 0
        state.leading = True
        state.known = None
        state.deadline = start + self.config.validity(lease.duration)
        state.renew_at = self._renew_at(state)
        state.correlation = state.ended_correlation if restored else self._announce.new_id()
        issued = self._clock.now() - lease.age
        state.token = self._announce.token(state.scope, lease, issued, state.deadline)
        state.reserved_for, state.reserved_until = None, -math.inf
        self.led += 1
        self._metrics.scopes_led.set(self.led)
        took = 0.0 if state.vacant_since is None else self._clock.now() - state.vacant_since
        state.vacant_since = None
        if not restored:
            self._announce.election_took(state.scope, took, state.correlation)
        reason = "lease restored" if restored else "acquired"
        self._announce.emit(
            state.scope, EventKind.ELECTED, state.token, reason, state.correlation, self.node_id
        )
        if state.listener is not None:
            state.listener.elected(state.token)
            state.listener.extended(state.deadline)
        self.leader_seen(state)

    def extend(self, state: ScopeState, lease: Lease, start: float) -> None:
        assert state.token is not None
        state.deadline = max(state.deadline, start + self.config.validity(lease.duration))
        state.renew_at = self._renew_at(state)
        state.token = attrs.evolve(state.token, expires_at=self._announce.to_wall(state.deadline))
        self._announce.emit(
            state.scope,
            EventKind.RENEWED,
            state.token,
            "lease renewed",
            state.correlation,
            self.node_id,
        )
        if state.listener is not None:
            state.listener.extended(state.deadline)

    def _renew_at(self, state: ScopeState) -> float:
        """``renewalLeadTime`` before the deadline, or halfway there when the lease granted
        is shorter than that (renewing at once would loop at one instant)."""
        left = state.deadline - self._clock.now()
        return state.deadline - min(self.config.renewal_lead_time, left / 2)

    def end(self, state: ScopeState, kind: EventKind, reason: str) -> LeadershipToken | None:
        """Stop believing (first, always): abandons in-flight rounds for the scope."""
        token = state.token
        state.generation += 1
        if not state.leading or token is None:
            return None
        state.leading = False
        state.token = None
        state.ended_term, state.ended_correlation = token.term, state.correlation
        state.deadline, state.renew_at = -math.inf, math.inf
        self.led -= 1
        self._metrics.scopes_led.set(self.led)
        self._announce.emit(state.scope, kind, token, reason, state.correlation, self.node_id)
        if state.listener is not None:
            state.listener.ended(token, reason)
        self.leader_seen(state)
        state.poke()
        return token

    def observe(self, state: ScopeState, lease: Lease) -> bool:
        """Another holder (or an earlier round of ours) holds the scope; False if it is ours."""
        now = self._clock.now()
        if lease.holder == self.holder:
            # Ours, from a round whose reply we gave up on: renew it to learn its validity.
            if not state.leading:
                state.stale_term = lease.term
            return False
        state.saw_term(lease.term)
        token = self._announce.token(state.scope, lease, now - lease.age, now + lease.remaining)
        fresh = (
            state.known is None
            or state.known.fence_token != token.fence_token
            or state.known.leader_id != token.leader_id
        )
        state.known = token
        state.follow(lease, now, self._split.holder_alive(token.leader_id))
        state.vacant_since = None
        state.failures = 0
        state.reserved_for, state.reserved_until = None, -math.inf
        if fresh:
            state.known_correlation = self._announce.new_id()
            self._announce.emit(
                state.scope,
                EventKind.OBSERVED,
                token,
                "observed incumbent",
                state.known_correlation,
                token.leader_id,
            )
            self.leader_seen(state)
        return True

    def leader_seen(self, state: ScopeState) -> None:
        if state.listener is not None:
            state.listener.leader_seen(state.leader_of(self._clock.now()))

    def conflict(self, state: ScopeState, lease: Lease) -> None:
        """Another holder acquired a scope this node still believes it leads: two leaders.
        Reported as split brain; this node steps down at once (its lease is the older)."""
        self._split.report(
            state,
            state.token,
            f"{lease.holder.node_id} acquired fence {lease.fence_token} while this node led",
            other=lease.holder.node_id,
        )
        self.end(state, EventKind.LOST, "lease revoked")

    def current_tokens(
        self, scopes: Mapping[str, ScopeState]
    ) -> dict[str, tuple[LeadershipToken, str]]:
        """Every scope's current token as this node knows it now (the hub's token source):
        its own while it believes it leads, else a known incumbent's until its lease ends."""
        now, out = self._clock.now(), {}
        for key, state in scopes.items():
            if state.believes(now) and state.token is not None:
                out[key] = (state.token, state.correlation)
            elif state.known is not None and now < state.known_until:
                expires = self._announce.to_wall(state.known_until)
                if state.known.expires_at != expires:
                    state.known = attrs.evolve(state.known, expires_at=expires)
                out[key] = (state.known, state.known_correlation)
        return out
