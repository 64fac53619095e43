"""Fencing: the resource side of leadership. A lease alone cannot stop a paused or delayed
ex-leader from acting; a resource that checks fences rejects it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Concatenate, Generic, ParamSpec, TypeVar

from .tokens import LeadershipToken

P = ParamSpec("P")
R = TypeVar("R")
T = TypeVar("T")


class StaleFenceError(Exception):
    """A token whose fence is lower than one already seen for its scope (or equal to it from
    a different leader)."""

    def __init__(self, token: LeadershipToken, highest: int, holder: str) -> None:
        super().__init__(
            f"stale leadership token for {token.scope!r}: fence {token.fence_token} from "
            f"{token.leader_id!r}, but fence {highest} from {holder!r} was already seen"
        )
        self.token = token
        self.highest = highest
        self.holder = holder


class FenceGuard:
    """Remembers the highest fence per scope (case-insensitive) and rejects lower ones.
    Thread- and task-safe."""

    def __init__(self) -> None:
        self._highest: dict[str, tuple[int, str]] = {}
        self._lock = threading.Lock()
        self.rejected = 0

    def highest(self, scope: str) -> int | None:
        found = self._highest.get(scope.casefold())
        return found[0] if found else None

    def check(self, token: LeadershipToken) -> None:
        """Accept ``token`` (recording its fence) or raise :class:`StaleFenceError`."""
        key = token.scope.casefold()
        with self._lock:
            seen = self._highest.get(key)
            if seen is not None:
                fence, leader = seen
                if token.fence_token < fence or (
                    token.fence_token == fence and token.leader_id != leader
                ):
                    self.rejected += 1
                    raise StaleFenceError(token, fence, leader)
            self._highest[key] = (token.fence_token, token.leader_id)

    def fenced(self, action: Callable[P, R]) -> Callable[Concatenate[LeadershipToken, P], R]:
        """``action`` wrapped to take a token first and run only if the token is current."""

        def run(token: LeadershipToken, /, *args: P.args, **kwargs: P.kwargs) -> R:
            self.check(token)
            return action(*args, **kwargs)

        return run


class FencedResource(Generic[T]):
    """Wraps a resource so that every use presents a token: ``resource.use(token)`` returns it
    only while the token is current, so stale writers are rejected automatically."""

    def __init__(self, resource: T, guard: FenceGuard | None = None) -> None:
        self._resource = resource
        self.guard = guard if guard is not None else FenceGuard()

    def use(self, token: LeadershipToken) -> T:
        self.guard.check(token)
        return self._resource
