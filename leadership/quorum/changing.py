"""Running one voter-set change from a node (the proposer's side, over a messenger).

First the commit of the current configuration is repeated to its voters (a change left half-way
is completed so, and a voter that only prepared it may prepare the next); then ``new`` is
prepared at a majority of the current voters and committed at a majority of the new ones. The
voters hold the gap between changes and say how long it still runs.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable

import trio

from .membership import VoterConfig
from .reconfig import ChangePhase, ChangeRefused, ConfigChange, VoterSetProposer
from .wire import ConfigCommit, ConfigCommitted, ConfigPrepared, Message

Call = Callable[[str, Message], Awaitable[Message | None]]
"""Ask one voter and return its answer (None: no answer)."""


async def broadcast(
    call: Call, targets: list[str], message: Message, take: Callable[[str, Message | None], None]
) -> None:
    """Ask every target at once; hand each answer to ``take``."""

    async def one(target: str) -> None:
        take(target, await call(target, message))

    async with trio.open_nursery() as nursery:
        for target in targets:
            nursery.start_soon(one, target)


async def run_change(
    call: Call,
    current: VoterConfig,
    new: VoterConfig,
    now: Callable[[], float],
    *,
    max_duration: float,
    max_drift: float,
    timeout: float,
) -> ConfigChange:
    """Drive the change to completion or raise :class:`ChangeRefused` with the voters' reasons."""
    proposer = VoterSetProposer(current, max_duration=max_duration, max_drift=max_drift)
    proposer.next_allowed = -math.inf  # the voters hold the gap
    change = proposer.start(new, now())
    refusals: dict[str, str] = {}

    def take(voter: str, answer: Message | None) -> None:
        if isinstance(answer, ConfigPrepared):
            if not answer.accepted:
                wait = f" (for {answer.wait:.1f} s more)" if answer.wait else ""
                refusals[voter] = answer.reason + wait
            proposer.on_prepared(answer)
        elif isinstance(answer, ConfigCommitted):
            proposer.on_committed(answer, now())

    with trio.move_on_after(timeout):
        await broadcast(call, sorted(current.voters), ConfigCommit(current, ()), take)
        while proposer.busy:
            out = proposer.pending()
            assert out is not None
            await broadcast(call, sorted(out.targets), out.message, take)
            if change.phase is ChangePhase.PREPARE and current.out_of_reach(refusals):
                break
            if proposer.busy:
                await trio.sleep(0.1)
    if proposer.busy:
        detail = "; ".join(f"{v}: {r}" for v, r in sorted(refusals.items()))
        raise ChangeRefused(
            f"voter-set change to epoch {new.epoch} did not complete"
            + (f": {detail}" if detail else " in time (voters unreachable?)")
        )
    return change
