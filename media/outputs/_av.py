"""What the PyAV outputs share: a sink that works in its own thread, a timeline, the muxing writer.

Every libavformat output (HLS, RTMP, MP4, snapshot) blocks: it writes files, sockets or decodes
pictures. The relay calls :meth:`ThreadedSink.on_frames` in the event loop, so that call only puts
the frames in a bounded queue; one thread per sink does the work. When the queue is full the
sink drops what arrives until the next video keyframe (a muxer or decoder can only resume on a
keyframe) and counts the frames dropped.

:class:`AvWriter` turns :class:`~media.Frame` objects into packets of one output container: video
is copied (H.264/H.265 Annex B, no transcode), audio is transcoded to AAC or dropped. G.711 — what
GB/T 28181 devices send — has no place in MPEG-TS for most players, nor in MP4 for browsers, and
RTMP servers pass it on to players that mostly cannot decode it; AAC-LC at the input's sample rate
(8 kHz mono for G.711) plays everywhere and costs little to encode.
"""

from __future__ import annotations

import asyncio
import collections
import fractions
import io
import logging
import threading
from collections.abc import Callable, Iterable
from typing import Any

import av
import av.container

from .._frame import Frame
from ..errors import MediaError

log = logging.getLogger("media.outputs")

__all__ = ["AUDIO_MODES", "AvWriter", "OutputError", "ThreadedSink", "Timeline", "AacTranscoder"]

TB90K = fractions.Fraction(1, 90000)
WRAP = 1 << 33            # PES timestamps are 33 bits
HALF_WRAP = 1 << 32
VIDEO_CODECS = {"h264": "h264", "h265": "hevc"}
#: Video codecs PS can carry (the PS demuxer's names); only :data:`VIDEO_CODECS` can be output.
ANY_VIDEO = frozenset({"h264", "h265", "mpeg4", "svac"})
#: Raw formats libavformat probes to learn a video stream's parameters from one keyframe.
PROBE_FORMATS = {"h264": "h264", "h265": "hevc"}
AUDIO_DECODERS = {"g711a": "pcm_alaw", "g711u": "pcm_mulaw", "aac": "aac", "mp2": "mp2",
                  "g729": "g729", "g7231": "g723_1"}
#: ``"aac"``: transcode audio to AAC; ``"drop"``: video only.
AUDIO_MODES = ("aac", "drop")
#: Timestamps that jump by more than this (90 kHz) are a new timeline (device restart, splice).
MAX_JUMP = 10 * 90000
DEFAULT_FRAME_TICKS = 3600  # 25 fps, when a frame carries no timestamp


class OutputError(MediaError):
    """An output cannot do what it was asked (bad URL or path, unsupported codec, no keyframe)."""


def _unwrap(last: int | None, ts: int) -> int:
    """Extend a 33-bit timestamp to the one nearest ``last`` (which is already extended)."""
    if last is None:
        return ts
    diff = (ts - last) % WRAP
    if diff >= HALF_WRAP:
        diff -= WRAP
    return last + diff


class Timeline:
    """PES timestamps → monotonic packet timestamps starting near zero (90 kHz).

    Handles the 33-bit wrap, frames without timestamps, decoding timestamps that go backwards
    (nudged forward, since every muxer refuses them) and jumps larger than :data:`MAX_JUMP`
    (the output continues one frame after the last one instead of leaving a hole).
    """

    def __init__(self) -> None:
        self.base: int | None = None
        self._offset = 0                     # added after a jump
        self._last_raw: dict[str, int] = {}  # extended raw DTS per kind
        self._last_out: dict[str, int] = {}

    def map(self, kind: str, pts: int | None, dts: int | None, ticks: int = DEFAULT_FRAME_TICKS
            ) -> tuple[int, int]:
        """``(pts, dts)`` for a frame of stream ``kind`` ("video"/"audio")."""
        if dts is None:
            dts = pts
        last_out = self._last_out.get(kind)
        if dts is None:  # no timestamp at all: one frame after the previous one
            out = (last_out + ticks) if last_out is not None else 0
            self._last_out[kind] = out
            return out, out
        raw = _unwrap(self._last_raw.get(kind, self._last_raw.get("video")), dts)
        cts = 0 if pts is None else (pts - dts) % WRAP
        if cts >= HALF_WRAP:
            cts = 0
        if self.base is None:
            self.base = raw
        out = raw - self.base + self._offset
        if last_out is not None and abs(out - last_out) > MAX_JUMP:
            self._offset += last_out + ticks - out
            out = last_out + ticks
        if last_out is not None and out <= last_out:
            out = last_out + 1
        self._last_raw[kind] = raw
        self._last_out[kind] = out
        return out + cts, out


class AacTranscoder:
    """Audio access units (G.711 A/μ-law, AAC, ...) → AAC packets with 90 kHz timestamps.

    Timestamps are counted in samples from the first frame (the AAC encoder works on 1024-sample
    frames, not on the 10–40 ms frames devices send); a frame whose own timestamp is more than
    half a second away from the count re-anchors the count, so audio stays with video across
    losses.
    """

    def __init__(self, codec: str, bit_rate: int = 32000) -> None:
        name = AUDIO_DECODERS.get(codec)
        if name is None:
            raise OutputError(f"audio codec {codec!r} cannot be transcoded")
        self.codec = codec
        self.decoder = av.CodecContext.create(name, "r")
        if name.startswith("pcm_"):
            self.decoder.sample_rate = 8000
            self.decoder.layout = "mono"
        self.bit_rate = bit_rate
        self.encoder: Any = None
        self._resampler: Any = None
        self._anchor = 0        # 90 kHz time of sample 0
        self._samples = 0       # samples given to the encoder
        self.rate = 0

    def probe_rate(self, frame: Frame) -> int:
        """Sample rate of the stream: 8000 for G.711, else what a decoder reads from ``frame``."""
        if self.decoder.name.startswith("pcm_"):
            return 8000
        probe = av.CodecContext.create(self.decoder.name, "r")
        try:
            decoded = probe.decode(av.Packet(bytes(frame.data)))
        except av.error.FFmpegError as exc:
            raise OutputError(f"cannot decode {self.codec} audio: {exc}") from None
        if not decoded:
            raise OutputError(f"cannot decode {self.codec} audio")
        return int(decoded[0].sample_rate)

    def feed(self, frame: Frame, ts90: int) -> list[tuple[av.Packet, int]]:
        """AAC packets ready after ``frame`` (whose time is ``ts90``) as ``(packet, pts90)``."""
        if self.encoder is None:
            raise RuntimeError("start() first")
        try:
            decoded = self.decoder.decode(av.Packet(bytes(frame.data)))
        except av.error.FFmpegError:
            return []
        out: list[tuple[av.Packet, int]] = []
        for pcm in decoded:
            expected = self._anchor + self._samples * 90000 // self.rate
            if self._samples == 0 or abs(ts90 - expected) > 45000:
                self._anchor = ts90 - self._samples * 90000 // self.rate
            pcm.pts = None
            for chunk in self._resampler.resample(pcm):
                chunk.pts = self._samples
                chunk.time_base = self.encoder.time_base
                self._samples += chunk.samples
                out.extend(self._packets(self.encoder.encode(chunk)))
        return out

    def start(self, encoder: Any) -> None:
        """Use ``encoder`` (an opened AAC encoder context, e.g. of the output stream)."""
        self.encoder = encoder
        self.rate = encoder.sample_rate
        self._resampler = av.AudioResampler(format="fltp", layout="mono", rate=self.rate,
                                            frame_size=encoder.frame_size)

    def flush(self) -> list[tuple[av.Packet, int]]:
        if self.encoder is None:
            return []
        try:
            return self._packets(self.encoder.encode(None))
        except av.error.FFmpegError:
            return []

    def _packets(self, packets: Iterable[av.Packet]) -> list[tuple[av.Packet, int]]:
        return [(p, self._anchor + (p.pts or 0) * 90000 // self.rate) for p in packets]


def probe_video(frame: Frame) -> tuple[av.container.InputContainer, Any]:
    """Open a keyframe as a raw stream so libavformat reports its parameters (size, extradata).

    The returned input stream is the template of the output stream: nothing is decoded for
    muxing, the packets are copied.
    """
    fmt = PROBE_FORMATS.get(frame.codec)
    if fmt is None:
        raise OutputError(f"video codec {frame.codec!r} is not supported (H.264 and H.265 are)")
    try:
        probe = av.open(io.BytesIO(bytes(frame.data)), format=fmt)
    except av.error.FFmpegError as exc:
        raise OutputError(f"cannot read the {frame.codec} keyframe: {exc}") from None
    if not probe.streams.video or not probe.streams.video[0].codec_context.width:
        probe.close()
        raise OutputError(f"the {frame.codec} keyframe carries no parameter sets")
    return probe, probe.streams.video[0]


class AvWriter:
    """Muxes frames into one output container; video copied, audio to AAC or dropped.

    The container is opened by ``opener()`` at the first
    video keyframe once it is known whether the stream has audio: the header of every format
    declares its streams, so frames from that keyframe are held until an audio frame arrives or
    ``audio_wait`` (90 kHz) of video went by without one. Frames before the first keyframe are
    dropped. :attr:`counters` counts what was written and dropped.
    """

    def __init__(self, opener: Callable[[], av.container.OutputContainer], *,
                 audio: str = "aac", audio_wait: int = 90000, audio_bit_rate: int = 32000) -> None:
        if audio not in AUDIO_MODES:
            raise OutputError(f"audio must be one of {AUDIO_MODES}, not {audio!r}")
        self._opener = opener
        self.audio_mode = audio
        self.audio_wait = audio_wait
        self.audio_bit_rate = audio_bit_rate
        self.container: av.container.OutputContainer | None = None
        self.video_stream: Any = None
        self.audio_stream: Any = None
        self.video_codec: str | None = None
        self.audio_codec: str | None = None
        self._pending: list[Frame] = []
        self._timeline = Timeline()
        self._transcoder: AacTranscoder | None = None
        self.counters = collections.Counter[str]()
        self._audio_last = -1
        self.first_dts: int | None = None   # of the written video (90 kHz, timeline)
        self.last_dts: int | None = None

    @property
    def opened(self) -> bool:
        return self.container is not None

    def write(self, frames: Iterable[Frame]) -> None:
        """Write ``frames`` (opening the container when it can). Raises what the muxer raises."""
        for frame in frames:
            if self.container is not None:
                self._write_one(frame)
                continue
            if not self._pending:
                if frame.codec in ANY_VIDEO and frame.codec not in VIDEO_CODECS:
                    raise OutputError(f"video codec {frame.codec!r} is not supported "
                                      "(H.264 and H.265 are)")
                if frame.codec in VIDEO_CODECS and frame.keyframe:
                    self._pending.append(frame)
                else:
                    self.counters["dropped_before_keyframe"] += 1
                continue
            self._pending.append(frame)
            if self._ready():
                self._open()

    def _ready(self) -> bool:
        if self.audio_mode == "drop":
            return True
        if any(f.codec not in VIDEO_CODECS for f in self._pending):
            return True
        first, last = self._pending[0], self._pending[-1]
        if first.dts is None or last.dts is None:
            return len(self._pending) > 25
        return (last.dts - first.dts) % WRAP >= self.audio_wait

    def _open(self) -> None:
        """Open the container with the streams the held frames show, then write them."""
        key = self._pending[0]
        probe, template = probe_video(key)
        audio_frame = next((f for f in self._pending if f.codec not in VIDEO_CODECS), None)
        rate = 0
        if audio_frame is not None and self.audio_mode == "aac":
            try:
                self._transcoder = AacTranscoder(audio_frame.codec, self.audio_bit_rate)
                rate = self._transcoder.probe_rate(audio_frame)
                self.audio_codec = audio_frame.codec
            except OutputError as exc:
                log.warning("audio dropped: %s", exc)
                self._transcoder = None
        try:
            self.container = self._opener()
            self.video_stream = self.container.add_stream_from_template(template)
            self.video_stream.time_base = TB90K
            if self._transcoder is not None:
                self.audio_stream = self.container.add_stream("aac", rate=rate)
                ctx = self.audio_stream.codec_context
                ctx.layout = "mono"
                ctx.format = "fltp"
                ctx.bit_rate = self.audio_bit_rate
                ctx.time_base = fractions.Fraction(1, rate)
        finally:
            probe.close()
        self.video_codec = key.codec
        self.container.start_encoding()
        if self._transcoder is not None:
            self._transcoder.start(self.audio_stream.codec_context)
        pending, self._pending = self._pending, []
        for frame in pending:
            self._write_one(frame)

    def _write_one(self, frame: Frame) -> None:
        assert self.container is not None
        if frame.codec in VIDEO_CODECS:
            if frame.codec != self.video_codec:
                self.counters["dropped_codec_change"] += 1
                return
            pts, dts = self._timeline.map("video", frame.pts, frame.dts)
            packet = av.Packet(bytes(frame.data))
            packet.stream = self.video_stream
            packet.time_base = TB90K
            packet.pts, packet.dts = pts, dts
            packet.is_keyframe = frame.keyframe
            self.container.mux(packet)
            if self.first_dts is None:
                self.first_dts = dts
            self.last_dts = dts
            self.counters["video_frames"] += 1
            self.counters["video_bytes"] += len(frame.data)
            return
        if self._transcoder is None or frame.codec != self.audio_codec:
            self.counters["dropped_audio"] += 1
            return
        ticks = len(frame.data) * 90000 // 8000      # G.711: one byte per sample
        ts, _ = self._timeline.map("audio", frame.pts, frame.dts, ticks=ticks)
        self._mux_audio(self._transcoder.feed(frame, ts))
        self.counters["audio_frames"] += 1

    def _mux_audio(self, packets: list[tuple[av.Packet, int]]) -> None:
        assert self.container is not None
        last = self._audio_last
        for packet, pts90 in packets:
            if pts90 < 0 or pts90 <= last:   # encoder priming before time zero, or overlap
                continue
            packet.stream = self.audio_stream
            packet.time_base = TB90K
            packet.pts = packet.dts = pts90
            self.container.mux(packet)
            last = pts90
            self.counters["audio_packets"] += 1
        self._audio_last = last

    def close(self) -> None:
        """Flush the audio encoder and write the trailer (index, ENDLIST...)."""
        container, self.container = self.container, None
        self._pending = []
        if container is None:
            return
        try:
            if self._transcoder is not None:
                self.container = container
                try:
                    self._mux_audio(self._transcoder.flush())
                finally:
                    self.container = None
        finally:
            container.close()

    def abort(self) -> None:
        """Close without caring whether the trailer can be written (the peer is gone)."""
        try:
            self.close()
        except (av.error.FFmpegError, OSError) as exc:
            log.debug("closing a broken output: %s", exc)

    @property
    def duration(self) -> float:
        """Seconds of video written."""
        if self.first_dts is None or self.last_dts is None:
            return 0.0
        return (self.last_dts - self.first_dts) / 90000


class _Stop:
    __slots__ = ("reason",)

    def __init__(self, reason: str) -> None:
        self.reason = reason


class ThreadedSink:
    """A frame sink whose work runs in its own thread, fed through a bounded queue.

    Subclasses implement :meth:`_process` (frames, in the thread) and :meth:`_finish` (once, in
    the thread, at the end). ``on_frames``/``on_end`` never block: the queue holds at most
    ``max_queue`` frames; beyond that, frames are dropped until the next video keyframe, and
    :attr:`dropped_frames` counts them. :meth:`stop` ends the sink from the loop;
    :meth:`wait_closed` waits for the thread.
    """

    thread_name = "media-output"

    def __init__(self, *, max_queue: int = 1000) -> None:
        self.max_queue = max_queue
        self._queue: collections.deque[list[Frame] | _Stop] = collections.deque()
        self._queued = 0
        self._cond = threading.Condition()
        self._gap = False
        self.dropped_frames = 0
        self.end_reason: str | None = None
        self.error: BaseException | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._done: asyncio.Future[None] | None = None
        self._ending = False

    # -- loop side -------------------------------------------------------------------------
    def start(self) -> None:
        """Start the worker thread (bound to the running loop, if any, for :meth:`wait_closed`)."""
        if self._thread is not None:
            return
        try:
            self._loop = asyncio.get_running_loop()
            self._done = self._loop.create_future()
        except RuntimeError:
            self._loop = None
        self._thread = threading.Thread(target=self._run, name=self.thread_name, daemon=True)
        self._thread.start()

    def on_frames(self, frames: list[Frame]) -> None:
        if self._ending or not frames:
            return
        with self._cond:
            if self._queued + len(frames) > self.max_queue:
                self._gap = True                 # full: drop, then resume at a keyframe
            elif self._gap:
                keep = self._resume_index(frames)
                if keep is not None:
                    self._gap = False
                    self.dropped_frames += keep
                    frames = frames[keep:]
            if self._gap:
                self.dropped_frames += len(frames)
                return
            self._queue.append(list(frames))
            self._queued += len(frames)
            self._cond.notify()

    @staticmethod
    def _resume_index(frames: list[Frame]) -> int | None:
        for i, f in enumerate(frames):
            if f.keyframe and f.codec in VIDEO_CODECS:
                return i
        return None

    def on_end(self, reason: str) -> None:
        if self._ending:
            return
        self._ending = True
        with self._cond:
            self._queue.append(_Stop(reason))
            self._cond.notify()

    def stop(self, reason: str = "stopped") -> None:
        """End the output: queued frames are written, then the output is closed."""
        self.on_end(reason)

    @property
    def queued_frames(self) -> int:
        """Frames waiting for the thread."""
        return self._queued

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    async def wait_closed(self) -> None:
        """Wait until the worker thread has finished (after :meth:`stop` or ``on_end``)."""
        if self._thread is None:
            return
        if self._done is not None and self._loop is asyncio.get_running_loop():
            await asyncio.shield(self._done)
            while self._thread.is_alive():     # it signalled as its last act: gone at once
                await asyncio.sleep(0.001)
        else:
            await asyncio.get_running_loop().run_in_executor(None, self._thread.join)

    def join(self, timeout: float | None = None) -> None:
        if self._thread is not None:
            self._thread.join(timeout)

    # -- thread side -----------------------------------------------------------------------
    def _next(self, timeout: float | None = None) -> list[Frame] | _Stop | None:
        with self._cond:
            if not self._queue:
                self._cond.wait(timeout)
            if not self._queue:
                return None
            item = self._queue.popleft()
            if not isinstance(item, _Stop):
                self._queued -= len(item)
            return item

    def _run(self) -> None:
        reason = "error"
        try:
            while True:
                item = self._next(self._idle_timeout())
                if item is None:
                    self._idle()
                    continue
                if isinstance(item, _Stop):
                    reason = item.reason
                    break
                self._process(item)
        except BaseException as exc:  # noqa: BLE001 - kept for status, reported once
            self.error = exc
            log.error("%s failed: %s", self.thread_name, exc,
                      exc_info=not isinstance(exc, MediaError))
        finally:
            self._ending = True
            self.end_reason = reason
            try:
                self._finish(reason)
            except BaseException as exc:  # noqa: BLE001
                if self.error is None:
                    self.error = exc
                log.error("%s: closing failed: %s", self.thread_name, exc)
            self._signal_done()

    def _signal_done(self) -> None:
        loop, done = self._loop, self._done
        if loop is None or done is None:
            return
        try:
            loop.call_soon_threadsafe(lambda: done.done() or done.set_result(None))
        except RuntimeError:  # the loop is closed: nobody waits
            pass

    def _idle_timeout(self) -> float | None:
        return None

    def _idle(self) -> None:
        """Called in the thread when :meth:`_idle_timeout` passed without frames."""

    def _process(self, frames: list[Frame]) -> None:
        raise NotImplementedError

    def _finish(self, reason: str) -> None:
        raise NotImplementedError
