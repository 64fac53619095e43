"""Candidate scoring: the one total order every node computes from the same membership view.

Order: higher ``priority`` first, healthy before unhealthy, then a rendezvous hash of
``(scope, node)`` (higher first) so that shard leadership spreads evenly, then node name.
Candidates advertise themselves in gossip metadata under the ``leadership.*`` keys below.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable, Mapping, Sequence

import attrs

from .scopes import LeadershipScope, scope_matches

log = logging.getLogger("leadership.scoring")

META_SCOPES = "leadership.scopes"
"""Comma-separated scope patterns the node may lead; its presence makes a node a candidate."""
META_PRIORITY = "leadership.priority"
META_HEALTHY = "leadership.healthy"
META_ROLES = "leadership.roles"
"""Comma-separated roles the node has for leadership, besides its gossip ``role``."""
GOSSIP_ROLE = "role"
MAX_PRIORITY = 2**31 - 1


@attrs.frozen
class Candidate:
    node_id: str
    priority: int = 0
    healthy: bool = True
    patterns: tuple[str, ...] = ("*",)
    roles: frozenset[str] = frozenset()

    def eligible_for(self, scope: LeadershipScope) -> bool:
        """May lead ``scope``: a pattern names it, and it has one of the roles it asks for."""
        if scope.roles and not self.roles.intersection(scope.roles):
            return False
        return any(scope_matches(p, scope.scope_id) for p in self.patterns)


def candidate_metadata(
    priority: int, healthy: bool, patterns: Sequence[str], roles: Sequence[str] = ()
) -> dict[str, str]:
    """The gossip metadata that advertises a candidate (read back by :func:`candidate_from`)."""
    return {
        META_SCOPES: ",".join(patterns),
        META_PRIORITY: str(priority),
        META_HEALTHY: "true" if healthy else "false",
        META_ROLES: ",".join(roles),
    }


def roles_from(metadata: Mapping[str, str]) -> frozenset[str]:
    """A member's roles: ``leadership.roles`` plus its gossip ``role``."""
    roles = {r.strip() for r in metadata.get(META_ROLES, "").split(",") if r.strip()}
    if metadata.get(GOSSIP_ROLE):
        roles.add(metadata[GOSSIP_ROLE])
    return frozenset(roles)


def candidate_from(node_id: str, metadata: Mapping[str, str]) -> Candidate | None:
    """The candidate a member's metadata describes, or None when it is not a candidate (or its
    metadata is malformed, which is logged and treated as not a candidate)."""
    patterns_text = metadata.get(META_SCOPES)
    if patterns_text is None:
        return None
    patterns = tuple(p.strip() for p in patterns_text.split(",") if p.strip())
    try:
        priority = int(metadata.get(META_PRIORITY, "0"))
    except ValueError:
        log.debug("ignoring candidate with a malformed priority", extra={"node": node_id})
        return None
    if not -MAX_PRIORITY <= priority <= MAX_PRIORITY:
        log.debug("ignoring candidate with an out-of-range priority", extra={"node": node_id})
        return None
    healthy = metadata.get(META_HEALTHY, "true").strip().lower() != "false"
    return Candidate(node_id, priority, healthy, patterns, roles_from(metadata))


def rendezvous_weight(scope_key: str, node_id: str) -> int:
    """A stable 64-bit weight of ``(scope, node)``, the same in every process and version."""
    digest = hashlib.blake2b(
        scope_key.encode() + b"\x00" + node_id.encode(), digest_size=8
    ).digest()
    return int.from_bytes(digest, "big")


def sort_key(scope: LeadershipScope, candidate: Candidate) -> tuple[int, int, int, str]:
    """Ascending sort key: best candidate first."""
    return (
        -candidate.priority,
        0 if candidate.healthy else 1,
        -rendezvous_weight(scope.key, candidate.node_id),
        candidate.node_id,
    )


def rank_candidates(scope: LeadershipScope, candidates: Iterable[Candidate]) -> list[Candidate]:
    """The eligible candidates for ``scope``, best first (a total, deterministic order)."""
    eligible = [c for c in candidates if c.eligible_for(scope)]
    eligible.sort(key=lambda c: sort_key(scope, c))
    return eligible
