"""Network media input: GB/T 28181 RTP/PS from devices over UDP, TCP passive and TCP active.

:class:`MediaIngest` owns the media ports (a configured range) and, optionally, one UDP port that
all UDP streams share, told apart by the RTP SSRC (what single-port media servers do, so SSRCs
must be unique per server). :meth:`MediaIngest.open` returns an :class:`IngestStream` that turns
what arrives into :class:`~media.Frame` lists through :class:`~media.RtpPsReceiver`.

UDP sockets are read by ``loop.add_reader`` and a batch reader (``recvmmsg`` when compiled,
:mod:`media.udprecv`), not by an asyncio ``DatagramProtocol``: one callback per datagram is what
limits stock asyncio to ~150 streams of 4 Mbit/s per core. TCP carries RFC 4571 framing
(PROTOCOL.md §8.6, §9.3): in passive mode we listen and accept the device's one connection, in
active mode we connect to the device after its answer.

A device that ignores the offered SSRC (``y=``) is still played on a dedicated port or TCP
connection: the stream locks onto the first SSRC it sees (logged once), and switches to the
offered one if that shows up later (the device honouring ``y=`` wins over a stale sender).
"""

from __future__ import annotations

import asyncio
import collections
import errno
import logging
import socket
from collections.abc import Callable
from typing import Any

from ._frame import Frame
from .errors import MediaError
from .receiver import RtpPsReceiver
from .rtp import Rfc4571Framer
from .udprecv import UdpReader

__all__ = ["MediaIngest", "IngestStream", "IngestError", "PortsExhausted", "TRANSPORTS"]

log = logging.getLogger("media.ingest")

TRANSPORTS = ("udp", "tcp-passive", "tcp-active")

#: Seconds the bitrate is averaged over.
BITRATE_WINDOW = 5
#: Batches one readiness callback may read from one socket before it yields to other sockets.
MAX_ROUNDS = 8
#: Unknown SSRCs on the shared port that are logged (each once); the rest are only counted.
MAX_LOGGED_UNKNOWN = 256
_TCP_READ = 256 << 10
_RTCP_TYPES = range(200, 205)


class IngestError(MediaError):
    """A stream cannot be opened or connected (bad parameters, no port, peer unreachable)."""


class PortsExhausted(IngestError):
    """Every port of the configured range is taken."""


FramesCallback = Callable[[list[Frame]], Any]
CloseCallback = Callable[[str], Any]


def _set_rcvbuf(sock: socket.socket, size: int) -> None:
    """Ask for ``size`` bytes of receive buffer; beyond ``net.core.rmem_max`` only a privileged
    process gets it (SO_RCVBUFFORCE), others get the cap."""
    if size <= 0:
        return
    force = getattr(socket, "SO_RCVBUFFORCE", None)
    if force is not None:
        try:
            sock.setsockopt(socket.SOL_SOCKET, force, size)
            return
        except OSError:
            pass
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, size)
    except OSError:
        pass


def _rtp_ssrc(packet: bytes) -> int | None:
    """SSRC of a datagram that looks like RTP (not RTCP), else None."""
    if len(packet) < 12 or packet[0] >> 6 != 2 or packet[1] in _RTCP_TYPES:
        return None
    return int.from_bytes(packet[8:12], "big")


class IngestStream:
    """One incoming media stream; created by :meth:`MediaIngest.open`.

    ``on_frames(frames)`` is called in the event loop with the access units each batch of
    packets completes (it must not block; an exception there is logged and counted, the stream
    goes on). ``on_close(reason)`` is called once when the stream ends by itself ("tcp closed",
    "tcp error: …", "ingest closed"); not for :meth:`close`.
    """

    def __init__(self, ingest: MediaIngest, transport: str, ssrc: int | None,
                 on_frames: FramesCallback, on_close: CloseCallback | None,
                 log_extra: dict | None) -> None:
        self._ingest = ingest
        self._loop = ingest._loop
        #: "udp", "tcp-passive" or "tcp-active".
        self.transport = transport
        #: The port devices send to (UDP, TCP passive) or we connect from (TCP active).
        self.local_port: int | None = None
        #: Address of the device (TCP peer; for UDP the source of the first datagram).
        self.remote: tuple | None = None
        #: Loop time of the last packet, None before the first.
        self.last_packet_at: float | None = None
        self.first_packet_at: float | None = None
        self.closed = False
        self.close_reason: str | None = None
        self._expected = ssrc
        self._locked: int | None = None      # SSRC the receiver accepts (dedicated sockets)
        self._lock_pending = True
        self._mismatch_logged = False
        self._on_frames = on_frames
        self._on_close = on_close
        self._extra = dict(log_extra or {})
        self._receiver = RtpPsReceiver(**ingest._receiver_options)
        self._retired: collections.Counter = collections.Counter()   # receivers replaced
        self._framer: Any = None
        self._framer_base: collections.Counter = collections.Counter()   # replaced framers
        self._sock: socket.socket | None = None        # UDP socket / TCP listener / TCP-active
        self._conn: socket.socket | None = None        # accepted or connected TCP socket
        self._shared = False
        self._connecting: asyncio.Future | None = None
        self._read_from = True                         # UDP: take the source of the first batch
        # counters
        self.packets = 0
        self.bytes = 0
        self.frames = 0
        self.callback_errors = 0
        self.tcp_rejected = 0
        self.ssrc_ignored = 0
        self.read_errors = 0
        # bitrate: closed one-second buckets and the current one
        self._window: collections.deque = collections.deque()
        self._win_sec = 0
        self._win_bytes = 0

    def __repr__(self) -> str:
        state = "closed" if self.closed else "open"
        return (f"<IngestStream {self.transport} port={self.local_port} ssrc={self.ssrc} "
                f"{state}>")

    # -- public ---------------------------------------------------------------------------------

    @property
    def ssrc(self) -> int | None:
        """The SSRC expected (offered, or set from the device's answer)."""
        return self._expected

    @property
    def ssrc_seen(self) -> int | None:
        """The SSRC actually played (dedicated sockets lock onto the first seen)."""
        return self._expected if self._shared else self._locked

    @property
    def receiver(self) -> Any:
        """The :class:`~media.RtpPsReceiver` (for its demuxer's codecs and parameter sets)."""
        return self._receiver

    def set_ssrc(self, ssrc: int | None) -> None:
        """The SSRC media will carry, e.g. from the device's ``y=`` when it differs from ours.

        On the shared UDP port this re-keys the stream (None is refused there). On a dedicated
        socket it becomes the expected SSRC: played as soon as it shows up, while a stream
        already locked onto another SSRC keeps playing that one until then.
        """
        if ssrc is not None and not 0 <= ssrc <= 0xFFFFFFFF:
            raise IngestError("ssrc must be within 0..2**32-1")
        if self.closed or ssrc == self._expected:
            return
        if self._shared:
            if ssrc is None:
                raise IngestError("streams on the shared UDP port need an SSRC")
            self._ingest._rekey(self, ssrc)
        self._expected = ssrc
        if not self._shared and self._locked is not None and ssrc is not None \
                and ssrc != self._locked:
            log.info("media port %s: answer SSRC %d differs from the SSRC being received %d",
                     self.local_port, ssrc, self._locked, extra=self._extra)

    async def connect(self, host: str, port: int, *, timeout: float = 5.0, retries: int = 2,
                      retry_delay: float = 0.5) -> None:
        """TCP active: connect to the device's media port (from its answer), trying
        ``1 + retries`` times, each within ``timeout`` seconds. Raises :class:`IngestError`."""
        if self.transport != "tcp-active":
            raise IngestError(f"connect() is for tcp-active streams, not {self.transport}")
        if self.closed:
            raise IngestError("stream is closed")
        if self._conn is not None or self._connecting is not None:
            raise IngestError("already connected or connecting")
        if not 0 < port < 65536:
            raise IngestError(f"bad port {port!r}")
        last: BaseException | None = None
        for attempt in range(1 + max(0, retries)):
            if attempt:
                await asyncio.sleep(retry_delay)
                if self.closed:
                    break
                self._rebind_active()
            sock = self._sock
            assert sock is not None
            self._connecting = asyncio.ensure_future(
                asyncio.wait_for(self._loop.sock_connect(sock, (host, port)), timeout))
            try:
                await self._connecting
            except asyncio.CancelledError:
                if self.closed:
                    raise IngestError("stream closed while connecting") from None
                raise
            except (OSError, asyncio.TimeoutError) as exc:
                last = exc
                log.info("media tcp-active connect %s:%d attempt %d failed: %s", host, port,
                         attempt + 1, exc or "timeout", extra=self._extra)
                continue
            finally:
                self._connecting = None
            self._sock = None
            self._attach(sock, (host, port))
            return
        if self.closed:
            raise IngestError("stream closed while connecting")
        raise IngestError(f"cannot connect to {host}:{port} after {1 + max(0, retries)} "
                          f"attempts: {last or 'timeout'}")

    def stats(self) -> dict[str, Any]:
        """Counters for the API and metrics: ``packets`` and ``bytes`` as received (TCP bytes
        include the RFC 4571 prefixes), ``lost`` and ``loss_rate`` from RTP sequence numbers,
        ``bitrate`` (bit/s over the last few seconds), ``received_rate`` (received/expected)."""
        rx = self._receiver
        jitter = rx.rtp_stats()
        if self._retired:
            jitter = dict(collections.Counter(jitter) + self._retired)
            jitter.update({k: v for k, v in rx.rtp_stats().items() if k not in jitter})
        expected = jitter["expected"]
        lost = jitter["lost"]
        out: dict[str, Any] = {
            "transport": self.transport,
            "local_port": self.local_port,
            "ssrc": self._expected,
            "ssrc_seen": self.ssrc_seen,
            "packets": self.packets,
            "bytes": self.bytes,
            "frames": self.frames,
            "lost": lost,
            "loss_rate": lost / expected if expected else 0.0,
            "bitrate": self.bitrate(),
            "received_rate": jitter["received"] / expected if expected else 1.0,
            "malformed": jitter["malformed"],
            "ssrc_mismatch": jitter["ssrc_mismatch"],
            "duplicate": jitter["duplicate"],
            "late": jitter["late"],
            "reordered": jitter["reordered"],
            "expected": expected,
            "ssrc_ignored": self.ssrc_ignored,
            "callback_errors": self.callback_errors,
            "read_errors": self.read_errors,
            "tcp_rejected": self.tcp_rejected,
            "last_packet_at": self.last_packet_at,
        }
        if self._framer is not None:
            framer = collections.Counter(self._framer.stats()) + self._framer_base
            out["tcp_resyncs"] = framer["resyncs"]
            out["tcp_discarded_bytes"] = framer["discarded_bytes"]
            out["malformed"] += framer["resyncs"]
        return out

    def bitrate(self) -> float:
        """Bits per second received over the last :data:`BITRATE_WINDOW` seconds."""
        if self.first_packet_at is None:
            return 0.0
        now = self._loop.time()
        start = now - BITRATE_WINDOW
        total = sum(n for sec, n in self._window if sec + 1 > start)
        if self._win_sec + 1 > start:
            total += self._win_bytes
        # at least one second, so the first burst of a stream does not read as a huge rate
        span = max(now - max(start, self.first_packet_at), 1.0)
        return total * 8 / span

    async def close(self) -> None:
        """Stop receiving, deliver the frames still buffered and free the port at once."""
        if self._connecting is not None and not self._connecting.done():
            self.closed = True
            self._connecting.cancel()
            try:
                await self._connecting
            except BaseException:  # noqa: BLE001 - the connect attempt's own outcome
                pass
            self.closed = False
        self._end(None)

    # -- input (hot path) -----------------------------------------------------------------------

    def _feed(self, packets: list, nbytes: int) -> None:
        now = self._loop.time()
        if self.first_packet_at is None:
            self.first_packet_at = now
            self._win_sec = int(now)
        self.last_packet_at = now
        self.packets += len(packets)
        self.bytes += nbytes
        sec = int(now)
        if sec != self._win_sec:
            self._roll(sec)
        self._win_bytes += nbytes
        rx = self._receiver
        if self._lock_pending:
            self._lock(packets)
        mismatched = rx.ssrc_mismatch
        frames = rx.feed_packets(packets)
        if rx.ssrc_mismatch != mismatched:
            frames += self._mismatch(packets)
        if frames:
            self._deliver(frames)

    def _deliver(self, frames: list) -> None:
        self.frames += len(frames)
        try:
            self._on_frames(frames)
        except Exception:  # noqa: BLE001 - a consumer's bug must not stop the stream
            self.callback_errors += 1
            log.exception("media port %s: on_frames failed", self.local_port, extra=self._extra)

    def _roll(self, sec: int) -> None:
        self._window.append((self._win_sec, self._win_bytes))
        self._win_sec = sec
        self._win_bytes = 0
        while self._window and self._window[0][0] <= sec - BITRATE_WINDOW - 1:
            self._window.popleft()

    def _lock(self, packets: list) -> None:
        """Dedicated socket: accept the first SSRC seen (the offered one, or the device's own)."""
        for packet in packets:
            seen = _rtp_ssrc(packet)
            if seen is None:
                continue
            self._lock_pending = False
            self._locked = seen
            self._receiver.ssrc = seen
            if self._expected is not None and seen != self._expected:
                self.ssrc_ignored += 1
                self._ingest._event("ingest_ssrc_ignored")
                log.warning("media port %s: device sends SSRC %d instead of the offered %d "
                            "(it ignored y=); playing it", self.local_port, seen, self._expected,
                            extra=self._extra)
            return

    def _mismatch(self, packets: list) -> list:
        """Packets of another SSRC were dropped: if the expected SSRC arrived, switch to it and
        give it the packets it lost in this batch."""
        expected = self._expected
        if self._shared or expected is None or expected == self._locked:
            return []
        mine = [p for p in packets if _rtp_ssrc(p) == expected]
        if not mine:
            return []
        log.info("media port %s: the offered SSRC %d arrived; switching from %s", self.local_port,
                 expected, self._locked, extra=self._extra)
        self._locked = expected
        # Another source: its own sequence numbers and PS state, so a new receiver.
        self._retired.update(self._receiver.rtp_stats())
        self._receiver = RtpPsReceiver(ssrc=expected, **self._ingest._receiver_options)
        return self._receiver.feed_packets(mine)

    def _on_udp(self) -> None:
        reader = self._ingest._reader
        batch = reader.batch
        sock = self._sock
        for _ in range(MAX_ROUNDS):
            if sock is None or self.closed:
                return
            try:
                if self._read_from:
                    pairs = reader.read_from(sock)
                    if pairs:
                        self._read_from = False
                        self.remote = pairs[0][1]
                    packets = [data for data, _ in pairs]
                else:
                    packets = reader.read(sock)
            except OSError as exc:
                self.read_errors += 1
                log.debug("media port %s: read failed: %s", self.local_port, exc,
                          extra=self._extra)
                return
            if packets:
                self._feed(packets, reader.last_bytes)
            if reader.last_count < batch:
                return

    # -- TCP ------------------------------------------------------------------------------------

    def _on_accept(self) -> None:
        listener = self._sock
        if listener is None:
            return
        try:
            conn, address = listener.accept()
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            log.warning("media port %s: accept failed: %s", self.local_port, exc,
                        extra=self._extra)
            return
        if self._conn is not None or self.closed:
            self.tcp_rejected += 1
            self._ingest._event("ingest_tcp_rejected")
            log.warning("media port %s: refused a second TCP connection from %s:%s (one per "
                        "stream)", self.local_port, address[0], address[1], extra=self._extra)
            conn.close()
            return
        self._attach(conn, address)

    def _attach(self, conn: socket.socket, address: tuple) -> None:
        conn.setblocking(False)
        _set_rcvbuf(conn, self._ingest._rcvbuf)
        self._conn = conn
        self.remote = address
        self._framer = Rfc4571Framer()
        self._loop.add_reader(conn.fileno(), self._on_tcp)
        log.info("media port %s: %s connection with %s:%s", self.local_port, self.transport,
                 address[0], address[1], extra=self._extra)

    def _on_tcp(self) -> None:
        conn = self._conn
        if conn is None:
            return
        ingest = self._ingest
        try:
            n = conn.recv_into(ingest._tcp_buf)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self._end(f"tcp error: {exc}")
            return
        if n == 0:
            self._end("tcp closed")
            return
        framer = self._framer
        packets = framer.feed(ingest._tcp_view[:n])
        if not packets:
            self.bytes += n
            return
        pending = self._lock_pending
        self._feed(packets, n)
        if pending and not self._lock_pending and not self.closed:
            self._framer_for(self._locked, n)

    def _framer_for(self, ssrc: int | None, n: int) -> None:
        """Once the SSRC is known, a framer that also checks it: after garbage, resync then
        waits for a header of this stream instead of taking random bytes for a length. The
        bytes the old framer holds (the tail of the last read) move over."""
        old = self._framer
        left = old.buffered
        if left > n:
            return
        new = Rfc4571Framer(ssrc=ssrc)
        self._framer_base.update(old.stats())
        packets = new.feed(self._ingest._tcp_view[n - left:n])
        self._framer = new
        if packets:
            self._feed(packets, 0)

    def _rebind_active(self) -> None:
        """A failed connect leaves its socket unusable: a new one on the same port."""
        if self._sock is not None:
            self._sock.close()
        self._sock = self._ingest._bind_tcp(self.local_port, listen=False)

    # -- end ------------------------------------------------------------------------------------

    def _end(self, reason: str | None) -> None:
        """Close everything; ``reason`` given means the stream ended by itself (on_close)."""
        if self.closed:
            return
        self.closed = True
        self.close_reason = reason or "closed"
        loop = self._loop
        for sock in (self._conn, self._sock):
            if sock is None:
                continue
            if not self._shared and sock.fileno() >= 0:
                loop.remove_reader(sock.fileno())
            sock.close()
        self._conn = self._sock = None
        try:
            frames = self._receiver.flush()
        except Exception:  # noqa: BLE001 - never fail a close over the last frames
            frames = []
            log.exception("media port %s: flush failed", self.local_port, extra=self._extra)
        self._ingest._forget(self)      # after the flush: loss found only there is counted too
        if frames:
            self._deliver(frames)
        if reason is not None and self._on_close is not None:
            try:
                self._on_close(reason)
            except Exception:  # noqa: BLE001
                self.callback_errors += 1
                log.exception("media port %s: on_close failed", self.local_port,
                              extra=self._extra)
        log.debug("media port %s: %s stream closed (%s)", self.local_port, self.transport,
                  self.close_reason, extra=self._extra)


class MediaIngest:
    """Media ports and the streams received on them.

    ``port_range``: inclusive range media ports are taken from (UDP and TCP; a port already used
    by another process is skipped). ``single_port``: when set, every UDP stream shares this one
    UDP port (0: any free port) and is found by its SSRC; packets of unknown SSRCs are counted and
    dropped. ``rcvbuf``: receive buffer asked for each socket (key frames come in bursts; the
    shared port gets ``single_port_rcvbuf``). ``batch``: datagrams per read. ``on_event(name)``:
    called for rare events (``ingest_streams_opened``, ``ingest_tcp_rejected``,
    ``ingest_unknown_ssrc``, …) so a server can count them; :meth:`counters` gives totals to fold
    into metrics when scraped. ``receiver_options``: keyword arguments for each
    :class:`~media.RtpPsReceiver` (codecs, jitter buffer sizes).
    """

    def __init__(self, host: str = "127.0.0.1", port_range: tuple[int, int] = (30000, 30999),
                 single_port: int | None = None, *, rcvbuf: int = 4 << 20,
                 single_port_rcvbuf: int = 32 << 20, batch: int = 64,
                 on_event: Callable[[str], Any] | None = None,
                 receiver_options: dict | None = None) -> None:
        low, high = port_range
        if not 0 < low <= high < 65536:
            raise IngestError(f"bad port range {port_range!r}")
        if single_port is not None and not 0 <= single_port < 65536:
            raise IngestError(f"bad single port {single_port!r}")
        self.host = host
        self.port_range = (low, high)
        self.single_port = single_port
        self._rcvbuf = rcvbuf
        self._single_rcvbuf = single_port_rcvbuf
        self._on_event = on_event
        self._receiver_options = dict(receiver_options or {})
        self._reader = UdpReader(batch)
        self._tcp_buf = bytearray(_TCP_READ)
        self._tcp_view = memoryview(self._tcp_buf)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._next_port = low
        self._used: set[int] = set()
        self._streams: set[IngestStream] = set()
        self._by_ssrc: dict[int, IngestStream] = {}
        self._shared_sock: socket.socket | None = None
        self._unknown_logged: set[int] = set()
        self._started = False
        self._closed = False
        # totals of closed streams (live ones are added by counters())
        self._totals: collections.Counter = collections.Counter()
        self.streams_opened = 0
        self.unknown_ssrc = 0
        self.shared_malformed = 0
        self.shared_rtcp = 0

    # -- lifecycle ------------------------------------------------------------------------------

    @property
    def shared_port(self) -> int | None:
        """The UDP port all streams share in single-port mode (after :meth:`start`)."""
        if self._shared_sock is None:
            return None
        return self._shared_sock.getsockname()[1]

    @property
    def streams(self) -> list[IngestStream]:
        return list(self._streams)

    async def start(self) -> None:
        """Bind the shared UDP port (single-port mode). Idempotent; :meth:`open` calls it."""
        if self._closed:
            raise IngestError("ingest is closed")
        if self._started:
            return
        self._loop = asyncio.get_running_loop()
        if self.single_port is not None:
            sock = socket.socket(self._family, socket.SOCK_DGRAM)
            try:
                sock.setblocking(False)
                _set_rcvbuf(sock, self._single_rcvbuf)
                sock.bind((self.host, self.single_port))
            except OSError as exc:
                sock.close()
                raise IngestError(f"cannot bind the shared media port {self.host}:"
                                  f"{self.single_port}: {exc}") from None
            self._shared_sock = sock
            self._loop.add_reader(sock.fileno(), self._on_shared)
            log.info("media: shared UDP port %s:%d", self.host, self.shared_port)
            got = sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF) // 2   # Linux doubles it
            if got < self._single_rcvbuf:
                log.warning("media: the shared UDP port got a %d KiB receive buffer of the %d "
                            "KiB asked (raise net.core.rmem_max): key-frame bursts of many "
                            "streams may be dropped", got >> 10, self._single_rcvbuf >> 10)
        self._started = True

    async def close(self) -> None:
        """Close every stream (their ``on_close`` gets "ingest closed") and the shared port."""
        self._closed = True
        for stream in list(self._streams):
            stream._end("ingest closed")
        if self._shared_sock is not None:
            if self._loop is not None:
                self._loop.remove_reader(self._shared_sock.fileno())
            self._shared_sock.close()
            self._shared_sock = None

    async def __aenter__(self) -> MediaIngest:
        await self.start()
        return self

    async def __aexit__(self, *exc_info) -> None:
        await self.close()

    # -- streams --------------------------------------------------------------------------------

    async def open(self, transport: str = "udp", ssrc: int | None = None, *,
                   on_frames: FramesCallback, on_close: CloseCallback | None = None,
                   log_extra: dict | None = None) -> IngestStream:
        """A new stream listening (UDP, TCP passive) or ready to connect (TCP active).

        ``transport`` is "udp", "tcp-passive" or "tcp-active" (an enum with that ``value`` works
        too); ``ssrc`` the SSRC offered in ``y=`` as an integer (required on the shared port).
        ``log_extra`` goes into every log record of the stream (device and call IDs).
        """
        transport = str(getattr(transport, "value", transport))
        if transport not in TRANSPORTS:
            raise IngestError(f"unknown media transport {transport!r}; expected one of "
                              f"{', '.join(TRANSPORTS)}")
        if ssrc is not None and not (isinstance(ssrc, int) and 0 <= ssrc <= 0xFFFFFFFF):
            raise IngestError("ssrc must be an integer within 0..2**32-1")
        if not callable(on_frames):
            raise IngestError("on_frames must be callable")
        await self.start()
        stream = IngestStream(self, transport, ssrc, on_frames, on_close, log_extra)
        loop = self._loop
        assert loop is not None
        if transport == "udp" and self._shared_sock is not None:
            if ssrc is None:
                raise IngestError("streams on the shared UDP port need an SSRC")
            if ssrc in self._by_ssrc:
                raise IngestError(f"SSRC {ssrc} is already in use on the shared port")
            stream._shared = True
            stream._lock_pending = False
            stream.local_port = self.shared_port
            self._by_ssrc[ssrc] = stream
        elif transport == "udp":
            sock, port = self._allocate(self._bind_udp)
            stream._sock, stream.local_port = sock, port
            loop.add_reader(sock.fileno(), stream._on_udp)
        elif transport == "tcp-passive":
            sock, port = self._allocate(lambda p: self._bind_tcp(p, listen=True))
            stream._sock, stream.local_port = sock, port
            loop.add_reader(sock.fileno(), stream._on_accept)
        else:
            sock, port = self._allocate(lambda p: self._bind_tcp(p, listen=False))
            stream._sock, stream.local_port = sock, port
        self._streams.add(stream)
        self.streams_opened += 1
        self._event("ingest_streams_opened")
        log.debug("media: %s stream on port %s, SSRC %s", transport, stream.local_port, ssrc,
                  extra=stream._extra)
        return stream

    def bind_port(self, kind: str = "udp") -> socket.socket:
        """A non-blocking socket on a free port of the range, for a sender that is no stream of
        ours (a lower platform's media to its upper): firewalls open the media range only.

        ``kind``: "udp", "tcp-listen" (listening) or "tcp" (to connect from). The port stays
        taken until :meth:`release_port`, whoever closes the socket.
        """
        if kind == "udp":
            bind = self._bind_udp
        elif kind in ("tcp", "tcp-listen"):
            def bind(port: int) -> socket.socket:
                return self._bind_tcp(port, listen=kind == "tcp-listen")
        else:
            raise IngestError(f"unknown socket kind {kind!r}; expected udp, tcp or tcp-listen")
        sock, _ = self._allocate(bind)
        return sock

    def release_port(self, port: int) -> None:
        """Give back a port of :meth:`bind_port` (idempotent)."""
        self._used.discard(port)

    def counters(self) -> dict[str, int]:
        """Totals over all streams, closed and live, for metrics folded in at scrape time."""
        totals = collections.Counter(self._totals)
        for stream in self._streams:
            totals.update(self._stream_totals(stream))
        out = {key: totals.get(key, 0) for key in
               ("packets", "bytes", "frames", "lost", "malformed", "ssrc_mismatch",
                "ssrc_ignored", "tcp_rejected", "callback_errors")}
        out["streams_opened"] = self.streams_opened
        out["streams_active"] = len(self._streams)
        out["unknown_ssrc"] = self.unknown_ssrc
        out["shared_malformed"] = self.shared_malformed
        out["shared_rtcp"] = self.shared_rtcp
        out["truncated"] = self._reader.truncated
        return out

    # -- internals ------------------------------------------------------------------------------

    def _event(self, name: str) -> None:
        if self._on_event is not None:
            try:
                self._on_event(name)
            except Exception:  # noqa: BLE001
                log.exception("media: on_event failed")

    @staticmethod
    def _stream_totals(stream: IngestStream) -> dict[str, int]:
        stats = stream.stats()
        return {key: stats[key] for key in
                ("packets", "bytes", "frames", "lost", "malformed", "ssrc_mismatch",
                 "ssrc_ignored", "tcp_rejected", "callback_errors")}

    def _allocate(self, bind: Callable[[int], socket.socket]) -> tuple[socket.socket, int]:
        """Bind the next free port of the range, round robin (a port just freed is taken last,
        so a device still sending to it meets no new stream at once)."""
        if self._closed:
            raise IngestError("ingest is closed")
        low, high = self.port_range
        size = high - low + 1
        start = self._next_port
        for i in range(size):
            port = low + (start - low + i) % size
            if port in self._used:
                continue
            try:
                sock = bind(port)
            except OSError as exc:
                if exc.errno in (errno.EADDRINUSE, errno.EACCES):
                    continue
                raise IngestError(f"cannot bind media port {self.host}:{port}: {exc}") from None
            self._used.add(port)
            self._next_port = low + (port - low + 1) % size
            return sock, port
        raise PortsExhausted(f"no free media port in {low}-{high} on {self.host} "
                             f"({len(self._used)} in use by streams)")

    def _bind_udp(self, port: int) -> socket.socket:
        sock = socket.socket(self._family, socket.SOCK_DGRAM)
        try:
            sock.setblocking(False)
            _set_rcvbuf(sock, self._rcvbuf)
            sock.bind((self.host, port))
        except BaseException:
            sock.close()
            raise
        return sock

    def _bind_tcp(self, port: int, listen: bool) -> socket.socket:
        sock = socket.socket(self._family, socket.SOCK_STREAM)
        try:
            sock.setblocking(False)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if not listen:
                _set_rcvbuf(sock, self._rcvbuf)   # before connect: it sets the TCP window
            sock.bind((self.host, port))
            if listen:
                sock.listen(4)
        except BaseException:
            sock.close()
            raise
        return sock

    def _rekey(self, stream: IngestStream, ssrc: int) -> None:
        if ssrc in self._by_ssrc:
            raise IngestError(f"SSRC {ssrc} is already in use on the shared port")
        self._by_ssrc.pop(stream._expected, None)
        self._by_ssrc[ssrc] = stream

    def _forget(self, stream: IngestStream) -> None:
        if stream not in self._streams:
            return
        self._streams.discard(stream)
        self._totals.update(self._stream_totals(stream))
        if stream._shared:
            if self._by_ssrc.get(stream._expected) is stream:
                del self._by_ssrc[stream._expected]
        elif stream.local_port is not None:
            self._used.discard(stream.local_port)

    def _on_shared(self) -> None:
        sock = self._shared_sock
        reader = self._reader
        batch = reader.batch
        by_ssrc = self._by_ssrc
        for _ in range(MAX_ROUNDS):
            if sock is None or self._shared_sock is None:
                return
            malformed, rtcp = reader.malformed, reader.rtcp
            try:
                groups = reader.read_grouped(sock)
            except OSError as exc:
                log.debug("media: shared port read failed: %s", exc)
                return
            self.shared_malformed += reader.malformed - malformed
            self.shared_rtcp += reader.rtcp - rtcp
            for ssrc, packets in groups.items():
                stream = by_ssrc.get(ssrc)
                if stream is None:
                    self._unknown(ssrc, len(packets))
                    continue
                stream._feed(packets, sum(map(len, packets)))
            if reader.last_count < batch:
                return

    def _unknown(self, ssrc: int, count: int) -> None:
        self.unknown_ssrc += count
        if ssrc not in self._unknown_logged and len(self._unknown_logged) < MAX_LOGGED_UNKNOWN:
            self._unknown_logged.add(ssrc)
            self._event("ingest_unknown_ssrc")
            log.warning("media: shared port %s: packets of unknown SSRC %d dropped",
                        self.shared_port, ssrc)
