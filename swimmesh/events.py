"""Membership events a node reports about its peers."""

from __future__ import annotations

import enum

import attrs

from .member import Member


class MemberEventKind(enum.StrEnum):
    JOIN = "join"
    """A member became known (or came back after being dead or left)."""
    UPDATE = "update"
    """An alive member changed its metadata or address."""
    SUSPECT = "suspect"
    ALIVE = "alive"
    """A suspected member refuted the suspicion."""
    DEAD = "dead"
    LEAVE = "leave"


@attrs.frozen
class MemberEvent:
    kind: MemberEventKind
    member: Member
