"""The audit stream: every leadership change, in order, with its correlation id.

A bounded in-memory log that can be read as an async iterator from any point it still holds,
and optionally a JSON-lines file sink (one object per line, flushed per record).
"""

from __future__ import annotations

import json
import logging
from collections import deque
from collections.abc import AsyncIterator
from pathlib import Path
from typing import IO

import trio

from .jsonshape import event_json
from .tokens import EventKind, LeadershipEvent

log = logging.getLogger("leadership.audit")

AUDITED = frozenset(
    {
        EventKind.ELECTED,
        EventKind.OBSERVED,
        EventKind.LOST,
        EventKind.EXPIRED,
        EventKind.STEPPED_DOWN,
        EventKind.SPLIT_BRAIN,
    }
)
"""Changes of leadership; renewals, snapshots and gaps are not changes."""


class AuditLog:
    def __init__(self, capacity: int = 4096, path: str | Path | None = None) -> None:
        self._records: deque[LeadershipEvent] = deque(maxlen=capacity)
        self._count = 0
        self._lot = trio.lowlevel.ParkingLot()
        self._file: IO[str] | None = None
        self.path = Path(path) if path is not None else None
        self.write_errors = 0

    def open(self) -> None:
        """Open the file sink (append mode), if one is configured."""
        if self.path is not None and self._file is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = self.path.open("a", encoding="utf-8")

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    @property
    def count(self) -> int:
        """Records appended since creation (also those no longer held in memory)."""
        return self._count

    def records(self) -> list[LeadershipEvent]:
        return list(self._records)

    def append(self, event: LeadershipEvent) -> None:
        if event.kind not in AUDITED:
            return
        self._records.append(event)
        self._count += 1
        if self._file is not None:
            try:
                self._file.write(json.dumps(event_json(event), separators=(",", ":")) + "\n")
                self._file.flush()
            except OSError as exc:
                self.write_errors += 1
                log.warning("cannot write the audit file", extra={"error": str(exc)})
        self._lot.unpark_all()

    async def follow(self, after: int = 0) -> AsyncIterator[LeadershipEvent]:
        """Records from number ``after + 1`` on (1-based), then live ones; records that fell
        out of memory are skipped (the file sink keeps them all)."""
        position = after
        while True:
            oldest = self._count - len(self._records) + 1
            if position < self._count:
                position = max(position + 1, oldest)
                record = self._records[position - oldest]
                await trio.lowlevel.checkpoint()
                yield record
            else:
                await self._lot.park()
