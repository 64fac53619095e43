"""The member table: one merge state per member, and the sets derived from their statuses.

A status transition updates every derived set at once (who is probed, who relays ping-reqs,
who hears gossip, who is retried after a failure, how many are live), so those sets can
never disagree with the table. Events, suspicion timers and reaping are the instance's: the
table only keeps the books.

A table can also start *formed* (:class:`FormedMesh`): knowing every member of a mesh as
alive, as if its join had completed. The nodes of an in-process simulation then share one
record per member and one set of names instead of N copies each (N x N memory was what kept
a 10,000-node simulation out of reach): a node copies a record the first time it reads it
(so nothing it changes is seen by another node) and a derived set the first time it changes
(copy on write). Reads that change nothing (views, push-pull entries, statuses) do not copy.
"""

from __future__ import annotations

import copy
import random
from collections.abc import Iterable, Iterator, Mapping

from .. import codec
from ..member import Address, Claim, Member, MemberState, MemberStatus
from .sampling import ProbeOrder, SampleSet

_ALIVE, _SUSPECT, _DEAD = MemberStatus.ALIVE, MemberStatus.SUSPECT, MemberStatus.DEAD
_LIVE = (_ALIVE, _SUSPECT)


def claim_about(state: MemberState, status: MemberStatus, source: str) -> Claim:
    """A claim by ``source`` that the member of ``state`` has ``status`` at its incarnation."""
    return Claim(state.name, state.incarnation, status, state.address, source=source)


class FormedMesh:
    """The shared start of a formed mesh: every member alive at the claim it publishes."""

    def __init__(self, claims: Iterable[Claim], now: float) -> None:
        self.states: dict[str, MemberState] = {}
        self.names = SampleSet()
        for claim in claims:
            self.states[claim.name] = MemberState.from_claim(claim, now)
            self.names.add(claim.name)


_NO_STATES: Mapping[str, MemberState] = {}


class MemberTable:
    """Every member this node knows, itself included, tombstones until they are reaped."""

    def __init__(
        self, local: MemberState, rng: random.Random, formed: FormedMesh | None = None
    ) -> None:
        self.local_name = local.name
        self._states: dict[str, MemberState] = {local.name: local}
        """This node's own records (all of them, unless the table started formed)."""
        self._shared: Mapping[str, MemberState] = _NO_STATES
        """A formed start's records, read-only: a record is copied into ``_states`` when
        this node first reads it, so only what it never touched stays shared."""
        self._gone: set[str] = set()
        """Shared records this node has reaped."""
        self._size = 1
        self.alive: SampleSet
        """ALIVE peers (not self): ping-req relays, push-pull partners."""
        self.gossip: SampleSet
        """ALIVE, SUSPECT and recently DEAD peers: gossip targets."""
        self.probes: ProbeOrder
        """ALIVE and SUSPECT peers, in this round's probe order."""
        self.live: int
        """ALIVE and SUSPECT members, this node included."""
        if formed is None:
            self.alive, self.gossip, self.probes = SampleSet(), SampleSet(), ProbeOrder(rng)
            self.live = 1
        else:
            names, me = formed.names, local.name
            self._shared = formed.states
            self._size = len(formed.states) + (me not in formed.states)
            self.alive = SampleSet.sharing(names, hidden=me)
            self.gossip = SampleSet.sharing(names, hidden=me)
            self.probes = ProbeOrder(rng, SampleSet.sharing(names, hidden=me))
            self.live = 1 + len(self.alive)
        self.failed: dict[str, tuple[Address, float]] = {}
        """DEAD members and since when, for reconnection attempts."""
        self._encoded: dict[str, tuple[Claim, bytes]] = {}

    def __getitem__(self, name: str) -> MemberState:
        """The record of ``name`` to read only (a formed start's record is not copied): use
        :meth:`get` for one to change."""
        state = self.peek(name)
        if state is None:
            raise KeyError(name)
        return state

    def __contains__(self, name: str) -> bool:
        return name in self._states or (name in self._shared and name not in self._gone)

    def __len__(self) -> int:
        return self._size

    def __iter__(self) -> Iterator[MemberState]:
        """Every record, read-only (shared ones are not copied)."""
        if not self._shared:
            return iter(self._states.values())
        return self._every()

    def _every(self) -> Iterator[MemberState]:
        own, gone = self._states, self._gone
        for name, state in self._shared.items():
            if name not in gone:
                yield own.get(name, state)
        for name, state in own.items():
            if name not in self._shared:
                yield state

    def get(self, name: str) -> MemberState | None:
        """The record of ``name``, this node's own (copied from a formed start if needed):
        callers may change it."""
        state = self._states.get(name)
        if state is None and self._shared:
            shared = self._shared.get(name)
            if shared is not None and name not in self._gone:
                state = self._states[name] = copy.copy(shared)
        return state

    def peek(self, name: str) -> MemberState | None:
        """The record of ``name`` to read only (shared ones are not copied)."""
        state = self._states.get(name)
        if state is None and self._shared and name not in self._gone:
            state = self._shared.get(name)
        return state

    def status_of(self, name: str) -> MemberStatus | None:
        state = self.peek(name)
        return None if state is None else state.status

    def view_of(self, name: str) -> Member | None:
        """A view of ``name``'s record (without copying a shared one)."""
        state = self.peek(name)
        return None if state is None else state.view()

    def members(self) -> list[Member]:
        return [s.view() for s in self]

    # -- changes -----------------------------------------------------------------------

    def set_local(self, state: MemberState) -> None:
        """Replace this node's own record (a new incarnation it published)."""
        self._states[self.local_name] = state

    def introduce(self, claim: Claim, now: float) -> MemberState:
        """Add a member first heard of through ``claim``."""
        state = MemberState.from_claim(claim, now)
        self._states[claim.name] = state
        self._gone.discard(claim.name)
        self._size += 1
        self.transition(state, None, now)
        return state

    def merge(self, state: MemberState, claim: Claim, now: float) -> tuple[MemberState, bool, bool]:
        """Fold ``claim`` into ``state`` (see :meth:`MemberState.merge`), moving the member
        between the derived sets if its status changed. Returns the record merged into (this
        node's own copy if ``state`` was a formed start's shared one and the claim changes
        it) and whether its status and its identity changed."""
        if state.holds(claim):
            return state, False, False
        if self._states.get(state.name) is not state:
            own = self.get(state.name)
            assert own is not None
            state = own
        old = state.status
        status_changed, identity_changed = state.merge(claim, now)
        if status_changed:
            self.transition(state, old, now)
        return state, status_changed, identity_changed

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
        state = self.get(name)
        if state is None or state.status in _LIVE or state.last_change != since:
            return False
        del self._states[name]
        if name in self._shared:
            self._gone.add(name)
        self._size -= 1
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
        for state in self:
            claim = state.to_claim()
            hit = cache.get(state.name)
            if hit is None or hit[0] is not claim:
                hit = cache[state.name] = (claim, codec.encode_state(claim))
            claims.append(claim)
            encoded.append(hit[1])
        return tuple(claims), tuple(encoded)
