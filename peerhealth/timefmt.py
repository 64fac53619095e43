"""RFC 3339 timestamps for every JSON edge: ``2026-11-22T12:00:00.000Z`` (UTC, milliseconds).

One helper for the whole distribution. It lives in this leaf package because imports flow
peerhealth <- leadership <- swimmesh, so all three can use it.
"""

from __future__ import annotations

from datetime import UTC, datetime


def rfc3339(moment: datetime | float) -> str:
    """``moment`` (an aware datetime, or a POSIX timestamp in seconds) as RFC 3339 UTC with
    milliseconds. Built from the fields directly: the lease-health renderer calls it per peer,
    and this is several times faster than ``isoformat`` plus string replacement."""
    if isinstance(moment, int | float):
        v = datetime.fromtimestamp(moment, UTC)
    else:
        v = moment if moment.tzinfo is UTC else moment.astimezone(UTC)
    return (
        f"{v.year:04d}-{v.month:02d}-{v.day:02d}T{v.hour:02d}:{v.minute:02d}:"
        f"{v.second:02d}.{v.microsecond // 1000:03d}Z"
    )
