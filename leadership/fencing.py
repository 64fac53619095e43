"""Fencing: the resource side of leadership. A lease alone cannot stop a paused or delayed
ex-leader from acting; a resource that checks fences rejects it.

The check and the action it guards are one atomic step (:meth:`FenceGuard.fenced`,
:meth:`FencedResource.use` hold the guard's lock until the action is done): otherwise a writer
of an older term that passed its check just before the newer term's first check could still
write after it. The guard only protects what it runs: when the action is remote (a database,
another service), the remote side must check the fence itself, in the same transaction as the
write (send the fence with the write and compare it with the highest one it stored).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
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


StaleFenceListener = Callable[[StaleFenceError], None]


class FenceGuard:
    """Remembers the highest fence per scope (case-insensitive) and rejects lower ones.
    Thread-safe; ``on_stale`` hears of every rejection (a coordinator's guard reports it as
    split brain: a lower fence tried to act after a higher one)."""

    def __init__(self, *, on_stale: StaleFenceListener | None = None) -> None:
        self._highest: dict[str, tuple[int, str]] = {}
        self._lock = threading.RLock()
        self._on_stale = on_stale
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
                    error = StaleFenceError(token, fence, leader)
                    if self._on_stale is not None:
                        self._on_stale(error)
                    raise error
            self._highest[key] = (token.fence_token, token.leader_id)

    @contextmanager
    def holding(self, token: LeadershipToken) -> Iterator[None]:
        """Check ``token`` and keep every other check of this guard waiting until the block
        ends, so the block acts as the newest term seen (keep it short; no ``await`` in it)."""
        with self._lock:
            self.check(token)
            yield

    def fenced(self, action: Callable[P, R]) -> Callable[Concatenate[LeadershipToken, P], R]:
        """``action`` wrapped to take a token first and run only if the token is current; the
        check and the action are one atomic step."""

        def run(token: LeadershipToken, /, *args: P.args, **kwargs: P.kwargs) -> R:
            with self.holding(token):
                return action(*args, **kwargs)

        return run


class FencedResource(Generic[T]):
    """Wraps a resource so that every use presents a token: ``with resource.use(token) as r``
    hands it out only while the token is current, and no newer term can pass its check until
    the block ends, so stale writers are rejected automatically."""

    def __init__(self, resource: T, guard: FenceGuard | None = None) -> None:
        self._resource = resource
        self.guard = guard if guard is not None else FenceGuard()

    @contextmanager
    def use(self, token: LeadershipToken) -> Iterator[T]:
        with self.guard.holding(token):
            yield self._resource
