"""Real sockets on 127.0.0.1 (ephemeral ports): UDP + WebSocket transport, encryption, TLS,
and hostile input that must be dropped and counted while the node keeps working."""

from __future__ import annotations

import logging
import os
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path

import pytest
import trio
import trio_websocket

from swimmesh import JoinError, MemberStatus, MeshConfig, MeshNode, RequestError
from swimmesh.codec import encode_frame
from swimmesh.config import format_address
from swimmesh.crypto import Keyring, Sealer, generate_key
from swimmesh.devcerts import create_ca, create_cert
from swimmesh.messages import UserRequest
from swimmesh.ratelog import RateLimitedLog
from swimmesh.testing import wait_for
from swimmesh.transport import TransportError
from swimmesh.transport.net import RESOURCE, NetOptions, NetTransport
from swimmesh.transport.sealed import SealedTransport
from swimmesh.transport.tls import TlsFileError, TlsPolicy, fingerprint

LOOPBACK = ("127.0.0.1", 0)


@asynccontextmanager
async def node(
    name: str,
    keyring: Keyring | None = None,
    label: str = "",
    options: NetOptions | None = None,
) -> AsyncIterator[tuple[MeshNode, NetTransport, SealedTransport | None]]:
    async with NetTransport.open(LOOPBACK, options) as net:
        transport: NetTransport | SealedTransport = net
        sealed = None
        if keyring is not None:
            sealed = transport = SealedTransport(
                net, Sealer(keyring, label), Sealer(keyring, label)
            )
        cfg = MeshConfig.fast(name=name, bind=net.local_address, cluster_label=label)
        async with MeshNode.open(cfg, transport) as n:
            yield n, net, sealed


async def test_two_nodes_join_over_udp_and_websocket() -> None:
    async with node("a") as (a, net_a, _), node("b") as (b, _, _):
        assert net_a.local_address[1] != 0  # an ephemeral port was picked
        assert await b.join([a.local_member.address]) == 1
        await wait_for(lambda: a.status_of("b") is MemberStatus.ALIVE, timeout=5)
        # Probes run over UDP: RTT samples appear.
        await wait_for(lambda: (m := a.member("b")) is not None and m.rtt_ms is not None, timeout=5)

        async def echo(src: tuple[str, int], payload: bytes) -> bytes:
            return payload[::-1]

        b.register_request_handler("echo", echo)
        assert await a.request("b", "echo", b"abc", timeout=5) == b"cba"
        assert await a.request("b", "echo", b"x" * 200_000, timeout=5) == b"x" * 200_000


async def test_encrypted_mesh_and_a_node_with_the_wrong_key() -> None:
    key = generate_key()
    async with (
        node("a", Keyring([key])) as (a, _, sealed_a),
        node("b", Keyring([key])) as (b, _, _),
        node("intruder", Keyring([generate_key()])) as (c, _, _),
    ):
        await b.join([a.local_member.address])
        await wait_for(lambda: a.status_of("b") is MemberStatus.ALIVE, timeout=5)
        with pytest.raises(Exception, match="no seed answered"):
            await c.join([a.local_member.address], timeout=1.5)
        assert a.member("intruder") is None and c.member("a") is None
        assert sealed_a is not None and sealed_a.dropped["stream_decrypt"] >= 1


async def test_hostile_input_is_dropped_counted_and_harmless() -> None:
    key = generate_key()
    opts = NetOptions(max_frame=64 * 1024, handshake_timeout=0.5, idle_timeout=0.5)
    async with (
        node("a", Keyring([key]), options=opts) as (a, net_a, sealed_a),
        node("b", Keyring([key]), options=opts) as (b, _, _),
    ):
        await b.join([a.local_member.address])
        await wait_for(lambda: a.status_of("b") is MemberStatus.ALIVE, timeout=5)
        before = [(m.name, m.status, m.incarnation) for m in a.members()]
        host, port = a.local_member.address
        sock = trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_DGRAM)
        await sock.connect((host, port))
        # Random bytes, a truncated and a bit-flipped sealed packet, a packet sealed with another
        # key, one with another label, a replay, an oversized datagram.
        legit = Sealer(Keyring([key])).seal(b"\x83\x01\x60\x80")
        flipped = bytearray(legit)
        flipped[20] ^= 0xFF
        for data in (
            os.urandom(300),
            legit[:10],
            bytes(flipped),
            Sealer(Keyring([generate_key()])).seal(b"x"),
            Sealer(Keyring([key]), "other-label").seal(b"x"),
            legit,
            legit,
            os.urandom(60_000),
        ):
            await sock.send(data)
        sock.close()
        await wait_for(lambda: sum(sealed_a.dropped.values()) >= 7, timeout=5)  # type: ignore[union-attr]
        assert sealed_a is not None
        assert sealed_a.dropped["decrypt"] >= 5 and sealed_a.dropped["replay"] == 1
        # A stream peer that connects and says nothing, and one that sends garbage.
        silent = await trio.open_tcp_stream(host, port)
        garbage = await trio.open_tcp_stream(host, port)
        await garbage.send_all(b"GET / HTTP/1.1\r\n\r\n" + os.urandom(2000))
        await wait_for(
            lambda: (
                net_a.dropped["stream_handshake_timeout"] + net_a.dropped["stream_handshake"] >= 2
            ),
            timeout=5,
        )
        await silent.aclose()
        await garbage.aclose()
        # A proper WebSocket client whose message is not a request frame is cut off.
        async with trio_websocket.open_websocket(host, port, RESOURCE, use_ssl=False) as ws:
            await ws.send_message(b"abc")
            await wait_for(lambda: net_a.dropped["stream_garbage"] == 1, timeout=5)
        # An oversized frame from a real peer is refused; the node keeps serving.
        with pytest.raises(RequestError):
            await b.request("a", "nothing", b"y" * 100_000, timeout=2)
        assert [(m.name, m.status, m.incarnation) for m in a.members()] == before
        await wait_for(lambda: (m := a.member("b")) is not None and m.rtt_ms is not None, timeout=5)
        assert a.status_of("b") is MemberStatus.ALIVE


def _make_certs(tmp_path: Path) -> None:
    """A cluster CA with certificates a, b and rogue; another CA in other/ with outsider."""
    create_ca(tmp_path)
    for name in ("a", "b", "rogue"):
        create_cert(tmp_path, name, tmp_path)
    create_ca(tmp_path / "other")
    create_cert(tmp_path / "other", "outsider", tmp_path / "other")


def _tls(
    certs: Path, name: str, issuer: Path | None = None, trust: Path | None = None, **kw: object
) -> NetOptions:
    """mTLS options for ``name``, its certificate from ``issuer`` (the cluster CA by default),
    trusting the CA in ``trust`` (the cluster CA by default)."""
    issuer = issuer or certs
    return NetOptions(
        tls=TlsPolicy(
            cert_file=issuer / f"{name}.pem",
            key_file=issuer / f"{name}-key.pem",
            ca_file=(trust or certs) / "ca.pem",
            require_client_cert=True,
            **kw,  # type: ignore[arg-type]
        )
    )


async def test_mtls_with_pinning(tmp_path: Path) -> None:
    _make_certs(tmp_path)
    other_ca = tmp_path / "other"
    policy = partial(_tls, tmp_path)

    allowed = (
        fingerprint((tmp_path / "a.pem").read_bytes()),
        fingerprint((tmp_path / "b.pem").read_bytes()),
    )
    async with (
        NetTransport.open(LOOPBACK, policy("a", allowed_fingerprints=allowed)) as a,
        NetTransport.open(LOOPBACK, policy("b", allowed_names=("a",))) as b,
        NetTransport.open(LOOPBACK, policy("rogue")) as rogue,
        NetTransport.open(LOOPBACK, policy("outsider", other_ca)) as outsider,
    ):

        async def handler(src: tuple[str, int], data: bytes) -> bytes:
            return b"ok:" + data

        a.serve_streams(handler)
        b.serve_streams(handler)
        assert await b.request(a.local_address, b"hi") == b"ok:hi"
        assert await a.request(b.local_address, b"yo") == b"ok:yo"
        with pytest.raises(TransportError):  # valid CA, but its fingerprint is not pinned
            await rogue.request(a.local_address, b"x")
        with pytest.raises(TransportError):  # a certificate from another CA
            await outsider.request(a.local_address, b"x")
        with pytest.raises(TransportError):  # b only talks to servers named "a"
            await b.request(rogue.local_address, b"x")


async def test_a_transport_with_an_unusable_tls_file_refuses_to_open(tmp_path: Path) -> None:
    create_ca(tmp_path)
    create_cert(tmp_path, "a", tmp_path)
    create_cert(tmp_path, "b", tmp_path)
    mismatched = TlsPolicy(cert_file=tmp_path / "a.pem", key_file=tmp_path / "b-key.pem")
    with pytest.raises(TlsFileError, match=r"key_file: .*b-key\.pem: is not the key"):
        async with NetTransport.open(LOOPBACK, NetOptions(tls=mismatched)):
            pass
    missing = TlsPolicy(
        cert_file=tmp_path / "a.pem", key_file=tmp_path / "a-key.pem", ca_file=tmp_path / "no.pem"
    )
    with pytest.raises(TlsFileError, match=r"ca_file: .*no\.pem: cannot read it"):
        async with NetTransport.open(LOOPBACK, NetOptions(tls=missing)):
            pass


async def test_unsealed_frame_to_an_encrypted_node_is_refused() -> None:
    async with (
        node("a", Keyring([generate_key()])) as (a, _, sealed),
        NetTransport.open(LOOPBACK) as raw,
    ):
        with pytest.raises(TransportError):
            await raw.request(a.local_member.address, encode_frame("", UserRequest("k", b"")))
        assert sealed is not None and sealed.dropped["stream_decrypt"] == 1


def _has_ipv6_loopback() -> bool:
    import socket

    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


@pytest.mark.skipif(not _has_ipv6_loopback(), reason="no IPv6 loopback on this machine")
async def test_ipv6_loopback_mesh_and_a_stopped_node_answers_nothing() -> None:
    async with NetTransport.open(("::1", 0)) as ta, NetTransport.open(("::1", 0)) as tb:
        a_cfg = MeshConfig.fast(name="a", bind=ta.local_address)
        b_cfg = MeshConfig.fast(name="b", bind=tb.local_address)
        async with MeshNode.open(a_cfg, ta) as a:
            async with MeshNode.open(b_cfg, tb) as b:
                await b.join([a.local_member.address])
                await wait_for(
                    lambda: (m := a.member("b")) is not None and m.rtt_ms is not None, timeout=5
                )
                assert a.member("b").address[0] == "::1"  # type: ignore[union-attr]
            # b stopped (its transport too): a must not be fooled into "UDP blocked?".
            await wait_for(lambda: a.status_of("b") is MemberStatus.DEAD, timeout=10)
            assert a.stats.stream_fallbacks == 0


# -- join failures name their cause, and the seed says what it refused ---------------------


def _join_cases(certs: Path) -> dict[str, tuple[dict[str, object], dict[str, object]]]:
    """Seed and joiner settings for each misconfiguration."""
    key = generate_key()
    other = certs / "other"
    return {
        "wrong key": ({"keyring": Keyring([key])}, {"keyring": Keyring([generate_key()])}),
        "no key": ({"keyring": Keyring([key])}, {}),
        "key on the joiner only": ({}, {"keyring": Keyring([key])}),
        "label": ({"label": "blue"}, {"label": "green"}),
        "another CA": ({"options": _tls(certs, "a")}, {"options": _tls(certs, "outsider", other)}),
        "the seed from another CA": (
            {"options": _tls(certs, "a")},
            {"options": _tls(certs, "outsider", other, trust=other)},
        ),
        "seed name not allowed": (
            {"options": _tls(certs, "rogue")},
            {"options": _tls(certs, "b", allowed_names=("a",))},
        ),
        "name not allowed": (
            {"options": _tls(certs, "a", allowed_names=("a", "b"))},
            {"options": _tls(certs, "rogue")},
        ),
        "TLS on the seed only": ({"options": _tls(certs, "a")}, {}),
    }


# case -> (what the joiner's JoinError says, what the seed logs; None: the joiner refused)
_JOIN_CAUSES: dict[str, tuple[str, str | None]] = {
    "the seed from another CA": (
        r"TLS handshake failed: the peer's certificate failed verification",
        r"stream handshake failed: TLS: the other side hung up during the TLS handshake",
    ),
    "seed name not allowed": (
        r"its certificate is refused here: peer certificate names .*'rogue'.* are not allowed",
        None,
    ),
    "wrong key": (
        r"refused the request: no installed key could decrypt the request: the gossip keys",
        r"refused a stream request: no installed key could decrypt",
    ),
    "no key": (
        r"the request was not encrypted",
        r"refused a stream request: the request was not encrypted",
    ),
    "key on the joiner only": (
        r"the reply was not encrypted",
        r"refused a stream request from .*: the request is not a swimmesh frame.*encryption",
    ),
    "label": (
        r"the reply carries another cluster label than ours \('green'\)",
        r"refused a stream request from .*: the request carries another cluster label .*'blue'",
    ),
    "another CA": (
        r"hung up during the TLS handshake \(it refused our certificate",
        r"stream handshake failed: the peer's certificate failed verification",
    ),
    "name not allowed": (
        r"refused the connection: certificate refused: peer certificate names "
        r"\['localhost', 'rogue'\] are not allowed",
        r"stream handshake failed: peer certificate names .*'rogue'.* are not allowed",
    ),
    "TLS on the seed only": (
        r"closed the connection during the handshake .*does it require TLS\?",
        r"stream handshake failed: TLS: the peer speaks plain HTTP, not TLS",
    ),
}


@pytest.mark.parametrize("case", list(_JOIN_CAUSES))
async def test_a_failed_join_names_its_cause_and_the_seed_logs_it_once(
    case: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    _make_certs(tmp_path)
    seed_kw, joiner_kw = _join_cases(tmp_path)[case]
    joiner_says, seed_logs = _JOIN_CAUSES[case]
    caplog.set_level(logging.WARNING, logger="swimmesh")
    async with (
        node("seed", **seed_kw) as (seed, _, _),  # type: ignore[arg-type]
        node("joiner", **joiner_kw) as (joiner, _, _),  # type: ignore[arg-type]
    ):
        seed_address = format_address(seed.local_member.address)
        with pytest.raises(JoinError, match=joiner_says) as failure:
            await joiner.join([seed.local_member.address], timeout=1.5)
        assert f"{seed_address} (" in str(failure.value)
    if seed_logs is None:
        return
    refusals = [r for r in caplog.records if re.search(seed_logs, r.getMessage())]
    # The joiner retried several times; the seed said it once, naming the peer's address.
    assert len(refusals) == 1, [r.getMessage() for r in caplog.records]
    assert "from 127.0.0.1:" in refusals[0].getMessage()


async def test_a_node_says_once_that_it_cannot_decrypt_a_peers_datagrams(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="swimmesh")
    async with node("a", Keyring([generate_key()])) as (a, _, sealed):
        assert sealed is not None
        sock = trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_DGRAM)
        await sock.bind(("127.0.0.1", 0))
        await sock.connect(a.local_member.address)
        for _ in range(3):
            await sock.send(Sealer(Keyring([generate_key()])).seal(b"\x83\x01\x60\x80"))
        await wait_for(lambda: sealed.dropped["decrypt"] == 3, timeout=5)
        port = sock.getsockname()[1]
        sock.close()
    said = [r.getMessage() for r in caplog.records if "datagram" in r.getMessage()]
    assert said == [
        f"dropped a datagram from 127.0.0.1:{port}: no installed key could decrypt the "
        "datagram: the gossip keys (or cluster labels) differ"
    ]


async def test_a_join_names_a_refused_connection_and_a_silent_seed() -> None:
    probe = trio.socket.socket()
    await probe.bind(("127.0.0.1", 0))
    closed_port = probe.getsockname()[1]
    probe.close()

    async def never_answer(stream: trio.SocketStream) -> None:
        await trio.sleep_forever()

    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(partial(trio.serve_tcp, never_answer, 0, host="127.0.0.1"))
        silent_port = listeners[0].socket.getsockname()[1]
        async with node("joiner") as (joiner, _, _):
            with pytest.raises(JoinError) as failure:
                await joiner.join(
                    [("127.0.0.1", closed_port), ("127.0.0.1", silent_port)], timeout=1.0
                )
        async with NetTransport.open(LOOPBACK, NetOptions(handshake_timeout=0.3)) as impatient:
            with pytest.raises(TransportError, match=r"handshake did not finish within 0\.3 s"):
                await impatient.request(("127.0.0.1", silent_port), b"x")
        nursery.cancel_scope.cancel()
    message = str(failure.value)
    assert f"127.0.0.1:{closed_port} (cannot connect to 127.0.0.1:{closed_port}: " in message
    assert "Connection refused" in message
    assert f"127.0.0.1:{silent_port} (no answer within " in message


def test_refusal_warnings_are_rate_limited_per_key(caplog: pytest.LogCaptureFixture) -> None:
    now = [0.0]
    limited = RateLimitedLog(logging.getLogger("swimmesh.test"), 60.0, clock=lambda: now[0])
    caplog.set_level(logging.WARNING, logger="swimmesh.test")
    assert limited.warning(("10.0.0.1", "decrypt"), "refused")
    assert not limited.warning(("10.0.0.1", "decrypt"), "refused")
    assert limited.warning(("10.0.0.2", "decrypt"), "refused")  # another peer: its own line
    now[0] = 61.0
    assert limited.warning(("10.0.0.1", "decrypt"), "refused")
    assert len(caplog.records) == 3
    assert caplog.records[-1].suppressed == 1  # type: ignore[attr-defined]
