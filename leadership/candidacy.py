"""This node's candidacy and its view of the other candidates: who may campaign, in what
order, and who is a preferred successor.

The coordinator asks three questions of it: may this node campaign for a scope
(:meth:`Candidacy.may_campaign`), where does it rank among the healthy live candidates
(:meth:`Candidacy.rank`, cached per scope until the view changes), and, with ``preempt``,
whom should a leader hand a scope to and from when (:meth:`Candidacy.preferred`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import attrs

from .clock import Clock
from .config import LeadershipConfig
from .scopes import LeadershipScope
from .scoring import Candidate, candidate_from, candidate_metadata, rank_candidates
from .state import ScopeState
from .view import ALIVE, LIVE_STATUSES, MembershipView


class Candidacy:
    """Candidacy bookkeeping for one node: its health, the candidate list, ranks, stability."""

    def __init__(
        self, config: LeadershipConfig, view: MembershipView, node_id: str, clock: Clock
    ) -> None:
        self.config = config
        self.view = view
        self.node_id = node_id
        self._clock = clock
        self.healthy = True
        self.stopping = False
        """Set once the coordinator is stopping: it no longer campaigns or ranks itself."""
        self._health_metadata: dict[str, str] = {}
        self._candidates: list[Candidate] | None = None
        self._version = 0
        self._stable_since: dict[str, float] = {}

    def set_health(self, healthy: bool, metadata: Mapping[str, str] | None) -> bool:
        """Record this node's health; True if it changed."""
        changed = healthy != self.healthy
        self.healthy = healthy
        if metadata is not None:
            self._health_metadata = {f"leadership.health.{k}": v for k, v in metadata.items()}
        self.view_changed()
        return changed

    async def publish(self) -> None:
        """Advertise this node's candidacy (priority, health, eligible scopes, roles)."""
        patterns = self.config.eligible_scopes if self.config.enabled else ()
        config = self.config
        metadata = candidate_metadata(config.priority, self.healthy, patterns, config.roles)
        metadata.update(self._health_metadata)
        await self.view.publish(metadata)

    async def retract(self) -> None:
        """Advertise that this node no longer takes part (it is stopping)."""
        self.stopping = True
        self.view_changed()
        await self.view.publish(
            candidate_metadata(self.config.priority, False, (), self.config.roles)
        )

    def may_campaign(self, scope: LeadershipScope) -> bool:
        return (
            self.config.enabled
            and self.healthy
            and not self.stopping
            and self.self_candidate().eligible_for(scope)
        )

    def candidates(self) -> list[Candidate]:
        """Every live candidate in this node's view (itself included while it takes part);
        a suspect member counts as unhealthy."""
        if self._candidates is None:
            out = []
            for member in self.view.members():
                if member.node_id == self.node_id or member.status not in LIVE_STATUSES:
                    continue
                candidate = candidate_from(member.node_id, member.metadata)
                if candidate is None:
                    continue
                if member.status != ALIVE:
                    candidate = attrs.evolve(candidate, healthy=False)
                out.append(candidate)
            if not self.stopping and self.config.enabled:
                out.append(self.self_candidate())
            self._candidates = out
        return self._candidates

    def candidate(self, node_id: str) -> Candidate | None:
        return next((c for c in self.candidates() if c.node_id == node_id), None)

    def self_candidate(self) -> Candidate:
        """This node as a candidate, from its own state (its view of itself may lag)."""
        me = self.view.member(self.node_id)
        gossip_role = me.metadata.get("role") if me is not None else None
        roles = frozenset(self.config.roles) | ({gossip_role} if gossip_role else set())
        return Candidate(
            self.node_id, self.config.priority, self.healthy, self.config.eligible_scopes, roles
        )

    def view_changed(self) -> None:
        """Candidates (or this node's own candidacy) changed: ranks must be computed again."""
        self._candidates = None
        self._version += 1

    def rank(self, state: ScopeState) -> int | None:
        """This node's place among the scope's healthy live candidates; None if it may not
        campaign. Cached per scope until the candidates change."""
        version, rank = state.rank
        if version == self._version:
            return rank
        rank = None
        if self.may_campaign(state.scope):
            ranked = rank_candidates(state.scope, self.candidates())
            healthy = [c for c in ranked if c.healthy]
            rank = next((i for i, c in enumerate(healthy) if c.node_id == self.node_id), None)
        state.rank = (self._version, rank)
        return rank

    def campaign_at(self, state: ScopeState, rank: int) -> float:
        """When a candidate of ``rank`` may campaign for a scope found vacant."""
        if state.vacant_since is None:
            return math.inf
        wait = min(rank * self.config.election_backoff, self.config.max_election_window)
        return state.vacant_since + wait

    def note_stability(self, node_id: str) -> None:
        """Track since when each candidate has been alive and healthy without a break."""
        member = self.view.member(node_id)
        candidate = candidate_from(node_id, member.metadata) if member is not None else None
        if member is None or member.status != ALIVE or candidate is None or not candidate.healthy:
            self._stable_since.pop(node_id, None)
        else:
            self._stable_since.setdefault(node_id, self._clock.now())

    def preferred(self, scope: LeadershipScope) -> tuple[str | None, float]:
        """With ``preempt``: the better-ranked candidate this node should hand ``scope`` to,
        and from when (it must have been alive and healthy for ``stable_after``)."""
        if not self.config.preempt or not self.healthy or self.stopping:
            return None, math.inf
        ranked = [c for c in rank_candidates(scope, self.candidates()) if c.healthy]
        if not ranked or ranked[0].node_id == self.node_id:
            return None, math.inf
        best = ranked[0].node_id
        since = self._stable_since.get(best)
        if since is None:
            return None, math.inf
        return best, since + self.config.stable_after
