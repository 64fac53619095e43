"""Changing the voter set: one member at a time, in two phases, with a gap (DESIGN.md 5).

A change from epoch ``e`` to ``e + 1`` adds or removes exactly one voter:

1. **Prepare.** The voters of the old configuration store the new one durably (from then on
   their replies carry it, so candidates need a majority of both) and report their promised
   terms. The change moves on once a majority of the old set has stored it.
2. **Commit.** The voters of the new configuration adopt it and raise their promised terms to
   the highest reported in phase 1, so a new voter never grants a term an old majority refused.
   The change is complete once a majority of the new set has adopted it.

The next change may start only ``max_duration / (1 - eps)`` of true time after completion, so
every grant made under the configuration before last has run out; the proposer measures it on a
clock that may run ``1 + eps`` fast. One proposer at a time; a change that stopped half-way is
completed by proposing the same change again (both phases are idempotent), and a change may
not be rolled back once any voter stored it (voters never go back to a lower epoch).
"""

from __future__ import annotations

import enum

import attrs

from .candidate import Outbound
from .membership import VoterConfig, VoterConfigError
from .wire import ConfigCommit, ConfigCommitted, ConfigPrepare, ConfigPrepared


class ChangePhase(enum.Enum):
    PREPARE = "prepare"
    COMMIT = "commit"
    DONE = "done"


def change_gap(max_duration: float, max_drift: float) -> float:
    """The wait after a completed change, on the proposer's clock (``1 + eps`` fast at worst)."""
    return max_duration * (1 + max_drift) / (1 - max_drift)


@attrs.define
class ConfigChange:
    """One voter-set change, driven by acknowledgements; :meth:`pending` lists what to (re)send."""

    old: VoterConfig
    new: VoterConfig
    phase: ChangePhase = ChangePhase.PREPARE
    prepared: set[str] = attrs.field(factory=set)
    committed: set[str] = attrs.field(factory=set)
    terms: dict[str, int] = attrs.field(factory=dict)
    done_at: float | None = None

    def __attrs_post_init__(self) -> None:
        if self.new.epoch != self.old.epoch + 1:
            raise VoterConfigError(
                f"a change goes from epoch {self.old.epoch} to {self.old.epoch + 1}, "
                f"not {self.new.epoch}"
            )
        if len(self.old.voters ^ self.new.voters) != 1:
            raise VoterConfigError("a change adds or removes exactly one voter")

    def pending(self) -> Outbound | None:
        """The message still owed in this phase and the voters that have not answered it."""
        if self.phase is ChangePhase.PREPARE:
            return Outbound(
                frozenset(self.old.voters - self.prepared), ConfigPrepare(self.old, self.new)
            )
        if self.phase is ChangePhase.COMMIT:
            terms = tuple(sorted(self.terms.items()))
            return Outbound(
                frozenset(self.new.voters - self.committed), ConfigCommit(self.new, terms)
            )
        return None

    def on_prepared(self, ack: ConfigPrepared) -> bool:
        """Count a phase-1 answer; True when the change moved to commit."""
        if (
            self.phase is not ChangePhase.PREPARE
            or ack.epoch != self.new.epoch
            or not ack.accepted
            or ack.voter not in self.old.voters
        ):
            return False
        self.prepared.add(ack.voter)
        for scope, term in ack.terms:
            self.terms[scope] = max(self.terms.get(scope, 0), term)
        if self.old.has_majority(self.prepared):
            self.phase = ChangePhase.COMMIT
            return True
        return False

    def on_committed(self, ack: ConfigCommitted, now: float) -> bool:
        """Count a phase-2 answer; True when the change completed (at ``now``)."""
        if (
            self.phase is not ChangePhase.COMMIT
            or ack.epoch != self.new.epoch
            or not ack.accepted
            or ack.voter not in self.new.voters
        ):
            return False
        self.committed.add(ack.voter)
        if self.new.has_majority(self.committed):
            self.phase = ChangePhase.DONE
            self.done_at = now
            return True
        return False


class ChangeRefused(VoterConfigError):
    """A voter-set change that may not start now (one in progress, or inside the gap)."""


class VoterSetProposer:
    """The one proposer of voter-set changes: one change at a time, then the gap."""

    def __init__(self, config: VoterConfig, *, max_duration: float, max_drift: float) -> None:
        self.config = config
        self.max_duration = max_duration
        self.max_drift = max_drift
        self.change: ConfigChange | None = None
        self.next_allowed = -float("inf")
        self.completed_terms: dict[str, int] = {}

    def gap(self) -> float:
        return change_gap(self.max_duration, self.max_drift)

    @property
    def busy(self) -> bool:
        return self.change is not None and self.change.phase is not ChangePhase.DONE

    def start(self, new: VoterConfig, now: float) -> ConfigChange:
        """Begin changing to ``new`` (one member more or less than the current set)."""
        if self.busy:
            assert self.change is not None
            raise ChangeRefused(
                f"a change to epoch {self.change.new.epoch} is still in progress "
                f"({self.change.phase.value})"
            )
        if now < self.next_allowed:
            raise ChangeRefused(
                f"the previous change completed too recently: wait {self.next_allowed - now:.1f} s "
                "so that every lease granted under the configuration before it has run out"
            )
        self.change = ConfigChange(self.config, new)
        return self.change

    def pending(self) -> Outbound | None:
        return self.change.pending() if self.busy and self.change is not None else None

    def on_prepared(self, ack: ConfigPrepared) -> None:
        if self.change is not None:
            self.change.on_prepared(ack)

    def on_committed(self, ack: ConfigCommitted, now: float) -> bool:
        """True when this acknowledgement completed the change."""
        change = self.change
        if change is None or not change.on_committed(ack, now):
            return False
        self.config = change.new
        self.completed_terms = dict(change.terms)
        self.next_allowed = now + self.gap()
        return True
