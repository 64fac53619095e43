"""The member table: one merge state per member, and the sets derived from their statuses.

A status transition updates every derived set at once (who is probed, who relays ping-reqs,
who hears gossip, who is retried after a failure, how many are live), so those sets can
never disagree with the table. Events, suspicion timers and reaping are the instance's: the
table only keeps the books.
"""

from __future__ import annotations

import random
from collections.abc import Iterator

from .. import codec
from ..member import Address, Claim, Member, MemberState, MemberStatus
from .sampling import ProbeOrder, SampleSet

_ALIVE, _SUSPECT, _DEAD = MemberStatus.ALIVE, MemberStatus.SUSPECT, MemberStatus.DEAD
_LIVE = (_ALIVE, _SUSPECT)


def claim_about(state: MemberState, status: MemberStatus, source: str) -> Claim:
    """A claim by ``source`` that the member of ``state`` has ``status`` at its incarnation."""
    return Claim(state.name, state.incarnation, status, state.address, source=source)


class MemberTable:
    """Every member this node knows, itself included, tombstones until they are reaped."""

    def __init__(self, local: MemberState, rng: random.Random) -> None:
        self.local_name = local.name
        self._states: dict[str, MemberState] = {local.name: local}
        self.alive = SampleSet()
        """ALIVE peers (not self): ping-req relays, push-pull partners."""
        self.gossip = SampleSet()
        """ALIVE, SUSPECT and recently DEAD peers: gossip targets."""
        self.probes = ProbeOrder(rng)
        """ALIVE and SUSPECT peers, in this round's probe order."""
        self.failed: dict[str, tuple[Address, float]] = {}
        """DEAD members and since when, for reconnection attempts."""
        self.live = 1
        """ALIVE and SUSPECT members, this node included."""
        self._encoded: dict[str, tuple[Claim, bytes]] = {}

    def __getitem__(self, name: str) -> MemberState:
        return self._states[name]

    def __contains__(self, name: str) -> bool:
        return name in self._states

    def __len__(self) -> int:
        return len(self._states)

    def __iter__(self) -> Iterator[MemberState]:
        return iter(self._states.values())

    def get(self, name: str) -> MemberState | None:
        return self._states.get(name)

    def status_of(self, name: str) -> MemberStatus | None:
        state = self._states.get(name)
        return None if state is None else state.status

    def members(self) -> list[Member]:
        return [s.view() for s in self._states.values()]

    # -- changes -----------------------------------------------------------------------

    def set_local(self, state: MemberState) -> None:
        """Replace this node's own record (a new incarnation it published)."""
        self._states[self.local_name] = state

    def introduce(self, claim: Claim, now: float) -> MemberState:
        """Add a member first heard of through ``claim``."""
        state = MemberState.from_claim(claim, now)
        self._states[claim.name] = state
        self.transition(state, None, now)
        return state

    def merge(self, state: MemberState, claim: Claim, now: float) -> tuple[bool, bool]:
        """Fold ``claim`` into ``state`` (see :meth:`MemberState.merge`), moving the member
        between the derived sets if its status changed."""
        old = state.status
        status_changed, identity_changed = state.merge(claim, now)
        if status_changed:
            self.transition(state, old, now)
        return status_changed, identity_changed

    def transition(self, state: MemberState, old: MemberStatus | None, now: float) -> None:
        """Move ``state`` from ``old`` (None: new member) to its current status."""
        name, new = state.name, state.status
        self.live += int(new in _LIVE) - int(old in _LIVE)
        if new in _LIVE:
            if new is _ALIVE:
                self.alive.add(name)
            else:
                self.alive.discard(name)
            self.gossip.add(name)
            self.probes.add(name)
            self.failed.pop(name, None)
            return
        self.alive.discard(name)
        self.probes.remove(name)
        if new is _DEAD:
            self.gossip.add(name)
            if old is not None:
                self.failed[name] = (state.address, now)
        else:
            self.gossip.discard(name)
            self.failed.pop(name, None)

    def reap(self, name: str, since: float) -> bool:
        """Forget ``name`` if it is still the tombstone it became at ``since``."""
        state = self._states.get(name)
        if state is None or state.status in _LIVE or state.last_change != since:
            return False
        del self._states[name]
        self._encoded.pop(name, None)
        self.gossip.discard(name)
        return True

    # -- push-pull ---------------------------------------------------------------------

    def push_pull_entries(self) -> tuple[tuple[Claim, ...], tuple[bytes, ...]]:
        """Every member as one claim and as its encoded push-pull entry. Encodings are cached
        per member until its record changes (most of a table is the same at each exchange)."""
        claims: list[Claim] = []
        encoded: list[bytes] = []
        cache = self._encoded
        for state in self._states.values():
            claim = state.to_claim()
            hit = cache.get(state.name)
            if hit is None or hit[0] is not claim:
                hit = cache[state.name] = (claim, codec.encode_state(claim))
            claims.append(claim)
            encoded.append(hit[1])
        return tuple(claims), tuple(encoded)
