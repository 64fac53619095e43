"""``mesh.leadership`` configuration: OmniRelay's keys and defaults plus ours, ranges enforced.

:meth:`LeadershipConfig.from_mapping` reads a TOML/JSON section with OmniRelay's key names and
.NET TimeSpan strings (``"00:00:08"``) or ``"8s"`` / ``"750ms"``; every error names the key.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

import attrs

from .scopes import InvalidScopeError, LeadershipScope, scope_from_descriptor
from .scoring import MAX_PRIORITY


class LeadershipConfigError(ValueError):
    """An invalid ``mesh.leadership`` value; the message names the key and the value."""


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)\s*$")
_TIMESPAN = re.compile(r"^\s*(?:(\d+)\.)?(\d{1,2}):(\d{1,2}):(\d{1,2}(?:\.\d+)?)\s*$")


def parse_duration(value: Any, key: str) -> float:
    """Seconds from a number, ``"500ms"``, ``"5s"``, ``"1m"``, ``"2h"`` or ``"[d.]hh:mm:ss"``."""
    if isinstance(value, bool):
        raise LeadershipConfigError(f"{key}: {value!r} is not a duration")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str) and (m := _DURATION.match(value)):
        seconds = float(m.group(1)) * {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}[m.group(2)]
    elif isinstance(value, str) and (m := _TIMESPAN.match(value)):
        days, hours, minutes, secs = m.groups()
        seconds = int(days or 0) * 86400 + int(hours) * 3600 + int(minutes) * 60 + float(secs)
    else:
        raise LeadershipConfigError(
            f'{key}: {value!r} is not a duration (use "00:00:05", "5s" or "500ms")'
        )
    if seconds < 0 or seconds != seconds:
        raise LeadershipConfigError(f"{key}: {value!r} is negative")
    return seconds


# attribute -> (config key, minimum seconds, maximum seconds)
_RANGES = {
    "lease_duration": ("leaseDuration", 1.0, 600.0),
    "renewal_lead_time": ("renewalLeadTime", 1.0, 300.0),
    "evaluation_interval": ("evaluationInterval", 0.1, 10.0),
    "max_election_window": ("maxElectionWindow", 1.0, 30.0),
    "election_backoff": ("electionBackoff", 0.1, 5.0),
    "stable_after": ("stableAfter", 0.0, 600.0),
}
QUORUM_MODES = ("none", "static")
MAX_VOTERS = 9
MAX_CLOCK_DRIFT = 0.2


def _in_range(inst: Any, attr: attrs.Attribute[Any], value: float) -> None:
    key, low, high = _RANGES[attr.name]
    if not low <= value <= high:
        raise LeadershipConfigError(
            f"mesh.leadership.{key}: {value:g}s is outside {low:g}s..{high:g}s"
        )


def _drift(inst: Any, attr: attrs.Attribute[Any], value: float) -> None:
    if not 0.0 <= value <= MAX_CLOCK_DRIFT:
        raise LeadershipConfigError(
            f"mesh.leadership.maxClockDrift: {value!r} is outside 0..{MAX_CLOCK_DRIFT}"
        )


def _priority(inst: Any, attr: attrs.Attribute[Any], value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise LeadershipConfigError(f"mesh.leadership.priority: {value!r} is not an integer")
    if not -MAX_PRIORITY <= value <= MAX_PRIORITY:
        raise LeadershipConfigError(
            f"mesh.leadership.priority: {value} is outside {-MAX_PRIORITY}..{MAX_PRIORITY}"
        )


def _patterns(inst: Any, attr: attrs.Attribute[Any], value: tuple[str, ...]) -> None:
    key = "eligibleScopes" if attr.name == "eligible_scopes" else attr.name
    for pattern in value:
        if not isinstance(pattern, str) or not pattern.strip() or "," in pattern:
            raise LeadershipConfigError(
                f"mesh.leadership.{key}: {pattern!r} is not a valid entry "
                "(a non-empty name or glob without commas)"
            )


def _quorum(inst: Any, attr: attrs.Attribute[Any], value: str) -> None:
    if value not in QUORUM_MODES:
        raise LeadershipConfigError(
            f"mesh.leadership.quorum: {value!r} is not one of {', '.join(QUORUM_MODES)}"
        )


@attrs.frozen
class LeadershipConfig:
    """Validated election settings (seconds). The defaults are OmniRelay's."""

    enabled: bool = True
    """False: take part as an observer only (no candidacy, never campaigns)."""
    lease_duration: float = attrs.field(default=8.0, validator=_in_range)
    renewal_lead_time: float = attrs.field(default=3.0, validator=_in_range)
    evaluation_interval: float = attrs.field(default=0.75, validator=_in_range)
    max_election_window: float = attrs.field(default=5.0, validator=_in_range)
    election_backoff: float = attrs.field(default=0.5, validator=_in_range)
    node_id: str | None = None
    scopes: tuple[LeadershipScope, ...] = (LeadershipScope.global_control(),)
    """Scopes this node takes part in; ``global-control`` when nothing is configured."""
    priority: int = attrs.field(default=0, validator=_priority)
    eligible_scopes: tuple[str, ...] = attrs.field(default=("*",), validator=_patterns)
    """Scope patterns this node may lead; it observes the other configured scopes."""
    roles: tuple[str, ...] = attrs.field(default=(), validator=_patterns)
    """Roles this node has for scopes that ask for roles (its gossip ``role`` counts too)."""
    quorum: str = attrs.field(default="none", validator=_quorum)
    """``none``: the store alone arbitrates; ``static``: a configured voter set (quorum store)."""
    voters: tuple[str, ...] = ()
    """``static``: the node ids of the voters (configuration epoch 1; 3 or 5 recommended)."""
    max_clock_drift: float = attrs.field(default=0.05, validator=_drift)
    """Bound on any clock's rate error against real time (epsilon of the validity rule)."""
    preempt: bool = False
    """Hand a led scope to a better-ranked candidate once it has been alive and healthy for
    ``stable_after`` (a preferred leader); by default an incumbent keeps its scopes."""
    stable_after: float = attrs.field(default=10.0, validator=_in_range)
    history_size: int = 1024
    """Events the event hub keeps for subscribers that resume."""
    audit_file: str | None = None
    """Append every leadership change to this JSON-lines file."""

    def __attrs_post_init__(self) -> None:
        if self.renewal_lead_time >= self.validity(self.lease_duration):
            raise LeadershipConfigError(
                f"mesh.leadership.renewalLeadTime: {self.renewal_lead_time:g}s leaves no time "
                "to lead: it must be below the usable lease, "
                f"{self.validity(self.lease_duration):.3g}s (leaseDuration "
                f"{self.lease_duration:g}s less the clock-drift margin)"
            )
        if self.history_size < 16:
            raise LeadershipConfigError(
                f"mesh.leadership.historySize: {self.history_size} is below 16"
            )
        if self.quorum == "static":
            if not self.voters or len(self.voters) > MAX_VOTERS:
                raise LeadershipConfigError(
                    f"mesh.leadership.voters: quorum = \"static\" needs 1 to {MAX_VOTERS} voter "
                    f"node ids (3 or 5 to survive one or two failures), got {len(self.voters)}"
                )
            bad = [v for v in self.voters if not isinstance(v, str) or not v.strip()]
            if bad or len(set(self.voters)) != len(self.voters):
                raise LeadershipConfigError(
                    f"mesh.leadership.voters: expected distinct non-empty node ids, "
                    f"got {list(self.voters)}"
                )
        elif self.voters:
            raise LeadershipConfigError(
                f'mesh.leadership.voters: voters need quorum = "static", not {self.quorum!r}'
            )
        keys = [s.key for s in self.scopes]
        if len(set(keys)) != len(keys):
            dupes = sorted({k for k in keys if keys.count(k) > 1})
            raise LeadershipConfigError(f"mesh.leadership.scopes: duplicate scope(s) {dupes}")

    @property
    def store_timeout(self) -> float:
        """The bound on every store call: ``maxElectionWindow``, and never past the validity
        of a full lease (a grant that came later could not be used anyway)."""
        return min(self.max_election_window, self.validity(self.lease_duration))

    def validity(self, granted: float) -> float:
        """How long a grant of ``granted`` seconds may be believed on the holder's own clock:
        ``granted * (1 - eps) / (1 + eps)``, safe when every clock's rate errs by up to eps."""
        eps = self.max_clock_drift
        return granted * (1 - eps) / (1 + eps)

    @classmethod
    def from_mapping(
        cls, section: Mapping[str, Any], prefix: str = "mesh.leadership"
    ) -> LeadershipConfig:
        """Parse a ``mesh.leadership`` section (OmniRelay's keys and ours)."""
        if not isinstance(section, Mapping):
            raise LeadershipConfigError(f"{prefix}: expected a table/object")
        fields: dict[str, Any] = {}
        scopes: list[LeadershipScope] = []
        attr_of = {key: attr for attr, (key, _, _) in _RANGES.items()}
        for key, value in section.items():
            where = f"{prefix}.{key}"
            if key in attr_of:
                fields[attr_of[key]] = parse_duration(value, where)
            elif key in ("enabled", "preempt"):
                fields[key] = _bool(value, where)
            elif key == "nodeId":
                if value is not None and (not isinstance(value, str) or not value.strip()):
                    raise LeadershipConfigError(f"{where}: expected a non-empty string or null")
                fields["node_id"] = value
            elif key == "scopes":
                for i, item in enumerate(_list(value, where)):
                    try:
                        scopes.append(scope_from_descriptor(item, f"{where}[{i}]"))
                    except InvalidScopeError as exc:
                        raise LeadershipConfigError(str(exc)) from None
            elif key == "shards":
                scopes.extend(_shards(value, where))
            elif key == "priority":
                fields["priority"] = _int(value, where)
            elif key in ("eligibleScopes", "roles"):
                items = _list(value, where)
                if not all(isinstance(p, str) for p in items):
                    raise LeadershipConfigError(f"{where}: expected a list of strings")
                fields["eligible_scopes" if key == "eligibleScopes" else "roles"] = tuple(items)
            elif key == "quorum":
                if not isinstance(value, str):
                    raise LeadershipConfigError(f"{where}: expected one of {QUORUM_MODES}")
                fields["quorum"] = value
            elif key == "voters":
                items = _list(value, where)
                if not all(isinstance(v, str) for v in items):
                    raise LeadershipConfigError(f"{where}: expected a list of node ids")
                fields["voters"] = tuple(items)
                fields.setdefault("quorum", "static")
            elif key == "maxClockDrift":
                if isinstance(value, bool) or not isinstance(value, int | float):
                    raise LeadershipConfigError(f"{where}: expected a fraction such as 0.05")
                fields["max_clock_drift"] = float(value)
            elif key == "historySize":
                fields["history_size"] = _int(value, where)
            elif key == "auditFile":
                if value is not None and not isinstance(value, str):
                    raise LeadershipConfigError(f"{where}: expected a file path")
                fields["audit_file"] = value
            else:
                raise LeadershipConfigError(f"{where}: unknown key")
        if scopes:
            fields["scopes"] = tuple(scopes)
        return cls(**fields)


def _bool(value: Any, key: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
        return value.lower() in ("true", "1", "yes")
    raise LeadershipConfigError(f"{key}: expected true or false, got {value!r}")


def _int(value: Any, key: str) -> int:
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise LeadershipConfigError(f"{key}: expected an integer, got {value!r}")
    return value


def _list(value: Any, key: str) -> Sequence[Any]:
    if not isinstance(value, list | tuple):
        raise LeadershipConfigError(f"{key}: expected a list")
    return value


def _shards(value: Any, where: str) -> list[LeadershipScope]:
    out: list[LeadershipScope] = []
    for i, group in enumerate(_list(value, where)):
        at = f"{where}[{i}]"
        if not isinstance(group, Mapping) or set(group) - {"namespace", "shards"}:
            raise LeadershipConfigError(f"{at}: expected {{namespace, shards: [ids]}}")
        namespace = group.get("namespace")
        for j, shard in enumerate(_list(group.get("shards", []), f"{at}.shards")):
            if isinstance(shard, int) and not isinstance(shard, bool):
                shard = str(shard)
            try:
                out.append(LeadershipScope.shard(namespace, shard))  # type: ignore[arg-type]
            except InvalidScopeError as exc:
                raise LeadershipConfigError(f"{at}.shards[{j}]: {exc}") from None
    return out
