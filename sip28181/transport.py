"""asyncio SIP transports: UDP and TCP on one port. The only socket code of the signalling side.

Bytes in, parsed messages out to one callback together with the :class:`Flow` they came on; bytes
out to a flow. Replies go back where a message came from (RFC 3581): to a NAT'd TCP device only its
own connection reaches it, so a TCP flow names its connection.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import re
import socket
from dataclasses import dataclass
from typing import Callable

from .errors import RemoteProtocolError
from .sip.framing import StreamFramer
from .sip.message import Request, Response, parse_message

log = logging.getLogger("sip28181.transport")

_conn_ids = itertools.count(1)


@dataclass(frozen=True, slots=True)
class Flow:
    """Where a message came from, and so where its answer goes."""

    transport: str                 # "UDP" or "TCP"
    host: str
    port: int
    connection: int | None = None  # TCP: the connection it arrived on

    def __str__(self) -> str:
        return f"{self.transport.lower()}:{self.host}:{self.port}"


MessageHandler = Callable[[Request | Response, Flow], None]
ErrorHandler = Callable[[Flow, RemoteProtocolError, bytes], None]


class _UdpProtocol(asyncio.DatagramProtocol):
    def __init__(self, owner: "SipTransport") -> None:
        self.owner = owner
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport) -> None:  # type: ignore[override]
        self.transport = transport

    def datagram_received(self, data: bytes, addr) -> None:  # type: ignore[override]
        flow = Flow("UDP", addr[0], addr[1])
        if len(data) <= 4 and not data.strip():
            return   # CRLF keepalive ping
        try:
            message = parse_message(data)
        except RemoteProtocolError as exc:
            self.owner._bad_input(flow, exc, data)
            return
        self.owner._deliver(message, flow)

    def error_received(self, exc: Exception) -> None:
        log.debug("UDP error: %s", exc)


class _TcpProtocol(asyncio.Protocol):
    def __init__(self, owner: "SipTransport") -> None:
        self.owner = owner
        self.framer = StreamFramer()
        self.flow: Flow | None = None
        self.transport: asyncio.Transport | None = None
        self.closed = asyncio.get_running_loop().create_future()

    def connection_made(self, transport) -> None:  # type: ignore[override]
        self.transport = transport
        peer = transport.get_extra_info("peername") or ("?", 0)
        self.flow = Flow("TCP", peer[0], peer[1], next(_conn_ids))
        self.owner._connections[self.flow.connection] = self
        self.owner._by_peer[(peer[0], peer[1])] = self.flow

    def data_received(self, data: bytes) -> None:
        assert self.flow is not None
        try:
            messages = self.framer.feed(data)
        except RemoteProtocolError as exc:
            # the stream cannot be resynchronised: say why and hang up
            self.owner._bad_input(self.flow, exc, data)
            assert self.transport is not None
            self.transport.close()
            return
        for message in messages:
            if isinstance(message, RemoteProtocolError):
                self.owner._bad_input(self.flow, message, b"")
            else:
                self.owner._deliver(message, self.flow)
        if self.framer.pings:
            # RFC 5626 §4.4.1: answer a double-CRLF ping with a single CRLF pong
            assert self.transport is not None
            self.transport.write(b"\r\n")
            self.framer.pings = 0

    def connection_lost(self, exc: Exception | None) -> None:
        flow = self.flow
        if flow is not None:
            self.owner._connections.pop(flow.connection, None)
            if self.owner._by_peer.get((flow.host, flow.port)) == flow:
                del self.owner._by_peer[(flow.host, flow.port)]
            self.owner._closed(flow)
        if not self.closed.done():
            self.closed.set_result(None)


class SipTransport:
    """UDP and TCP SIP endpoints sharing one port, delivering parsed messages to ``on_message``."""

    def __init__(self, on_message: MessageHandler, *, on_error: ErrorHandler | None = None,
                 on_connection_lost: Callable[[Flow], None] | None = None) -> None:
        self.on_message = on_message
        self.on_error = on_error
        self.on_connection_lost = on_connection_lost
        self._udp: _UdpProtocol | None = None
        self._tcp_server: asyncio.base_events.Server | None = None
        self._connections: dict[int, _TcpProtocol] = {}
        self._by_peer: dict[tuple[str, int], Flow] = {}
        self._pending: dict[tuple[str, int], asyncio.Task] = {}
        self.host = "0.0.0.0"
        self.port = 0

    async def listen(self, host: str = "0.0.0.0", port: int = 5060, *, udp: bool = True,
                     tcp: bool = True) -> int:
        """Bind UDP and TCP to ``host:port`` (port 0: one free port for both); returns the port."""
        loop = asyncio.get_running_loop()
        for _attempt in range(20):
            server = None
            try:
                if tcp:
                    server = await loop.create_server(lambda: _TcpProtocol(self), host, port,
                                                      reuse_address=True, backlog=1024)
                    bound = server.sockets[0].getsockname()[1]
                else:
                    bound = port
                if udp:
                    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_DGRAM)
                    try:
                        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 1024 * 1024)
                        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 * 1024 * 1024)
                        sock.bind((host, bound))
                    except OSError:
                        sock.close()
                        raise
                    _t, proto = await loop.create_datagram_endpoint(lambda: _UdpProtocol(self), sock=sock)
                    self._udp = proto
                    bound = sock.getsockname()[1]
            except OSError:
                if server is not None:
                    server.close()
                if port == 0:
                    continue      # the UDP twin of a free TCP port was taken: try another
                raise
            self._tcp_server = server
            self.host, self.port = host, bound
            return bound
        raise OSError("no free port for UDP and TCP")

    # -- sending ------------------------------------------------------------------------------
    def send(self, data: bytes, flow: Flow) -> None:
        """Send ``data`` on ``flow``; a TCP flow without a live connection gets one opened."""
        if flow.transport == "UDP":
            if self._udp is None or self._udp.transport is None:
                log.warning("no UDP socket to send to %s", flow)
                return
            self._udp.transport.sendto(data, (flow.host, flow.port))
            return
        conn = self._connections.get(flow.connection) if flow.connection is not None else None
        if conn is None:
            peer_flow = self._by_peer.get((flow.host, flow.port))
            conn = self._connections.get(peer_flow.connection) if peer_flow and peer_flow.connection else None
        if conn is not None and conn.transport is not None and not conn.transport.is_closing():
            conn.transport.write(data)
            return
        key = (flow.host, flow.port)
        task = self._pending.get(key)
        if task is None:
            task = asyncio.get_running_loop().create_task(self._connect_and_send(flow.host, flow.port, data))
            self._pending[key] = task
            task.add_done_callback(lambda _t, key=key: self._pending.pop(key, None))
        else:
            task.add_done_callback(lambda _t: self._send_after_connect(data, flow))

    def _send_after_connect(self, data: bytes, flow: Flow) -> None:
        peer_flow = self._by_peer.get((flow.host, flow.port))
        if peer_flow is not None:
            self.send(data, peer_flow)

    async def _connect_and_send(self, host: str, port: int, data: bytes) -> None:
        try:
            flow = await self.connect(host, port)
        except OSError as exc:
            log.warning("cannot connect to tcp:%s:%s: %s", host, port, exc)
            return
        self.send(data, flow)

    async def connect(self, host: str, port: int, timeout: float = 5.0) -> Flow:
        """Open (or reuse) a TCP connection to ``host:port``."""
        existing = self._by_peer.get((host, port))
        if existing is not None and existing.connection in self._connections:
            return existing
        loop = asyncio.get_running_loop()
        _t, proto = await asyncio.wait_for(loop.create_connection(lambda: _TcpProtocol(self), host, port), timeout)
        assert proto.flow is not None
        return proto.flow

    def close_flow(self, flow: Flow) -> None:
        conn = self._connections.get(flow.connection) if flow.connection is not None else None
        if conn is not None and conn.transport is not None:
            conn.transport.close()

    # -- callbacks ------------------------------------------------------------------------------
    def _deliver(self, message: Request | Response, flow: Flow) -> None:
        if isinstance(message, Request):
            stamp_via(message, flow.host, flow.port)
        try:
            self.on_message(message, flow)
        except RemoteProtocolError as exc:
            self._bad_input(flow, exc, b"", message)
        except Exception:  # a handler bug must not take the transport down
            log.exception("error handling %r from %s", message, flow)
            if isinstance(message, Request) and message.method != "ACK":
                self.send(Response.for_request(message, 500).encode(), flow)

    def _bad_input(self, flow: Flow, exc: RemoteProtocolError, data: bytes,
                   message: Request | Response | None = None) -> None:
        log.debug("bad SIP input from %s: %s", flow, exc.reason)
        if self.on_error is not None:
            self.on_error(flow, exc, data)
        reply = None
        if isinstance(message, Request) and message.method != "ACK":
            reply = Response.for_request(message, exc.status_hint, exc.reason)
        elif message is None and data:
            reply = error_reply(data, exc)
        if reply is not None:
            self.send(reply.encode(), flow)

    def _closed(self, flow: Flow) -> None:
        if self.on_connection_lost is not None:
            try:
                self.on_connection_lost(flow)
            except Exception:
                log.exception("connection-lost handler failed for %s", flow)

    async def close(self) -> None:
        if self._tcp_server is not None:
            self._tcp_server.close()
        for conn in list(self._connections.values()):
            if conn.transport is not None:
                conn.transport.close()
        for conn in list(self._connections.values()):
            try:
                await asyncio.wait_for(asyncio.shield(conn.closed), 1.0)
            except (asyncio.TimeoutError, asyncio.CancelledError):
                pass
        for task in list(self._pending.values()):
            task.cancel()
        if self._tcp_server is not None:
            await self._tcp_server.wait_closed()
        if self._udp is not None and self._udp.transport is not None:
            self._udp.transport.close()


_RPORT = re.compile(r";\s*rport(?=\s*(?:;|$))", re.I)


def stamp_via(request: Request, host: str, port: int) -> None:
    """Record where the request really came from in its top Via (RFC 3261 §18.2.1, RFC 3581):
    ``received`` always, and the source port in an empty ``rport``. Responses copy the Via, so
    a device behind NAT sees the address the platform sees, and the answer goes back there."""
    items = request.headers._items
    for i, (name, value) in enumerate(items):
        if name != "Via":
            continue
        first, comma, rest = value.partition(",")
        if '"' in first or "<" in first:
            return                      # a quoted parameter: leave such a Via as it was sent
        stamped = _RPORT.sub(f";rport={port}", first, count=1)
        if ";received=" not in stamped.lower():
            stamped = f"{stamped.rstrip()};received={host}"
        items[i] = (name, stamped + comma + rest)
        return


def error_reply(data: bytes, exc: RemoteProtocolError) -> Response | None:
    """A best-effort 4xx for a request too broken to parse: copy what headers can be found.

    RFC 3261 §16.3 asks a 400 to go back when possible; without Via, Call-ID, CSeq, From and To
    there is no way to address an answer, so nothing is sent.
    """
    from .sip.headers import canonical_name
    from .sip.message import Headers

    head = data.split(b"\r\n\r\n", 1)[0].decode("utf-8", "replace")
    lines = head.split("\r\n")
    if not lines or lines[0].startswith("SIP/"):
        return None     # never answer a response
    method = lines[0].split(" ", 1)[0].upper()
    if method == "ACK":
        return None
    found: dict[str, str] = {}
    vias: list[str] = []
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        if not colon:
            continue
        name = canonical_name(name.strip())
        if name == "Via":
            vias.append(value.strip())
        elif name in ("From", "To", "Call-ID", "CSeq") and name not in found:
            found[name] = value.strip()
    if not vias or len(found) < 4:
        return None
    headers = Headers([("Via", v) for v in vias] + [(k, found[k]) for k in ("From", "To", "Call-ID", "CSeq")])
    reason = exc.reason.replace("\r", " ").replace("\n", " ")[:120]
    return Response(exc.status_hint, reason, headers)
