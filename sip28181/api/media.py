"""Media routes: live on demand over HTTP-FLV / WS-FLV, and the REST API of streams.

Players (outside ``/api/v1``; the token as ``Authorization: Bearer`` or ``?token=``):

* ``GET /live/{device_id}/{channel_id}.flv`` — HTTP-FLV of the channel's live stream, started on
  demand (``?transport=udp|tcp-passive|tcp-active`` chooses the media transport when this request
  starts the stream). The same URL with ``Upgrade: websocket`` answers WS-FLV.
* ``GET /live/{device_id}/{channel_id}.ws`` — WS-FLV (flv.js / mpegts.js ``ws://`` URLs).
* ``GET /streams/{stream_id}.flv`` and ``.ws`` — join a running stream of any kind (playback and
  download streams are started through the REST API and watched here).

REST (``/api/v1``): start/stop live and get its URLs, start playback or download of a time range,
list streams (viewers, bitrate, loss, received rate), control a playback (pause, resume, seek,
scale), stop a stream. A device that refuses answers 502 (``detail.sip_status``), one that does
not answer 504, an unknown device or channel 404.

Other output modules add their URLs to the stream descriptions with :func:`register_url`.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Callable
from typing import Any, Literal

from aiohttp import web
from pydantic import BaseModel, Field, model_validator

from media.outputs import stream_flv, stream_wsflv, wants_websocket

from ..platform.sessions import SessionError, SessionKind
from ..platform.streams import Stream, StreamError, StreamHandle, StreamManager
from .devices import DEVICE_ID, PLATFORM, iso
from .errors import HttpError
from .routing import ApiRouter, PathParam

__all__ = ["register_routes", "register_url", "URL_BUILDERS"]

CHANNEL_ID = PathParam(pattern=r"^\d{20}$", description="20-digit channel ID (the device ID for a camera)")
STREAM_ID = PathParam(pattern=r"^\d{20}_\d{20}(_(playback|download)_\d+_\d+(_\d+)?)?$",
                      description="stream ID as listed by GET /api/v1/streams",
                      example="34020000001320000001_34020000001310000001")

Transport = Literal["udp", "tcp-passive", "tcp-active"]

#: name -> function(base_url, stream) giving a URL of the stream (None: not offered). Output
#: modules register theirs (HLS, RTMP...) with :func:`register_url`.
URL_BUILDERS: dict[str, Callable[[str, Stream], str | None]] = {}


def register_url(name: str, build: Callable[[str, Stream], str | None]) -> None:
    """Add a URL to every stream description (``build(base_url, stream)``)."""
    URL_BUILDERS[name] = build


def _flv_url(base: str, stream: Stream) -> str:
    if stream.kind is SessionKind.PLAY:
        return f"{base}/live/{stream.device_id}/{stream.channel_id}.flv"
    return f"{base}/streams/{stream.stream_id}.flv"


def _ws_url(base: str, stream: Stream) -> str:
    ws_base = "ws" + base[4:] if base.startswith("http") else base
    if stream.kind is SessionKind.PLAY:
        return f"{ws_base}/live/{stream.device_id}/{stream.channel_id}.ws"
    return f"{ws_base}/streams/{stream.stream_id}.ws"


register_url("flv", _flv_url)
register_url("ws_flv", _ws_url)


# -- models -------------------------------------------------------------------------------------

class TransportQuery(BaseModel):
    transport: Transport | None = Field(
        None, description="media transport when this request starts the stream (default: the "
                          "device's setting, else [media] transport)")


class ViewerOut(BaseModel):
    kind: str = Field(description="flv, ws-flv, api (a start without a player), or an output's name")
    remote: str | None = Field(None, description="client address")
    since: str | None = Field(None, description="when it joined (ISO 8601)")
    sent_bytes: int | None = Field(None, description="bytes handed to the connection (FLV)")
    queued_bytes: int | None = None
    dropped: int | None = Field(None, description="tags dropped by the slow-viewer policy")
    overflows: int | None = Field(None, description="times its queue overflowed")


class StreamOut(BaseModel):
    stream_id: str
    device_id: str
    channel_id: str
    kind: Literal["Play", "Playback", "Download"]
    transport: Transport
    state: Literal["starting", "live", "closed"]
    ssrc: str | None = Field(None, description="SSRC of the media (the device's when it chose its own)")
    call_id: str | None = None
    start: int | None = Field(None, description="playback/download range start (Unix seconds)")
    end: int | None = None
    speed: int | None = Field(None, description="download speed")
    created_at: str | None = None
    first_frame_at: str | None = None
    viewers: int = Field(description="viewers and outputs holding the stream")
    outputs: list[ViewerOut] = Field(default_factory=list)
    video_codec: str | None = None
    audio_codec: str | None = None
    frames: int = 0
    packets: int = 0
    bytes_received: int = 0
    lost: int = Field(0, description="RTP packets missing from the sequence")
    loss_rate: float = Field(0.0, description="lost / expected RTP packets")
    received_rate: float = Field(0.0, description="received / expected RTP packets")
    bitrate: float = Field(0.0, description="bits per second received over the last seconds")
    urls: dict[str, str] = Field(default_factory=dict,
                                 description="player URLs: flv, ws_flv, and those of other outputs")
    closed_reason: str | None = None


class Stopped(BaseModel):
    stream_id: str
    stopped: bool = True


class HistoryRequest(BaseModel):
    """A time range of a channel's recordings (the ``t=`` of the INVITE)."""

    device_id: str = Field(pattern=r"^\d{20}$")
    channel_id: str = Field(pattern=r"^\d{20}$")
    start: _dt.datetime = Field(description="Unix seconds or ISO 8601 (no offset: server local time)")
    end: _dt.datetime
    transport: Transport | None = None

    @model_validator(mode="after")
    def _range(self) -> HistoryRequest:
        if _epoch(self.start) >= _epoch(self.end):
            raise ValueError("start must be before end")
        if _epoch(self.start) < 0:
            raise ValueError("start must be after 1970")
        return self


class DownloadRequest(HistoryRequest):
    speed: int = Field(1, ge=1, le=32, description="a=downloadspeed: how many times real time")


class ControlRequest(BaseModel):
    """Playback control, sent to the device as INFO with MANSRTSP."""

    action: Literal["pause", "resume", "seek", "scale"]
    position: float | None = Field(None, ge=0, description="seek: seconds from the start of the range")
    scale: float | None = Field(None, ge=-16, le=16, description="scale: speed (0.25 … 4; negative = reverse)")

    @model_validator(mode="after")
    def _needs(self) -> ControlRequest:
        if self.action == "seek" and self.position is None:
            raise ValueError("seek needs position")
        if self.action == "scale" and (self.scale is None or self.scale == 0):
            raise ValueError("scale needs a non-zero scale")
        return self


def _epoch(value: _dt.datetime) -> int:
    return int(value.timestamp())


def _base(request: web.Request) -> str:
    return str(request.url.origin())


def stream_out(stream: Stream, base: str) -> StreamOut:
    stats = stream.stats()
    relay = stream.relay
    outputs = []
    for handle in list(stream.handles):
        info = handle.info
        if info is None:
            outputs.append(ViewerOut(kind="api"))
            continue
        viewer = info.viewer
        outputs.append(ViewerOut(
            kind=info.kind, remote=info.remote, since=iso(info.since),
            sent_bytes=viewer.sent if viewer is not None else None,
            queued_bytes=viewer.queued if viewer is not None else None,
            dropped=viewer.dropped if viewer is not None else None,
            overflows=viewer.overflows if viewer is not None else None))
    urls = {}
    for name, build in URL_BUILDERS.items():
        try:
            url = build(base, stream)
        except Exception:       # noqa: BLE001 - a broken builder must not break the listing
            url = None
        if url:
            urls[name] = url
    session = stream.session
    history = stream.kind is not SessionKind.PLAY
    return StreamOut(
        stream_id=stream.stream_id, device_id=stream.device_id, channel_id=stream.channel_id,
        kind=stream.kind.value, transport=stream.transport.value, state=stream.state,  # type: ignore[arg-type]
        ssrc=stream.ssrc, call_id=session.call_id if session is not None else None,
        start=stream.start if history else None, end=stream.end if history else None,
        speed=stream.speed if stream.kind is SessionKind.DOWNLOAD else None,
        created_at=iso(stream.created_at), first_frame_at=iso(stream.first_frame_at),
        viewers=stream.viewers, outputs=outputs, video_codec=relay.video_codec,
        audio_codec=relay.audio_codec, frames=relay.frames_in,
        packets=int(stats.get("packets", 0)), bytes_received=int(stats.get("bytes", 0)),
        lost=int(stats.get("lost", 0)), loss_rate=float(stats.get("loss_rate", 0.0)),
        received_rate=float(stats.get("received_rate", 0.0)),
        bitrate=float(stats.get("bitrate", 0.0)), urls=urls, closed_reason=stream.close_reason)


def _manager(request: web.Request) -> StreamManager:
    manager = getattr(request.app[PLATFORM], "streams", None)
    if manager is None:
        raise HttpError(503, "media service not configured")
    return manager


async def _acquire(manager: StreamManager, device_id: str, channel_id: str, **kw: Any) -> StreamHandle:
    try:
        return await manager.acquire(device_id, channel_id, **kw)
    except StreamError as exc:
        raise HttpError(exc.status, exc.message,
                        {"sip_status": exc.sip_status} if exc.sip_status else None) from None


def _get_stream(manager: StreamManager, stream_id: str) -> Stream:
    stream = manager.get(stream_id)
    if stream is None:
        raise HttpError(404, f"stream {stream_id} not found")
    return stream


async def _serve(request: web.Request, manager: StreamManager, handle: StreamHandle,
                 websocket: bool) -> web.StreamResponse:
    """Stream ``handle``'s relay to the client as FLV or WS-FLV, then release the hold."""
    try:
        remote = request.remote
        if websocket:
            return await stream_wsflv(
                request, handle.relay, on_viewer=lambda v: handle.describe("ws-flv", remote, v))
        return await stream_flv(request, handle.relay, watch=manager.client_watch,
                                on_viewer=lambda v: handle.describe("flv", remote, v))
    finally:
        handle.release()


def register_routes(api: ApiRouter) -> None:
    live_params = {"device_id": DEVICE_ID, "channel_id": CHANNEL_ID}
    live_errors = {404: "device or channel not found", 502: "the device refused the session",
                   503: "media service not running", 504: "the device did not answer"}

    # -- players ------------------------------------------------------------------------------
    @api.get("/live/{device_id}/{channel_id}.flv", prefixed=False, path_params=live_params,
             query=TransportQuery, tags=["media"], content_type="video/x-flv", errors=live_errors)
    async def live_flv(request: web.Request, device_id: str, channel_id: str,
                       query: TransportQuery) -> web.StreamResponse:
        """Live HTTP-FLV of a channel, started on demand (WS-FLV with Upgrade: websocket).

        The response starts with the FLV header and the last keyframe, and lasts until the stream
        ends (device BYE, no media, stop) or the client goes away. The token may be given as
        `?token=`.
        """
        manager = _manager(request)
        websocket = wants_websocket(request)
        handle = await _acquire(manager, device_id, channel_id, transport=query.transport)
        return await _serve(request, manager, handle, websocket)

    @api.get("/live/{device_id}/{channel_id}.ws", prefixed=False, path_params=live_params,
             query=TransportQuery, tags=["media"], content_type="video/x-flv",
             errors={**live_errors, 400: "not a WebSocket request"})
    async def live_wsflv(request: web.Request, device_id: str, channel_id: str,
                         query: TransportQuery) -> web.StreamResponse:
        """Live WS-FLV of a channel (binary messages of FLV), started on demand."""
        manager = _manager(request)
        if not wants_websocket(request):
            raise HttpError(400, "WebSocket upgrade required")
        handle = await _acquire(manager, device_id, channel_id, transport=query.transport)
        return await _serve(request, manager, handle, True)

    @api.get("/streams/{stream_id}.flv", prefixed=False, path_params={"stream_id": STREAM_ID},
             tags=["media"], content_type="video/x-flv", errors={404: "no such stream running"})
    async def stream_flv_join(request: web.Request, stream_id: str) -> web.StreamResponse:
        """HTTP-FLV of a running stream (playback, download or live); WS-FLV with Upgrade."""
        manager = _manager(request)
        handle = manager.join(stream_id)
        return await _serve(request, manager, handle, wants_websocket(request))

    @api.get("/streams/{stream_id}.ws", prefixed=False, path_params={"stream_id": STREAM_ID},
             tags=["media"], content_type="video/x-flv",
             errors={404: "no such stream running", 400: "not a WebSocket request"})
    async def stream_ws_join(request: web.Request, stream_id: str) -> web.StreamResponse:
        """WS-FLV of a running stream."""
        manager = _manager(request)
        if not wants_websocket(request):
            raise HttpError(400, "WebSocket upgrade required")
        handle = manager.join(stream_id)
        return await _serve(request, manager, handle, True)

    # -- REST ---------------------------------------------------------------------------------
    @api.post("/live/{device_id}/{channel_id}", path_params=live_params, query=TransportQuery,
              response=StreamOut, tags=["media"], errors=live_errors)
    async def start_live(request: web.Request, device_id: str, channel_id: str,
                         query: TransportQuery) -> StreamOut:
        """Start a channel's live stream and get its player URLs.

        The stream stays up for the linger time ([media] linger) waiting for a player, and as
        long as players watch it.
        """
        manager = _manager(request)
        handle = await _acquire(manager, device_id, channel_id, transport=query.transport)
        try:
            return stream_out(handle.stream, _base(request))
        finally:
            handle.release()

    @api.delete("/live/{device_id}/{channel_id}", path_params=live_params, response=Stopped,
                tags=["media"], errors={404: "no live stream of this channel"})
    async def stop_live(request: web.Request, device_id: str, channel_id: str) -> Stopped:
        """Stop a channel's live stream now (BYE; its viewers see the end)."""
        manager = _manager(request)
        stream_id = f"{device_id}_{channel_id}"
        _get_stream(manager, stream_id)
        await manager.stop(stream_id, "api")
        return Stopped(stream_id=stream_id)

    async def _history(request: web.Request, body: HistoryRequest, kind: SessionKind,
                       speed: int | None) -> StreamOut:
        manager = _manager(request)
        handle = await _acquire(manager, body.device_id, body.channel_id, kind=kind,
                                transport=body.transport, start=_epoch(body.start),
                                end=_epoch(body.end), speed=speed)
        try:
            return stream_out(handle.stream, _base(request))
        finally:
            handle.release()

    @api.post("/playback", body=HistoryRequest, response=StreamOut, tags=["media"], errors=live_errors)
    async def start_playback(request: web.Request, body: HistoryRequest) -> StreamOut:
        """Start the playback of a time range of recordings (INVITE s=Playback).

        Watch it at the returned URLs; it ends at the end of the range (MediaStatus 121), on
        stop, or after the linger time without viewers.
        """
        return await _history(request, body, SessionKind.PLAYBACK, None)

    @api.post("/download", body=DownloadRequest, response=StreamOut, tags=["media"], errors=live_errors)
    async def start_download(request: web.Request, body: DownloadRequest) -> StreamOut:
        """Start the download of a time range of recordings (INVITE s=Download, a=downloadspeed)."""
        return await _history(request, body, SessionKind.DOWNLOAD, body.speed)

    @api.get("/streams", response=list[StreamOut], tags=["media"])
    async def list_streams(request: web.Request) -> list[StreamOut]:
        """Streams running now, with their viewers, bitrate, packet loss and received rate."""
        base = _base(request)
        return [stream_out(s, base) for s in _manager(request).list()]

    @api.get("/streams/{stream_id}", path_params={"stream_id": STREAM_ID}, response=StreamOut,
             tags=["media"], errors={404: "stream not found"})
    async def get_stream(request: web.Request, stream_id: str) -> StreamOut:
        """One running stream."""
        return stream_out(_get_stream(_manager(request), stream_id), _base(request))

    @api.delete("/streams/{stream_id}", path_params={"stream_id": STREAM_ID}, response=Stopped,
                tags=["media"], errors={404: "stream not found"})
    async def stop_stream(request: web.Request, stream_id: str) -> Stopped:
        """Stop a stream now (BYE; its viewers see the end)."""
        manager = _manager(request)
        _get_stream(manager, stream_id)
        await manager.stop(stream_id, "api")
        return Stopped(stream_id=stream_id)

    @api.post("/streams/{stream_id}/control", path_params={"stream_id": STREAM_ID},
              body=ControlRequest, response=StreamOut, tags=["media"],
              errors={404: "stream not found", 409: "not a playback/download, or not started",
                      502: "the device refused the command", 504: "the device did not answer"})
    async def control_stream(request: web.Request, stream_id: str, body: ControlRequest) -> StreamOut:
        """Pause, resume, seek or change the speed of a playback (INFO with MANSRTSP)."""
        manager = _manager(request)
        stream = _get_stream(manager, stream_id)
        session = stream.session
        if stream.kind is SessionKind.PLAY:
            raise HttpError(409, "live streams cannot be controlled")
        if session is None or not session.active:
            raise HttpError(409, f"stream is {stream.state}")
        try:
            if body.action == "pause":
                await session.pause()
            elif body.action == "resume":
                await session.play()
            elif body.action == "seek":
                await session.seek(body.position or 0.0)
            else:
                await session.scale(body.scale or 1.0)
        except SessionError as exc:
            if exc.status == 408:
                raise HttpError(504, f"device did not answer: {exc.reason}") from None
            raise HttpError(409 if exc.status == 481 else 502, f"device refused: {exc.status} {exc.reason}",
                            {"sip_status": exc.status}) from None
        return stream_out(stream, _base(request))
