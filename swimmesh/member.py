"""Member records, statuses and the merge rule that orders claims about a member.

A member's state is the join of two max-registers over the claims heard about it:

* the *status register* keeps the greatest ``(incarnation, status)`` pair, where at equal
  incarnation ``LEFT > DEAD > SUSPECT > ALIVE``;
* the *identity register* keeps the greatest ``(is_alive_claim, incarnation, meta_version,
  address, metadata)`` tuple, so the newest ``alive`` claim decides address and metadata.

Each register is a join-semilattice, so applying any permutation (with duplicates) of the same
claims yields the same record: the merge is commutative, associative and idempotent.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

import attrs

Address = tuple[str, int]
"""A transport address: ``(host, port)``."""


class MemberStatus(enum.IntEnum):
    """Lifecycle of a member; the integer order is the precedence at equal incarnation."""

    ALIVE = 0
    SUSPECT = 1
    DEAD = 2
    LEFT = 3

    @property
    def label(self) -> str:
        """The JSON spelling used by the control plane (``"Alive"``, ``"Suspect"``, ...)."""
        return self.name.capitalize()


def _freeze(metadata: Mapping[str, str]) -> Mapping[str, str]:
    """A read-only view; an existing read-only view is shared, anything else is copied."""
    if type(metadata) is MappingProxyType:
        return metadata
    return MappingProxyType(dict(metadata))


_EMPTY: Mapping[str, str] = MappingProxyType({})


@attrs.frozen
class Claim:
    """One statement about a member, as carried by gossip or by a push-pull state entry.

    ``metadata`` and ``meta_version`` are meaningful only for ``ALIVE`` claims; other
    claims carry the address they last knew so an unknown member can still be contacted.
    """

    name: str
    incarnation: int
    status: MemberStatus
    address: Address
    meta_version: int = 0
    metadata: Mapping[str, str] = attrs.field(factory=dict, converter=_freeze)
    source: str = ""
    """Who made the claim (for suspicion confirmations); not part of the ordering."""

    def status_key(self) -> tuple[int, int]:
        """The ordering key of the status register."""
        return (self.incarnation, int(self.status))

    def identity_key(self) -> tuple[Any, ...]:
        """The ordering key of the identity register (address and metadata)."""
        if self.status is MemberStatus.ALIVE:
            return (
                1,
                self.incarnation,
                self.meta_version,
                self.address,
                tuple(sorted(self.metadata.items())),
            )
        return (0, self.incarnation, 0, self.address, ())


@attrs.frozen
class Member:
    """A read-only view of one member, as a node sees it at one moment."""

    name: str
    address: Address
    status: MemberStatus
    incarnation: int
    metadata: Mapping[str, str] = attrs.field(converter=_freeze)
    meta_version: int
    rtt_ms: float | None = None
    """Exponentially weighted moving average of the direct probe round trip."""
    last_rtt_ms: float | None = None
    last_change: float = 0.0
    """Node-local monotonic time of the last status or identity change."""
    last_seen: float | None = None
    """Node-local monotonic time of the last direct ack from this member."""

    @property
    def is_alive(self) -> bool:
        return self.status is MemberStatus.ALIVE


@attrs.define(slots=True)
class MemberState:
    """The mutable merge state of one member inside a node's table."""

    name: str
    incarnation: int
    status: MemberStatus
    address: Address
    meta_version: int
    metadata: Mapping[str, str]
    identity: tuple[Any, ...]
    last_change: float = 0.0
    rtt_ms: float | None = None
    last_rtt_ms: float | None = None
    last_seen: float | None = None
    _claim: Claim | None = None

    @classmethod
    def from_claim(cls, claim: Claim, now: float) -> MemberState:
        alive = claim.status is MemberStatus.ALIVE
        return cls(
            name=claim.name,
            incarnation=claim.incarnation,
            status=claim.status,
            address=claim.address,
            meta_version=claim.meta_version if alive else 0,
            metadata=claim.metadata if alive else _EMPTY,
            identity=claim.identity_key(),
            last_change=now,
        )

    def holds(self, claim: Claim) -> bool:
        """True if ``claim`` is an exact echo of this state: merging it changes nothing."""
        return (
            claim.incarnation == self.incarnation
            and claim.status is self.status
            and claim.meta_version == self.meta_version
            and claim.address == self.address
            and (claim.status is not MemberStatus.ALIVE or claim.metadata == self.metadata)
        )

    def merge(self, claim: Claim, now: float) -> tuple[bool, bool]:
        """Fold ``claim`` into this state; return ``(status_changed, identity_changed)``."""
        if self.holds(claim):
            return False, False  # an exact echo of what we already hold: merging is a no-op
        status_changed = False
        identity_changed = False
        if claim.status_key() > (self.incarnation, int(self.status)):
            status_changed = claim.status is not self.status
            self.incarnation = claim.incarnation
            self.status = claim.status
        key = claim.identity_key()
        if key > self.identity:
            self.identity = key
            identity_changed = claim.address != self.address
            self.address = claim.address
            if claim.status is MemberStatus.ALIVE:
                identity_changed = identity_changed or (
                    claim.meta_version != self.meta_version
                    or dict(claim.metadata) != dict(self.metadata)
                )
                self.meta_version = claim.meta_version
                self.metadata = claim.metadata
        self._claim = None  # the register moved, even if nothing shows yet
        if status_changed or identity_changed:
            self.last_change = now
        return status_changed, identity_changed

    def view(self) -> Member:
        return Member(
            name=self.name,
            address=self.address,
            status=self.status,
            incarnation=self.incarnation,
            metadata=self.metadata,
            meta_version=self.meta_version,
            rtt_ms=self.rtt_ms,
            last_rtt_ms=self.last_rtt_ms,
            last_change=self.last_change,
            last_seen=self.last_seen,
        )

    def to_claim(self) -> Claim:
        """This state as one claim (for push-pull), carrying status and identity."""
        if self._claim is None:
            self._claim = Claim(
                name=self.name,
                incarnation=self.incarnation,
                status=self.status,
                address=self.address,
                meta_version=self.meta_version,
                metadata=self.metadata,
            )
        return self._claim


def merge_claims(
    table: dict[str, MemberState], claims: list[Claim], now: float = 0.0
) -> dict[str, MemberState]:
    """Fold claims into a table with the pure merge rule (no protocol side effects)."""
    for claim in claims:
        state = table.get(claim.name)
        if state is None:
            table[claim.name] = MemberState.from_claim(claim, now)
        else:
            state.merge(claim, now)
    return table
