"""Agent settings from a TOML/JSON file, ``SWIMMESH_*`` environment variables and flags.

Precedence rises in that order. The file's ``mesh.gossip`` section accepts OmniRelay's key
names and .NET TimeSpan strings (``"00:00:05"``) as well as ``"5s"`` / ``"500ms"``; see
docs/configuration.md for the mapping. Every error names the key and the bad value.
"""

from __future__ import annotations

import json
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs

from leadership import LeadershipConfig, LeadershipConfigError
from leadership import parse_duration as leadership_duration

from . import __version__
from .config import PRESETS, ConfigError, MeshConfig, format_address, parse_address


def parse_duration(value: Any, key: str) -> float:
    """Seconds from a number, ``"500ms"``, ``"5s"``, ``"1m"``, ``"2h"`` or ``"[d.]hh:mm:ss"``."""
    try:
        return leadership_duration(value, key)
    except LeadershipConfigError as exc:
        raise ConfigError(str(exc)) from None


# mesh.gossip keys -> (MeshConfig field or agent setting, kind)
_DURATION_FIELDS = {
    "probeInterval": "probe_interval",
    "probeTimeout": "probe_timeout",
    "gossipInterval": "gossip_interval",
    "gossipToTheDead": "gossip_to_the_dead",
    "pushPullInterval": "push_pull_interval",
    "tcpTimeout": "tcp_timeout",
    "reconnectInterval": "reconnect_interval",
    "reconnectTimeout": "reconnect_timeout",
    "joinTimeout": "join_timeout",
    "leaveTimeout": "leave_timeout",
    # OmniRelay names
    "interval": "probe_interval",
    "pingTimeout": "probe_timeout",
    "metadataRefreshPeriod": "push_pull_interval",
}
_INT_FIELDS = {
    "indirectChecks": "indirect_checks",
    "suspicionMult": "suspicion_mult",
    "suspicionMaxTimeoutMult": "suspicion_max_timeout_mult",
    "retransmitMult": "retransmit_mult",
    "gossipNodes": "gossip_nodes",
    "awarenessMax": "awareness_max",
    "udpBufferSize": "udp_buffer_size",
    "maxMetadataBytes": "max_metadata_bytes",
    # OmniRelay names
    "fanout": "gossip_nodes",
    "retransmitLimit": "retransmit_mult",
}
_IGNORED = {
    "adaptiveFanout",
    "fanoutCoefficient",
    "fanoutFloor",
    "fanoutCeiling",
    "maxOutboundPerRound",
    "activeViewSize",
    "passiveViewSize",
    "shuffleInterval",
    "shuffleSampleSize",
}
_METADATA_KEYS = {
    "role": "role",
    "clusterId": "clusterId",
    "region": "region",
    "meshVersion": "meshVersion",
}


@attrs.define
class AgentSettings:
    """Everything ``swimmesh agent`` needs; built by :func:`load_settings`."""

    node_id: str | None = None
    bind: str = "127.0.0.1:7946"
    advertise: str | None = None
    join: list[str] = attrs.Factory(list)
    control: str = "127.0.0.1:7947"
    preset: str = "lan"
    key: str | None = None
    keyring_file: str | None = None
    insecure: bool = False
    control_token: str | None = None
    data_dir: str | None = None
    log_level: str = "info"
    log_format: str = "text"
    cluster_label: str = ""
    metadata: dict[str, str] = attrs.Factory(
        lambda: {
            "role": "worker",
            "clusterId": "local",
            "region": "local",
            "meshVersion": __version__,
        }
    )
    """Published gossip metadata; OmniRelay's defaults until the file or flags say otherwise."""
    gossip: dict[str, Any] = attrs.Factory(dict)
    """MeshConfig field overrides (our field names, values already parsed)."""
    tls: dict[str, Any] = attrs.Factory(dict)
    suspicion_interval: float | None = None
    """OmniRelay's suspicionInterval, mapped onto suspicion_mult once the interval is known."""
    leadership: LeadershipConfig | None = None
    """The validated ``mesh.leadership`` section, when the file has one."""

    def mesh_config(self, default_name: str) -> MeshConfig:
        """The validated node configuration these settings describe."""
        fields = dict(self.gossip)
        if self.suspicion_interval is not None:
            interval = float(fields.get("probe_interval", PRESETS[self.preset]["probe_interval"]))
            fields["suspicion_mult"] = max(1, round(self.suspicion_interval / interval))
        return MeshConfig.from_preset(
            self.preset,
            name=self.node_id or default_name,
            bind=parse_address(self.bind, "bind"),
            advertise=parse_address(self.advertise, "advertise") if self.advertise else None,
            cluster_label=self.cluster_label,
            metadata=self.metadata,
            **fields,
        )


def _section(data: Mapping[str, Any], *path: str) -> Mapping[str, Any]:
    node: Any = data
    for part in path:
        if not isinstance(node, Mapping):
            return {}
        node = node.get(part, {})
    if not isinstance(node, Mapping):
        raise ConfigError(f"{'.'.join(path)}: expected a table/object")
    return node


def load_file(path: Path) -> dict[str, Any]:
    """Parse a TOML or JSON configuration file (by extension; TOML otherwise)."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror or exc}") from None
    try:
        data = json.loads(text) if path.suffix.lower() == ".json" else tomllib.loads(text)
    except (ValueError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(
            f"config file {path} is not valid {path.suffix.lstrip('.') or 'TOML'}: {exc}"
        ) from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path}: top level must be a table/object")
    return data


def _str(value: Any, key: str) -> str:
    if not isinstance(value, str):
        raise ConfigError(f"{key}: expected a string, got {value!r}")
    return value


def _int(value: Any, key: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        if isinstance(value, str) and value.strip().isdigit():
            return int(value)
        raise ConfigError(f"{key}: expected an integer, got {value!r}")
    return value


def _bool(value: Any, key: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in (
        "1",
        "true",
        "yes",
        "on",
        "0",
        "false",
        "no",
        "off",
    ):
        return value.lower() in ("1", "true", "yes", "on")
    raise ConfigError(f"{key}: expected true or false, got {value!r}")


def apply_gossip_section(settings: AgentSettings, gossip: Mapping[str, Any], prefix: str) -> None:
    """Apply a ``mesh.gossip`` mapping (OmniRelay's keys and ours) onto ``settings``."""
    host: str | None = None
    port: int | None = None
    adv_host: str | None = None
    adv_port: int | None = None
    for key, value in gossip.items():
        where = f"{prefix}.{key}"
        if key in _DURATION_FIELDS:
            settings.gossip[_DURATION_FIELDS[key]] = parse_duration(value, where)
        elif key in _INT_FIELDS:
            settings.gossip[_INT_FIELDS[key]] = _int(value, where)
        elif key == "suspicionInterval":
            settings.suspicion_interval = parse_duration(value, where)
        elif key == "lifeguard":
            settings.gossip["lifeguard"] = _bool(value, where)
        elif key == "streamFallback":
            settings.gossip["stream_fallback"] = _bool(value, where)
        elif key == "nodeId":
            settings.node_id = _str(value, where)
        elif key == "bindAddress":
            host = _str(value, where)
        elif key == "port":
            port = _int(value, where)
        elif key == "bind":
            settings.bind = format_address(parse_address(_str(value, where), where))
        elif key == "advertiseHost":
            adv_host = _str(value, where)
        elif key == "advertisePort":
            adv_port = _int(value, where)
        elif key == "advertise":
            settings.advertise = format_address(parse_address(_str(value, where), where))
        elif key in ("seedPeers", "join"):
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise ConfigError(f'{where}: expected a list of "host:port" strings')
            for seed in value:
                parse_address(seed, where)
            settings.join = list(value)
        elif key == "preset":
            if value not in PRESETS:
                raise ConfigError(f"{where}: unknown preset {value!r}; known: {sorted(PRESETS)}")
            settings.preset = value
        elif key == "clusterLabel":
            settings.cluster_label = _str(value, where)
        elif key in _METADATA_KEYS:
            settings.metadata[_METADATA_KEYS[key]] = _str(value, where)
        elif key == "labels":
            if not isinstance(value, Mapping):
                raise ConfigError(f"{where}: expected a table of string labels")
            for k, v in value.items():
                settings.metadata[f"label.{k}"] = _str(v, f"{where}.{k}")
        elif key == "tls":
            if not isinstance(value, Mapping):
                raise ConfigError(f"{where}: expected a table")
            settings.tls.update(value)
        elif key in _IGNORED:
            continue
        else:
            raise ConfigError(f"{where}: unknown key")
    if host is not None or port is not None:
        current = parse_address(settings.bind, "bind")
        settings.bind = format_address(
            (host or current[0], port if port is not None else current[1])
        )
    if adv_host is not None:
        default_port = parse_address(settings.bind, "bind")[1]
        settings.advertise = format_address(
            (adv_host, adv_port if adv_port is not None else default_port)
        )


_AGENT_KEYS = {
    "control": "control",
    "controlToken": "control_token",
    "dataDir": "data_dir",
    "keyringFile": "keyring_file",
    "key": "key",
    "logLevel": "log_level",
    "logFormat": "log_format",
}


def apply_file(settings: AgentSettings, data: Mapping[str, Any]) -> None:
    apply_gossip_section(settings, _section(data, "mesh", "gossip"), "mesh.gossip")
    mesh = data.get("mesh")
    if isinstance(mesh, Mapping) and "leadership" in mesh:
        try:
            settings.leadership = LeadershipConfig.from_mapping(
                _section(data, "mesh", "leadership")
            )
        except LeadershipConfigError as exc:
            raise ConfigError(str(exc)) from None
    for key, value in _section(data, "mesh", "agent").items():
        where = f"mesh.agent.{key}"
        if key == "insecure":
            settings.insecure = _bool(value, where)
        elif key in _AGENT_KEYS:
            setattr(settings, _AGENT_KEYS[key], _str(value, where))
        else:
            raise ConfigError(f"{where}: unknown key")


_ENV = {
    "SWIMMESH_NODE_ID": "node_id",
    "SWIMMESH_BIND": "bind",
    "SWIMMESH_ADVERTISE": "advertise",
    "SWIMMESH_CONTROL": "control",
    "SWIMMESH_PRESET": "preset",
    "SWIMMESH_KEY": "key",
    "SWIMMESH_KEYRING_FILE": "keyring_file",
    "SWIMMESH_CONTROL_TOKEN": "control_token",
    "SWIMMESH_DATA_DIR": "data_dir",
    "SWIMMESH_LOG_LEVEL": "log_level",
    "SWIMMESH_LOG_FORMAT": "log_format",
    "SWIMMESH_CLUSTER_LABEL": "cluster_label",
}


def apply_env(settings: AgentSettings, env: Mapping[str, str]) -> None:
    for var, attr in _ENV.items():
        if var in env:
            setattr(settings, attr, env[var])
    if "SWIMMESH_JOIN" in env:
        settings.join = [s.strip() for s in env["SWIMMESH_JOIN"].split(",") if s.strip()]
    if "SWIMMESH_INSECURE" in env:
        settings.insecure = _bool(env["SWIMMESH_INSECURE"], "SWIMMESH_INSECURE")
    gossip = {}
    for var, value in env.items():
        if var.startswith("SWIMMESH_GOSSIP_"):
            snake = var.removeprefix("SWIMMESH_GOSSIP_").lower()
            camel = re.sub(r"_(\w)", lambda m: m.group(1).upper(), snake)
            gossip[camel] = value
    if gossip:
        apply_gossip_section(settings, gossip, "SWIMMESH_GOSSIP_*")


def load_settings(
    config_file: str | None, env: Mapping[str, str], flags: Mapping[str, Any]
) -> AgentSettings:
    """File, then environment, then flags (``None`` flags are not given)."""
    settings = AgentSettings()
    if config_file:
        apply_file(settings, load_file(Path(config_file)))
    apply_env(settings, env)
    for attr, value in flags.items():
        if value is None:
            continue
        if attr == "join":
            if value:
                settings.join = list(value)
        elif attr == "gossip":
            settings.gossip.update(value)
        else:
            setattr(settings, attr, value)
    if settings.preset not in PRESETS:
        raise ConfigError(f"preset: unknown preset {settings.preset!r}; known: {sorted(PRESETS)}")
    for where, addr in (("bind", settings.bind), ("control", settings.control)):
        parse_address(addr, where)
    for seed in settings.join:
        parse_address(seed, "join")
    if settings.log_format not in ("text", "json"):
        raise ConfigError(f"log_format: expected text or json, got {settings.log_format!r}")
    return settings
