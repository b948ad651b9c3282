"""MP4 recording of a live stream, optionally rotated into files of ``segment_seconds``.

While recording, the file is fragmented MP4 (``empty_moov`` + a fragment per keyframe): what is
on disk is playable at any moment, so a recording cut short by a crash or a kill loses at most
the GOP being written. On a clean end (``stop``, end of the stream, rotation) the file is remuxed
in place into a plain MP4 with its index first (``faststart``) — what browsers and editors
expect — unless ``faststart=False``. Video is copied; audio is transcoded to AAC or dropped
(``audio="aac"|"drop"``, see :mod:`media.outputs._av`).

``path`` may contain ``{index}`` (file number from 0) and ``{start}`` (local start time,
``YYYYmmdd-HHMMSS``); with rotation and neither, ``-{index:03d}`` is put before the suffix.
Rotation happens at the first keyframe after ``segment_seconds`` of stream time.

::

    rec = RecordSink("/data/rec/cam1-{start}.mp4", segment_seconds=600)
    rec.start(); relay.add_sink(rec)
    ...
    relay.remove_sink(rec); rec.stop(); await rec.wait_closed(); rec.files
"""

from __future__ import annotations

import dataclasses
import logging
import os
import pathlib
import time
from typing import Any

import av

from .._frame import Frame
from ._av import VIDEO_CODECS, WRAP, AvWriter, OutputError, ThreadedSink

__all__ = ["RecordSink", "RecordedFile", "faststart_remux"]

log = logging.getLogger("media.outputs.record")

FORMATS = {".mp4": "mp4", ".m4v": "mp4", ".mov": "mov"}
FRAGMENTED = "frag_keyframe+empty_moov+default_base_moof"


@dataclasses.dataclass
class RecordedFile:
    path: str
    started_at: float                 # epoch seconds
    duration: float = 0.0             # seconds of video
    video_frames: int = 0
    audio_frames: int = 0
    complete: bool = False            # closed cleanly (and remuxed when faststart)


def faststart_remux(path: str | os.PathLike[str]) -> None:
    """Rewrite the (fragmented) MP4 at ``path`` as a plain MP4 with the index first.

    Written next to it and renamed over it, so ``path`` is never half-written.
    """
    src = pathlib.Path(path)
    tmp = src.with_name(src.name + ".faststart.tmp")
    fmt = FORMATS.get(src.suffix.lower(), "mp4")
    with av.open(str(src)) as inp:
        with av.open(str(tmp), "w", format=fmt, options={"movflags": "+faststart"}) as out:
            mapping = {}
            for stream in inp.streams:
                if stream.type in ("video", "audio"):
                    mapping[stream.index] = out.add_stream_from_template(stream)
            for packet in inp.demux(*[inp.streams[i] for i in mapping]):
                if packet.dts is None:   # the demuxer's end-of-stream packets
                    continue
                packet.stream = mapping[packet.stream.index]
                out.mux(packet)
    os.replace(tmp, src)


class RecordSink(ThreadedSink):
    """Frame sink recording MP4 files (in its own thread)."""

    thread_name = "record"

    def __init__(self, path: str | os.PathLike[str], *, segment_seconds: float | None = None,
                 audio: str = "aac", faststart: bool = True, max_queue: int = 1000) -> None:
        super().__init__(max_queue=max_queue)
        template = os.fspath(path)
        suffix = pathlib.Path(template).suffix.lower()
        if suffix not in FORMATS:
            raise OutputError(f"recording path must end in one of {sorted(FORMATS)}: {template!r}")
        if segment_seconds is not None and segment_seconds <= 0:
            raise OutputError("segment_seconds must be positive")
        if segment_seconds is not None and "{index" not in template and "{start" not in template:
            template = template[: -len(suffix)] + "-{index:03d}" + template[-len(suffix):]
        try:
            template.format(index=0, start="x")
        except (KeyError, IndexError, ValueError) as exc:
            raise OutputError(f"bad recording path template {template!r}: {exc}") from None
        AvWriter(lambda: None, audio=audio)  # checks the audio mode now, not in the thread
        self.template = template
        self.format = FORMATS[suffix]
        self.segment_seconds = segment_seconds
        self.audio = audio
        self.faststart = faststart
        self.files: list[RecordedFile] = []
        self._writer: AvWriter | None = None
        self._current: RecordedFile | None = None
        self._file_start: int | None = None   # raw DTS of the file's first keyframe
        self._index = 0

    def start(self) -> None:
        first = pathlib.Path(self.template.format(index=0, start="x"))
        try:
            first.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OutputError(f"cannot create {first.parent}: {exc}") from None
        super().start()

    @property
    def current(self) -> RecordedFile | None:
        return self._current

    def status(self) -> dict[str, Any]:
        files = [dataclasses.asdict(f) for f in self.files]
        if self._current is not None:
            files.append(dataclasses.asdict(self._current))
        return {"running": self.running, "files": files, "dropped_frames": self.dropped_frames,
                "error": str(self.error) if self.error else None}

    # -- thread side -------------------------------------------------------------------------
    def _new_file(self) -> None:
        started = time.time()
        name = self.template.format(index=self._index,
                                    start=time.strftime("%Y%m%d-%H%M%S", time.localtime(started)))
        self._index += 1
        self._current = RecordedFile(path=name, started_at=started)
        path = name

        def opener() -> Any:
            # flush_packets: each fragment reaches the file when complete (crash safety)
            return av.open(path, "w", format=self.format,
                           options={"movflags": FRAGMENTED, "flush_packets": "1"})

        self._writer = AvWriter(opener, audio=self.audio)

    def _close_file(self) -> None:
        writer, current = self._writer, self._current
        self._writer = self._current = None
        self._file_start = None
        if writer is None or current is None:
            return
        opened = writer.opened
        self._update(writer, current)
        writer.close()
        if not opened:        # no keyframe came: no file was created
            return
        if self.faststart:
            try:
                faststart_remux(current.path)
            except (av.error.FFmpegError, OSError) as exc:  # the fragmented file stays
                log.warning("cannot remux %s for faststart: %s", current.path, exc)
        current.complete = True
        self.files.append(current)
        log.info("recorded %s (%.1f s)", current.path, current.duration)

    @staticmethod
    def _update(writer: AvWriter, current: RecordedFile) -> None:
        current.duration = round(writer.duration, 3)
        current.video_frames = writer.counters["video_frames"]
        current.audio_frames = writer.counters["audio_frames"]

    def _process(self, frames: list[Frame]) -> None:
        if self.segment_seconds is None:
            if self._writer is None:
                self._new_file()
            assert self._writer is not None and self._current is not None
            self._writer.write(frames)
            self._update(self._writer, self._current)
            return
        limit = int(self.segment_seconds * 90000)
        run: list[Frame] = []
        for f in frames:
            if f.codec in VIDEO_CODECS and f.keyframe and f.dts is not None:
                if self._file_start is not None and (f.dts - self._file_start) % WRAP >= limit:
                    self._write(run)
                    run = []
                    self._close_file()
                if self._file_start is None:
                    self._file_start = f.dts
            run.append(f)
        self._write(run)

    def _write(self, frames: list[Frame]) -> None:
        if not frames:
            return
        if self._writer is None:
            self._new_file()
        assert self._writer is not None and self._current is not None
        self._writer.write(frames)
        self._update(self._writer, self._current)

    def _finish(self, reason: str) -> None:
        if self.error is not None:
            writer, current = self._writer, self._current
            self._writer = self._current = None
            if writer is not None:
                writer.abort()          # the fragments written so far stay playable
            if current is not None and os.path.exists(current.path):
                self.files.append(current)
            return
        self._close_file()
        log.info("recording %s ended: %s", self.template, reason)
