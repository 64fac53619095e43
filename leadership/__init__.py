"""Lease-based, priority-scored leader elections per scope, with fencing tokens.

Usable without the rest of swimmesh: it reaches membership through the
:class:`~leadership.view.MembershipView` protocol and leases through a
:class:`~leadership.store.LeaseStore`. Start with :class:`LeadershipCoordinator`.
"""

from .audit import AuditLog
from .clock import BootTime, Clock, TrioTime
from .config import LeadershipConfig, LeadershipConfigError, parse_duration
from .coordinator import LeadershipCoordinator, NotLeaderError, TransferError
from .election import Election, LeadershipLost
from .fencing import FencedResource, FenceGuard, StaleFenceError
from .hub import LeadershipEventHub, Subscription
from .jsonshape import event_json, token_json
from .memory import InMemoryLeaseStore
from .messenger import MessengerError, PeerMessenger
from .metrics import LeadershipMetrics
from .scopes import (
    GLOBAL_CONTROL,
    KIND_CUSTOM,
    KIND_GLOBAL,
    KIND_SHARD,
    InvalidScopeError,
    LeadershipScope,
    parse_scope,
    scope_from_descriptor,
    scope_matches,
)
from .scoring import Candidate, candidate_from, candidate_metadata, rank_candidates
from .store import (
    Lease,
    LeaseChange,
    LeaseChangeKind,
    LeaseOutcome,
    LeaseResult,
    LeaseStore,
    WatchableLeaseStore,
)
from .tokens import EventKind, Holder, LeadershipEvent, LeadershipToken
from .view import MembershipView, ViewMember

__all__ = [
    "GLOBAL_CONTROL",
    "KIND_CUSTOM",
    "KIND_GLOBAL",
    "KIND_SHARD",
    "AuditLog",
    "BootTime",
    "Candidate",
    "Clock",
    "Election",
    "EventKind",
    "FenceGuard",
    "FencedResource",
    "Holder",
    "InMemoryLeaseStore",
    "InvalidScopeError",
    "LeadershipConfig",
    "LeadershipConfigError",
    "LeadershipCoordinator",
    "LeadershipEvent",
    "LeadershipEventHub",
    "LeadershipLost",
    "LeadershipMetrics",
    "LeadershipScope",
    "LeadershipToken",
    "Lease",
    "LeaseChange",
    "LeaseChangeKind",
    "LeaseOutcome",
    "LeaseResult",
    "LeaseStore",
    "MembershipView",
    "MessengerError",
    "NotLeaderError",
    "PeerMessenger",
    "StaleFenceError",
    "Subscription",
    "TransferError",
    "TrioTime",
    "ViewMember",
    "WatchableLeaseStore",
    "candidate_from",
    "candidate_metadata",
    "event_json",
    "parse_duration",
    "parse_scope",
    "rank_candidates",
    "scope_from_descriptor",
    "scope_matches",
    "token_json",
]
