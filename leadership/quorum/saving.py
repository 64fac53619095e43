"""Group commit of a voter's promises: every grant of a new term waits until that term is on
disk (DESIGN.md 5, rule 6), and the requests decided while one save runs share the next one.

A save is a small file written with two fsyncs (about 10 ms on a virtual disk). Made inline and
one per request, a voter asked for hundreds of new terms at once (an election of every scope)
spends seconds with its event loop blocked, its rounds time out and candidates retry: the
elections never settle. Here a voter writes at most one save at a time, off the event loop when
``offload`` is set (an agent's real clock; tests on a mock clock keep it inline, where a worker
thread would let the clock jump while the disk works), and one save covers every decision taken
before it began.
"""

from __future__ import annotations

import trio

from .voter import LeaseVoter


class GroupCommit:
    """Durable saves for one voter, shared by the requests that wait together."""

    def __init__(self, voter: LeaseVoter, *, offload: bool) -> None:
        self.voter = voter
        self.offload = offload
        self._issued = 0
        """Tickets handed out: one per decision that waits for a save."""
        self._saved = 0
        """Every ticket up to this one is durable."""
        self._failed = 0
        """Every ticket up to this one (and not saved) had its save fail."""
        self._saving: trio.Event | None = None
        self.saves = 0

    async def durable(self) -> bool:
        """Wait until what the voter decided so far is on disk; False if that save failed."""
        self._issued += 1
        ticket = self._issued
        while True:
            if self._saved >= ticket:
                return True
            if self._failed >= ticket:
                return False
            if self._saving is not None:
                await self._saving.wait()
                continue
            self._saving = done = trio.Event()
            try:
                # decisions already under way (requests that arrived together) join this save
                await trio.lowlevel.checkpoint()
                covers, state = self._issued, self.voter.snapshot()
                if self.offload:
                    ok = await trio.to_thread.run_sync(self.voter.write, state)
                else:
                    ok = self.voter.write(state)
                self.saves += 1
                if self.voter.saved(state, ok):
                    self._saved = max(self._saved, covers)
                else:
                    self._failed = max(self._failed, covers)
            finally:
                self._saving = None
                done.set()
