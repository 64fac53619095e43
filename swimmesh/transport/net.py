"""The real network: UDP datagrams and a WebSocket stream channel on the same port number.

Streams carry request/response pairs multiplexed over one reused connection per peer
(``8-byte request id | payload`` in each binary message). Connections, concurrent requests and
message sizes are bounded; a peer that connects and says nothing, or sends garbage, is cut off
and counted in ``dropped``.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import socket as stdsocket
import ssl
from collections import Counter, OrderedDict
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, cast

import attrs
import trio
import trio_websocket

from ..member import Address
from ..ratelog import RateLimitedLog
from .base import StreamHandler, TransportError
from .tls import TlsPolicy

log = logging.getLogger("swimmesh.transport")

RESOURCE = "/swimmesh/v1"
_POLICY_VIOLATION = 1008
"""WebSocket close code for a request the server refused; the close reason says why."""
MAX_DATAGRAM = 65_536


@attrs.frozen
class NetOptions:
    max_frame: int = 8 * 1024 * 1024
    max_connections: int = 256
    """Inbound connections served at once; more are refused."""
    max_pool: int = 256
    """Outbound connections kept for reuse (least recently used are closed)."""
    concurrent_requests: int = 32
    """Requests served at once on one inbound connection."""
    handshake_timeout: float = 10.0
    idle_timeout: float = 120.0
    tls: TlsPolicy | None = None


class _HandshakeWatch(trio.abc.Stream):
    """Passes a stream through, but cancels the WebSocket upgrade the moment the stream breaks
    or ends before the upgrade completes (trio-websocket would otherwise wait it out, e.g. when
    a TLS 1.3 server rejects our certificate after our side of the handshake finished)."""

    def __init__(self, inner: trio.abc.Stream, upgrade: trio.CancelScope) -> None:
        self.inner = inner
        self.upgrade = upgrade
        self.handshaking = True
        self.why = ""

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        try:
            data = await self.inner.receive_some(max_bytes)
        except trio.BrokenResourceError as exc:
            self._broken(_cause(exc))
            raise
        if not data:
            self._broken("end of stream")
        return data

    def _broken(self, why: str) -> None:
        if self.handshaking:
            self.why = why
            self.upgrade.cancel()

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await self.inner.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self.inner.wait_send_all_might_not_block()

    async def aclose(self) -> None:
        await self.inner.aclose()


class _Client:
    """One outbound WebSocket connection with requests multiplexed by id."""

    def __init__(self, ws: trio_websocket.WebSocketConnection) -> None:
        self.ws = ws
        self.pending: dict[int, list[Any]] = {}
        self.next_id = 0
        self.closed = False
        self.refusal = ""
        """Why the server closed the connection, when it said (a refused request)."""

    async def reader(self) -> None:
        try:
            while True:
                msg = await self.ws.get_message()
                if not isinstance(msg, bytes) or len(msg) < 8:
                    break
                slot = self.pending.pop(int.from_bytes(msg[:8], "big"), None)
                if slot is not None:
                    slot[1] = msg[8:]
                    slot[0].set()
        except trio_websocket.ConnectionClosed as exc:
            why = exc.reason
            if why is not None and why.code == _POLICY_VIOLATION and why.reason:
                self.refusal = f"the peer refused the request: {why.reason}"
        finally:
            self.fail_all()

    def fail_all(self) -> None:
        self.closed = True
        for event, _ in self.pending.values():
            event.set()
        self.pending.clear()

    async def call(self, data: bytes) -> bytes:
        self.next_id += 1
        rid = self.next_id
        slot: list[Any] = [trio.Event(), None]
        self.pending[rid] = slot
        try:
            await self.ws.send_message(rid.to_bytes(8, "big") + data)
            await slot[0].wait()
        except trio_websocket.ConnectionClosed:
            raise TransportError(self.refusal or "connection closed") from None
        finally:
            self.pending.pop(rid, None)
        if slot[1] is None:
            raise TransportError(self.refusal or "connection closed before the reply")
        reply: bytes = slot[1]
        return reply


class NetTransport:
    """UDP + WebSocket transport bound to one address. Open it with :meth:`open`."""

    packet_overhead = 0

    def __init__(
        self,
        nursery: trio.Nursery,
        udp: trio.socket.SocketType,
        address: Address,
        options: NetOptions,
    ) -> None:
        self._nursery = nursery
        self._sock: stdsocket.socket = stdsocket.socket(fileno=udp.detach())
        self._sock.setblocking(False)
        self._resolved: dict[Address, Any] = {}
        self._burst = 0
        self._address = address
        self._options = options
        self._handler: StreamHandler | None = None
        self._pool: OrderedDict[Address, _Client] = OrderedDict()
        self._connecting: dict[Address, trio.Lock] = {}
        self._inbound = trio.Semaphore(options.max_connections)
        self.dropped: Counter[str] = Counter()
        self.closed = False
        self._listeners: list[trio.SocketListener] = []
        self._accepting = trio.CancelScope()
        self._refusals = RateLimitedLog(log)

    @classmethod
    @asynccontextmanager
    async def open(
        cls, bind: Address, options: NetOptions | None = None
    ) -> AsyncIterator[NetTransport]:
        """Bind UDP and TCP on ``bind`` (port 0 picks one free for both) and serve streams."""
        opts = options if options is not None else NetOptions()
        if opts.tls is not None:
            opts.tls.check()  # a bad TLS file fails here, not at the first handshake
        udp, listeners = await _bind_both(bind)
        host, port = udp.getsockname()[:2]
        async with trio.open_nursery() as nursery:
            transport = cls(nursery, udp, (host, port), opts)
            transport._listeners = listeners
            nursery.start_soon(transport._accept_loop, listeners)
            try:
                yield transport
            finally:
                with trio.CancelScope(shield=True):
                    await transport.aclose()
                nursery.cancel_scope.cancel()

    @property
    def local_address(self) -> Address:
        return self._address

    # -- datagrams -------------------------------------------------------------------------

    # Datagrams go straight through the non-blocking socket: Trio's socket wrappers add a
    # scheduling checkpoint to every call, which dominates an idle node's CPU. We wait on the
    # socket only when it is empty (or full), and yield every few packets to stay fair.

    async def send(self, address: Address, data: bytes) -> None:
        target = self._resolved.get(address)
        if target is None:
            target = await self._resolve(address)
        while True:
            try:
                self._sock.sendto(data, target)
                return
            except BlockingIOError:
                await trio.lowlevel.wait_writable(self._sock)

    async def _resolve(self, address: Address) -> Any:
        host, port = address
        infos = await trio.socket.getaddrinfo(
            host, port, family=self._sock.family, type=stdsocket.SOCK_DGRAM
        )
        if not infos:
            raise OSError(errno.EHOSTUNREACH, f"cannot resolve {host}")
        if len(self._resolved) > 4096:
            self._resolved.clear()
        target = self._resolved[address] = infos[0][4]
        return target

    async def receive(self) -> tuple[Address, bytes]:
        self._burst += 1
        if self._burst >= 32:
            self._burst = 0
            await trio.lowlevel.checkpoint()
        while True:
            try:
                data, addr = self._sock.recvfrom(MAX_DATAGRAM)
            except BlockingIOError:
                self._burst = 0
                await trio.lowlevel.wait_readable(self._sock)
                continue
            except OSError as exc:
                if self.closed:
                    raise trio.ClosedResourceError from exc
                # ICMP errors surface here on some platforms (ECONNREFUSED); not fatal.
                self.dropped["udp_error"] += 1
                continue
            return (addr[0], addr[1]), data

    # -- streams: server -------------------------------------------------------------------

    def serve_streams(self, handler: StreamHandler) -> None:
        self._handler = handler

    async def _accept_loop(self, listeners: list[trio.SocketListener]) -> None:
        with self._accepting:
            await trio.serve_listeners(
                self._serve_connection, listeners, handler_nursery=self._nursery
            )

    async def _serve_connection(self, stream: trio.SocketStream) -> None:
        if self._inbound.value == 0:
            self.dropped["stream_over_limit"] += 1
            await stream.aclose()
            return
        async with self._inbound:
            try:
                remote = stream.socket.getpeername()
                peer: Address = (remote[0], remote[1])
            except OSError:
                await stream.aclose()
                return
            try:
                await self._serve_ws(stream, peer)
            except Exception as exc:  # whatever a peer does, it ends only its own connection
                self.dropped["stream_error"] += 1
                log.debug("stream connection failed", extra={"peer": peer, "error": _describe(exc)})
                await trio.aclose_forcefully(stream)

    async def _serve_ws(self, raw: trio.SocketStream, peer: Address) -> None:
        opts = self._options
        stream: trio.abc.Stream = raw
        async with trio.open_nursery() as conn_nursery:
            ws: trio_websocket.WebSocketConnection | None = None
            with trio.move_on_after(opts.handshake_timeout) as handshake:
                try:
                    if opts.tls is not None:
                        ssl_stream = trio.SSLStream(
                            raw, opts.tls.context(server_side=True), server_side=True
                        )
                        await ssl_stream.do_handshake()
                        stream = ssl_stream
                        try:
                            opts.tls.check_peer(ssl_stream)
                        except TransportError as exc:
                            # Tell the client in HTTP so it fails now, not at its timeout.
                            await ssl_stream.send_all(_forbidden(f"certificate refused: {exc}"))
                            raise
                    request = await trio_websocket.wrap_server_stream(
                        conn_nursery, stream, max_message_size=opts.max_frame
                    )
                    ws = await request.accept()
                except (
                    trio.BrokenResourceError,
                    trio_websocket.ConnectionClosed,
                    TransportError,
                    OSError,
                    ValueError,
                ) as exc:
                    self.dropped["stream_handshake"] += 1
                    self._refused(peer, "handshake", f"stream handshake failed: {_cause(exc)}")
            if handshake.cancelled_caught:
                self.dropped["stream_handshake_timeout"] += 1
            if ws is None:
                conn_nursery.cancel_scope.cancel()
                await trio.aclose_forcefully(stream)
                return
            slots = trio.Semaphore(opts.concurrent_requests)
            try:
                while True:
                    with trio.move_on_after(opts.idle_timeout) as idle:
                        msg = await ws.get_message()
                    if idle.cancelled_caught:
                        self.dropped["stream_idle"] += 1
                        break
                    if not isinstance(msg, bytes) or len(msg) < 8:
                        self.dropped["stream_garbage"] += 1
                        break
                    await slots.acquire()
                    conn_nursery.start_soon(self._answer, ws, peer, msg, slots)
            except trio_websocket.ConnectionClosed:
                pass
            with trio.move_on_after(1):
                await ws.aclose()
            conn_nursery.cancel_scope.cancel()

    async def _answer(
        self,
        ws: trio_websocket.WebSocketConnection,
        peer: Address,
        msg: bytes,
        slots: trio.Semaphore,
    ) -> None:
        try:
            handler = self._handler
            if handler is None:
                await ws.aclose()
                return
            try:
                reply = await handler(peer, msg[8:])
            except TransportError as exc:
                # The handler refused the request (it could not decrypt it, say): tell the
                # requester why in the close reason, and the operator here who sent it.
                self.dropped["stream_rejected"] += 1
                self._refused(peer, "request", f"refused a stream request: {exc}")
                await ws.aclose(_POLICY_VIOLATION, _fit_close_reason(str(exc)))
                return
            await ws.send_message(msg[:8] + reply)
        except trio_websocket.ConnectionClosed:
            pass
        finally:
            slots.release()

    def _refused(self, peer: Address, what: str, message: str) -> None:
        """A rate-limited warning naming the peer: a misconfigured node retries all the time."""
        host, port = peer
        self._refusals.warning(
            (host, what, message), f"{message} (from {host}:{port})", {"peer": f"{host}:{port}"}
        )

    # -- streams: client -------------------------------------------------------------------

    async def request(self, address: Address, data: bytes) -> bytes:
        if self.closed:
            raise TransportError("transport is closed")
        client = await self._client(address)
        try:
            return await client.call(data)
        except TransportError:
            self._discard(address, client)
            raise

    async def _client(self, address: Address) -> _Client:
        client = self._pool.get(address)
        if client is not None and not client.closed:
            self._pool.move_to_end(address)
            return client
        lock = self._connecting.setdefault(address, trio.Lock())
        async with lock:
            client = self._pool.get(address)
            if client is not None and not client.closed:
                return client
            client = await self._connect(address)
            self._pool[address] = client
            while len(self._pool) > self._options.max_pool:
                _, old = self._pool.popitem(last=False)
                self._nursery.start_soon(_close_quietly, old)
            return client

    async def _connect(self, address: Address) -> _Client:
        try:
            client: _Client = await self._nursery.start(self._run_client, address)
        except Exception as exc:  # anything the network or a peer throws at a new connection
            leaf = _first_leaf(exc)
            host, port = address
            if isinstance(leaf, TransportError):
                raise TransportError(str(leaf)) from None
            if isinstance(leaf, trio_websocket.ConnectionRejected):
                body = (leaf.body or b"").decode("utf-8", "replace").strip()
                raise TransportError(
                    f"{host}:{port} refused the connection: {body or leaf.status_code}"
                ) from None
            raise TransportError(
                f"stream connection to {host}:{port} failed: {_describe(exc)}"
            ) from None
        return client

    async def _run_client(
        self, address: Address, task_status: Any = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Own one outbound connection in its own nursery, so nothing a peer does to it can
        reach the transport's other connections."""
        host, port = address
        opts = self._options
        started = False
        try:
            async with trio.open_nursery() as conn:
                try:
                    raw = await trio.open_tcp_stream(host, port)
                except OSError as exc:
                    raise TransportError(
                        f"cannot connect to {host}:{port}: {_os_reason(exc)}"
                    ) from None
                stream: trio.SocketStream | trio.SSLStream[trio.SocketStream] = raw
                step = "TLS handshake" if opts.tls is not None else "WebSocket handshake"
                try:
                    with trio.fail_after(opts.handshake_timeout):
                        if opts.tls is not None:
                            ssl_stream = trio.SSLStream(
                                raw, opts.tls.context(server_side=False), server_hostname=host
                            )
                            await ssl_stream.do_handshake()
                            step = "certificate check"
                            try:
                                opts.tls.check_peer(ssl_stream)
                            except TransportError as exc:
                                raise TransportError(
                                    f"{host}:{port}: its certificate is refused here: {exc}"
                                ) from None
                            stream = ssl_stream
                            step = "WebSocket handshake"
                        with trio.CancelScope() as upgrade:
                            watched = _HandshakeWatch(stream, upgrade)
                            ws = await trio_websocket.wrap_client_stream(
                                conn,
                                cast(Any, watched),
                                host,
                                RESOURCE,
                                max_message_size=opts.max_frame,
                            )
                            watched.handshaking = False
                        if upgrade.cancelled_caught:
                            hint = "" if opts.tls is not None else "; does it require TLS?"
                            raise TransportError(
                                f"{host}:{port} closed the connection during "
                                f"the handshake ({watched.why}){hint}"
                            )
                except (trio.BrokenResourceError, ssl.SSLError, OSError) as exc:
                    await trio.aclose_forcefully(stream)
                    raise TransportError(f"{host}:{port}: {step} failed: {_cause(exc)}") from None
                except trio.TooSlowError:
                    await trio.aclose_forcefully(stream)
                    raise TransportError(
                        f"{host}:{port}: {step} did not finish within {opts.handshake_timeout} s"
                    ) from None
                except BaseException:
                    await trio.aclose_forcefully(stream)
                    raise
                client = _Client(ws)
                started = True
                task_status.started(client)
                await client.reader()
                conn.cancel_scope.cancel()
        except Exception as exc:
            if not started:
                raise
            log.debug("stream connection ended", extra={"peer": address, "error": _describe(exc)})
        finally:
            if started:
                client.fail_all()

    def _discard(self, address: Address, client: _Client) -> None:
        if self._pool.get(address) is client:
            del self._pool[address]
        self._nursery.start_soon(_close_quietly, client)

    async def aclose(self) -> None:
        if self.closed:
            return
        self.closed = True
        self._handler = None  # a closed node answers nothing, over any channel
        self._accepting.cancel()
        for listener in self._listeners:
            with contextlib.suppress(trio.ClosedResourceError, OSError):
                await listener.aclose()
        for client in list(self._pool.values()):
            client.fail_all()
            with trio.move_on_after(0.5):
                await _close_quietly(client)
        self._pool.clear()
        trio.lowlevel.notify_closing(self._sock)
        self._sock.close()


def _forbidden(reason: str) -> bytes:
    body = reason.encode()
    head = f"HTTP/1.1 403 Forbidden\r\ncontent-length: {len(body)}\r\nconnection: close\r\n\r\n"
    return head.encode() + body


def _fit_close_reason(reason: str) -> str:
    """A WebSocket close reason holds at most 123 bytes of UTF-8."""
    data = reason.encode()
    return reason if len(data) <= 123 else data[:120].decode("utf-8", "ignore") + "..."


# What an SSL library error code means for whoever reads the log or the join error.
_TLS_CAUSES = {
    "TLSV1_ALERT_UNKNOWN_CA": "the other side does not trust our certificate (another CA?)",
    "SSLV3_ALERT_BAD_CERTIFICATE": "the other side refused our certificate",
    "TLSV13_ALERT_CERTIFICATE_REQUIRED": "the other side requires a client certificate (mTLS)",
    "PEER_DID_NOT_RETURN_A_CERTIFICATE": "the peer sent no client certificate (mTLS is required)",
    "WRONG_VERSION_NUMBER": "the other side does not speak TLS (TLS on one side only?)",
    "HTTP_REQUEST": "the peer speaks plain HTTP, not TLS (TLS on one side only?)",
    "UNSUPPORTED_PROTOCOL": "no TLS version both sides accept (minVersion?)",
    "TLSV1_ALERT_PROTOCOL_VERSION": "no TLS version both sides accept (minVersion?)",
    "UNEXPECTED_EOF_WHILE_READING": "the other side hung up during the TLS handshake "
    "(it refused our certificate? its log says why)",
}


def _cause(exc: BaseException) -> str:
    """The root cause of a failed connection in words: the SSL error under a broken stream,
    what a certificate verification said, or the exception itself."""
    seen: BaseException | None = exc
    while seen is not None:
        seen = _first_leaf(seen)
        if isinstance(seen, ssl.SSLCertVerificationError):
            return f"the peer's certificate failed verification: {seen.verify_message}"
        if isinstance(seen, ssl.SSLError):
            known = _TLS_CAUSES.get(seen.reason or "")
            return f"TLS: {known} [{seen.reason}]" if known else f"TLS: {seen.reason or seen}"
        if seen.__cause__ is None and seen.__context__ is None:
            break
        seen = seen.__cause__ or seen.__context__
    leaf = _first_leaf(exc)
    return str(leaf) if isinstance(leaf, TransportError) else _describe(exc)


def _first_leaf(exc: BaseException) -> BaseException:
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return exc


def _os_reason(exc: OSError) -> str:
    """``Connection refused`` rather than trio's "all attempts to connect ... failed"."""
    inner: BaseException | None = exc
    while inner is not None:
        inner = _first_leaf(inner)
        if isinstance(inner, OSError) and inner.errno:
            return os.strerror(inner.errno)
        inner = inner.__cause__ or inner.__context__
    return str(exc)


def _describe(exc: BaseException) -> str:
    exc = _first_leaf(exc)
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


async def _close_quietly(client: _Client) -> None:
    client.fail_all()
    # Closing a broken connection may raise anything; it is gone either way.
    with contextlib.suppress(Exception):
        await client.ws.aclose()


async def _bind_both(bind: Address) -> tuple[trio.socket.SocketType, list[trio.SocketListener]]:
    """Bind a UDP socket and a TCP listener to the same host and port (retrying on port 0)."""
    host, port = bind
    infos = await trio.socket.getaddrinfo(host, port, type=stdsocket.SOCK_DGRAM)
    if not infos:
        raise OSError(errno.EADDRNOTAVAIL, f"cannot resolve {host}")
    family = infos[0][0]
    sockaddr = infos[0][4]
    last: OSError | None = None
    for _ in range(1 if port else 20):
        udp = trio.socket.socket(family, stdsocket.SOCK_DGRAM)
        try:
            await udp.bind(sockaddr)
            real_port = udp.getsockname()[1]
            tcp = trio.socket.socket(family, stdsocket.SOCK_STREAM)
            tcp.setsockopt(stdsocket.SOL_SOCKET, stdsocket.SO_REUSEADDR, 1)
            try:
                await tcp.bind((sockaddr[0], real_port, *sockaddr[2:]))
                tcp.listen(128)
            except OSError:
                tcp.close()
                raise
            return udp, [trio.SocketListener(tcp)]
        except OSError as exc:
            udp.close()
            last = exc
    assert last is not None
    raise last
