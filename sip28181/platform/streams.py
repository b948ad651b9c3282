"""On-demand media streams: one upstream session per channel and kind, shared by its viewers.

::

    handle = await platform.streams.acquire(device_id, channel_id)      # live, started on demand
    viewer = handle.relay.flv().add_viewer()
    ...
    handle.release()            # the last release arms the linger timer; then BYE

Lifecycle of a :class:`Stream` (the key is device, channel, kind, and for history the time range):

* the first :meth:`StreamManager.acquire` opens a media port (:class:`media.ingest.MediaIngest`:
  listening before the INVITE, PROTOCOL §14 item 18), allocates an SSRC and sends the INVITE;
  viewers arriving meanwhile wait for the same answer (one INVITE);
* the device's own SSRC (``y=`` in its answer) re-keys the port; for TCP active we connect to the
  port of its answer;
* frames go to the stream's :class:`media.relay.Relay`; the first one publishes
  :class:`~sip28181.platform.events.StreamStarted`;
* the stream ends through one method, :meth:`StreamManager._close`, whatever the cause: the last
  viewer left and the linger ran out ("no viewers"), no RTP for ``no_media_timeout`` ("no
  media"), the device's BYE ("device bye"), MediaStatus 121 ("end of file"), the device going
  offline, the media connection closing, an API stop ("api"), the server stopping ("shutdown"),
  or the INVITE failing. It publishes :class:`~sip28181.platform.events.StreamStopped`, cancels
  a pending INVITE (CANCEL), closes the media port (its last frame still reaches the viewers),
  ends the relay (every viewer sees the end with that reason), sends BYE when the dialog is
  still ours to end, and frees the SSRC.

Timers are deadlines checked by one supervisor task (every second, or faster for short timeouts),
not a task per stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from media.outputs.httpflv import ClientWatch
from media.relay import FlvViewer, Relay

from ..errors import LocalProtocolError, NotFoundError, Sip28181Error
from ..tasks import TaskSet
from .events import StreamStarted, StreamStopped
from .sessions import MediaOffer, MediaSession, MediaTransport, SessionError, SessionKind

if TYPE_CHECKING:
    from media.ingest import IngestStream, MediaIngest

    from ..config import Config
    from .core import Platform

__all__ = ["StreamError", "StreamHandle", "StreamManager", "Stream", "StreamState", "ViewerInfo"]

log = logging.getLogger("sip28181.streams")


class StreamError(Sip28181Error):
    """A stream could not be started or controlled; ``status`` is the HTTP status it maps to
    (502: the device refused, 504: it did not answer, 503: the server is stopping or out of
    media ports, 409: not possible in the stream's state)."""

    def __init__(self, status: int, message: str, sip_status: int | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.sip_status = sip_status


class StreamState:
    STARTING = "starting"
    LIVE = "live"
    CLOSED = "closed"


@dataclass(slots=True)
class ViewerInfo:
    """An output attached to a stream, for the stream list of the API."""

    kind: str                   # "flv", "ws-flv", "hls", "rtmp", "record", ...
    remote: str | None = None
    viewer: FlvViewer | None = None
    since: float = 0.0


class StreamHandle:
    """One viewer's hold on a stream; :meth:`release` (idempotent) when it leaves."""

    __slots__ = ("stream", "_manager", "released", "info")

    def __init__(self, manager: StreamManager, stream: Stream) -> None:
        self._manager = manager
        self.stream = stream
        self.released = False
        self.info: ViewerInfo | None = None

    @property
    def relay(self) -> Relay:
        return self.stream.relay

    @property
    def stream_id(self) -> str:
        return self.stream.stream_id

    @property
    def session(self) -> MediaSession | None:
        return self.stream.session

    def describe(self, kind: str, remote: str | None = None, viewer: FlvViewer | None = None) -> None:
        """Say what this viewer is (listed by the API)."""
        self.info = ViewerInfo(kind, remote, viewer, time.time())

    def release(self) -> None:
        if not self.released:
            self.released = True
            self._manager._release(self)

    def __enter__(self) -> StreamHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def stream_id_of(device_id: str, channel_id: str, kind: SessionKind, start: int = 0, end: int = 0,
                 speed: int | None = None) -> str:
    """The key of a stream, also its ID in the API: ``<device>_<channel>`` for live,
    ``<device>_<channel>_playback_<start>_<end>`` (``_download_…_<speed>``) for history."""
    base = f"{device_id}_{channel_id}"
    if kind is SessionKind.PLAY:
        return base
    if kind is SessionKind.PLAYBACK:
        return f"{base}_playback_{start}_{end}"
    return f"{base}_download_{start}_{end}_{speed or 1}"


class Stream:
    """One upstream session and its relay (see the module docstring)."""

    def __init__(self, manager: StreamManager, stream_id: str, device_id: str, channel_id: str,
                 kind: SessionKind, transport: MediaTransport, start: int, end: int,
                 speed: int | None, relay: Relay) -> None:
        self.manager = manager
        self.stream_id = stream_id
        self.device_id = device_id
        self.channel_id = channel_id
        self.kind = kind
        self.transport = transport
        self.start = start
        self.end = end
        self.speed = speed
        self.relay = relay
        self.state = StreamState.STARTING
        self.session: MediaSession | None = None
        self.ingest: IngestStream | None = None
        self.ssrc: str | None = None
        self.handles: set[StreamHandle] = set()
        self.created_at = time.time()
        self.live_at: float | None = None          # loop time the session came up
        self.first_frame_at: float | None = None   # wall time of the first frame
        self.linger_deadline: float | None = None
        #: a device session of one holder's own (see ``acquire``): nobody joins it, no linger
        self.exclusive = False
        self.close_reason: str | None = None
        self.ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.starter: asyncio.Task | None = None
        self.closed: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self.cleanup: asyncio.Task | None = None

    def __repr__(self) -> str:
        return f"<Stream {self.stream_id} {self.kind.value} {self.transport.value} {self.state}>"

    @property
    def extra(self) -> dict[str, str | None]:
        return {"device_id": self.device_id,
                "call_id": self.session.call_id if self.session is not None else None}

    @property
    def viewers(self) -> int:
        return len(self.handles)

    def stats(self) -> dict[str, Any]:
        """Ingest counters (packets, bytes, lost, loss_rate, bitrate, received_rate, ...)."""
        if self.ingest is None:
            return {}
        try:
            return self.ingest.stats()
        except Exception:       # noqa: BLE001 - statistics never break a listing
            log.debug("stats of %s failed", self.stream_id, exc_info=True)
            return {}


class StreamManager:
    """The platform's on-demand streams (``platform.streams``)."""

    def __init__(self, platform: Platform, ingest: MediaIngest, *, media_host: str | None = None,
                 transport: str | Callable[[str, str], str] = "udp", linger: float = 30.0,
                 no_media_timeout: float = 15.0, invite_timeout: float = 10.0,
                 gop_cache: int = 8 * 1024 * 1024, viewer_queue: int = 4 * 1024 * 1024) -> None:
        """``transport``: the default media transport, or a function ``(device_id, channel_id)``
        giving it per channel (:meth:`Config.media_transport_for`). ``media_host``: address
        written into offers (None: the SIP endpoint's advertised address)."""
        self.platform = platform
        self.ingest = ingest
        self.media_host = media_host
        self._transport = transport
        self.linger = linger
        self.no_media_timeout = no_media_timeout
        self.invite_timeout = invite_timeout
        self.gop_cache = gop_cache
        self.viewer_queue = viewer_queue
        #: Notices HTTP-FLV clients gone while their stream is silent (one task for all).
        self.client_watch = ClientWatch()
        self._streams: dict[str, Stream] = {}
        self._exclusive = 0             # streams acquired exclusive so far (their ID suffix)
        self._tasks = TaskSet(log)
        self._supervisor: asyncio.Task | None = None
        self._wake: asyncio.Event | None = None
        self._closing = False
        self._started = False
        self._folded: dict[str, int] = {}
        self.started_total = 0
        self.stopped: dict[str, int] = {}
        metrics = platform.metrics
        if metrics is not None:
            metrics.before_collect.append(self._fold_metrics)
            if hasattr(metrics, "media_streams"):
                metrics.media_streams.set_function(lambda: len(self._streams))
            if hasattr(metrics, "media_viewers"):
                metrics.media_viewers.set_function(lambda: sum(s.viewers for s in self._streams.values()))

    @classmethod
    def from_config(cls, platform: Platform, config: Config) -> StreamManager:
        """A manager and its :class:`~media.ingest.MediaIngest` set up from ``[media]``."""
        from media.ingest import MediaIngest

        ingest = MediaIngest(host=config.media_bind,
                             port_range=(config.media_port_min, config.media_port_max),
                             single_port=config.media_single_port,
                             on_event=lambda name: platform._count("media_events", name))
        return cls(platform, ingest, media_host=config.media_host,
                   transport=config.media_transport_for, linger=config.media_linger,
                   no_media_timeout=config.media_no_media_timeout,
                   invite_timeout=config.media_invite_timeout, gop_cache=config.media_gop_cache,
                   viewer_queue=config.media_viewer_queue)

    # -- lifecycle ------------------------------------------------------------------------------
    async def start(self) -> None:
        await self.ingest.start()
        self._started = True
        self._wake = asyncio.Event()
        self._supervisor = asyncio.get_running_loop().create_task(self._supervise(),
                                                                   name="stream supervisor")

    async def close(self) -> None:
        """End every stream (BYE), wait for their cleanup, close the media ports."""
        if self._closing:
            return
        self._closing = True
        for stream in list(self._streams.values()):
            self._close(stream, "shutdown")
        await self._tasks.close(grace=5.0)
        if self._supervisor is not None:
            self._supervisor.cancel()
            await asyncio.gather(self._supervisor, return_exceptions=True)
            self._supervisor = None
        await self.client_watch.close()
        await self.ingest.close()

    # -- lookup ---------------------------------------------------------------------------------
    def get(self, stream_id: str) -> Stream | None:
        return self._streams.get(stream_id)

    def list(self) -> list[Stream]:
        return sorted(self._streams.values(), key=lambda s: s.stream_id)

    def __len__(self) -> int:
        return len(self._streams)

    def transport_for(self, device_id: str, channel_id: str) -> MediaTransport:
        chosen = self._transport(device_id, channel_id) if callable(self._transport) else self._transport
        return MediaTransport(chosen)

    # -- acquire / release ----------------------------------------------------------------------
    async def acquire(self, device_id: str, channel_id: str, kind: SessionKind | str = SessionKind.PLAY,
                      transport: MediaTransport | str | None = None, start: int = 0, end: int = 0,
                      speed: int | None = None, *, exclusive: bool = False) -> StreamHandle:
        """A hold on the stream of a channel, started on demand and shared (see module doc).

        ``exclusive``: a device session of its own, never shared (its ID gets a ``_x<n>``
        suffix; :meth:`join` does not find it, and its last release ends it at once), for a holder that controls it (an upper's playback: its pause and seek must
        not move anyone else's).

        Raises :class:`NotFoundError` (unknown or offline device, unknown channel),
        :class:`LocalProtocolError` (bad arguments), :class:`StreamError` (refused: 502, no
        answer: 504, stopping or no ports: 503). Cancelling the call releases the hold; an INVITE
        left without viewers is ended by the linger timer like any stream.
        """
        if self._closing or not self._started:
            raise StreamError(503, "media service not running")
        try:
            kind = SessionKind(getattr(kind, "value", kind))
        except ValueError:
            raise LocalProtocolError(f"unknown stream kind {kind!r}") from None
        if kind.history:
            if not 0 <= start < end:
                raise LocalProtocolError("playback and download need 0 <= start < end (Unix seconds)")
        else:
            start = end = 0
            speed = None
        if speed is not None and kind is not SessionKind.DOWNLOAD:
            speed = None
        self._check_channel(device_id, channel_id)
        stream_id = stream_id_of(device_id, channel_id, kind, start, end, speed)
        if exclusive:
            self._exclusive += 1
            stream_id = f"{stream_id}_x{self._exclusive}"
        stream = self._streams.get(stream_id)
        if stream is None:
            if transport is None:
                chosen = self.transport_for(device_id, channel_id)
            else:
                try:
                    chosen = MediaTransport(str(getattr(transport, "value", transport)).lower())
                except ValueError:
                    raise LocalProtocolError(f"unknown media transport {transport!r}") from None
            stream = self._create(stream_id, device_id, channel_id, kind, chosen, start, end, speed)
            stream.exclusive = exclusive
        handle = StreamHandle(self, stream)
        stream.handles.add(handle)
        stream.linger_deadline = None
        try:
            await asyncio.shield(stream.ready)
        except BaseException:
            handle.release()
            raise
        if stream.state == StreamState.CLOSED:     # ended between the answer and this resume
            handle.release()
            raise StreamError(502, f"stream ended: {stream.close_reason}")
        return handle

    def join(self, stream_id: str) -> StreamHandle:
        """A hold on a running stream (no INVITE); :class:`NotFoundError` if there is none."""
        stream = self._streams.get(stream_id)
        if stream is None or stream.state != StreamState.LIVE or stream.exclusive:
            raise NotFoundError(f"stream {stream_id} not found")
        handle = StreamHandle(self, stream)
        stream.handles.add(handle)
        stream.linger_deadline = None
        return handle

    def _release(self, handle: StreamHandle) -> None:
        stream = handle.stream
        stream.handles.discard(handle)
        if stream.handles or stream.state == StreamState.CLOSED:
            return
        if self.linger <= 0 or stream.exclusive:      # nobody can join it: the device session ends now
            self._close(stream, "no viewers")
            return
        stream.linger_deadline = asyncio.get_running_loop().time() + self.linger
        self._poke()

    async def stop(self, stream_id: str, reason: str = "api") -> None:
        """End a stream now (viewers see the end); waits for its BYE."""
        stream = self._streams.get(stream_id)
        if stream is None:
            raise NotFoundError(f"stream {stream_id} not found")
        self._close(stream, reason)
        await asyncio.shield(stream.closed)

    def _check_channel(self, device_id: str, channel_id: str) -> None:
        platform = self.platform
        state = platform.registry.get(device_id)
        if state is None:
            raise NotFoundError(f"device {device_id} not found")
        channels = getattr(platform, "channels", None)
        if channel_id == device_id or not callable(channels):
            return
        try:
            known = channels(device_id)
        except Exception:       # noqa: BLE001 - no catalog yet: let the device decide
            return
        if inspectable(known):
            ids = {getattr(c, "channel_id", getattr(c, "device_id", c)) for c in known}
            if ids and channel_id not in ids:
                raise NotFoundError(f"channel {channel_id} of device {device_id} not found")

    # -- start ----------------------------------------------------------------------------------
    def _create(self, stream_id: str, device_id: str, channel_id: str, kind: SessionKind,
                transport: MediaTransport, start: int, end: int, speed: int | None) -> Stream:
        relay = Relay(stream_id, gop_limit=self.gop_cache, viewer_limit=self.viewer_queue)
        stream = Stream(self, stream_id, device_id, channel_id, kind, transport, start, end, speed, relay)
        relay.on_first_frame = lambda _relay: self._on_first_frame(stream)
        self._streams[stream_id] = stream
        stream.starter = self._spawn(self._start(stream), f"start {stream_id}")
        return stream

    async def _start(self, stream: Stream) -> None:
        platform = self.platform
        sessions = platform.sessions
        try:
            stream.ssrc = sessions.allocate_ssrc(stream.kind)
            stream.ingest = await self.ingest.open(
                stream.transport.value, ssrc=int(stream.ssrc),
                on_frames=stream.relay.feed,
                on_close=lambda reason: self._close(stream, f"media {reason}"),
                log_extra={"device_id": stream.device_id, "call_id": None})
            host = self.media_host or platform.endpoint.advertised_host
            offer = MediaOffer(host=host, port=stream.ingest.local_port or 0, transport=stream.transport,
                               ssrc=stream.ssrc, kind=stream.kind, start=stream.start, end=stream.end,
                               speed=stream.speed)
            session = await sessions.invite(stream.device_id, stream.channel_id, offer,
                                            timeout=self.invite_timeout)
            stream.session = session
            if stream.state == StreamState.CLOSED:          # closed while inviting
                await session.bye()
                return
            if session.ssrc != stream.ssrc:
                stream.ingest.set_ssrc(int(session.ssrc))
                sessions.release_ssrc(stream.ssrc)
                stream.ssrc = session.ssrc
            session.closed.add_done_callback(lambda fut: self._on_session_closed(stream, fut))
            if stream.transport is MediaTransport.TCP_ACTIVE:
                if not session.remote_host or not session.remote_port:
                    raise StreamError(502, "the device gave no media address to connect to")
                await stream.ingest.connect(session.remote_host, session.remote_port)
        except asyncio.CancelledError:
            if not stream.ready.done():
                stream.ready.set_exception(StreamError(503, "stream start cancelled"))
            self._close(stream, stream.close_reason or "cancelled")
            raise
        except Exception as exc:    # noqa: BLE001 - every failure ends the stream and is reported
            error = _as_stream_error(exc)
            log.info("stream %s not started: %s", stream.stream_id, error.message, extra=stream.extra)
            if not stream.ready.done():
                stream.ready.set_exception(error)
            self._close(stream, f"start failed: {error.message}")
            return
        if stream.state == StreamState.CLOSED:
            return
        stream.state = StreamState.LIVE
        stream.live_at = asyncio.get_running_loop().time()
        self._poke()
        log.info("stream %s up over %s (SSRC %s, port %s)", stream.stream_id, stream.transport.value,
                 stream.ssrc, stream.ingest.local_port if stream.ingest else None, extra=stream.extra)
        if not stream.ready.done():
            stream.ready.set_result(None)

    def _on_first_frame(self, stream: Stream) -> None:
        stream.first_frame_at = time.time()
        self.started_total += 1
        self.platform._count("media_streams_started", stream.kind.value)
        self.platform.events.publish(StreamStarted(stream.device_id, stream.channel_id, stream.kind.value,
                                                   stream.first_frame_at))

    def _on_session_closed(self, stream: Stream, fut: asyncio.Future) -> None:
        if fut.cancelled():
            return
        reason = fut.result()
        if stream.state != StreamState.CLOSED:
            self._close(stream, reason)

    # -- the one close path ---------------------------------------------------------------------
    def _close(self, stream: Stream, reason: str) -> None:
        """End ``stream`` for ``reason``: relay, BYE, port, SSRC, event (idempotent)."""
        if stream.state == StreamState.CLOSED:
            return
        stream.state = StreamState.CLOSED
        stream.close_reason = reason
        if self._streams.get(stream.stream_id) is stream:
            del self._streams[stream.stream_id]
        if not stream.ready.done():
            stream.ready.set_exception(StreamError(502, f"stream ended: {reason}"))
            stream.ready.exception()    # retrieved: viewers may all have gone
        for handle in list(stream.handles):
            handle.released = True
        stream.handles.clear()
        log.info("stream %s ended (%s)", stream.stream_id, reason, extra=stream.extra)
        self.stopped[reason] = self.stopped.get(reason, 0) + 1
        self.platform._count("media_streams_stopped", _reason_label(reason))
        if stream.first_frame_at is not None:
            self.platform.events.publish(StreamStopped(stream.device_id, stream.channel_id,
                                                       stream.kind.value, time.time(), reason))
        stream.cleanup = self._spawn(self._cleanup(stream, reason), f"close {stream.stream_id}")

    async def _cleanup(self, stream: Stream, reason: str) -> None:
        starter = stream.starter
        if starter is not None and not starter.done() and starter is not asyncio.current_task():
            starter.cancel()        # INVITE pending: the sessions layer sends CANCEL
            await asyncio.gather(starter, return_exceptions=True)
        # the port first: its receiver flushes the last frame (the PS demuxer holds a frame until
        # the next pack starts), so a playback ends with its last picture; then the viewers
        if stream.ingest is not None:
            try:
                await stream.ingest.close()
            except Exception:   # noqa: BLE001
                log.exception("closing the media port of %s failed", stream.stream_id)
        stream.relay.end(reason)
        session = stream.session
        try:
            if session is not None and session.active:
                await session.bye()
        except Exception:   # noqa: BLE001 - the stream is over either way
            log.info("BYE for %s failed", stream.stream_id, exc_info=True, extra=stream.extra)
        finally:
            stream.relay.end(reason)
            self.platform.sessions.release_ssrc(stream.ssrc)
            if session is not None and session.ssrc != stream.ssrc:
                self.platform.sessions.release_ssrc(session.ssrc)
            if not stream.closed.done():
                stream.closed.set_result(reason)

    # -- supervision ----------------------------------------------------------------------------
    def _poke(self) -> None:
        if self._wake is not None:
            self._wake.set()

    def _interval(self) -> float:
        return max(0.02, min(1.0, self.no_media_timeout / 4, self.linger / 4 if self.linger > 0 else 1.0))

    async def _supervise(self) -> None:
        assert self._wake is not None
        loop = asyncio.get_running_loop()
        while True:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._interval())
            self._wake.clear()
            now = loop.time()
            for stream in list(self._streams.values()):
                try:
                    self._check(stream, now)
                except Exception:   # noqa: BLE001 - one stream's trouble must not stop the others
                    log.exception("supervising %s failed", stream.stream_id)

    def _check(self, stream: Stream, now: float) -> None:
        if stream.linger_deadline is not None and not stream.handles and now >= stream.linger_deadline:
            self._close(stream, "no viewers")
            return
        if stream.state != StreamState.LIVE or stream.ingest is None or stream.live_at is None:
            return
        last = stream.ingest.last_packet_at
        since = max(last if last is not None else stream.live_at, stream.live_at)
        if now - since >= self.no_media_timeout:
            log.info("no media from %s for %.1f s", stream.stream_id, now - since, extra=stream.extra)
            self._close(stream, "no media")

    # -- metrics --------------------------------------------------------------------------------
    def _fold_metrics(self) -> None:
        metrics = self.platform.metrics
        if metrics is None:
            return
        try:
            counters = self.ingest.counters()
        except Exception:   # noqa: BLE001
            return
        for key, family in (("packets", "rtp_packets_received"), ("lost", "rtp_packets_lost"),
                            ("bytes", "media_bytes_received")):
            value = counters.get(key, 0)
            delta = value - self._folded.get(key, 0)
            self._folded[key] = value
            metric = getattr(metrics, family, None)
            if metric is not None and delta > 0:
                metric.inc(delta)

    # -- tasks ----------------------------------------------------------------------------------
    def _spawn(self, coro, name: str) -> asyncio.Task:
        return self._tasks.spawn(coro, name)


def inspectable(value: Any) -> bool:
    return isinstance(value, (list, tuple, set, frozenset, dict))


def _reason_label(reason: str) -> str:
    """A bounded label value for the stop reason (start failures carry the device's text)."""
    if reason.startswith("start failed"):
        return "start failed"
    if reason.startswith("media "):
        return "media closed"
    return reason


def _as_stream_error(exc: BaseException) -> StreamError:
    if isinstance(exc, StreamError):
        return exc
    if isinstance(exc, SessionError):
        if exc.status == 408:
            return StreamError(504, f"device did not answer: {exc.reason}", exc.status)
        return StreamError(502, f"device refused: {exc.status} {exc.reason}", exc.status)
    if isinstance(exc, NotFoundError):
        return StreamError(404, str(exc))
    if isinstance(exc, TimeoutError):
        return StreamError(504, "device did not answer in time")
    if isinstance(exc, LocalProtocolError):
        return StreamError(400, str(exc))
    name = type(exc).__name__
    if name in ("PortsExhausted",):
        return StreamError(503, str(exc) or "no free media port")
    if name in ("IngestError",):
        return StreamError(502, str(exc))
    if isinstance(exc, Sip28181Error):
        return StreamError(502, str(exc))
    log.error("unexpected error starting a stream", exc_info=exc)
    return StreamError(500, f"{name}: {exc}")
