"""The simulator's media side: answers INVITE and streams GB-style PS over RTP (PROTOCOL §8–10).

A :class:`DeviceMedia` is attached to a :class:`~sip28181.device.simulator.DeviceSimulator` and
serves INVITE (Play, Playback, Download) over UDP, TCP active and TCP passive, ACK, BYE both ways,
CANCEL while its answer is pending, INFO with MANSRTSP (pause, resume, seek, scale) and sends
MediaStatus 121 when a playback or download reaches its end.

What it streams is a :class:`Clip`: a PS file (demuxed and muxed again by our PS muxer), any file
PyAV can demux (its H.264/H.265 and G.711/AAC), or a generated test pattern (PyAV libx264 + an
A-law tone). It is paced in real time by PTS (a download ``a=downloadspeed`` times faster, a
``Scale`` faster or slower) and looped with continuing timestamps for live.

``MediaOptions`` makes it behave like field devices do: answer with its own SSRC or without
``y=``, without SDP, with a bad SDP, late, not at all, or go silent (RTP stops, no BYE).
"""

from __future__ import annotations

import array
import asyncio
import enum
import fractions
import logging
import math
import os
import random
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from media import Frame, PsDemuxer, PsMuxer, RtpPacketizer, rfc4571_frame

from ..errors import RemoteProtocolError, Sip28181Error, TransactionError
from ..mansrtsp import Method, MansrtspRequest, MansrtspResponse, parse_request
from ..sdp import MediaDescription, Rtpmap, SdpError, SessionDescription, parse as parse_sdp, ssrc_value
from ..sip.dialog import Dialog, new_tag
from ..sip.message import Request, Response
from ..transport import Flow
from ..tasks import TaskSet
from .simulator import HANDLED

if TYPE_CHECKING:
    from .simulator import DeviceSimulator

__all__ = ["DeviceMedia", "MediaOptions", "SsrcMode", "Clip", "load_clip", "DeviceStream"]

log = logging.getLogger("sip28181.device.media")

CLOCK = 90000


class SsrcMode(str, enum.Enum):
    """How the simulated device treats the offered SSRC (PROTOCOL §8.3, §14.20)."""

    ECHO = "echo"            # y= echoed, RTP carries it (the standard)
    OWN = "own"              # y= with an SSRC of its own, RTP carries that
    OMIT = "omit"            # no y= in the answer, RTP carries the offered SSRC
    OMIT_OWN = "omit-own"    # no y=, RTP carries an SSRC of its own


@dataclass(slots=True)
class MediaOptions:
    """Behaviour of the simulated media side (all defaults: a well-behaved device)."""

    source: str | None = None           # PS file or any PyAV-readable file; None: test pattern
    ssrc_mode: SsrcMode | str = SsrcMode.ECHO
    answer_delay: float = 0.0           # seconds before the 200 OK (CANCEL can come meanwhile)
    reject_status: int | None = None    # answer INVITE with this final status instead
    answer_sdp: bool = True             # False: 200 OK without a body
    answer_body: bytes | None = None    # this body instead of the SDP answer (bad answers)
    history_seconds: float | None = None   # length of a recording; None: one pass of the clip
    pattern_seconds: float = 2.0        # length of the generated pattern
    pattern_size: tuple[int, int] = (320, 240)
    pattern_fps: int = 25
    mtu_payload: int = 1400
    tcp_connect_timeout: float = 10.0

    def __post_init__(self) -> None:
        self.ssrc_mode = SsrcMode(getattr(self.ssrc_mode, "value", self.ssrc_mode))


# ------------------------------------------------------------------------------------------------
# Clips
# ------------------------------------------------------------------------------------------------
@dataclass(slots=True)
class Clip:
    """Access units in decoding order, timestamps from 0 (90 kHz), and the clip's length."""

    frames: list[Frame]
    duration: int
    video_codec: str | None
    audio_codec: str | None

    def keyframe_at_or_before(self, ticks: int) -> int:
        """Index of the last video keyframe whose DTS is at most ``ticks`` (0 if none)."""
        best = 0
        for i, f in enumerate(self.frames):
            dts = f.dts if f.dts is not None else f.pts or 0
            if dts > ticks:
                break
            if f.keyframe and f.codec == self.video_codec:
                best = i
        return best


_clips: dict[tuple, Clip] = {}


def load_clip(source: str | os.PathLike | None = None, *, seconds: float = 2.0,
              size: tuple[int, int] = (320, 240), fps: int = 25) -> Clip:
    """The clip for ``source`` (cached): PS by extension or content, else PyAV, else a pattern.

    Blocking (file reading, encoding): call it in a thread from the event loop.
    """
    key = (str(source) if source is not None else None, seconds, size, fps)
    clip = _clips.get(key)
    if clip is None:
        if source is None:
            clip = _pattern_clip(seconds, size, fps)
        else:
            path = Path(source)
            head = path.read_bytes()[:4]
            if path.suffix.lower() in (".ps", ".mpg", ".mpeg") or head == b"\x00\x00\x01\xba":
                clip = _ps_clip(path)
            else:
                clip = _av_clip(path)
        if not clip.frames:
            raise Sip28181Error(f"no frames in {source}")
        _clips[key] = clip
    return clip


def _finish_clip(frames: list[Frame], video: str | None, audio: str | None) -> Clip:
    """Timestamps from 0 and a duration that loops without a jump."""
    stamps = [f.dts if f.dts is not None else f.pts for f in frames]
    known = [t for t in stamps if t is not None]
    base = min(known) if known else 0
    out = []
    last = 0
    for f, t in zip(frames, stamps):
        dts = (t - base) if t is not None else last
        pts = (f.pts - base) if f.pts is not None else dts
        last = dts
        out.append(Frame(f.codec, pts, dts, f.keyframe, bytes(f.data), f.stream_id))
    vts = [f.dts for f in out if f.codec == video]
    step = (vts[-1] - vts[0]) // (len(vts) - 1) if len(vts) > 1 else 3600
    duration = max((f.dts or 0) for f in out) + max(step, 1)
    return Clip(out, duration, video, audio)


def _ps_clip(path: Path) -> Clip:
    demuxer = PsDemuxer()
    frames = demuxer.feed(path.read_bytes()) + demuxer.flush()
    video = next((f.codec for f in frames if f.codec in ("h264", "h265", "mpeg4", "svac")), None)
    audio = next((f.codec for f in frames if f.codec != video), None)
    if video is not None:
        first_key = next((i for i, f in enumerate(frames) if f.keyframe and f.codec == video), 0)
        frames = frames[first_key:]     # start on a keyframe: a receiver shows the first picture
    return _finish_clip(frames, video, audio)


def _av_clip(path: Path) -> Clip:
    import av

    frames: list[Frame] = []
    with av.open(str(path)) as container:
        vstream = next((s for s in container.streams.video if s.codec_context.name in ("h264", "hevc")), None)
        astream = next((s for s in container.streams.audio
                        if s.codec_context.name in ("pcm_alaw", "pcm_mulaw", "aac")), None)
        if vstream is None:
            raise Sip28181Error(f"{path}: no H.264/H.265 video stream")
        video = "h264" if vstream.codec_context.name == "h264" else "h265"
        audio = {"pcm_alaw": "g711a", "pcm_mulaw": "g711u", "aac": "aac"}.get(
            astream.codec_context.name) if astream is not None else None
        extradata = bytes(vstream.codec_context.extradata or b"")
        bsf = None
        if extradata[:1] == b"\x01":          # avcC/hvcC (MP4, MKV): convert to Annex B
            bsf = av.BitStreamFilterContext(f"{'h264' if video == 'h264' else 'hevc'}_mp4toannexb", vstream)
        streams = [vstream] + ([astream] if astream is not None else [])
        for packet in container.demux(*streams):
            if packet.size == 0 or packet.pts is None:
                continue
            tb = packet.time_base
            to90k = lambda t: int(t * tb * CLOCK) if t is not None else None   # noqa: E731
            if packet.stream is vstream:
                for p in (bsf.filter(packet) if bsf is not None else [packet]):
                    frames.append(Frame(video, to90k(p.pts), to90k(p.dts), bool(p.is_keyframe), bytes(p)))
            else:
                data = bytes(packet)
                if audio == "aac":
                    data = _adts(astream.codec_context, len(data)) + data
                frames.append(Frame(audio, to90k(packet.pts), to90k(packet.pts), False, data))
    frames.sort(key=lambda f: (f.dts if f.dts is not None else 0))
    first_key = next((i for i, f in enumerate(frames) if f.keyframe and f.codec == video), 0)
    return _finish_clip(frames[first_key:], video, audio)


_AAC_RATES = (96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000, 7350)


def _adts(ctx, payload_size: int) -> bytes:
    """A 7-byte ADTS header for one raw AAC frame (what PS carries as audio)."""
    rate = _AAC_RATES.index(ctx.sample_rate) if ctx.sample_rate in _AAC_RATES else 4
    channels = ctx.channels if hasattr(ctx, "channels") else ctx.layout.nb_channels
    profile = 1                                 # AAC LC
    length = payload_size + 7
    return bytes([0xFF, 0xF1, (profile << 6) | (rate << 2) | ((channels >> 2) & 1),
                  ((channels & 3) << 6) | ((length >> 11) & 3), (length >> 3) & 0xFF,
                  ((length & 7) << 5) | 0x1F, 0xFC])


#: Colour bars as (Y, U, V), BT.601 limited range: white, yellow, cyan, green, magenta, red, blue, black.
_BARS = ((235, 128, 128), (210, 16, 146), (170, 166, 16), (145, 54, 34), (106, 202, 222), (81, 90, 240),
         (41, 240, 110), (16, 128, 128))


def _plane(frame, index: int, rows: list[bytes]) -> None:
    plane = frame.planes[index]
    pad = plane.line_size - len(rows[0])
    plane.update(b"".join(r + b"\0" * pad for r in rows) if pad else b"".join(rows))


def _pattern_clip(seconds: float, size: tuple[int, int], fps: int) -> Clip:
    """Moving colour bars with a box (libx264, no B-frames, a keyframe per second) and a 1 kHz
    A-law tone. Planes are written directly: no numpy needed at run time."""
    import av

    width, height = size[0] & ~1, size[1] & ~1
    count = max(1, int(seconds * fps))
    enc = av.CodecContext.create("libx264", "w")
    enc.width, enc.height, enc.pix_fmt = width, height, "yuv420p"
    enc.time_base = fractions.Fraction(1, fps)
    enc.framerate = fractions.Fraction(fps, 1)
    enc.gop_size = fps
    enc.max_b_frames = 0
    enc.options = {"preset": "ultrafast", "tune": "zerolatency",
                   "x264-params": f"keyint={fps}:min-keyint={fps}:scenecut=0:bframes=0:repeat-headers=1"}
    packets = []
    box = max(8, height // 6) & ~1
    for i in range(count):
        shift = i * 4
        bars = [_BARS[((x + shift) % width) * 8 // width] for x in range(width)]
        x0 = ((i * 6) % max(2, width - box)) & ~1
        y0 = (height // 2 - box // 2) & ~1
        planes = []
        for c, (w, h, scale) in enumerate(((width, height, 1), (width // 2, height // 2, 2), (width // 2, height // 2, 2))):
            row = bytes(bars[x * scale][c] for x in range(w))
            boxed = row[:x0 // scale] + bytes([(255, 64, 200)[c]]) * (box // scale) + row[(x0 + box) // scale:]
            rows = [boxed if y0 // scale <= y < (y0 + box) // scale else row for y in range(h)]
            planes.append(rows)
        frame = av.VideoFrame(width, height, "yuv420p")
        for c, rows in enumerate(planes):
            _plane(frame, c, rows)
        frame.pts = i
        packets.extend(enc.encode(frame))
    packets.extend(enc.encode(None))
    step = CLOCK // fps
    frames = [Frame("h264", p.pts * step, p.pts * step, bool(p.is_keyframe), bytes(p)) for p in packets]
    # G.711 A-law, 40 ms per frame
    aenc = av.CodecContext.create("pcm_alaw", "w")
    aenc.sample_rate, aenc.format, aenc.layout = 8000, "s16", "mono"
    per = 320
    for k in range(int(seconds * 8000) // per):
        samples = array.array("h", (int(6000 * math.sin(2 * math.pi * 1000 * (k * per + n) / 8000))
                                    for n in range(per)))
        if sys.byteorder != "little":
            samples.byteswap()
        af = av.AudioFrame(format="s16", layout="mono", samples=per)
        af.planes[0].update(samples.tobytes())
        af.sample_rate = 8000
        af.pts = k * per
        data = b"".join(bytes(p) for p in aenc.encode(af))
        ts = k * per * CLOCK // 8000
        frames.append(Frame("g711a", ts, ts, False, data))
    frames.sort(key=lambda f: (f.dts, f.codec != "h264"))
    return Clip(frames, count * step, "h264", "g711a")


# ------------------------------------------------------------------------------------------------
# Sessions
# ------------------------------------------------------------------------------------------------
class DeviceStream:
    """One media session of the simulated device (observable by tests)."""

    def __init__(self, call_id: str, invite: Request, flow: Flow, offer: SessionDescription,
                 media: MediaDescription) -> None:
        self.call_id = call_id
        self.invite = invite
        self.flow = flow
        self.offer = offer
        self.kind = offer.session_name            # Play / Playback / Download
        self.channel_id = invite.to.uri.user if invite.to.uri is not None else ""
        if media.tcp:
            self.transport = "tcp-active" if media.setup == "active" else "tcp-passive"
        else:
            self.transport = "udp"                # the platform's point of view, like MediaTransport
        self.dest_host = offer.connection_for(media) or flow.host
        self.dest_port = media.port
        self.offered_ssrc = offer.ssrc
        self.ssrc = 0                             # what RTP carries
        self.download_speed = media.download_speed or 1
        self.dialog: Dialog | None = None
        self.clip: Clip | None = None
        self.local_port = 0
        self.acked = False
        self.paused = False
        self.scale = 1.0
        self.seek_to: float | None = None
        self.silent = False
        self.controls: list[MansrtspRequest] = []
        self.frames_sent = 0
        self.packets_sent = 0
        self.media_status_sent = False
        self.ended = asyncio.get_running_loop().create_future()   # reason the device stopped
        self.bye_received = False
        self._wake = asyncio.Event()
        self._answer_task: asyncio.Task | None = None
        self._stream_task: asyncio.Task | None = None
        self._udp: asyncio.DatagramTransport | None = None
        self._server: asyncio.AbstractServer | None = None
        self._accepted: asyncio.Future | None = None
        self._writer: asyncio.StreamWriter | None = None

    @property
    def history(self) -> bool:
        return self.kind in ("Playback", "Download")

    def __repr__(self) -> str:
        return f"<DeviceStream {self.kind} {self.transport} ssrc={self.ssrc} Call-ID={self.call_id}>"


class DeviceMedia:
    """Media sessions of one simulated device (``simulator.media``)."""

    def __init__(self, simulator: "DeviceSimulator", options: MediaOptions | None = None) -> None:
        self.sim = simulator
        self.options = options or MediaOptions()
        self.streams: dict[str, DeviceStream] = {}
        self.invites_received = 0
        self.cancels_received = 0
        self._tasks = TaskSet(log, prefix=f"{simulator.device_id} ", extra={"device_id": simulator.device_id})
        handlers = simulator.request_handlers
        handlers["INVITE"] = self._on_invite
        handlers["CANCEL"] = self._on_cancel
        handlers["BYE"] = self._on_bye
        handlers["INFO"] = self._on_info
        simulator.endpoint.on_ack = self._on_ack

    @property
    def _extra(self) -> dict[str, str]:
        return {"device_id": self.sim.device_id}

    def _spawn(self, coro, name: str) -> asyncio.Task:
        return self._tasks.spawn(coro, name)

    # -- public controls (tests, CLI) ---------------------------------------------------------
    def stream(self, call_id: str | None = None) -> DeviceStream | None:
        """The stream of ``call_id``, or the latest one."""
        if call_id is not None:
            return self.streams.get(call_id)
        return next(reversed(self.streams.values()), None) if self.streams else None

    def silence(self, call_id: str | None = None) -> None:
        """Stop sending RTP without BYE (a device whose media dies)."""
        for s in ([self.streams[call_id]] if call_id else list(self.streams.values())):
            s.silent = True

    async def bye(self, call_id: str | None = None) -> None:
        """End a session (the latest when no Call-ID) from the device: BYE in the dialog."""
        s = self.stream(call_id)
        if s is None or s.dialog is None:
            raise Sip28181Error("no such media session")
        self._end(s, "bye sent")
        request = s.dialog.create_request("BYE")
        try:
            await self.sim.endpoint.request(request, s.flow, timeout=self.sim.request_timeout)
        except TransactionError as exc:
            log.info("BYE not answered: %s", exc, extra=self._extra)

    async def close(self) -> None:
        for s in list(self.streams.values()):
            self._end(s, "stopped")
        await self._tasks.close()

    # -- signalling ---------------------------------------------------------------------------
    def _reply(self, request: Request, status: int, reason: str | None = None, *,
               tag: str | None = None, body: bytes = b"", content_type: str | None = None) -> Response:
        response = Response.for_request(request, status, reason, to_tag=tag or new_tag())
        if body:
            response.headers.add("Content-Type", content_type or "APPLICATION/SDP")
            response.body = body
        return response

    def _on_invite(self, request: Request, flow: Flow):
        self.invites_received += 1
        if request.to.tag is not None:
            return self._reply(request, 488, "re-INVITE not supported")
        opts = self.options
        if opts.reject_status is not None:
            return self._reply(request, opts.reject_status)
        try:
            offer = parse_sdp(request.body)
        except SdpError as exc:
            return self._reply(request, exc.status_hint, exc.reason)
        media = offer.video
        if media is None or media.proto.upper() not in ("RTP/AVP", "TCP/RTP/AVP"):
            return self._reply(request, 488, "no RTP/AVP media offered")
        if "96" not in media.formats:
            return self._reply(request, 488, "PS (payload type 96) not offered")
        if offer.session_name not in ("Play", "Playback", "Download"):
            return self._reply(request, 488, f"unsupported session {offer.session_name!r}")
        if media.tcp and media.setup not in ("active", "passive"):
            return self._reply(request, 488, "TCP media without a=setup active/passive")
        stream = DeviceStream(request.call_id, request, flow, offer, media)
        if offer.session_name != "Play" and offer.stop <= offer.start:
            return self._reply(request, 488, "history without a t= range")
        self.streams[stream.call_id] = stream
        stream._answer_task = self._spawn(self._answer(stream), f"answer {stream.call_id}")
        return HANDLED

    async def _answer(self, s: DeviceStream) -> None:
        opts = self.options
        endpoint = self.sim.endpoint
        try:
            if opts.answer_delay:
                await asyncio.sleep(opts.answer_delay)
            s.clip = await asyncio.to_thread(load_clip, opts.source, seconds=opts.pattern_seconds,
                                             size=opts.pattern_size, fps=opts.pattern_fps)
            await self._open_media(s)
        except asyncio.CancelledError:
            raise
        except Exception as exc:       # a media problem is the device's 500, not a crash
            log.warning("cannot answer INVITE: %s", exc, extra=self._extra)
            self.streams.pop(s.call_id, None)
            self._close_media(s)
            endpoint.respond(self._reply(s.invite, 500, "media source unavailable"))
            return
        offered = ssrc_value(s.offered_ssrc)
        mode = opts.ssrc_mode
        own = random.randrange(1, 10_000) + (1_000_000_000 if s.history else 0) + 100_000_000
        s.ssrc = own if mode in (SsrcMode.OWN, SsrcMode.OMIT_OWN) or offered is None else offered
        answer = self._answer_sdp(s, mode)
        body = b"" if not opts.answer_sdp else (opts.answer_body if opts.answer_body is not None else answer.encode())
        tag = new_tag()
        response = self._reply(s.invite, 200, tag=tag, body=body)
        response.headers.add("Contact", self.sim._contact())
        s.dialog = Dialog.from_uas(s.invite, response)
        endpoint.respond(response)
        log.info("answered %s over %s, SSRC %d", s.kind, s.transport, s.ssrc,
                 extra={"device_id": self.sim.device_id, "call_id": s.call_id})

    def _answer_sdp(self, s: DeviceStream, mode: SsrcMode) -> SessionDescription:
        host = self.sim.endpoint.advertised_host
        tcp = s.transport != "udp"
        setup = None
        if s.transport == "tcp-passive":
            setup = "active"        # the platform listens, we connect (§8.6)
        elif s.transport == "tcp-active":
            setup = "passive"
        md = MediaDescription(media="video", port=s.local_port or 9, proto="TCP/RTP/AVP" if tcp else "RTP/AVP",
                              formats=["96"], direction="sendonly", rtpmaps=[Rtpmap(96, "PS", 90000)],
                              setup=setup, connection_mode="new" if tcp else None)
        if s.kind == "Download":
            md.filesize = sum(len(f.data) for f in s.clip.frames) if s.clip is not None else 0
        ssrc = f"{s.ssrc:010d}" if mode in (SsrcMode.ECHO, SsrcMode.OWN) else None
        return SessionDescription(session_name=s.kind, origin_user=s.channel_id or self.sim.device_id,
                                  origin_address=host, connection=host, start=s.offer.start,
                                  stop=s.offer.stop, media=[md], ssrc=ssrc, media_format="")

    async def _open_media(self, s: DeviceStream) -> None:
        loop = asyncio.get_running_loop()
        host = self.sim.local_host
        if s.transport == "udp":
            transport, _ = await loop.create_datagram_endpoint(asyncio.DatagramProtocol, local_addr=(host, 0))
            s._udp = transport
            s.local_port = transport.get_extra_info("sockname")[1]
        elif s.transport == "tcp-active":        # the platform connects to us
            s._accepted = loop.create_future()

            def accepted(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
                if s._accepted is not None and not s._accepted.done():
                    s._accepted.set_result(writer)
                else:
                    writer.close()
            s._server = await asyncio.start_server(accepted, host, 0)
            s.local_port = s._server.sockets[0].getsockname()[1]

    def _close_media(self, s: DeviceStream) -> None:
        if s._udp is not None:
            s._udp.close()
            s._udp = None
        if s._server is not None:
            s._server.close()
            s._server = None
        if s._accepted is not None and s._accepted.done() and not s._accepted.cancelled():
            s._accepted.result().close()
        elif s._accepted is not None:
            s._accepted.cancel()
        if s._writer is not None:
            s._writer.close()
            s._writer = None

    def _on_ack(self, request: Request, flow: Flow) -> None:
        s = self.streams.get(request.call_id)
        if s is None or s.acked or s.dialog is None:
            return
        s.acked = True
        s._stream_task = self._spawn(self._stream(s), f"stream {s.call_id}")

    def _on_cancel(self, request: Request, flow: Flow):
        self.cancels_received += 1
        key = self.sim.endpoint.layer.cancel_target(request)
        invite = self.sim.endpoint.layer.request_for(key) if key is not None else None
        if invite is None:
            return self._reply(request, 481)
        s = self.streams.get(invite.call_id)
        self.sim.endpoint.respond(self._reply(request, 200))
        if s is not None and s.dialog is None:      # not answered yet
            if s._answer_task is not None:
                s._answer_task.cancel()
            self.streams.pop(s.call_id, None)
            self._close_media(s)
            if not s.ended.done():
                s.ended.set_result("cancelled")
            self.sim.endpoint.respond(self._reply(invite, 487))
        return HANDLED

    def _on_bye(self, request: Request, flow: Flow):
        s = self.streams.get(request.call_id)
        if s is None or s.dialog is None or not s.dialog.matches(request):
            return self._reply(request, 481)
        s.bye_received = True
        self._end(s, "bye received")
        return self._reply(request, 200, tag=s.dialog.local_tag)

    def _on_info(self, request: Request, flow: Flow):
        s = self.streams.get(request.call_id)
        if s is None or s.dialog is None or not s.dialog.matches(request):
            return self._reply(request, 481)
        tag = s.dialog.local_tag
        try:
            control = parse_request(request.body)
        except RemoteProtocolError as exc:
            return self._reply(request, exc.status_hint, exc.reason, tag=tag)
        s.controls.append(control)
        if control.method is Method.PAUSE:
            s.paused = True
        elif control.method is Method.TEARDOWN:
            self._end(s, "teardown")
        else:
            if control.scale is not None:
                s.scale = control.scale
            if control.range_start is not None:
                s.seek_to = control.range_start
            s.paused = False
        s._wake.set()
        log.info("INFO %s applied", control.method.value, extra={"device_id": self.sim.device_id,
                                                                  "call_id": s.call_id})
        return self._reply(request, 200, tag=tag, body=MansrtspResponse(200, "OK", control.cseq).encode(),
                           content_type="Application/MANSRTSP")

    def _end(self, s: DeviceStream, reason: str) -> None:
        self.streams.pop(s.call_id, None)
        if s._answer_task is not None and not s._answer_task.done():
            s._answer_task.cancel()
        if s._stream_task is not None and not s._stream_task.done() \
                and s._stream_task is not asyncio.current_task():
            s._stream_task.cancel()
        self._close_media(s)
        if not s.ended.done():
            s.ended.set_result(reason)

    # -- media --------------------------------------------------------------------------------
    async def _connect(self, s: DeviceStream) -> None:
        timeout = self.options.tcp_connect_timeout
        if s.transport == "tcp-passive":        # the platform listens (§8.6)
            async with asyncio.timeout(timeout):
                _reader, s._writer = await asyncio.open_connection(s.dest_host, s.dest_port)
        elif s.transport == "tcp-active":
            assert s._accepted is not None
            async with asyncio.timeout(timeout):
                s._writer = await asyncio.shield(s._accepted)
            if s._server is not None:
                s._server.close()
                s._server = None

    def _send(self, s: DeviceStream, packets: list[bytes]) -> None:
        if s.transport == "udp":
            if s._udp is not None:
                for p in packets:
                    s._udp.sendto(p, (s.dest_host, s.dest_port))
        elif s._writer is not None:
            s._writer.write(b"".join(rfc4571_frame(p) for p in packets))
        s.packets_sent += len(packets)

    async def _stream(self, s: DeviceStream) -> None:
        extra = {"device_id": self.sim.device_id, "call_id": s.call_id}
        try:
            await self._connect(s)
        except (OSError, TimeoutError) as exc:
            log.warning("media connection failed: %s", exc, extra=extra)
            return
        clip = s.clip
        assert clip is not None
        frames, n = clip.frames, len(clip.frames)
        muxer = PsMuxer(clip.video_codec, clip.audio_codec)
        packetizer = RtpPacketizer(s.ssrc, 96, self.options.mtu_payload)
        loop = asyncio.get_running_loop()
        total = None
        if s.history:
            seconds = self.options.history_seconds
            total = int(seconds * CLOCK) if seconds is not None else clip.duration
        position = 0          # media time sent so far, from the start of the recording (ticks)
        index, offset = 0, 0  # next frame; ticks added to clip timestamps (loops)
        anchor_wall, anchor_media = loop.time(), 0
        try:
            while True:
                if s.paused:
                    s._wake.clear()
                    await s._wake.wait()
                    anchor_wall, anchor_media = loop.time(), position
                    continue
                if s.seek_to is not None:
                    target = int(s.seek_to * CLOCK)
                    s.seek_to = None
                    if s.history:
                        offset = (target // clip.duration) * clip.duration
                        index = clip.keyframe_at_or_before(target % clip.duration)
                        position = offset + (frames[index].dts or 0)
                        anchor_wall, anchor_media = loop.time(), position
                if index >= n:
                    index, offset = 0, offset + clip.duration
                f = frames[index]
                t = offset + (f.dts or 0)
                if total is not None and t >= total:
                    break
                rate = s.scale * (s.download_speed if s.kind == "Download" else 1)
                rate = abs(rate) or 1.0
                due = anchor_wall + (t - anchor_media) / CLOCK / rate
                delay = due - loop.time()
                if delay > 0:
                    s._wake.clear()
                    try:
                        async with asyncio.timeout(delay):
                            await s._wake.wait()
                        # woken by INFO: re-anchor so a new scale applies from now on
                        anchor_wall, anchor_media = loop.time(), position
                        continue
                    except TimeoutError:
                        pass
                position = t
                pts = offset + (f.pts if f.pts is not None else f.dts or 0)
                if not s.silent:
                    unit = muxer.mux(Frame(f.codec, pts, t, f.keyframe, f.data, f.stream_id))
                    self._send(s, packetizer.packetize(unit, pts))
                    s.frames_sent += 1
                    if s._writer is not None:
                        await s._writer.drain()
                index += 1
        except (ConnectionError, OSError) as exc:
            log.info("media connection lost: %s", exc, extra=extra)
            return
        # end of the recording: tell the platform in the dialog (§5.15), then wait for its BYE
        if s.dialog is not None and s.call_id in self.streams:
            await self._media_status(s)

    async def _media_status(self, s: DeviceStream) -> None:
        xml = (f'<?xml version="1.0" encoding="GB2312"?>\r\n<Notify>\r\n<CmdType>MediaStatus</CmdType>\r\n'
               f"<SN>{self.sim.next_sn()}</SN>\r\n<DeviceID>{s.channel_id or self.sim.device_id}</DeviceID>\r\n"
               f"<NotifyType>121</NotifyType>\r\n</Notify>\r\n")
        assert s.dialog is not None
        request = s.dialog.create_request("MESSAGE", xml.encode("gb2312"), "Application/MANSCDP+xml")
        s.media_status_sent = True
        try:
            await self.sim.endpoint.request(request, s.flow, timeout=self.sim.request_timeout)
        except TransactionError as exc:
            log.info("MediaStatus not answered: %s", exc, extra=self._extra)
