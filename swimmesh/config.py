"""Node configuration and the timing presets (memberlist's LAN/WAN/Local, plus ``fast``).

All durations are seconds (float). ``MeshConfig.lan(name=..., bind=..., **overrides)`` builds a
validated configuration; an invalid value raises :class:`ConfigError` naming the field.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

import attrs

from .codec import MAX_LABEL_CHARS, MAX_NAME_CHARS
from .errors import SwimmeshError
from .member import Address


class ConfigError(SwimmeshError, ValueError):
    """An invalid configuration value; the message names the key and the value."""


def parse_address(value: str | Address, what: str = "address") -> Address:
    """Parse ``host:port`` (``[v6]:port`` for IPv6) or pass a ``(host, port)`` tuple through."""
    if isinstance(value, tuple):
        host, port = value
    else:
        text = value.strip()
        if text.startswith("["):
            close = text.find("]")
            if close < 0 or text[close + 1 : close + 2] != ":":
                raise ConfigError(f"{what}: {value!r} is not [host]:port")
            host, port_text = text[1:close], text[close + 2 :]
        else:
            host, sep, port_text = text.rpartition(":")
            if not sep:
                raise ConfigError(f"{what}: {value!r} is not host:port")
        try:
            port = int(port_text)
        except ValueError:
            raise ConfigError(f"{what}: port of {value!r} is not a number") from None
    if not isinstance(host, str) or not host:
        raise ConfigError(f"{what}: empty host in {value!r}")
    if not isinstance(port, int) or not 0 <= port <= 65_535:
        raise ConfigError(f"{what}: port {port!r} out of range 0..65535")
    return (host, port)


def format_address(address: Address) -> str:
    host, port = address
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _positive(_inst: Any, attr: attrs.Attribute[Any], value: Any) -> None:
    if value <= 0:
        raise ConfigError(f"{attr.name}: must be > 0, got {value!r}")


def _non_negative(_inst: Any, attr: attrs.Attribute[Any], value: Any) -> None:
    if value < 0:
        raise ConfigError(f"{attr.name}: must be >= 0, got {value!r}")


def _at_least(n: int) -> Any:
    def check(_inst: Any, attr: attrs.Attribute[Any], value: Any) -> None:
        if value < n:
            raise ConfigError(f"{attr.name}: must be >= {n}, got {value!r}")

    return check


def _name(_inst: Any, attr: attrs.Attribute[Any], value: Any) -> None:
    if not isinstance(value, str) or not value or len(value) > MAX_NAME_CHARS:
        raise ConfigError(
            f"{attr.name}: must be a non-empty string of at most {MAX_NAME_CHARS} characters"
        )


def _label(_inst: Any, attr: attrs.Attribute[Any], value: Any) -> None:
    if not isinstance(value, str) or len(value) > MAX_LABEL_CHARS:
        raise ConfigError(f"{attr.name}: must be a string of at most {MAX_LABEL_CHARS} characters")


def _bind(value: str | Address) -> Address:
    return parse_address(value, "bind")


def _advertise(value: str | Address | None) -> Address | None:
    return None if value is None else parse_address(value, "advertise")


def _metadata(value: Mapping[str, str]) -> Mapping[str, str]:
    for k, v in value.items():
        if not isinstance(k, str) or not isinstance(v, str):
            raise ConfigError(f"metadata: keys and values must be strings, got {k!r}: {v!r}")
    return MappingProxyType(dict(value))


def _float(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"expected a number of seconds, got {value!r}")
    return float(value)


@attrs.frozen(kw_only=True)
class MeshConfig:
    """Everything a node needs to run; build it with a preset classmethod."""

    name: str = attrs.field(validator=_name)
    bind: Address = attrs.field(default=("127.0.0.1", 7946), converter=_bind)
    advertise: Address | None = attrs.field(default=None, converter=_advertise)
    cluster_label: str = attrs.field(default="", validator=_label)
    metadata: Mapping[str, str] = attrs.field(factory=dict, converter=_metadata)
    preset: str = "lan"

    probe_interval: float = attrs.field(default=1.0, converter=_float, validator=_positive)
    probe_timeout: float = attrs.field(default=0.5, converter=_float, validator=_positive)
    indirect_checks: int = attrs.field(default=3, validator=_non_negative)
    suspicion_mult: int = attrs.field(default=4, validator=_at_least(1))
    suspicion_max_timeout_mult: int = attrs.field(default=6, validator=_at_least(1))
    retransmit_mult: int = attrs.field(default=4, validator=_at_least(1))
    gossip_nodes: int = attrs.field(default=3, validator=_at_least(1))
    gossip_interval: float = attrs.field(default=0.2, converter=_float, validator=_positive)
    gossip_to_the_dead: float = attrs.field(default=30.0, converter=_float, validator=_non_negative)
    push_pull_interval: float = attrs.field(default=30.0, converter=_float, validator=_positive)
    tcp_timeout: float = attrs.field(default=10.0, converter=_float, validator=_positive)
    awareness_max: int = attrs.field(default=8, validator=_at_least(1))
    udp_buffer_size: int = attrs.field(default=1400, validator=_at_least(256))
    max_metadata_bytes: int = attrs.field(default=512, validator=_at_least(16))
    lifeguard: bool = True
    """Local health awareness, dynamic suspicion, buddy pings and nacks; off = plain SWIM."""
    stream_fallback: bool = True
    """Also ping over the stream channel when a UDP probe fails (memberlist's TCP ping)."""
    reconnect_interval: float = attrs.field(default=30.0, converter=_float, validator=_positive)
    reconnect_timeout: float = attrs.field(
        default=24 * 3600.0, converter=_float, validator=_positive
    )
    join_timeout: float = attrs.field(default=10.0, converter=_float, validator=_positive)
    leave_timeout: float = attrs.field(default=5.0, converter=_float, validator=_positive)
    max_concurrent_push_pulls: int = attrs.field(default=128, validator=_at_least(1))
    rtt_alpha: float = attrs.field(default=0.125, converter=_float, validator=_positive)
    seed: int | None = None
    """Seed of this node's private random source; ``None`` draws one from the OS."""

    def __attrs_post_init__(self) -> None:
        if self.probe_timeout > self.probe_interval:
            raise ConfigError(
                f"probe_timeout: {self.probe_timeout} must not exceed probe_interval "
                f"{self.probe_interval}"
            )
        if self.preset not in PRESETS:
            raise ConfigError(f"preset: unknown preset {self.preset!r}; known: {sorted(PRESETS)}")

    @property
    def advertise_address(self) -> Address:
        """The address peers use to reach this node (``advertise``, else ``bind``)."""
        return self.advertise if self.advertise is not None else self.bind

    @classmethod
    def from_preset(cls, preset: str, **fields: Any) -> MeshConfig:
        """Start from a named preset and apply overrides by field name."""
        try:
            base = PRESETS[preset]
        except KeyError:
            raise ConfigError(
                f"preset: unknown preset {preset!r}; known: {sorted(PRESETS)}"
            ) from None
        unknown = set(fields) - {a.name for a in attrs.fields(cls)}
        if unknown:
            raise ConfigError(f"unknown configuration field(s): {', '.join(sorted(unknown))}")
        return cls(**{**base, "preset": preset, **fields})

    @classmethod
    def lan(cls, **fields: Any) -> MeshConfig:
        """memberlist's LAN timing: detection in seconds on a data-centre network."""
        return cls.from_preset("lan", **fields)

    @classmethod
    def wan(cls, **fields: Any) -> MeshConfig:
        """memberlist's WAN timing: tolerant of high latency and loss."""
        return cls.from_preset("wan", **fields)

    @classmethod
    def local(cls, **fields: Any) -> MeshConfig:
        """memberlist's Local timing: one host or a very quiet network."""
        return cls.from_preset("local", **fields)

    @classmethod
    def fast(cls, **fields: Any) -> MeshConfig:
        """Sub-second failure detection for loopback or a quiet LAN (tight election SLAs)."""
        return cls.from_preset("fast", **fields)


PRESETS: dict[str, dict[str, Any]] = {
    "lan": dict(
        probe_interval=1.0,
        probe_timeout=0.5,
        indirect_checks=3,
        suspicion_mult=4,
        suspicion_max_timeout_mult=6,
        retransmit_mult=4,
        gossip_nodes=3,
        gossip_interval=0.2,
        gossip_to_the_dead=30.0,
        push_pull_interval=30.0,
        tcp_timeout=10.0,
        reconnect_interval=30.0,
    ),
    "wan": dict(
        probe_interval=5.0,
        probe_timeout=3.0,
        indirect_checks=3,
        suspicion_mult=6,
        suspicion_max_timeout_mult=6,
        retransmit_mult=4,
        gossip_nodes=4,
        gossip_interval=0.5,
        gossip_to_the_dead=60.0,
        push_pull_interval=60.0,
        tcp_timeout=30.0,
        reconnect_interval=60.0,
    ),
    "local": dict(
        probe_interval=1.0,
        probe_timeout=0.2,
        indirect_checks=1,
        suspicion_mult=3,
        suspicion_max_timeout_mult=6,
        retransmit_mult=2,
        gossip_nodes=3,
        gossip_interval=0.1,
        gossip_to_the_dead=15.0,
        push_pull_interval=15.0,
        tcp_timeout=1.0,
        reconnect_interval=15.0,
    ),
    "fast": dict(
        probe_interval=0.2,
        probe_timeout=0.1,
        indirect_checks=3,
        suspicion_mult=3,
        suspicion_max_timeout_mult=4,
        retransmit_mult=3,
        gossip_nodes=3,
        gossip_interval=0.05,
        gossip_to_the_dead=10.0,
        push_pull_interval=10.0,
        tcp_timeout=1.0,
        reconnect_interval=5.0,
    ),
}
