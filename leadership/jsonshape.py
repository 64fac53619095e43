"""JSON shapes of tokens and events (camelCase, RFC 3339 UTC), as OmniRelay's endpoints had."""

from __future__ import annotations

from typing import Any

from peerhealth.timefmt import rfc3339

from .tokens import LeadershipEvent, LeadershipToken


def token_json(token: LeadershipToken) -> dict[str, Any]:
    return {
        "scope": token.scope,
        "scopeKind": token.scope_kind,
        "leaderId": token.leader_id,
        "term": token.term,
        "fenceToken": token.fence_token,
        "issuedAt": rfc3339(token.issued_at),
        "expiresAt": rfc3339(token.expires_at),
        "labels": dict(token.labels),
    }


def event_json(event: LeadershipEvent) -> dict[str, Any]:
    """``eventKind`` is written as a camelCase string (OmniRelay's earlier builds did so)."""
    return {
        "eventKind": str(event.kind),
        "scope": event.scope,
        "leaderId": event.leader_id,
        "token": token_json(event.token) if event.token is not None else None,
        "reason": event.reason,
        "correlationId": event.correlation_id,
        "occurredAt": rfc3339(event.occurred_at),
        "sequence": event.sequence,
    }
