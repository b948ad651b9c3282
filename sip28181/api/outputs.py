"""Routes of the PyAV outputs: live HLS, JPEG snapshots, RTMP pushes and MP4 recordings.

Players (outside ``/api/v1``, token as ``Authorization: Bearer`` or ``?token=``):

* ``GET /live/{device_id}/{channel_id}/index.m3u8`` — the channel's live HLS playlist, the stream
  and its HLS output started on demand (the first request waits for the first segment). When the
  playlist was asked with ``?token=``, its segment URIs carry the same token, so players that
  cannot send headers fetch segments too. With no playlist or segment request for
  ``[hls] idle_timeout`` seconds the HLS output stops and releases the stream.
* ``GET /live/{device_id}/{channel_id}/{segment}`` — a segment (``seg000001.ts``, ``.m4s``, or
  ``init.mp4``) of a running HLS output.

REST (``/api/v1``): ``GET …/channels/{channel_id}/snapshot`` (image/jpeg), ``POST``/``GET``/
``DELETE …/channels/{channel_id}/push`` and ``GET /pushes``, ``POST``/``GET``/``DELETE
…/channels/{channel_id}/record`` and ``GET /records``.
"""

from __future__ import annotations

import urllib.parse
from typing import Literal

from aiohttp import web
from pydantic import BaseModel, Field

from media.outputs import OutputError
from media.outputs.snapshot import SnapshotError

from ..platform.outputs import HlsOutput, OutputManager, PushOutput, RecordOutput
from ..platform.sessions import SessionKind
from ..platform.streams import StreamError
from .devices import DEVICE_ID, PLATFORM, iso
from .errors import HttpError
from .media import CHANNEL_ID, TransportQuery, register_url
from .routing import ApiRouter, PathParam

__all__ = ["register_routes"]

SEGMENT = PathParam(pattern=r"^(seg\d{6}\.(ts|m4s)|init\.mp4)$",
                    description="segment file name as listed in the playlist", example="seg000001.ts")
CONTENT_TYPES = {".ts": "video/mp2t", ".m4s": "video/iso.segment", ".mp4": "video/mp4"}
PLAYLIST_TYPE = "application/vnd.apple.mpegurl"

Audio = Literal["aac", "drop"]


def _hls_url(base: str, stream) -> str | None:
    if stream.kind is not SessionKind.PLAY:
        return None
    return f"{base}/live/{stream.device_id}/{stream.channel_id}/index.m3u8"


register_url("hls", _hls_url)


# -- models -------------------------------------------------------------------------------------

class SnapshotQuery(TransportQuery):
    width: int | None = Field(None, ge=16, le=7680, description="width of the JPEG (default: the "
                              "picture's; only one of width/height keeps the aspect ratio)")
    height: int | None = Field(None, ge=16, le=4320, description="height of the JPEG")
    quality: int = Field(3, ge=2, le=31, description="JPEG quantiser: 2 best … 31 smallest")
    timeout: float = Field(5.0, gt=0, le=60, description="seconds to wait for a keyframe")


class PushRequest(BaseModel):
    url: str = Field(description="rtmp://host[:port]/app/stream (or rtmps://)", max_length=2048,
                     examples=["rtmp://127.0.0.1/live/cam1"])
    audio: Audio = Field("aac", description="audio transcoded to AAC, or dropped")
    transport: Literal["udp", "tcp-passive", "tcp-active"] | None = Field(
        None, description="media transport if this starts the stream")


class PushOut(BaseModel):
    push_id: str
    device_id: str
    channel_id: str
    url: str = Field(description="target, without credentials or query")
    state: Literal["connecting", "streaming", "reconnecting", "stopped", "failed"]
    connects: int = Field(description="successful publishes (1 + reconnections)")
    failures: int = Field(description="failed attempts and broken connections")
    frames_sent: int = Field(description="video and audio frames sent")
    video_frames_sent: int
    bytes_sent: int = Field(description="video bytes sent")
    dropped_frames: int = Field(description="frames dropped because the push fell behind")
    last_error: str | None = None
    retry_in: float | None = Field(None, description="seconds to the next attempt")
    started_at: str | None = None
    ended_at: str | None = None
    end_reason: str | None = None

    @classmethod
    def of(cls, o: PushOutput) -> PushOut:
        s = o.sink.status()
        return cls(push_id=o.output_id, device_id=o.device_id, channel_id=o.channel_id,
                   url=s["url"], state=s["state"], connects=s["connects"], failures=s["failures"],
                   frames_sent=s["frames_sent"], video_frames_sent=s["video_frames_sent"],
                   bytes_sent=s["bytes_sent"],
                   dropped_frames=s["dropped_frames"], last_error=s["last_error"],
                   retry_in=s["retry_in"], started_at=iso(o.started_at), ended_at=iso(o.ended_at),
                   end_reason=o.end_reason)


class RecordRequest(BaseModel):
    segment_seconds: float | None = Field(None, ge=10, le=86400,
                                          description="start a new file every so many seconds")
    audio: Audio = "aac"
    transport: Literal["udp", "tcp-passive", "tcp-active"] | None = None


class RecordFileOut(BaseModel):
    path: str
    started_at: str | None = None
    duration: float = Field(description="seconds of video")
    video_frames: int
    audio_frames: int
    complete: bool = Field(description="closed cleanly (index written)")


class RecordOut(BaseModel):
    record_id: str
    device_id: str
    channel_id: str
    running: bool
    files: list[RecordFileOut]
    dropped_frames: int
    started_at: str | None = None
    ended_at: str | None = None
    end_reason: str | None = None

    @classmethod
    def of(cls, o: RecordOutput) -> RecordOut:
        s = o.sink.status()
        files = [RecordFileOut(path=f["path"], started_at=iso(f["started_at"]),
                               duration=f["duration"], video_frames=f["video_frames"],
                               audio_frames=f["audio_frames"], complete=f["complete"])
                 for f in s["files"]]
        return cls(record_id=o.output_id, device_id=o.device_id, channel_id=o.channel_id,
                   running=o.running, files=files, dropped_frames=s["dropped_frames"],
                   started_at=iso(o.started_at), ended_at=iso(o.ended_at), end_reason=o.end_reason)


class PushStopQuery(BaseModel):
    push_id: str | None = Field(None, description="stop only this push", max_length=64)


class OutputsQuery(BaseModel):
    running: bool | None = Field(None, description="only running (true) or finished (false) ones")


def _filter(items, query: OutputsQuery):
    if query.running is None:
        return items
    return [o for o in items if o.running == query.running]


# -- helpers ------------------------------------------------------------------------------------

def _outputs(request: web.Request) -> OutputManager:
    outputs = getattr(request.app[PLATFORM], "outputs", None)
    if outputs is None:
        raise HttpError(503, "media outputs not configured")
    return outputs


async def _call(coro, output_status: int = 400):
    """Map output and stream errors to HTTP errors (``output_status`` for a failed output)."""
    try:
        return await coro
    except SnapshotError as exc:
        raise HttpError(504 if "within" in str(exc) else 502, str(exc)) from None
    except OutputError as exc:
        message = str(exc)
        status = (409 if "already" in message else 503 if "stopping" in message
                  else output_status)
        raise HttpError(status, message) from None
    except StreamError as exc:
        raise HttpError(exc.status, exc.message,
                        {"sip_status": exc.sip_status} if exc.sip_status else None) from None


def _playlist(output: HlsOutput, token: str | None) -> bytes:
    text = output.sink.playlist.read_text()
    if token:
        suffix = "?token=" + urllib.parse.quote(token, safe="")
        lines = []
        for line in text.splitlines():
            if line and not line.startswith("#"):
                line += suffix
            elif line.startswith("#EXT-X-MAP:URI="):
                line = line.replace('init.mp4"', f'init.mp4{suffix}"')
            lines.append(line)
        text = "\n".join(lines) + "\n"
    return text.encode()


def register_routes(api: ApiRouter) -> None:
    live_params = {"device_id": DEVICE_ID, "channel_id": CHANNEL_ID}
    stream_errors = {404: "device or channel not found", 502: "the device refused the session",
                     503: "media service not running", 504: "the device did not answer"}

    # -- HLS ------------------------------------------------------------------------------------
    @api.get("/live/{device_id}/{channel_id}/index.m3u8", prefixed=False, path_params=live_params,
             query=TransportQuery, tags=["media"], content_type=PLAYLIST_TYPE,
             errors={**stream_errors, 504: "the device did not answer, or no segment in time"})
    async def live_hls(request: web.Request, device_id: str, channel_id: str,
                       query: TransportQuery) -> web.StreamResponse:
        """Live HLS playlist of a channel, started on demand.

        The first request waits until the first segment is written ([hls] segment_seconds, at
        the next keyframe). The HLS output stops after [hls] idle_timeout seconds without
        requests.
        """
        outputs = _outputs(request)
        output = await _call(outputs.hls(device_id, channel_id, transport=query.transport), 504)
        body = _playlist(output, request.query.get("token"))
        return web.Response(body=body, content_type=PLAYLIST_TYPE,
                            headers={"Cache-Control": "no-cache"})

    @api.get("/live/{device_id}/{channel_id}/{segment}", prefixed=False,
             path_params={**live_params, "segment": SEGMENT}, tags=["media"],
             content_type="video/mp2t", errors={404: "no HLS output running, or no such segment"})
    async def live_hls_segment(request: web.Request, device_id: str, channel_id: str,
                               segment: str) -> web.StreamResponse:
        """A segment of a channel's running HLS output (MPEG-TS; fMP4 for .m4s and init.mp4)."""
        output = _outputs(request).hls_output(device_id, channel_id)
        if output is None:
            raise HttpError(404, f"no HLS output of {device_id}/{channel_id} is running")
        path = output.sink.segment_path(segment)
        if path is None:
            raise HttpError(404, f"segment {segment} not found")
        try:
            body = path.read_bytes()      # small; a deleted segment must not end half-sent
        except OSError:
            raise HttpError(404, f"segment {segment} not found") from None
        return web.Response(body=body, content_type=CONTENT_TYPES[path.suffix],
                            headers={"Cache-Control": "max-age=60"})

    # -- snapshot -----------------------------------------------------------------------------
    @api.get("/devices/{device_id}/channels/{channel_id}/snapshot", path_params=live_params,
             query=SnapshotQuery, tags=["media"], content_type="image/jpeg",
             errors={**stream_errors, 502: "the device refused, or the picture does not decode",
                     504: "the device did not answer, or no keyframe in time"})
    async def channel_snapshot(request: web.Request, device_id: str, channel_id: str,
                               query: SnapshotQuery) -> web.Response:
        """A JPEG of the channel's live picture (its latest keyframe).

        Starts the live stream if it is not running (then waits up to `timeout` seconds for a
        keyframe); the stream lingers afterwards like any other.
        """
        jpeg = await _call(_outputs(request).snapshot(
            device_id, channel_id, width=query.width, height=query.height, quality=query.quality,
            timeout=query.timeout, transport=query.transport))
        return web.Response(body=jpeg, content_type="image/jpeg",
                            headers={"Cache-Control": "no-store"})

    # -- RTMP push ----------------------------------------------------------------------------
    @api.post("/devices/{device_id}/channels/{channel_id}/push", path_params=live_params,
              body=PushRequest, response=PushOut, status=201, tags=["media"],
              errors={**stream_errors, 409: "already pushing this channel to that URL"})
    async def start_push(request: web.Request, device_id: str, channel_id: str,
                         body: PushRequest) -> PushOut:
        """Push the channel's live stream to an RTMP server.

        The push reconnects with backoff while the server is unreachable, until it is stopped
        or the stream ends. A malformed URL answers 400.
        """
        output = await _call(_outputs(request).start_push(
            device_id, channel_id, body.url, audio=body.audio, transport=body.transport))
        return PushOut.of(output)

    @api.get("/devices/{device_id}/channels/{channel_id}/push", path_params=live_params,
             query=OutputsQuery, response=list[PushOut], tags=["media"])
    async def list_channel_pushes(request: web.Request, device_id: str, channel_id: str,
                                  query: OutputsQuery) -> list[PushOut]:
        """RTMP pushes of a channel (running, and recently finished)."""
        items = _outputs(request).pushes(device_id, channel_id)
        return [PushOut.of(o) for o in _filter(items, query)]

    @api.delete("/devices/{device_id}/channels/{channel_id}/push", path_params=live_params,
                query=PushStopQuery, response=list[PushOut], tags=["media"],
                errors={404: "no such push running"})
    async def stop_push(request: web.Request, device_id: str, channel_id: str,
                        query: PushStopQuery) -> list[PushOut]:
        """Stop the channel's RTMP pushes (all, or the one `push_id` names)."""
        outputs = _outputs(request)
        running = [o for o in outputs.pushes(device_id, channel_id, finished=False)
                   if query.push_id is None or o.output_id == query.push_id]
        if not running:
            raise HttpError(404, "no such push running")
        return [PushOut.of(await outputs.stop_push(o.output_id)) for o in running]

    @api.get("/pushes", query=OutputsQuery, response=list[PushOut], tags=["media"])
    async def list_pushes(request: web.Request, query: OutputsQuery) -> list[PushOut]:
        """Every RTMP push (running, and recently finished)."""
        return [PushOut.of(o) for o in _filter(_outputs(request).pushes(), query)]

    # -- recording ----------------------------------------------------------------------------
    @api.post("/devices/{device_id}/channels/{channel_id}/record", path_params=live_params,
              body=RecordRequest, response=RecordOut, status=201, tags=["media"],
              errors={**stream_errors, 409: "the channel is already being recorded"})
    async def start_record(request: web.Request, device_id: str, channel_id: str,
                           body: RecordRequest) -> RecordOut:
        """Record the channel's live stream as MP4 files on the server.

        Files go to data_dir/records/<device>_<channel>/; while recording they are fragmented
        MP4 (playable even after a crash), then rewritten with the index first.
        """
        output = await _call(_outputs(request).start_record(
            device_id, channel_id, segment_seconds=body.segment_seconds, audio=body.audio,
            transport=body.transport))
        return RecordOut.of(output)

    @api.get("/devices/{device_id}/channels/{channel_id}/record", path_params=live_params,
             query=OutputsQuery, response=list[RecordOut], tags=["media"])
    async def list_channel_records(request: web.Request, device_id: str, channel_id: str,
                                   query: OutputsQuery) -> list[RecordOut]:
        """Recordings of a channel (running, and recently finished)."""
        items = _outputs(request).records(device_id, channel_id)
        return [RecordOut.of(o) for o in _filter(items, query)]

    @api.delete("/devices/{device_id}/channels/{channel_id}/record", path_params=live_params,
                response=RecordOut, tags=["media"], errors={404: "the channel is not being recorded"})
    async def stop_record(request: web.Request, device_id: str, channel_id: str) -> RecordOut:
        """Stop the channel's recording; answers once its files are complete."""
        outputs = _outputs(request)
        running = outputs.records(device_id, channel_id, finished=False)
        if not running:
            raise HttpError(404, "the channel is not being recorded")
        return RecordOut.of(await outputs.stop_record(running[0].output_id))

    @api.get("/records", query=OutputsQuery, response=list[RecordOut], tags=["media"])
    async def list_records(request: web.Request, query: OutputsQuery) -> list[RecordOut]:
        """Every recording (running, and recently finished)."""
        return [RecordOut.of(o) for o in _filter(_outputs(request).records(), query)]

