"""Agent settings: OmniRelay keys and time formats, precedence, and errors that name the key."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from swimmesh.agentconfig import load_settings, parse_duration
from swimmesh.config import ConfigError


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("00:00:05", 5.0),
        ("00:00:00.750", 0.75),
        ("1.00:00:01", 86401.0),
        ("5s", 5.0),
        ("500ms", 0.5),
        ("2m", 120.0),
        ("1h", 3600.0),
        (8, 8.0),
        (0.25, 0.25),
    ],
)
def test_durations(text: object, seconds: float) -> None:
    assert parse_duration(text, "k") == pytest.approx(seconds)


@pytest.mark.parametrize("bad", ["5x", "abc", "-1s", True, "1:2", None])
def test_bad_durations_name_the_key(bad: object) -> None:
    with pytest.raises(ConfigError, match=r"mesh\.gossip\.interval"):
        parse_duration(bad, "mesh.gossip.interval")


OMNIRELAY_TOML = """
[mesh.gossip]
nodeId = "relay-3"
bindAddress = "127.0.0.1"
port = 17421
advertiseHost = "relay-3.internal"
seedPeers = ["seed-1.example:17421"]
interval = "00:00:00.500"
pingTimeout = "00:00:00.250"
fanout = 4
retransmitLimit = 5
suspicionInterval = "00:00:05"
metadataRefreshPeriod = "00:01:00"
role = "dispatcher"
clusterId = "prod"
region = "eu-west"
meshVersion = "2.1.0"
adaptiveFanout = true

[mesh.gossip.labels]
zone = "b"
"""


def test_omnirelay_gossip_section_maps_onto_swim(tmp_path: Path) -> None:
    path = tmp_path / "mesh.toml"
    path.write_text(OMNIRELAY_TOML)
    s = load_settings(str(path), {}, {})
    cfg = s.mesh_config("unused")
    assert cfg.name == "relay-3"
    assert cfg.bind == ("127.0.0.1", 17421) and cfg.advertise == ("relay-3.internal", 17421)
    assert s.join == ["seed-1.example:17421"]
    assert (cfg.probe_interval, cfg.probe_timeout, cfg.gossip_nodes, cfg.retransmit_mult) == (
        0.5,
        0.25,
        4,
        5,
    )
    assert cfg.suspicion_mult == 10  # suspicionInterval 5 s / probe interval 0.5 s
    assert cfg.push_pull_interval == 60.0
    assert dict(cfg.metadata) == {
        "role": "dispatcher",
        "clusterId": "prod",
        "region": "eu-west",
        "meshVersion": "2.1.0",
        "label.zone": "b",
    }


def test_json_files_and_precedence_file_env_flags(tmp_path: Path) -> None:
    path = tmp_path / "mesh.json"
    path.write_text(
        '{"mesh": {"gossip": {"nodeId": "from-file", "preset": "wan", "probeInterval": "2s"},'
        ' "agent": {"controlToken": "file-token"}}}'
    )
    env = {
        "SWIMMESH_NODE_ID": "from-env",
        "SWIMMESH_GOSSIP_PROBE_INTERVAL": "3s",
        "SWIMMESH_JOIN": "a:1, b:2",
    }
    s = load_settings(str(path), env, {"node_id": "from-flag", "join": []})
    cfg = s.mesh_config("x")
    assert cfg.name == "from-flag" and cfg.preset == "wan" and cfg.probe_interval == 3.0
    assert s.join == ["a:1", "b:2"] and s.control_token == "file-token"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ('[mesh.gossip]\npingTimeout = "fast"', "mesh.gossip.pingTimeout"),
        ('[mesh.gossip]\nfanout = "many"', "mesh.gossip.fanout"),
        ('[mesh.gossip]\nseedPeers = ["nohostport"]', "mesh.gossip.seedPeers"),
        ("[mesh.gossip]\nsomethingElse = 1", "mesh.gossip.somethingElse: unknown key"),
        ('[mesh.gossip]\npreset = "lunar"', "unknown preset"),
        ("[mesh.gossip\nbroken", "not valid toml"),
        ("[mesh.agent]\nwhat = 1", "mesh.agent.what"),
        ('[mesh.leadership]\nleaseDuration = "00:20:00"', r"leaseDuration: 1200s is outside"),
        ("[mesh.leadership]\nleaseTime = 1", "mesh.leadership.leaseTime: unknown key"),
        ('[[mesh.leadership.scopes]]\nscopeId = "shard/x"', r"scopes\[0\]"),
        # a misspelled section or key is an error that suggests the valid one
        ("[mesh.gosip]\nport = 7000", r"mesh\.gosip: unknown section; did you mean mesh\.gossip\?"),
        ('[mesh.agnet]\ncontrolToken = "s3cret"', r"mesh\.agnet: .*did you mean mesh\.agent\?"),
        ("[msh.gossip]\nport = 7000", r"msh: unknown section; did you mean mesh\?"),
        ('[mesh.gossip]\nprobeIntervall = "1s"', r"probeIntervall: .*did you mean probeInterval\?"),
        # TLS values, named as written
        (
            '[mesh.gossip.tls]\nallowedNames = "a"',
            r"^mesh\.gossip\.tls\.allowedNames: expected a list of strings",
        ),
        (
            '[mesh.gossip.tls]\nrequireClientCert = "maybe"',
            r"^mesh\.gossip\.tls\.requireClientCert: expected true",
        ),
        (
            "[mesh.gossip.tls]\nminVersion = 1.3",
            r'^mesh\.gossip\.tls\.minVersion: expected "1\.2" or "1\.3"',
        ),
    ],
)
def test_errors_name_the_key(tmp_path: Path, body: str, message: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(body)
    with pytest.raises(ConfigError, match=message):
        load_settings(str(path), {}, {})


def test_agent_exits_1_with_one_clear_line_on_a_bad_config(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text('[mesh.gossip]\nsuspicionInterval = "soon"\n')
    proc = subprocess.run(
        [sys.executable, "-m", "swimmesh", "agent", "--config", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "mesh.gossip.suspicionInterval" in lines[0] and "soon" in lines[0]


def test_agent_refuses_non_loopback_without_a_key() -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "swimmesh",
            "agent",
            "--bind",
            "192.0.2.1:0",
            "--control",
            "127.0.0.1:0",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 1
    assert "without a gossip key" in proc.stderr and "--insecure" in proc.stderr


def test_the_leadership_section_is_read_with_omnirelay_keys(tmp_path: Path) -> None:
    path = tmp_path / "agent.toml"
    path.write_text(
        "[mesh.leadership]\n"
        'leaseDuration = "00:00:10"\n'
        'evaluationInterval = "00:00:00.500"\n'
        "priority = 5\n"
        "[[mesh.leadership.shards]]\n"
        'namespace = "orders"\n'
        "shards = [1, 2]\n"
    )
    s = load_settings(str(path), {}, {})
    assert s.leadership is not None
    assert (s.leadership.lease_duration, s.leadership.evaluation_interval) == (10.0, 0.5)
    assert [x.scope_id for x in s.leadership.scopes] == ["shard/orders/1", "shard/orders/2"]
    assert load_settings(None, {}, {}).leadership is None


@pytest.mark.parametrize(
    ("body", "env", "message"),
    [
        ("[mesh.gossip]\nfanout = -1", {}, r"^mesh\.gossip\.fanout: must be >= 1, got -1$"),
        (
            '[mesh.gossip]\ninterval = "1s"\npingTimeout = "2s"',
            {},
            r"^mesh\.gossip\.pingTimeout: 2\.0 must not exceed mesh\.gossip\.interval 1\.0$",
        ),
        ("", {"SWIMMESH_GOSSIP_GOSSIP_NODES": "0"}, r"^SWIMMESH_GOSSIP_GOSSIP_NODES: must be >= 1"),
    ],
)
def test_value_errors_name_the_key_the_user_wrote(
    tmp_path: Path, body: str, env: dict[str, str], message: str
) -> None:
    path = tmp_path / "agent.toml"
    path.write_text(body)
    with pytest.raises(ConfigError, match=message):
        load_settings(str(path), env, {}).mesh_config("x")


@pytest.fixture
def certs(tmp_path: Path) -> Path:
    from swimmesh.devcerts import create_ca, create_cert

    create_ca(tmp_path)
    create_cert(tmp_path, "a", tmp_path)
    create_cert(tmp_path, "b", tmp_path)
    return tmp_path


@pytest.mark.parametrize(
    ("tls", "message"),
    [
        (
            {"certFile": "missing.pem", "keyFile": "a-key.pem"},
            r"^mesh\.gossip\.tls\.certFile: \S*missing\.pem: cannot read it: No such file",
        ),
        (
            {"certFile": "a.pem", "keyFile": "b-key.pem"},
            r"^mesh\.gossip\.tls\.keyFile: \S*b-key\.pem: is not the key of the certificate",
        ),
        ({"certFile": "a.pem"}, r"^mesh\.gossip\.tls\.certFile: \S*a\.pem: holds no private key"),
        (
            {"certFile": "a.pem", "keyFile": "a-key.pem", "caFile": "nowhere/ca.pem"},
            r"^mesh\.gossip\.tls\.caFile: \S*nowhere/ca\.pem: cannot read it",
        ),
        (
            {"certFile": "a.pem", "keyFile": "a-key.pem", "caFile": "a-key.pem"},
            r"^mesh\.gossip\.tls\.caFile: \S*a-key\.pem: holds no PEM certificate",
        ),
    ],
)
def test_tls_files_are_loaded_and_checked_when_the_settings_are_read(
    certs: Path, tls: dict[str, str], message: str
) -> None:
    path = certs / "agent.toml"
    lines = [f'{k} = "{certs / v}"' for k, v in tls.items()]
    path.write_text("[mesh.gossip.tls]\n" + "\n".join(lines) + "\n")
    with pytest.raises(ConfigError, match=message):
        load_settings(str(path), {}, {})
    good = ["certFile = '{0}/a.pem'", "keyFile = '{0}/a-key.pem'", "caFile = '{0}/ca.pem'"]
    path.write_text("[mesh.gossip.tls]\n" + "\n".join(good).format(certs))
    assert load_settings(str(path), {}, {}).tls["certFile"] == f"{certs}/a.pem"


def test_a_tls_switch_written_as_a_string_means_what_it_says(tmp_path: Path) -> None:
    path = tmp_path / "agent.json"
    path.write_text('{"mesh": {"gossip": {"tls": {"requireClientCert": "false"}}}}')
    assert load_settings(str(path), {}, {}).tls["requireClientCert"] is False


def test_agent_with_a_tls_path_that_does_not_exist_exits_1_naming_key_and_path(
    tmp_path: Path,
) -> None:
    path = tmp_path / "agent.toml"
    missing = tmp_path / "certs" / "node.pem"
    path.write_text(f'[mesh.gossip.tls]\ncertFile = "{missing}"\n')
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "swimmesh",
            "agent",
            "--config",
            str(path),
            "--bind",
            "127.0.0.1:0",
            "--control",
            "127.0.0.1:0",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 1, proc.stdout
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "mesh.gossip.tls.certFile" in lines[0] and str(missing) in lines[0]
