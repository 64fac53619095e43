"""A safety checker over recorded leadership histories (the Jepsen-style check).

It checks what services see, not what coordinators announce: it samples every followed
coordinator's ``is_leader`` on one common grid of true (Trio) time and builds each holder's
believed-leader intervals from the answers. A holder is ``(node, boot_id)``: a restarted node
is a new holder. Then it asserts, per scope:

- no two intervals of different holders overlap (no two holders believed at one instant);
- fences strictly increase in the order terms began (a restored term keeps its fence, only
  for the same holder);
- a fenced resource rejected every stale write: each write a service presented (with
  :meth:`LeadershipRecorder.write`) was accepted only if no write with a higher fence (or
  the same fence from another holder) had been accepted before it.
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from collections.abc import Callable

import attrs
import trio

from leadership import (
    FencedResource,
    FenceGuard,
    LeadershipCoordinator,
    LeadershipToken,
    StaleFenceError,
)
from leadership.tokens import Holder

SAMPLE_PERIOD = 0.005
"""Seconds of true time between two samples of every coordinator's ``is_leader``."""


@attrs.define
class Interval:
    scope: str
    holder: Holder
    fence: int
    start: float
    end: float | None = None


@attrs.frozen
class Write:
    """One write a service presented to a fenced resource."""

    at: float
    scope: str
    holder: Holder
    fence: int
    accepted: bool


class SafetyViolation(AssertionError):
    """A recorded history broke a leadership invariant."""


class LeadershipRecorder:
    """Samples coordinators' ``is_leader`` into believed-leader intervals, stamped with Trio
    time, and keeps the writes presented to one fenced resource per scope."""

    def __init__(self, guard: Callable[[], FenceGuard] = FenceGuard) -> None:
        self.intervals: list[Interval] = []
        self.writes: list[Write] = []
        self.samples = 0
        self._followed: dict[str, LeadershipCoordinator] = {}
        """By boot id: a restarted node's old incarnation may still be running."""
        self._open: dict[tuple[str, str], Interval] = {}
        """Open intervals by (scope, boot id)."""
        self._guard = guard
        self._resources: dict[str, FencedResource[list[Write]]] = {}

    def follow(self, coordinator: LeadershipCoordinator) -> None:
        """Sample ``coordinator`` from now on (a restarted node: its new coordinator; the old
        one is sampled until :meth:`crashed` says it is gone)."""
        self._followed[coordinator.holder.boot_id] = coordinator

    def crashed(self, node: str) -> None:
        """Node ``node`` stopped at this moment: its beliefs end with it (a dead process's
        state says nothing to anyone), and it is no longer sampled."""
        gone = [boot for boot, c in self._followed.items() if c.node_id == node]
        now = trio.current_time()
        for boot in gone:
            del self._followed[boot]
            for key in [k for k in self._open if k[1] == boot]:
                self._close(key, now)

    def sample(self) -> dict[str, list[str]]:
        """One sample of every followed coordinator's ``is_leader``, for every scope; returns
        the nodes that believe they lead, by scope (scopes nobody leads are left out)."""
        now = trio.current_time()
        self.samples += 1
        leaders: dict[str, list[str]] = defaultdict(list)
        for coordinator in self._followed.values():
            for scope in coordinator.scopes:
                believes = coordinator.is_leader(scope.key)
                key = (scope.key, coordinator.holder.boot_id)
                if not believes and key not in self._open:
                    continue
                interval = self._open.get(key)
                token = coordinator.election(scope).token if believes else None
                believes = token is not None
                if interval is not None and (not believes or interval.fence != _fence(token)):
                    self._close(key, now)
                    interval = None
                if believes and interval is None:
                    opened = Interval(scope.key, coordinator.holder, _fence(token), now)
                    self._open[key] = opened
                    self.intervals.append(opened)
                if believes:
                    leaders[scope.key].append(coordinator.node_id)
        return leaders

    async def run(self, period: float = SAMPLE_PERIOD) -> None:
        """Sample for good, every ``period`` seconds of Trio time."""
        while True:
            self.sample()
            await trio.sleep(period)

    def write(self, coordinator: LeadershipCoordinator, scope: str) -> bool:
        """A service on ``coordinator`` writes to ``scope``'s fenced resource with the token
        it holds now (if any); returns whether the resource accepted it."""
        token = coordinator.election(scope).token
        if token is None:
            return False
        key = scope.casefold()
        resource = self._resources.get(key)
        if resource is None:
            resource = self._resources[key] = FencedResource([], self._guard())
        accepted = True
        try:
            with resource.use(token):
                pass
        except StaleFenceError:
            accepted = False
        now = trio.current_time()
        self.writes.append(Write(now, key, coordinator.holder, token.fence_token, accepted))
        return accepted

    def _close(self, key: tuple[str, str], now: float) -> None:
        interval = self._open.pop(key, None)
        if interval is not None:
            interval.end = now

    def check(self) -> dict[str, int]:
        """Raise :class:`SafetyViolation` on any overlap, fence regression or accepted stale
        write; return counts."""
        by_scope: dict[str, list[Interval]] = defaultdict(list)
        for interval in self.intervals:
            by_scope[interval.scope].append(interval)
        for scope, intervals in by_scope.items():
            intervals.sort(key=lambda i: i.start)
            check_overlaps(scope, intervals, trio.current_time())
            check_fence_order(scope, intervals)
        check_stale_writes(self.writes)
        return {
            "scopes": len(by_scope),
            "terms": len(self.intervals),
            "samples": self.samples,
            "writes": len(self.writes),
            "rejected": sum(not w.accepted for w in self.writes),
        }


def who(holder: Holder) -> str:
    """A holder as the checker's messages name it: ``node@boot_id``."""
    return f"{holder.node_id}@{holder.boot_id}"


def _fence(token: LeadershipToken | None) -> int:
    return token.fence_token if token is not None else 0


def check_overlaps(scope: str, intervals: list[Interval], now: float) -> None:
    """No two holders believed at one instant (``intervals`` sorted by start)."""
    for i, before in enumerate(intervals):
        before_end = before.end if before.end is not None else now
        for after in intervals[i + 1 :]:
            if after.start >= before_end:
                break
            if after.holder != before.holder:
                raise SafetyViolation(
                    f"{scope}: {who(before.holder)} (fence {before.fence}) led until "
                    f"{before_end:.3f} but {who(after.holder)} (fence {after.fence}) "
                    f"began at {after.start:.3f}"
                )


def check_fence_order(scope: str, intervals: list[Interval]) -> None:
    """Fences strictly increase in the order terms began; an equal fence only for the same
    holder (a restored term)."""
    for before, after in itertools.pairwise(intervals):
        if after.fence < before.fence or (
            after.fence == before.fence and after.holder != before.holder
        ):
            raise SafetyViolation(
                f"{scope}: fence went from {before.fence} ({who(before.holder)}) to "
                f"{after.fence} ({who(after.holder)})"
            )


def check_stale_writes(writes: list[Write]) -> None:
    """Every accepted write carried the highest fence accepted so far for its scope."""
    highest: dict[str, tuple[int, Holder]] = {}
    for write in writes:
        if not write.accepted:
            continue
        seen = highest.get(write.scope)
        if seen is not None and (
            write.fence < seen[0] or (write.fence == seen[0] and write.holder != seen[1])
        ):
            raise SafetyViolation(
                f"{write.scope}: a write with fence {write.fence} from {who(write.holder)} was "
                f"accepted at {write.at:.3f} after fence {seen[0]} from {who(seen[1])}"
            )
        highest[write.scope] = (write.fence, write.holder)
