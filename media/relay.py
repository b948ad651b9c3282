"""The relay hub: one per upstream stream, fanning its frames out to every output.

::

    relay = Relay("34020000001320000001/34020000001310000001")
    ingest_stream = await ingest.open("udp", on_frames=relay.feed, on_close=relay.end)
    relay.add_sink(hls_writer)                 # any FrameSink; gets the GOP cache first
    viewer = relay.flv().add_viewer()          # FLV muxed once, tags shared by every viewer
    while (data := await viewer.read()) is not None:
        await response.write(data)

Design, and why:

* **GOP cache.** The relay keeps the frames since the last video keyframe, so a sink added later
  starts with a decodable picture at once instead of waiting for the next keyframe (often 2–4 s
  with GB cameras). The cache is bounded in bytes (``gop_limit``): a GOP larger than the limit
  (a camera with a very long keyframe interval) is dropped and caching resumes at the next
  keyframe. Streams without video keep the last ``AUDIO_GOP_FRAMES`` audio frames.
* **Codec tracking.** :attr:`Relay.video_codec` and :attr:`Relay.audio_codec` follow the frames.
  FLV must announce audio in its file header, so the FLV side starts once the codecs are
  *settled*: a video keyframe was seen and either an audio frame too or ``audio_probe_ms`` of
  video followed without audio (a stream with audio starts at once, one without waits that long
  once per stream, never per viewer).
* **Shared FLV.** :class:`FlvHub` is a sink muxing the stream once; the tag bytes go to every FLV
  viewer by reference. Each viewer starts on a keyframe: the FLV header with the sequence headers
  in force, then the tags since the last keyframe.
* **Viewer queues and the drop policy** (:class:`FlvViewer`, :class:`FrameQueue`): each viewer
  has a queue bounded in bytes (frames for ``FrameQueue``). When a push would exceed the bound,
  everything still queued is discarded and so is everything after it until the next keyframe,
  with which the viewer resumes (a player shows a short freeze rather than garbage, and the delay
  to live does not grow). A viewer that overflows ``max_overflows`` times without once having
  caught up (empty queue, reader waiting) at a keyframe is disconnected with the reason
  ``"too slow"``. Drops are counted per viewer (``dropped``, ``dropped_bytes``, ``overflows``).
  The hub muxes each batch of frames it gets into one chunk (one per run between keyframes)
  that every viewer queues by reference, so a reader gets it without a join; when a chunk would
  hit the bound, the policy is applied to its frames' tags one by one, as if queued singly
  (``dropped`` counts queued items: chunks, or frames' tags when the bound split one).
* **End.** :meth:`Relay.end` tells every sink once (``on_end(reason)``); FLV viewers get what was
  queued, the FLV end-of-sequence tag, then the end of the stream.

Everything here runs in the event loop without blocking and without I/O; the HTTP and WebSocket
writers are in :mod:`media.outputs`.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable, Iterable
from typing import Protocol, runtime_checkable

from ._flv_py import AUDIO_CODECS as FLV_AUDIO_CODECS
from ._flv_py import VIDEO_CODECS as FLV_VIDEO_CODECS
from ._flv_py import normalize_codec
from ._frame import Frame
from .flv import FlvMuxer

__all__ = ["AUDIO_GOP_FRAMES", "FlvHub", "FlvViewer", "FrameQueue", "FrameSink", "Relay",
           "VIDEO_CODECS"]

log = logging.getLogger("media.relay")

#: Codec names the PS demuxer gives video frames; every other codec is audio.
VIDEO_CODECS = frozenset({"h264", "h265", "mpeg4", "svac"})
#: Audio frames kept as the "GOP" of a stream without video.
AUDIO_GOP_FRAMES = 50

DEFAULT_GOP_LIMIT = 8 * 1024 * 1024
DEFAULT_VIEWER_LIMIT = 4 * 1024 * 1024
DEFAULT_MAX_OVERFLOWS = 3
DEFAULT_AUDIO_PROBE_MS = 300


@runtime_checkable
class FrameSink(Protocol):
    """Something fed by a :class:`Relay` (FLV hub, HLS segmenter, RTMP pusher, recorder).

    Both methods are called in the event loop and must not block: queue the work or hand it to a
    thread. An exception from a sink removes that sink (it gets ``on_end("error")``); the relay
    and the other sinks carry on.
    """

    def on_frames(self, frames: list[Frame]) -> None: ...

    def on_end(self, reason: str) -> None: ...


def is_video(frame: Frame) -> bool:
    return frame.codec in VIDEO_CODECS


class Relay:
    """One upstream stream fanned out to its sinks (see the module docstring)."""

    def __init__(self, name: str = "", *, gop_limit: int = DEFAULT_GOP_LIMIT,
                 viewer_limit: int = DEFAULT_VIEWER_LIMIT,
                 max_overflows: int = DEFAULT_MAX_OVERFLOWS,
                 audio_probe_ms: int = DEFAULT_AUDIO_PROBE_MS, hevc_mode: str = "enhanced") -> None:
        if gop_limit < 0 or viewer_limit < 1 or max_overflows < 1 or audio_probe_ms < 0:
            raise ValueError("gop_limit >= 0, viewer_limit >= 1, max_overflows >= 1, "
                             "audio_probe_ms >= 0")
        self.name = name
        self.gop_limit = gop_limit
        self.viewer_limit = viewer_limit
        self.max_overflows = max_overflows
        self.audio_probe_ms = audio_probe_ms
        self.hevc_mode = hevc_mode
        #: Codec of the last video / audio frame seen (None until one is seen).
        self.video_codec: str | None = None
        self.audio_codec: str | None = None
        #: Why the stream ended; None while it runs.
        self.ended: str | None = None
        self.frames_in = 0
        self.bytes_in = 0
        self.keyframes = 0
        self.gop_overflows = 0
        self.sink_errors = 0
        self._sinks: list[FrameSink] = []
        self._gop: list[Frame] = []
        self._gop_bytes = 0
        self._gop_open = False          # collecting since a keyframe (else waiting for one)
        self._audio_gop: deque[Frame] = deque(maxlen=AUDIO_GOP_FRAMES)
        self._settled = False
        self._key_dts: int | None = None   # DTS of the first keyframe (audio probe start)
        self._video_after_key = 0
        self._audio_frames = 0
        self._flv: FlvHub | None = None
        #: Called once with the first frame (StreamStarted); then cleared.
        self.on_first_frame: Callable[[Relay], None] | None = None

    # ---- input -----------------------------------------------------------------------------

    def feed(self, frames: list[Frame]) -> None:
        """Take frames from the demuxer and pass them on to every sink."""
        if self.ended is not None or not frames:
            return
        first = self.frames_in == 0
        if self._settled and self._key_dts is not None:
            self._track_settled(frames)
        else:
            for frame in frames:
                self._track(frame)
        if first and self.on_first_frame is not None:
            callback, self.on_first_frame = self.on_first_frame, None
            try:
                callback(self)
            except Exception:
                log.exception("first-frame callback of %s failed", self.name)
        for sink in tuple(self._sinks):
            try:
                sink.on_frames(frames)
            except Exception:
                log.exception("sink %r of %s failed; removed", sink, self.name)
                self.sink_errors += 1
                self._drop_sink(sink, "error")

    def _track_settled(self, frames: list[Frame]) -> None:
        """:meth:`_track` for a whole batch once the codecs settled after a video keyframe (the
        steady state): the same bookkeeping with the state in locals."""
        gop: list[Frame] | None = self._gop if self._gop_open else None
        gop_bytes = self._gop_bytes
        limit = self.gop_limit
        video = audio = None
        nbytes = keys = audio_frames = overflows = 0
        for frame in frames:
            size = len(frame.data)
            nbytes += size
            codec = frame.codec
            if codec in VIDEO_CODECS:
                video = codec
                if frame.keyframe:
                    keys += 1
                    gop = [frame]
                    gop_bytes = size
                    continue
            else:
                audio = codec
                audio_frames += 1
            if gop is not None:
                gop.append(frame)
                gop_bytes += size
                if gop_bytes > limit:
                    gop = None
                    gop_bytes = 0
                    overflows += 1
        self.frames_in += len(frames)
        self.bytes_in += nbytes
        if video is not None:
            self.video_codec = video
        if audio is not None:
            self.audio_codec = audio
            self._audio_frames += audio_frames
        if keys:
            self.keyframes += keys
        if overflows:
            self.gop_overflows += overflows
        if gop is None:
            if self._gop_open:
                self._gop = []
                self._gop_open = False
        else:
            self._gop = gop
            self._gop_open = True
        self._gop_bytes = gop_bytes

    def _track(self, frame: Frame) -> None:
        self.frames_in += 1
        size = len(frame.data)
        self.bytes_in += size
        codec = frame.codec
        if codec in VIDEO_CODECS:
            self.video_codec = codec
            if frame.keyframe:
                self.keyframes += 1
                self._gop = [frame]
                self._gop_bytes = size
                self._gop_open = True
                if self._key_dts is None:
                    self._key_dts = frame.dts if frame.dts is not None else frame.pts
                    self._video_after_key = 0
                if not self._settled and (self.audio_codec is not None
                                          or self.audio_probe_ms == 0):
                    self._settled = True
            else:
                self._add_to_gop(frame, size)
                if self._key_dts is not None and not self._settled:
                    self._video_after_key += 1
                    self._check_probe(frame)
        else:
            self.audio_codec = codec
            self._audio_frames += 1
            if self.video_codec is None:
                self._audio_gop.append(frame)
                if not self._settled and self._audio_frames >= AUDIO_GOP_FRAMES:
                    self._settled = True      # audio only so far: start (video may follow)
            else:
                self._add_to_gop(frame, size)
                if self._key_dts is not None:
                    self._settled = True

    def _add_to_gop(self, frame: Frame, size: int) -> None:
        if not self._gop_open:
            return
        self._gop.append(frame)
        self._gop_bytes += size
        if self._gop_bytes > self.gop_limit:
            self._gop = []
            self._gop_bytes = 0
            self._gop_open = False
            self.gop_overflows += 1

    def _check_probe(self, frame: Frame) -> None:
        dts = frame.dts if frame.dts is not None else frame.pts
        if dts is not None and self._key_dts is not None:
            elapsed = ((dts - self._key_dts) & ((1 << 33) - 1)) // 90
            if elapsed >= self.audio_probe_ms:
                self._settled = True
                return
        # without usable timestamps: count frames at an assumed 25 fps
        if self._video_after_key * 40 >= self.audio_probe_ms:
            self._settled = True

    # ---- state -----------------------------------------------------------------------------

    @property
    def codecs_settled(self) -> bool:
        """True once the codecs to announce (FLV header) are known: see the module docstring."""
        return self._settled

    def gop(self) -> list[Frame]:
        """Frames from the last video keyframe on (audio-only streams: the last audio frames)."""
        if self.video_codec is None:
            return list(self._audio_gop)
        return list(self._gop) if self._gop_open else []

    @property
    def gop_bytes(self) -> int:
        return self._gop_bytes if self._gop_open else 0

    @property
    def sinks(self) -> tuple[FrameSink, ...]:
        return tuple(self._sinks)

    # ---- sinks -----------------------------------------------------------------------------

    def add_sink(self, sink: FrameSink) -> None:
        """Attach ``sink``; it gets the GOP cache at once (or the end, if the stream ended)."""
        if self.ended is not None:
            sink.on_end(self.ended)
            return
        if sink in self._sinks:
            return
        self._sinks.append(sink)
        gop = self.gop()
        if gop:
            try:
                sink.on_frames(gop)
            except Exception:
                log.exception("sink %r of %s failed on the GOP cache; removed", sink, self.name)
                self.sink_errors += 1
                self._drop_sink(sink, "error")

    def remove_sink(self, sink: FrameSink) -> None:
        """Detach ``sink`` (it is not told: it asked)."""
        try:
            self._sinks.remove(sink)
        except ValueError:
            pass

    def _drop_sink(self, sink: FrameSink, reason: str) -> None:
        self.remove_sink(sink)
        try:
            sink.on_end(reason)
        except Exception:
            log.exception("sink %r of %s failed to end", sink, self.name)

    def flv(self) -> FlvHub:
        """The stream's FLV hub (created on first use, then shared by every FLV viewer)."""
        if self._flv is None:
            self._flv = FlvHub(self)
            self.add_sink(self._flv)
        return self._flv

    @property
    def flv_viewers(self) -> int:
        return len(self._flv.viewers) if self._flv is not None else 0

    def end(self, reason: str = "end") -> None:
        """End the stream: every sink gets ``on_end(reason)`` once; later frames are ignored."""
        if self.ended is not None:
            return
        self.ended = reason
        sinks, self._sinks = self._sinks, []
        self._gop = []
        self._gop_bytes = 0
        self._audio_gop.clear()
        for sink in sinks:
            try:
                sink.on_end(reason)
            except Exception:
                log.exception("sink %r of %s failed to end", sink, self.name)

    def stats(self) -> dict[str, int | str | None]:
        return {"frames": self.frames_in, "bytes": self.bytes_in, "keyframes": self.keyframes,
                "gop_frames": len(self.gop()), "gop_bytes": self.gop_bytes,
                "gop_overflows": self.gop_overflows, "sinks": len(self._sinks),
                "flv_viewers": self.flv_viewers, "video_codec": self.video_codec,
                "audio_codec": self.audio_codec}


# --------------------------------------------------------------------------------------------
# FLV: muxed once per stream, shared by every viewer
# --------------------------------------------------------------------------------------------

def _is_key_chunk(chunk: bytes) -> bool:
    """True when the first tag of ``chunk`` is a video keyframe (or its sequence header)."""
    return len(chunk) > 11 and chunk[0] == 9 and (chunk[11] >> 4) & 7 == 1


def _split_frames(chunk: bytes, key: bool) -> list[tuple[bytes, bool]]:
    """The tags of ``chunk`` as the muxer makes them per frame: a sequence header stays with
    the tag after it. ``key`` is the first part's flag (only the first tag of a chunk may be a
    keyframe)."""
    parts: list[tuple[bytes, bool]] = []
    start = pos = 0
    n = len(chunk)
    while pos + 11 <= n:
        end = pos + 15 + int.from_bytes(chunk[pos + 1:pos + 4], "big")
        head = chunk[pos + 11] if pos + 12 < n else 0
        packet = chunk[pos + 12] if pos + 12 < n else 1
        if chunk[pos] == 9:
            seq = (head & 0x8F) == 0x80 if head & 0x80 else packet == 0
        else:
            seq = head >> 4 == 10 and packet == 0
        pos = end
        if not seq:
            parts.append((chunk[start:end], key if not parts else False))
            start = end
    if start < n:
        parts.append((chunk[start:], key if not parts else False))
    return parts


class FlvHub:
    """The FLV side of a :class:`Relay`: one muxer, its tags sent by reference to every viewer.

    Keeps the tags since the last keyframe (bounded by the relay's ``gop_limit``) so a new
    viewer gets ``init segment + those tags`` at once.
    """

    def __init__(self, relay: Relay) -> None:
        self.relay = relay
        self.muxer: FlvMuxer | None = None
        self.viewers: list[FlvViewer] = []
        self.ended: str | None = None
        #: Frames the muxer could not take (codec not carried by FLV, audio after the header).
        self.unsupported = 0
        self._cache: list[bytes] = []
        self._cache_bytes = 0
        self._cache_valid = False
        self._codecs: tuple[str | None, str | None] | None = None
        self._video_codec: str | None = None  # the muxer's (a change restarts the viewers)
        self._refused: list[tuple[Frame, Exception]] = []
        self._pending: list[Frame] = []     # frames since the last keyframe, until the codecs settle
        self._pending_bytes = 0

    # ---- viewers ---------------------------------------------------------------------------

    def add_viewer(self, *, limit: int | None = None, max_overflows: int | None = None) -> FlvViewer:
        """A new viewer, started on the cached keyframe when there is one."""
        relay = self.relay
        viewer = FlvViewer(self, relay.viewer_limit if limit is None else limit,
                           relay.max_overflows if max_overflows is None else max_overflows)
        if self.ended is not None:
            viewer._finish(self.ended)
            return viewer
        self.viewers.append(viewer)
        if self.muxer is not None and self._cache_valid:
            init = self.muxer.init_segment() or b""
            viewer._start(init + b"".join(self._cache))
        return viewer

    def remove_viewer(self, viewer: FlvViewer) -> None:
        try:
            self.viewers.remove(viewer)
        except ValueError:
            pass

    # ---- FrameSink -------------------------------------------------------------------------

    def on_frames(self, frames: list[Frame]) -> None:
        relay = self.relay
        if self.muxer is None:
            self._hold(frames)
            if not relay.codecs_settled or not self._open():
                return
            frames, self._pending = self._pending, []
            self._pending_bytes = 0
        elif relay.video_codec != self._video_codec and relay.video_codec is not None:
            self._restart("codec change")
            return
        # one bytes per run of tags between keyframes (usually one per batch): the viewers
        # queue it by reference and a reader gets it without joining
        refused = self._refused
        chunks = self.muxer.mux_batch(frames, refused)  # type: ignore[union-attr]
        if refused:                 # a frame the muxer cannot take must not stop the stream
            for frame, exc in refused:
                log.debug("FLV muxer refused %r", frame, exc_info=exc)
            self.unsupported += len(refused)
            refused.clear()
        if chunks:
            self._distribute(chunks)

    def on_end(self, reason: str) -> None:
        if self.ended is not None:
            return
        self.ended = reason
        tail = self.muxer.end() if self.muxer is not None else b""
        viewers, self.viewers = self.viewers, []
        for viewer in viewers:
            if tail and viewer._started and viewer._skipping is False:
                viewer._push(tail, False)
            viewer._finish(reason)

    # ---- internals -------------------------------------------------------------------------

    def _hold(self, frames: list[Frame]) -> None:
        """Keep the frames from the first video keyframe on (audio-only: all) until the muxer
        opens (the codecs settle within ``audio_probe_ms`` of that keyframe: a short wait)."""
        pending = self._pending
        for frame in frames:
            if not pending and self.relay.video_codec is not None and not (
                    frame.keyframe and frame.codec in VIDEO_CODECS):
                continue
            pending.append(frame)
            self._pending_bytes += len(frame.data)
        if self._pending_bytes > self.relay.gop_limit:
            pending.clear()
            self._pending_bytes = 0

    def _open(self) -> bool:
        relay = self.relay
        video = normalize_codec(relay.video_codec) if relay.video_codec else None
        audio = normalize_codec(relay.audio_codec) if relay.audio_codec else None
        if relay.video_codec is not None and video not in FLV_VIDEO_CODECS:
            self._fail(f"video codec {relay.video_codec} cannot be carried by FLV")
            return False
        if audio not in FLV_AUDIO_CODECS:
            audio = None
        if video is None and audio is None:
            self._fail(f"audio codec {relay.audio_codec} cannot be carried by FLV")
            return False
        self.muxer = FlvMuxer(video, audio, relay.hevc_mode)
        self._codecs = (relay.video_codec, relay.audio_codec)
        self._video_codec = relay.video_codec
        return True

    def _fail(self, reason: str) -> None:
        log.warning("%s: %s", self.relay.name, reason)
        self.relay.remove_sink(self)
        self.relay._flv = None
        self.on_end(reason)

    def _restart(self, reason: str) -> None:
        """The video codec changed: FLV cannot switch mid-file, so viewers end (and reconnect)."""
        log.info("%s: %s, FLV viewers restarted", self.relay.name, reason)
        viewers, self.viewers = self.viewers, []
        for viewer in viewers:
            viewer._finish(reason)
        self.muxer = None
        self._cache = []
        self._cache_bytes = 0
        self._cache_valid = False
        self._pending = []
        self._pending_bytes = 0
        self.on_frames(self.relay.gop())

    def _distribute(self, chunks: list[bytes]) -> None:
        limit = self.relay.gop_limit
        init: bytes | None = None
        for chunk in chunks:
            # the first tag is a video keyframe (or its sequence header): _is_key_chunk
            key = len(chunk) > 11 and chunk[0] == 9 and (chunk[11] >> 4) & 7 == 1
            if key:
                self._cache = [chunk]
                self._cache_bytes = len(chunk)
                self._cache_valid = True
            elif self._cache_valid:
                self._cache.append(chunk)
                self._cache_bytes += len(chunk)
                if self._cache_bytes > limit:
                    self._cache = []
                    self._cache_bytes = 0
                    self._cache_valid = False
            viewers = self.viewers
            if len(viewers) == 1:
                viewer = viewers[0]
                if viewer._started:
                    viewer._push(chunk, key)
                    continue
                viewers = [viewer]
            for viewer in tuple(viewers):
                if viewer._started:
                    viewer._push(chunk, key)
                elif key:
                    if init is None:
                        assert self.muxer is not None
                        init = self.muxer.init_segment() or b""
                    viewer._start(init + chunk)

    def stats(self) -> dict[str, int]:
        return {"viewers": len(self.viewers), "cache_bytes": self._cache_bytes,
                "unsupported": self.unsupported}


class _BoundedQueue:
    """Queue with the relay's drop policy (module docstring); the unit is given by ``_size``."""

    def __init__(self, limit: int, max_overflows: int) -> None:
        self.limit = limit
        self.max_overflows = max_overflows
        self.dropped = 0            # items discarded
        self.dropped_bytes = 0
        self.overflows = 0          # times the bound was hit
        self.ended: str | None = None
        self._items: deque = deque()
        self._queued = 0
        self._skipping = False
        self._behind = 0            # overflows since the last catch-up at a keyframe
        self._busy = False          # the reader holds data it has not finished with
        self._waiter: asyncio.Future | None = None

    @property
    def queued(self) -> int:
        return self._queued

    def _size(self, item) -> int:
        raise NotImplementedError

    def _push(self, item, key: bool) -> None:
        if self.ended is not None:
            return
        size = self._size(item)
        if self._skipping:
            if not key:
                self.dropped += 1
                self.dropped_bytes += len(item) if isinstance(item, bytes) else 0
                return
            self._skipping = False
        if key and self._queued == 0 and not self._busy:
            self._behind = 0          # caught up: the reader is waiting at a keyframe
        if self._queued and self._queued + size > self.limit:
            self.overflows += 1
            self._behind += 1
            self.dropped += len(self._items)
            self.dropped_bytes += sum(len(i) for i in self._items if isinstance(i, bytes))
            self._items.clear()
            self._queued = 0
            if self._behind >= self.max_overflows:
                self._finish("too slow")
                return
            if not key:
                self.dropped += 1
                self.dropped_bytes += len(item) if isinstance(item, bytes) else 0
                self._skipping = True
                return
        self._items.append(item)
        self._queued += size
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():
                waiter.set_result(None)

    def _finish(self, reason: str) -> None:
        if self.ended is not None:
            return
        self.ended = reason
        if reason == "too slow":
            self._items.clear()
            self._queued = 0
        self._detach()
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():
                waiter.set_result(None)
        if reason == "too slow" and self.on_abort is not None:
            try:
                self.on_abort()
            except Exception:
                log.exception("abort callback failed")

    #: Called when the viewer is disconnected for being too slow (the writer may be stuck in a
    #: write: the output closes its connection here).
    on_abort: Callable[[], None] | None = None

    def _detach(self) -> None:
        pass

    async def _wait(self) -> None:
        self._busy = False
        while not self._items and self.ended is None:
            waiter = asyncio.get_running_loop().create_future()
            self._waiter = waiter
            try:
                await waiter
            finally:
                if self._waiter is waiter:
                    self._waiter = None
        self._busy = True


class FlvViewer(_BoundedQueue):
    """One FLV viewer of a :class:`FlvHub`: a byte queue with the drop policy.

    ``await read()`` returns everything queued (one ``bytes``) or None at the end; :attr:`ended`
    says why. :meth:`close` when the client goes away.
    """

    def __init__(self, hub: FlvHub, limit: int, max_overflows: int) -> None:
        super().__init__(limit, max_overflows)
        self.hub = hub
        self.sent = 0               # bytes handed to the writer
        self._started = False

    def _size(self, item: bytes) -> int:
        return len(item)

    def _push(self, item: bytes, key: bool) -> None:
        """:meth:`_BoundedQueue._push` for bytes, the common case (room in the queue) inline."""
        if self.ended is not None:
            return
        if self._skipping:
            if not key:
                self.dropped += 1
                self.dropped_bytes += len(item)
                return
            self._skipping = False
        queued = self._queued
        if key and queued == 0 and not self._busy:
            self._behind = 0          # caught up: the reader is waiting at a keyframe
        size = len(item)
        if queued + size > self.limit:
            # the bound is hit within this chunk: apply the drop policy frame by frame, as
            # when every frame's tags were queued on their own
            for part, part_key in _split_frames(item, key):
                _BoundedQueue._push(self, part, part_key)
            return
        self._items.append(item)
        self._queued = queued + size
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():
                waiter.set_result(None)

    def _start(self, data: bytes) -> None:
        self._started = True
        self._push(data, True)

    def _detach(self) -> None:
        self.hub.remove_viewer(self)

    async def read(self) -> bytes | None:
        """The bytes queued since the last read (waits for some), None once the stream ended."""
        items = self._items
        if items and self.ended is None:
            self._busy = True           # data at hand: no wait (_wait without the coroutine)
        else:
            await self._wait()
        if not items:
            self._busy = False
            return None
        data = items[0] if len(items) == 1 else b"".join(items)
        items.clear()
        self._queued = 0
        self.sent += len(data)
        return data

    def close(self, reason: str = "closed") -> None:
        """Leave the stream (the client went away); a pending :meth:`read` returns None."""
        self._items.clear()
        self._queued = 0
        self._finish(reason)

    def stats(self) -> dict[str, int | str | None]:
        return {"sent": self.sent, "queued": self._queued, "dropped": self.dropped,
                "dropped_bytes": self.dropped_bytes, "overflows": self.overflows,
                "ended": self.ended}


class FrameQueue(_BoundedQueue):
    """A :class:`FrameSink` that queues frames for an asynchronous consumer, with the drop policy.

    The bound is in frames (``limit``); a video keyframe is the resume point after an overflow.
    The consumer starts on a keyframe (the relay sends its GOP cache on :meth:`Relay.add_sink`)::

        queue = FrameQueue(limit=500)
        relay.add_sink(queue)
        while (frames := await queue.get()) is not None:
            await encode_in_thread(frames)
        relay.remove_sink(queue)
    """

    def __init__(self, limit: int = 500, max_overflows: int = DEFAULT_MAX_OVERFLOWS) -> None:
        super().__init__(limit, max_overflows)

    def _size(self, item: Frame) -> int:
        return 1

    def on_frames(self, frames: Iterable[Frame]) -> None:
        for frame in frames:
            self._push(frame, frame.keyframe and is_video(frame))

    def on_end(self, reason: str) -> None:
        self._finish(reason)

    async def get(self) -> list[Frame] | None:
        """The frames queued since the last call (waits for some), None once ended."""
        await self._wait()
        if not self._items:
            self._busy = False
            return None
        frames = list(self._items)
        self._items.clear()
        self._queued = 0
        return frames
