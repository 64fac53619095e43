"""Warnings about what peers send that are worth an operator's eye, but not once per packet.

A misconfigured peer retries every few seconds; :class:`RateLimitedLog` writes the first line
for a key (say, the peer's host and what was refused), holds back repeats for ``interval``
seconds, and says how many it held back when it writes the next one.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any


class RateLimitedLog:
    """At most one warning per key per ``interval`` seconds; remembers ``max_keys`` keys."""

    def __init__(
        self,
        logger: logging.Logger,
        interval: float = 60.0,
        *,
        max_keys: int = 1024,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._logger = logger
        self._interval = interval
        self._max_keys = max_keys
        self._clock = clock
        self._last: OrderedDict[Hashable, tuple[float, int]] = OrderedDict()

    def warning(self, key: Hashable, message: str, extra: dict[str, Any] | None = None) -> bool:
        """Log ``message`` unless ``key`` was logged within the interval; True if logged."""
        now = self._clock()
        seen = self._last.get(key)
        if seen is not None and now - seen[0] < self._interval:
            self._last[key] = (seen[0], seen[1] + 1)
            return False
        fields = dict(extra or {})
        if seen is not None and seen[1]:
            fields["suppressed"] = seen[1]
        self._last[key] = (now, 0)
        self._last.move_to_end(key)
        while len(self._last) > self._max_keys:
            self._last.popitem(last=False)
        self._logger.warning(message, extra=fields)
        return True
