"""Live HLS: a playlist and media segments in a directory, written by libavformat's ``hls`` muxer.

Video is copied from the device's H.264/H.265 Annex B access units (no transcode); audio goes to
AAC or is dropped (``audio="aac"|"drop"``, see :mod:`media.outputs._av`). Segments are cut at the
first keyframe after ``segment_seconds``, so a segment lasts at least one GOP. The playlist keeps
``list_size`` segments; older ones are deleted by the muxer. ``segment_type="fmp4"`` writes
fragmented-MP4 segments (what Apple players want for H.265) instead of MPEG-TS.

The directory belongs to the sink: it is created if missing, and with ``cleanup=True`` (default)
everything the sink wrote is removed when the stream ends, so a later viewer starts anew::

    sink = HlsSink("/var/lib/sip28181/hls/3402...", segment_seconds=2, list_size=5)
    sink.start(); relay.add_sink(sink)
    await sink.wait_ready(timeout=10)        # the first segment is in the playlist
    ...                                      # serve sink.directory over HTTP
    relay.remove_sink(sink); sink.stop(); await sink.wait_closed()
"""

from __future__ import annotations

import asyncio
import logging
import os
import pathlib
from typing import Any

import av

from .._frame import Frame
from ._av import AvWriter, OutputError, ThreadedSink

__all__ = ["HlsSink", "SEGMENT_TYPES"]

log = logging.getLogger("media.outputs.hls")

SEGMENT_TYPES = {"mpegts": ".ts", "fmp4": ".m4s"}
PLAYLIST = "index.m3u8"
INIT = "init.mp4"


class HlsSink(ThreadedSink):
    """Frame sink writing a live HLS playlist and segments to ``directory`` (in its own thread)."""

    thread_name = "hls"

    def __init__(self, directory: str | os.PathLike[str], *, segment_seconds: float = 2.0,
                 list_size: int = 5, audio: str = "aac", segment_type: str = "mpegts",
                 cleanup: bool = True, max_queue: int = 1000) -> None:
        super().__init__(max_queue=max_queue)
        if segment_seconds <= 0:
            raise OutputError("segment_seconds must be positive")
        if list_size < 1:
            raise OutputError("list_size must be at least 1")
        if segment_type not in SEGMENT_TYPES:
            raise OutputError(f"segment_type must be one of {sorted(SEGMENT_TYPES)}")
        self.directory = pathlib.Path(directory)
        self.segment_seconds = segment_seconds
        self.list_size = list_size
        self.segment_type = segment_type
        self.cleanup = cleanup
        self.playlist = self.directory / PLAYLIST
        self.segment_suffix = SEGMENT_TYPES[segment_type]
        self._writer = AvWriter(self._open_container, audio=audio)
        self._ready: asyncio.Event | None = None
        self._is_ready = False
        self._created_dir = False

    def start(self) -> None:
        if self._thread is not None:
            return
        try:
            existed = self.directory.is_dir()
            self.directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OutputError(f"cannot create HLS directory {self.directory}: {exc}") from None
        self._created_dir = not existed
        try:
            asyncio.get_running_loop()
            self._ready = asyncio.Event()
        except RuntimeError:
            self._ready = None
        super().start()

    # -- loop side ---------------------------------------------------------------------------
    @property
    def ready(self) -> bool:
        """Whether the playlist lists at least one segment."""
        return self._is_ready

    async def wait_ready(self, timeout: float) -> None:
        """Wait until the playlist lists a segment; :class:`OutputError` after ``timeout`` s or
        when the output ended first."""
        if self._is_ready:
            return
        if self._ready is None or self._done is None:
            raise OutputError("the HLS output was not started in this loop")
        ready = asyncio.ensure_future(self._ready.wait())
        try:
            await asyncio.wait([ready, self._done], timeout=timeout,
                               return_when=asyncio.FIRST_COMPLETED)
        finally:
            ready.cancel()
        if self._is_ready:
            return
        if self._done.done():
            raise OutputError(f"the HLS output ended before its first segment ({self.end_reason}"
                              + (f": {self.error}" if self.error else "") + ")")
        raise OutputError(f"no HLS segment within {timeout:g} s (no keyframe from the device?)")

    def segment_path(self, name: str) -> pathlib.Path | None:
        """The file of segment ``name`` (a bare file name from the playlist), or None."""
        if "/" in name or "\\" in name or name.startswith("."):
            return None
        if not (name.endswith(self.segment_suffix) or name == INIT):
            return None
        path = self.directory / name
        return path if path.is_file() else None

    def status(self) -> dict[str, Any]:
        counters = self._writer.counters
        return {"directory": str(self.directory), "ready": self._is_ready,
                "running": self.running, "video_frames": counters["video_frames"],
                "audio_frames": counters["audio_frames"], "dropped_frames": self.dropped_frames,
                "video_codec": self._writer.video_codec, "audio": self._writer.audio_codec and "aac",
                "error": str(self.error) if self.error else None}

    # -- thread side -------------------------------------------------------------------------
    def _open_container(self) -> Any:
        flags = "delete_segments+temp_file+independent_segments"
        options = {
            "hls_time": f"{self.segment_seconds:g}",
            "hls_list_size": str(self.list_size),
            "hls_flags": flags,
            "hls_segment_type": self.segment_type,
            "hls_segment_filename": str(self.directory / f"seg%06d{self.segment_suffix}"),
        }
        if self.segment_type == "fmp4":
            options["hls_fmp4_init_filename"] = INIT
        return av.open(str(self.playlist), "w", format="hls", options=options)

    def _process(self, frames: list[Frame]) -> None:
        self._writer.write(frames)
        if not self._is_ready and self._writer.opened and self.playlist.is_file():
            self._is_ready = True
            self._post_ready()

    def _post_ready(self) -> None:
        if self._loop is None or self._ready is None:
            return
        try:
            self._loop.call_soon_threadsafe(self._ready.set)
        except RuntimeError:
            pass

    def _finish(self, reason: str) -> None:
        try:
            if self.error is None:
                self._writer.close()
            else:
                self._writer.abort()
        finally:
            if self.cleanup:
                self._remove_files()
        log.info("HLS output %s ended: %s", self.directory, reason)

    def _remove_files(self) -> None:
        for path in self.directory.iterdir():
            name = path.name
            if name in (PLAYLIST, INIT) or name.startswith("seg") or name.endswith(".tmp"):
                try:
                    path.unlink()
                except OSError as exc:
                    log.warning("cannot remove %s: %s", path, exc)
        if self._created_dir:
            try:
                self.directory.rmdir()
            except OSError:
                pass
