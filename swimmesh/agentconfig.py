"""Agent settings from a TOML/JSON file, ``SWIMMESH_*`` environment variables and flags.

Precedence rises in that order. The file's ``mesh.gossip`` section accepts OmniRelay's key
names and .NET TimeSpan strings (``"00:00:05"``) as well as ``"5s"`` / ``"500ms"``; see
docs/configuration.md for the mapping. Every error names the key and the bad value.
"""

from __future__ import annotations

import difflib
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
from .transport.tls import TlsFileError, check_tls_files


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
    written_as: dict[str, str] = attrs.Factory(dict)
    """MeshConfig field -> the key the user wrote for it (``mesh.gossip.fanout``), so that an
    error raised while building the config names what the user can find in their file."""

    def mesh_config(self, default_name: str) -> MeshConfig:
        """The validated node configuration these settings describe."""
        fields = dict(self.gossip)
        if self.suspicion_interval is not None:
            interval = float(fields.get("probe_interval", PRESETS[self.preset]["probe_interval"]))
            fields["suspicion_mult"] = max(1, round(self.suspicion_interval / interval))
        try:
            return MeshConfig.from_preset(
                self.preset,
                name=self.node_id or default_name,
                bind=parse_address(self.bind, "bind"),
                advertise=parse_address(self.advertise, "advertise") if self.advertise else None,
                cluster_label=self.cluster_label,
                metadata=self.metadata,
                **fields,
            )
        except ConfigError as exc:
            if not self.written_as:
                raise
            # MeshConfig names its own fields; say instead what the user wrote.
            names = self.written_as
            pattern = r"\b(" + "|".join(map(re.escape, names)) + r")\b"
            raise ConfigError(re.sub(pattern, lambda m: names[m.group(1)], str(exc))) from None


def _did_you_mean(word: str, known: Any) -> str:
    """``"; did you mean X?"`` for the nearest of ``known``, or nothing when none is near."""
    near = difflib.get_close_matches(word, sorted(known), n=1, cutoff=0.6)
    return f"; did you mean {near[0]}?" if near else ""


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


def apply_gossip_section(
    settings: AgentSettings,
    gossip: Mapping[str, Any],
    prefix: str,
    names: Mapping[str, str] | None = None,
) -> None:
    """Apply a ``mesh.gossip`` mapping (OmniRelay's keys and ours) onto ``settings``; errors
    name ``prefix.key``, or ``names[key]`` when given (the environment variable set)."""
    host: str | None = None
    port: int | None = None
    adv_host: str | None = None
    adv_port: int | None = None
    for key, value in gossip.items():
        where = names[key] if names is not None else f"{prefix}.{key}"
        if key in _DURATION_FIELDS:
            settings.gossip[_DURATION_FIELDS[key]] = parse_duration(value, where)
            settings.written_as[_DURATION_FIELDS[key]] = where
        elif key in _INT_FIELDS:
            settings.gossip[_INT_FIELDS[key]] = _int(value, where)
            settings.written_as[_INT_FIELDS[key]] = where
        elif key == "suspicionInterval":
            settings.suspicion_interval = parse_duration(value, where)
            settings.written_as["suspicion_mult"] = where
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
            settings.written_as["cluster_label"] = where
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
            raise ConfigError(f"{where}: unknown key{_did_you_mean(key, _GOSSIP_KEYS)}")
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


_GOSSIP_KEYS = {
    *_DURATION_FIELDS,
    *_INT_FIELDS,
    *_METADATA_KEYS,
    *_IGNORED,
    "suspicionInterval",
    "lifeguard",
    "streamFallback",
    "nodeId",
    "bindAddress",
    "port",
    "bind",
    "advertiseHost",
    "advertisePort",
    "advertise",
    "seedPeers",
    "join",
    "preset",
    "clusterLabel",
    "labels",
    "tls",
}
_SECTIONS = {"mesh": ("gossip", "agent", "leadership")}
"""The sections a file may have; anything else is a typo that would otherwise vanish."""
_TLS_FILES = {"certFile": "cert_file", "keyFile": "key_file", "caFile": "ca_file"}


def check_sections(data: Mapping[str, Any]) -> None:
    """Refuse a section the agent does not read (``[mesh.gosip]``), suggesting the nearest one."""
    for top, value in data.items():
        if top not in _SECTIONS:
            raise ConfigError(f"{top}: unknown section{_did_you_mean(top, _SECTIONS)}")
        if not isinstance(value, Mapping):
            raise ConfigError(f"{top}: expected a table/object")
        for name in value:
            if name not in _SECTIONS[top]:
                known = [f"{top}.{s}" for s in _SECTIONS[top]]
                raise ConfigError(
                    f"{top}.{name}: unknown section{_did_you_mean(f'{top}.{name}', known)}"
                    f" (known: {', '.join(known)})"
                )


_TLS_FLAGS = ("requireClientCert", "allowUntrustedCertificates", "checkCertificateRevocation")
_TLS_LISTS = ("allowedNames", "allowedFingerprints", "allowedThumbprints")


def check_tls(settings: AgentSettings) -> None:
    """Check the ``mesh.gossip.tls`` values and load every file they name, so a bad path or a
    certificate that does not match its key stops the agent at start-up instead of failing
    every handshake later. Switches given as strings (``"false"``) become booleans."""
    tls = settings.tls
    for key in _TLS_FLAGS:
        if key in tls:
            tls[key] = _bool(tls[key], f"mesh.gossip.tls.{key}")
    for key in _TLS_LISTS:
        value = tls.get(key)
        if value is not None and (
            not isinstance(value, list) or not all(isinstance(v, str) for v in value)
        ):
            raise ConfigError(f"mesh.gossip.tls.{key}: expected a list of strings, got {value!r}")
    if "minVersion" in tls and tls["minVersion"] not in ("1.2", "1.3"):
        raise ConfigError(
            f'mesh.gossip.tls.minVersion: expected "1.2" or "1.3", got {tls["minVersion"]!r}'
        )
    files = {
        field: _str(settings.tls[key], f"mesh.gossip.tls.{key}")
        for key, field in _TLS_FILES.items()
        if settings.tls.get(key) is not None
    }
    try:
        check_tls_files(**files)
    except TlsFileError as exc:
        key = {v: k for k, v in _TLS_FILES.items()}[exc.field]
        raise ConfigError(f"mesh.gossip.tls.{key}: {exc.path}: {exc.reason}") from None


def apply_file(settings: AgentSettings, data: Mapping[str, Any]) -> None:
    check_sections(data)
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
            near = _did_you_mean(key, [*_AGENT_KEYS, "insecure"])
            raise ConfigError(f"{where}: unknown key{near}")


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
    gossip: dict[str, str] = {}
    variables: dict[str, str] = {}
    for var, value in env.items():
        if var.startswith("SWIMMESH_GOSSIP_"):
            snake = var.removeprefix("SWIMMESH_GOSSIP_").lower()
            camel = re.sub(r"_(\w)", lambda m: m.group(1).upper(), snake)
            gossip[camel] = value
            variables[camel] = var
    if gossip:
        apply_gossip_section(settings, gossip, "SWIMMESH_GOSSIP", variables)


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
    check_tls(settings)
    return settings
