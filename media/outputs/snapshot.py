"""JPEG snapshot of a stream: decode its latest keyframe with PyAV (in a thread) and encode a JPEG.

The relay's GOP cache usually holds a keyframe already, so a snapshot costs one decode and no
waiting; otherwise :func:`snapshot` attaches a :class:`SnapshotSink` and waits up to ``timeout``
seconds for the next keyframe. A keyframe that does not decode alone (intra refresh, open GOP)
is decoded with the frames that follow it, as far as they came.

::

    jpeg = await snapshot(relay, timeout=5, width=320)     # height follows the aspect ratio
"""

from __future__ import annotations

import asyncio
import fractions
from collections.abc import Sequence
from typing import Any, Protocol

import av

from .._frame import Frame
from ._av import VIDEO_CODECS, OutputError

__all__ = ["SnapshotError", "SnapshotSink", "decode_jpeg", "snapshot"]

#: Frames after the keyframe a snapshot may need (a decoder with delay, an open GOP).
MAX_FOLLOWING = 50


class SnapshotError(OutputError):
    """No picture: no keyframe came in time, or the keyframe does not decode."""


class _Source(Protocol):
    def gop(self) -> list[Frame]: ...
    def add_sink(self, sink: Any) -> None: ...
    def remove_sink(self, sink: Any) -> None: ...


def _scaled(src_w: int, src_h: int, width: int | None, height: int | None) -> tuple[int, int]:
    """Output size; a missing side keeps the aspect ratio; even sizes (4:2:0 chroma)."""
    if width is None and height is None:
        w, h = src_w, src_h
    elif height is None:
        w, h = width, round(src_h * width / src_w)  # type: ignore[operator]
    elif width is None:
        w, h = round(src_w * height / src_h), height
    else:
        w, h = width, height
    return max(2, int(w) // 2 * 2), max(2, int(h) // 2 * 2)


def decode_jpeg(frames: Sequence[Frame], *, width: int | None = None, height: int | None = None,
                quality: int = 3) -> bytes:
    """JPEG bytes of the first picture that decodes from ``frames`` (blocking: call it in a
    thread). ``frames`` start at a keyframe; ``quality`` is the JPEG quantiser, 2 (best) to 31."""
    video = [f for f in frames if f.codec in VIDEO_CODECS]
    if not video or not video[0].keyframe:
        raise SnapshotError("no keyframe to decode")
    if not 2 <= quality <= 31:
        raise SnapshotError("quality must be between 2 and 31")
    codec = video[0].codec
    decoder = av.CodecContext.create(VIDEO_CODECS[codec], "r")
    picture = None
    try:
        # The keyframe alone, then drained: enough for an IDR picture on any decoder delay.
        decoded = decoder.decode(av.Packet(bytes(video[0].data))) + decoder.decode(None)
        if decoded:
            picture = decoded[0]
        else:
            decoder = av.CodecContext.create(VIDEO_CODECS[codec], "r")
            for f in video[:MAX_FOLLOWING + 1]:
                if f.codec != codec:
                    break
                decoded = decoder.decode(av.Packet(bytes(f.data)))
                if decoded:
                    picture = decoded[0]
                    break
            else:
                decoded = decoder.decode(None)
                picture = decoded[0] if decoded else None
    except av.error.FFmpegError as exc:
        raise SnapshotError(f"the {codec} keyframe does not decode: {exc}") from None
    if picture is None:
        raise SnapshotError(f"no picture decoded from the {codec} keyframe")
    w, h = _scaled(picture.width, picture.height, width, height)
    encoder = av.CodecContext.create("mjpeg", "w")
    encoder.width, encoder.height = w, h
    encoder.pix_fmt = "yuvj420p"
    encoder.time_base = fractions.Fraction(1, 25)
    encoder.qmin = encoder.qmax = quality    # the rate control can only pick this quantiser
    encoder.open()
    image = picture.reformat(width=w, height=h, format="yuvj420p")
    packets = encoder.encode(image) + encoder.encode(None)
    return b"".join(bytes(p) for p in packets)


class SnapshotSink:
    """Frame sink that keeps the first keyframe it sees and the frames after it.

    Cheap in the loop (it only appends), detaches nothing itself: the caller removes it.
    """

    def __init__(self, following: int = 0) -> None:
        self.frames: list[Frame] = []
        self.following = following
        self._got: asyncio.Future[list[Frame]] = asyncio.get_running_loop().create_future()

    def on_frames(self, frames: list[Frame]) -> None:
        if self._got.done():
            return
        for f in frames:
            if f.codec not in VIDEO_CODECS:
                continue
            if not self.frames:
                if f.keyframe:
                    self.frames.append(f)
            else:
                self.frames.append(f)
        if self.frames and len(self.frames) > self.following:
            self._got.set_result(self.frames)

    def on_end(self, reason: str) -> None:
        if not self._got.done():
            if self.frames:
                self._got.set_result(self.frames)
            else:
                self._got.set_exception(
                    SnapshotError(f"the stream ended before a keyframe ({reason})"))

    async def keyframe(self, timeout: float) -> list[Frame]:
        """Frames from the keyframe on; :class:`SnapshotError` after ``timeout`` seconds."""
        try:
            return await asyncio.wait_for(asyncio.shield(self._got), timeout)
        except TimeoutError:
            self._got.cancel()   # a later on_end must not leave an unretrieved exception
            raise SnapshotError(f"no keyframe within {timeout:g} s") from None


def _from_last_keyframe(frames: Sequence[Frame]) -> list[Frame]:
    start = None
    for i, f in enumerate(frames):
        if f.keyframe and f.codec in VIDEO_CODECS:
            start = i
    return [] if start is None else [f for f in frames[start:] if f.codec in VIDEO_CODECS]


async def snapshot(source: _Source, *, timeout: float = 5.0, width: int | None = None,
                   height: int | None = None, quality: int = 3) -> bytes:
    """JPEG of ``source``'s latest keyframe (its GOP cache, else the next keyframe to come)."""
    if width is not None and width < 2 or height is not None and height < 2:
        raise SnapshotError("width and height must be at least 2")
    frames = _from_last_keyframe(source.gop())
    if not frames:
        sink = SnapshotSink()
        source.add_sink(sink)
        try:
            frames = await sink.keyframe(timeout)
        finally:
            source.remove_sink(sink)
    try:
        return await asyncio.to_thread(decode_jpeg, frames, width=width, height=height,
                                       quality=quality)
    except SnapshotError:
        if len(frames) > 1:
            raise
    # A lone keyframe that did not decode: wait for the frames after it.
    sink = SnapshotSink(following=MAX_FOLLOWING)
    source.add_sink(sink)
    try:
        frames = await sink.keyframe(timeout)
    finally:
        source.remove_sink(sink)
    return await asyncio.to_thread(decode_jpeg, frames, width=width, height=height, quality=quality)
