"""The command line in process: one-line errors with their fix, flags per scenario, tables."""

from __future__ import annotations

from pathlib import Path

import pytest

from swimmesh.cli import main

Capture = pytest.CaptureFixture[str]


def one_line_error(capsys: Capture) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err, err
    return err


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--nodes", "1"], "--nodes must be at least 2 (got 1)"),
        (["--loss", "1.5"], "--loss is a fraction in [0, 1) (got 1.5)"),
        (["--loss", "-0.1"], "--loss is a fraction in [0, 1)"),
        (["--seconds", "0"], "--seconds must be positive"),
    ],
)
def test_simulate_lifeguard_refuses_impossible_values_in_one_line(
    capsys: Capture, args: list[str], says: str
) -> None:
    assert main(["simulate", "lifeguard", *args]) == 1
    assert says in one_line_error(capsys)


def test_simulate_lifeguard_neither_lists_nor_accepts_leadership_flags(capsys: Capture) -> None:
    with pytest.raises(SystemExit) as done:
        main(["simulate", "lifeguard", "--help"])
    assert done.value.code == 0
    text = capsys.readouterr().out
    assert "--loss" in text and "--scopes" not in text and "--victims" not in text
    for flag in ("--scopes", "--victims"):
        with pytest.raises(SystemExit) as refused:
            main(["simulate", "lifeguard", flag, "3"])
        assert refused.value.code == 2
        assert f"unrecognized arguments: {flag}" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["simulate", "leadership", "--loss", "0.2"])  # and the other way round
    assert "unrecognized arguments: --loss" in capsys.readouterr().err


def test_simulate_lifeguard_prints_labelled_rows_and_columns(capsys: Capture) -> None:
    code = main(["simulate", "lifeguard", "--nodes", "4", "--seconds", "5", "--loss", "0"])
    out = capsys.readouterr().out.splitlines()
    assert code == 0
    assert out[0].startswith("4 nodes, 5 s of virtual time, 0% packet loss")
    header = out[2].split("  ")
    assert [h.strip() for h in header if h.strip()] == [
        "Mode",
        "False suspicions",
        "False deaths",
        "Refutations",
    ]
    assert out[3].startswith("Lifeguard ") and out[4].startswith("plain SWIM ")
    assert "True" not in "\n".join(out) and "false deaths:" in out[-1]


def test_tls_cert_without_a_ca_says_to_create_one(capsys: Capture, tmp_path: Path) -> None:
    assert main(["tls", "cert", "node-a", "--ca-dir", str(tmp_path), "--out", str(tmp_path)]) == 1
    err = one_line_error(capsys)
    assert "no CA in" in err and f"swimmesh tls ca --out {tmp_path}" in err
    missing = tmp_path / "nowhere"
    assert main(["tls", "cert", "node-a", "--ca-dir", str(missing), "--out", str(tmp_path)]) == 1
    assert "ca.pem" in one_line_error(capsys)


def test_tls_ca_refuses_to_overwrite_without_force(capsys: Capture, tmp_path: Path) -> None:
    assert main(["tls", "ca", "--out", str(tmp_path)]) == 0
    capsys.readouterr()
    first = (tmp_path / "ca.pem").read_bytes()
    assert main(["tls", "ca", "--out", str(tmp_path)]) == 1
    assert "exists" in (err := one_line_error(capsys)) and "--force" in err
    assert (tmp_path / "ca.pem").read_bytes() == first
    assert main(["tls", "cert", "node-a", "--ca-dir", str(tmp_path), "--out", str(tmp_path)]) == 0
    assert main(["tls", "ca", "--out", str(tmp_path), "--force"]) == 0
    assert (tmp_path / "ca.pem").read_bytes() != first


def help_of(capsys: Capture, *command: str) -> str:
    with pytest.raises(SystemExit) as done:
        main([*command, "--help"])
    assert done.value.code == 0
    return " ".join(capsys.readouterr().out.split())


def test_tls_directories_have_help_text(capsys: Capture) -> None:
    assert "--out OUT directory to write ca.pem and ca-key.pem into" in help_of(capsys, "tls", "ca")
    cert = help_of(capsys, "tls", "cert")
    assert "--out OUT directory to write NAME.pem and NAME-key.pem into" in cert
    assert "--ca-dir CA_DIR directory holding ca.pem and ca-key.pem" in cert


def test_demo_in_process_explains_its_split_brain_reports(capsys: Capture) -> None:
    assert main(["demo", "--in-process", "--nodes", "3"]) == 0
    out = capsys.readouterr().out
    note = next(line for line in out.splitlines() if "split-brain report" in line)
    assert "from 2 node(s)" in note and "not two leaders" in note
    assert "Node    Address" in out  # the peers table of `mesh peers list`


def test_commands_run_through_main_leave_logging_as_they_found_it(capsys: Capture) -> None:
    import logging

    before = logging.getLogger("leadership").level
    assert main(["demo", "--in-process", "--nodes", "1"]) == 0
    args = ["--nodes", "2", "--scopes", "2", "--seconds", "1", "--victims", "1"]
    assert main(["simulate", "leadership", *args]) == 0
    assert logging.getLogger("leadership").level == before


def test_voters_list_says_why_this_node_grants_nothing(
    capsys: Capture, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the answer of GET /control/voters on a voter sitting out (the system test shows a granting
    # one through a real agent)
    doc = {
        "epoch": 1,
        "voters": ["a", "b", "c"],
        "local": {"granting": False, "reason": "sitting out the longest lease", "remaining": 14.2},
    }
    monkeypatch.setattr("swimmesh.cli.commands.call", lambda *args, **kw: doc)
    assert main(["mesh", "voters", "list", "--url", "http://127.0.0.1:1"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out == [
        "epoch 1: a, b, c",
        "this node's voter grants nothing for 14.2 s more: sitting out the longest lease",
    ]
