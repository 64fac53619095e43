"""Leadership scopes: ``global-control``, ``shard/<namespace>/<shardId>`` and custom ids.

Scope ids compare case-insensitively (``key`` is the folded id) but keep the casing they were
written with for output. Any descriptor that cannot name a scope raises :class:`InvalidScopeError`
naming it; adding a scope kind needs no code change (kind is a free string).
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Mapping
from typing import Any

import attrs

GLOBAL_CONTROL = "global-control"
KIND_GLOBAL = "global"
KIND_SHARD = "shard"
KIND_CUSTOM = "custom"
SHARD_PREFIX = "shard/"
MAX_SCOPE_CHARS = 256


class InvalidScopeError(ValueError):
    """A scope id or descriptor that does not name a valid scope (the message names it)."""


def _check_text(value: object, what: str, descriptor: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise InvalidScopeError(f"scope {descriptor!r}: {what} must be a non-empty string")
    if value != value.strip() or any(ch.isspace() or not ch.isprintable() for ch in value):
        raise InvalidScopeError(
            f"scope {descriptor!r}: {what} {value!r} has whitespace or control characters"
        )
    if len(value) > MAX_SCOPE_CHARS:
        raise InvalidScopeError(
            f"scope {descriptor!r}: {what} is longer than {MAX_SCOPE_CHARS} characters"
        )
    return value


def labels_dict(value: Mapping[str, str]) -> dict[str, str]:
    """A private copy of a label map (so frozen values do not share a caller's dict)."""
    return dict(value)


def _roles_tuple(value: Iterable[str]) -> tuple[str, ...]:
    return tuple(value)


@attrs.frozen
class LeadershipScope:
    """One thing that has at most one leader at a time. Build it with the class methods or
    :func:`parse_scope`; equality and hashing use the case-folded ``key``."""

    scope_id: str = attrs.field(eq=False)
    kind: str = attrs.field(eq=False)
    labels: Mapping[str, str] = attrs.field(factory=dict, converter=labels_dict, eq=False)
    roles: tuple[str, ...] = attrs.field(default=(), converter=_roles_tuple, eq=False)
    """Roles a candidate needs one of to lead this scope (empty: any role)."""
    key: str = attrs.field(init=False, repr=False)

    @key.default
    def _key(self) -> str:
        return self.scope_id.casefold()

    @classmethod
    def global_control(cls) -> LeadershipScope:
        return cls(GLOBAL_CONTROL, KIND_GLOBAL)

    @classmethod
    def shard(cls, namespace: str, shard_id: str) -> LeadershipScope:
        descriptor = f"{SHARD_PREFIX}{namespace}/{shard_id}"
        _check_text(namespace, "namespace", descriptor)
        _check_text(shard_id, "shardId", descriptor)
        if "/" in namespace:
            raise InvalidScopeError(f"scope {descriptor!r}: namespace may not contain '/'")
        return cls(descriptor, KIND_SHARD, {"namespace": namespace, "shardId": shard_id})

    @classmethod
    def custom(
        cls,
        scope_id: str,
        kind: str = KIND_CUSTOM,
        labels: Mapping[str, str] | None = None,
        roles: tuple[str, ...] = (),
    ) -> LeadershipScope:
        _check_text(scope_id, "scopeId", scope_id)
        _check_text(kind, "kind", scope_id)
        folded = scope_id.casefold()
        if folded == GLOBAL_CONTROL or folded.startswith(SHARD_PREFIX):
            scope = _merge_labels(parse_scope(scope_id), kind, labels)
            return attrs.evolve(scope, roles=roles) if roles else scope
        return cls(scope_id, kind, dict(labels or {}), roles)

    def matches(self, pattern: str) -> bool:
        """True when ``pattern`` (a glob such as ``shard/orders/*``) names this scope."""
        return scope_matches(pattern, self.scope_id)


def _merge_labels(
    scope: LeadershipScope, kind: str, labels: Mapping[str, str] | None
) -> LeadershipScope:
    if kind not in (KIND_CUSTOM, scope.kind):
        raise InvalidScopeError(
            f"scope {scope.scope_id!r}: kind {kind!r} contradicts its id (kind {scope.kind!r})"
        )
    if not labels:
        return scope
    return attrs.evolve(scope, labels={**scope.labels, **labels})


def parse_scope(scope_id: str) -> LeadershipScope:
    """The scope a bare id names: ``global-control``, ``shard/<ns>/<id>``, or a custom id."""
    _check_text(scope_id, "scopeId", scope_id)
    folded = scope_id.casefold()
    if folded == GLOBAL_CONTROL:
        return LeadershipScope(scope_id, KIND_GLOBAL)
    if folded.startswith(SHARD_PREFIX):
        rest = scope_id[len(SHARD_PREFIX) :]
        namespace, sep, shard_id = rest.partition("/")
        if not sep or not namespace or not shard_id:
            raise InvalidScopeError(
                f"scope {scope_id!r}: a shard scope is shard/<namespace>/<shardId>"
            )
        return LeadershipScope.shard(namespace, shard_id)
    return LeadershipScope(scope_id, KIND_CUSTOM)


def scope_from_descriptor(descriptor: Mapping[str, Any], where: str = "scope") -> LeadershipScope:
    """A scope from OmniRelay's descriptor ``{scopeId, kind, namespace, shardId, labels}``
    (plus our ``roles``: the roles a candidate needs one of)."""
    known = {"scopeId", "kind", "namespace", "shardId", "labels", "roles"}
    if not isinstance(descriptor, Mapping):
        raise InvalidScopeError(f"{where}: expected a table/object, got {descriptor!r}")
    unknown = set(descriptor) - known
    if unknown:
        raise InvalidScopeError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}")
    labels = descriptor.get("labels") or {}
    if not isinstance(labels, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in labels.items()
    ):
        raise InvalidScopeError(f"{where}.labels: expected a table of string labels")
    kind = descriptor.get("kind")
    scope_id = descriptor.get("scopeId")
    roles = descriptor.get("roles") or []
    if not isinstance(roles, list | tuple) or not all(
        isinstance(r, str) and r.strip() and "," not in r for r in roles
    ):
        raise InvalidScopeError(f"{where}.roles: expected a list of role names")
    try:
        return attrs.evolve(_descriptor_scope(descriptor, scope_id, kind, labels), roles=roles)
    except InvalidScopeError as exc:
        raise InvalidScopeError(f"{where}: {exc}") from None


def _descriptor_scope(
    descriptor: Mapping[str, Any], scope_id: Any, kind: Any, labels: Mapping[str, str]
) -> LeadershipScope:
    if scope_id is not None:
        return LeadershipScope.custom(scope_id, kind or KIND_CUSTOM, labels)
    folded_kind = (kind or "").casefold() if isinstance(kind, str) else ""
    if folded_kind == KIND_SHARD or "namespace" in descriptor or "shardId" in descriptor:
        namespace, shard_id = descriptor.get("namespace"), descriptor.get("shardId")
        if isinstance(shard_id, int) and not isinstance(shard_id, bool):
            shard_id = str(shard_id)
        scope = LeadershipScope.shard(namespace, shard_id)  # type: ignore[arg-type]
        return _merge_labels(scope, KIND_SHARD, labels)
    if folded_kind == KIND_GLOBAL:
        return _merge_labels(LeadershipScope.global_control(), KIND_GLOBAL, labels)
    raise InvalidScopeError("needs scopeId, or kind shard with namespace and shardId")


def scope_matches(pattern: str, scope_id: str) -> bool:
    """Case-insensitive glob match of a scope pattern (``*``, ``shard/orders/*``, an exact id)."""
    return fnmatch.fnmatchcase(scope_id.casefold(), pattern.casefold())
