"""Voter configurations: who may grant leases, numbered by epoch.

The voter set is configuration, never the gossip view: a set taken from the view lets an isolated
node reap everyone and become a majority of one, and two graceful changes within one lease give
quorums that do not intersect (DESIGN.md 5). A configuration changes one member at a time; each
change is a new epoch. A candidate needs a majority of every configuration it hears of in a round.
"""

from __future__ import annotations

from collections.abc import Iterable

import attrs


class VoterConfigError(ValueError):
    """A voter configuration or a change to it that the rules do not allow."""


def _voters(value: Iterable[str]) -> frozenset[str]:
    return frozenset(value)


@attrs.frozen
class VoterConfig:
    """One epoch of the voter set."""

    epoch: int
    voters: frozenset[str] = attrs.field(converter=_voters)

    def __attrs_post_init__(self) -> None:
        if self.epoch < 1:
            raise VoterConfigError(f"epoch must be >= 1, got {self.epoch}")
        if not self.voters:
            raise VoterConfigError("a voter configuration needs at least one voter")
        for name in self.voters:
            if not isinstance(name, str) or not name:
                raise VoterConfigError(f"voter names must be non-empty strings, got {name!r}")

    @property
    def majority(self) -> int:
        """Grants needed from this configuration."""
        return len(self.voters) // 2 + 1

    def has_majority(self, names: Iterable[str]) -> bool:
        return len(self.voters.intersection(names)) >= self.majority

    def out_of_reach(self, refused: Iterable[str]) -> bool:
        """True when so many voters refused that a majority can no longer be reached."""
        return len(self.voters) - len(self.voters.intersection(refused)) < self.majority

    def with_added(self, node: str) -> VoterConfig:
        """The next epoch with ``node`` added (one member at a time)."""
        if node in self.voters:
            raise VoterConfigError(f"{node!r} is already a voter (epoch {self.epoch})")
        return VoterConfig(self.epoch + 1, self.voters | {node})

    def with_removed(self, node: str) -> VoterConfig:
        """The next epoch without ``node``; the set never shrinks below one voter."""
        if node not in self.voters:
            raise VoterConfigError(f"{node!r} is not a voter (epoch {self.epoch})")
        if len(self.voters) == 1:
            raise VoterConfigError("cannot remove the last voter")
        return VoterConfig(self.epoch + 1, self.voters - {node})
