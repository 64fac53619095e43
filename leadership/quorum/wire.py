"""Quorum lease messages and their plain encoding (lists, strings and numbers, ready for CBOR).

Every request names its holder ``(node, boot_id)`` in the payload: a voter never infers the
holder from the sender's address. Replies echo the holder and the exact ``(scope, round)`` they
answer, carry the voter's highest promised term (so a refused candidate retries above it) and its
configuration (so a candidate learns of newer voter sets). Decoding validates every field and
raises :class:`QuorumWireError` only.
"""

from __future__ import annotations

import math
from typing import Any

import attrs

from ..tokens import Holder
from .membership import VoterConfig, VoterConfigError

MAX_ENTRIES = 4096
"""Scopes in one request or reply (a leader renews all of its scopes in one message)."""
MAX_TEXT = 512
MAX_INT = 2**63 - 1
MAX_DURATION = 86_400.0


class QuorumWireError(ValueError):
    """A quorum lease message that does not decode: wrong shape, type or range."""


READ_TERM = 0
"""A request entry at term 0 asks only who holds the scope: it is never granted."""


@attrs.frozen
class RoundEntry:
    """One scope in a request: a campaign (new term) or a renewal (same term) in one round."""

    scope: str
    term: int
    round_id: int
    duration: float


@attrs.frozen
class LeaseRequest:
    holder: Holder
    config_epoch: int
    entries: tuple[RoundEntry, ...]


@attrs.frozen
class Verdict:
    """A voter's answer for one scope of one round; ``duration`` is what it granted (0 if not)."""

    scope: str
    round_id: int
    term: int
    granted: bool
    promised: int
    duration: float
    holder: Holder | None = None
    """The holder of the voter's unexpired, unreleased grant for the scope after answering."""
    remaining: float = 0.0
    """How long that grant still runs on the voter's clock."""
    holder_term: int = 0
    """The term of that grant."""


@attrs.frozen
class LeaseReply:
    voter: str
    holder: Holder
    config: VoterConfig | None
    verdicts: tuple[Verdict, ...]


@attrs.frozen
class ReleaseRequest:
    """Give up ``term`` of ``scope``; the voter clears the grant and keeps the promised term."""

    holder: Holder
    scope: str
    term: int


@attrs.frozen
class ConfigPrepare:
    """Phase 1 of a voter-set change: old voters store ``new`` durably and report their terms."""

    old: VoterConfig
    new: VoterConfig


@attrs.frozen
class ConfigPrepared:
    voter: str
    epoch: int
    accepted: bool
    terms: tuple[tuple[str, int], ...]
    """The voter's promised term per scope (the new voters inherit the maximum)."""
    wait: float = 0.0
    """Refused for now: seconds (voter's clock) until the gap after the last change ends."""
    reason: str = ""


@attrs.frozen
class ConfigCommit:
    """Phase 2: the new voters adopt ``config`` and raise their promised terms to ``terms``."""

    config: VoterConfig
    terms: tuple[tuple[str, int], ...]


@attrs.frozen
class ConfigCommitted:
    voter: str
    epoch: int
    accepted: bool


NOTICE_KINDS = ("acquired", "renewed", "released")


@attrs.frozen
class NoticeEntry:
    """A holder's news about one scope: it acquired, renewed or released ``term``.

    ``believe`` (seconds, 0 for none) lets a follower keep believing the holder past
    ``remaining`` while the holder stays alive in its view: the holder renews more often than it
    says so, and sends the next notice well within that time."""

    kind: str
    scope: str
    holder: Holder
    term: int
    remaining: float
    believe: float = 0.0


@attrs.frozen
class LeaseNotice:
    """Sent by a holder to every member, so followers learn of leaders without asking voters.

    Advisory only: it moves followers' next look and lets them campaign at once after a
    release; the voters alone decide who leads."""

    entries: tuple[NoticeEntry, ...]


Message = (
    LeaseNotice
    | LeaseRequest
    | LeaseReply
    | ReleaseRequest
    | ConfigPrepare
    | ConfigPrepared
    | ConfigCommit
    | ConfigCommitted
)


def encode(message: Message) -> list[Any]:
    """The plain form of a message; :func:`decode` reverses it."""
    if isinstance(message, LeaseRequest):
        return [
            "lease-req",
            _holder_out(message.holder),
            message.config_epoch,
            [[e.scope, e.term, e.round_id, e.duration] for e in message.entries],
        ]
    if isinstance(message, LeaseReply):
        config = None if message.config is None else _config_out(message.config)
        return [
            "lease-rep",
            message.voter,
            _holder_out(message.holder),
            config,
            [
                [
                    v.scope,
                    v.round_id,
                    v.term,
                    v.granted,
                    v.promised,
                    v.duration,
                    None if v.holder is None else _holder_out(v.holder),
                    v.remaining,
                    v.holder_term,
                ]
                for v in message.verdicts
            ],
        ]
    if isinstance(message, LeaseNotice):
        return [
            "lease-notice",
            [
                [e.kind, e.scope, _holder_out(e.holder), e.term, e.remaining]
                + ([e.believe] if e.believe > 0 else [])
                for e in message.entries
            ],
        ]
    if isinstance(message, ReleaseRequest):
        return ["lease-rel", _holder_out(message.holder), message.scope, message.term]
    if isinstance(message, ConfigPrepare):
        return ["cfg-prep", _config_out(message.old), _config_out(message.new)]
    if isinstance(message, ConfigPrepared):
        terms = [list(t) for t in message.terms]
        return [
            "cfg-prep-ack",
            message.voter,
            message.epoch,
            message.accepted,
            terms,
            message.wait,
            message.reason,
        ]
    if isinstance(message, ConfigCommit):
        return ["cfg-commit", _config_out(message.config), [list(t) for t in message.terms]]
    return ["cfg-commit-ack", message.voter, message.epoch, message.accepted]


def _config_out(config: VoterConfig) -> list[Any]:
    return [config.epoch, sorted(config.voters)]


def decode(data: object) -> Message:
    """Parse the plain form of a message, validating every field."""
    if not isinstance(data, list) or not data:
        raise QuorumWireError("a quorum message is a non-empty list")
    kind = data[0]
    if kind == "lease-req":
        _arity(data, 4, kind)
        entries = tuple(_round_entry(e) for e in _items(data[3], "entries"))
        if len({e.scope for e in entries}) != len(entries):
            raise QuorumWireError("a request names a scope twice")
        return LeaseRequest(
            holder=_holder_in(data[1]),
            config_epoch=_int(data[2], "config epoch"),
            entries=entries,
        )
    if kind == "lease-rep":
        _arity(data, 5, kind)
        verdicts = _items(data[4], "verdicts")
        return LeaseReply(
            voter=_text(data[1], "voter"),
            holder=_holder_in(data[2]),
            config=_config_in(data[3]),
            verdicts=tuple(_verdict(v) for v in verdicts),
        )
    if kind == "lease-rel":
        _arity(data, 4, kind)
        return ReleaseRequest(
            holder=_holder_in(data[1]), scope=_text(data[2], "scope"), term=_int(data[3], "term")
        )
    if kind == "lease-notice":
        _arity(data, 2, kind)
        return LeaseNotice(tuple(_notice_entry(e) for e in _items(data[1], "notices")))
    if kind == "cfg-prep":
        _arity(data, 3, kind)
        return ConfigPrepare(old=_config_required(data[1]), new=_config_required(data[2]))
    if kind == "cfg-prep-ack":
        _arity(data, 7, kind)
        if not isinstance(data[6], str) or len(data[6]) > MAX_TEXT:
            raise QuorumWireError("reason must be a short string")
        return ConfigPrepared(
            voter=_text(data[1], "voter"),
            epoch=_int(data[2], "config epoch"),
            accepted=_bool(data[3], "accepted"),
            terms=_terms_in(data[4]),
            wait=_duration(data[5]),
            reason=data[6],
        )
    if kind == "cfg-commit":
        _arity(data, 3, kind)
        return ConfigCommit(config=_config_required(data[1]), terms=_terms_in(data[2]))
    if kind == "cfg-commit-ack":
        _arity(data, 4, kind)
        return ConfigCommitted(
            voter=_text(data[1], "voter"),
            epoch=_int(data[2], "config epoch"),
            accepted=_bool(data[3], "accepted"),
        )
    raise QuorumWireError(f"unknown quorum message kind {kind!r}")


def _notice_entry(value: object) -> NoticeEntry:
    if not isinstance(value, list) or len(value) not in (5, 6) or value[0] not in NOTICE_KINDS:
        raise QuorumWireError(
            f"a notice is [{'|'.join(NOTICE_KINDS)}, scope, holder, term, remaining, believe?]"
        )
    return NoticeEntry(
        kind=value[0],
        scope=_text(value[1], "scope"),
        holder=_holder_in(value[2]),
        term=_int(value[3], "term"),
        remaining=_duration(value[4]),
        believe=_duration(value[5]) if len(value) == 6 else 0.0,
    )


def _bool(value: object, what: str) -> bool:
    if not isinstance(value, bool):
        raise QuorumWireError(f"{what} must be true or false")
    return value


def _config_required(value: object) -> VoterConfig:
    config = _config_in(value)
    if config is None:
        raise QuorumWireError("config must be [epoch, [voters]]")
    return config


def _terms_in(value: object) -> tuple[tuple[str, int], ...]:
    out = []
    for item in _items(value, "terms"):
        if not isinstance(item, list) or len(item) != 2:
            raise QuorumWireError("a term entry is [scope, term]")
        out.append((_text(item[0], "scope"), _int(item[1], "term")))
    return tuple(out)


def _holder_out(holder: Holder) -> list[str]:
    return [holder.node_id, holder.boot_id]


def _arity(data: list[Any], n: int, kind: str) -> None:
    if len(data) != n:
        raise QuorumWireError(f"{kind} has {len(data)} fields, expected {n}")


def _items(value: object, what: str) -> list[Any]:
    if not isinstance(value, list):
        raise QuorumWireError(f"{what} must be a list")
    if len(value) > MAX_ENTRIES:
        raise QuorumWireError(f"{what}: {len(value)} items, at most {MAX_ENTRIES}")
    return value


def _text(value: object, what: str) -> str:
    if not isinstance(value, str) or not value or len(value) > MAX_TEXT:
        raise QuorumWireError(f"{what} must be a string of 1..{MAX_TEXT} characters")
    return value


def _int(value: object, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_INT:
        raise QuorumWireError(f"{what} must be an integer in 0..2^63-1, got {value!r}")
    return value


def _duration(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise QuorumWireError(f"duration must be a number, got {value!r}")
    out = float(value)
    if not math.isfinite(out) or not 0.0 <= out <= MAX_DURATION:
        raise QuorumWireError(f"duration must be in 0..{MAX_DURATION:g} s, got {value!r}")
    return out


def _holder_in(value: object) -> Holder:
    if not isinstance(value, list) or len(value) != 2:
        raise QuorumWireError("holder must be [node id, boot id]")
    return Holder(_text(value[0], "holder node"), _text(value[1], "holder boot id"))


def _config_in(value: object) -> VoterConfig | None:
    if value is None:
        return None
    if not isinstance(value, list) or len(value) != 2 or not isinstance(value[1], list):
        raise QuorumWireError("config must be [epoch, [voters]]")
    voters = [_text(v, "voter") for v in _items(value[1], "voters")]
    try:
        return VoterConfig(_int(value[0], "config epoch"), frozenset(voters))
    except VoterConfigError as exc:
        raise QuorumWireError(f"config: {exc}") from None


def _round_entry(value: object) -> RoundEntry:
    if not isinstance(value, list) or len(value) != 4:
        raise QuorumWireError("a request entry is [scope, term, round, duration]")
    return RoundEntry(
        scope=_text(value[0], "scope"),
        term=_int(value[1], "term"),
        round_id=_int(value[2], "round"),
        duration=_duration(value[3]),
    )


def _verdict(value: object) -> Verdict:
    if not isinstance(value, list) or len(value) != 9 or not isinstance(value[3], bool):
        raise QuorumWireError(
            "a verdict is [scope, round, term, granted, promised, duration, holder, remaining, "
            "holder term]"
        )
    return Verdict(
        scope=_text(value[0], "scope"),
        round_id=_int(value[1], "round"),
        term=_int(value[2], "term"),
        granted=value[3],
        promised=_int(value[4], "promised"),
        duration=_duration(value[5]),
        holder=None if value[6] is None else _holder_in(value[6]),
        remaining=_duration(value[7]),
        holder_term=_int(value[8], "holder term"),
    )
