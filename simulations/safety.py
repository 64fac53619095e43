"""A safety checker over recorded leadership histories (the Jepsen-style check).

Record each holder's believed-leader intervals per scope in true time, then assert: no two
intervals of different holders overlap, fences strictly increase per scope in the order terms
began, and a fenced resource rejected every write presented with a stale token.
"""

from __future__ import annotations

import itertools
from collections import defaultdict

import attrs
import trio

from leadership import EventKind, LeadershipEvent, LeadershipEventHub
from leadership.tokens import ENDING_KINDS


@attrs.define
class Interval:
    scope: str
    holder: str
    fence: int
    start: float
    end: float | None = None


class SafetyViolation(AssertionError):
    """A recorded history broke a leadership invariant."""


class LeadershipRecorder:
    """Collects believed-leader intervals from coordinators' hubs, stamped with Trio time."""

    def __init__(self) -> None:
        self.intervals: list[Interval] = []
        self._open: dict[tuple[str, str], Interval] = {}

    def follow(self, node: str, hub: LeadershipEventHub) -> None:
        def listener(event: LeadershipEvent) -> None:
            if event.leader_id != node or event.token is None:
                return
            key = (event.scope.casefold(), node)
            now = trio.current_time()
            if event.kind is EventKind.ELECTED:
                self.close(key, now)
                interval = Interval(key[0], node, event.token.fence_token, now)
                self._open[key] = interval
                self.intervals.append(interval)
            elif event.kind in ENDING_KINDS:
                self.close(key, now)

        hub.add_listener(listener)

    def close(self, key: tuple[str, str], now: float) -> None:
        interval = self._open.pop(key, None)
        if interval is not None:
            interval.end = now

    def crashed(self, node: str) -> None:
        """A node stopped at this moment without a word: its beliefs end with it."""
        now = trio.current_time()
        for key in [k for k in self._open if k[1] == node]:
            self.close(key, now)

    def check(self) -> dict[str, int]:
        """Raise :class:`SafetyViolation` on any overlap or fence regression; return counts."""
        now = trio.current_time()
        by_scope: dict[str, list[Interval]] = defaultdict(list)
        for interval in self.intervals:
            by_scope[interval.scope].append(interval)
        for scope, intervals in by_scope.items():
            intervals.sort(key=lambda i: i.start)
            for i, before in enumerate(intervals):
                before_end = before.end if before.end is not None else now
                for after in intervals[i + 1 :]:
                    if after.start >= before_end:
                        break
                    if after.holder != before.holder:
                        raise SafetyViolation(
                            f"{scope}: {before.holder} (fence {before.fence}) led until "
                            f"{before_end:.3f} but {after.holder} (fence {after.fence}) "
                            f"began at {after.start:.3f}"
                        )
            for before, after in itertools.pairwise(intervals):
                if after.fence < before.fence or (
                    after.fence == before.fence and after.holder != before.holder
                ):
                    raise SafetyViolation(
                        f"{scope}: fence went from {before.fence} ({before.holder}) to "
                        f"{after.fence} ({after.holder})"
                    )
        return {"scopes": len(by_scope), "terms": len(self.intervals)}
