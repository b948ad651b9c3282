"""RTMP push: a relayed stream published to an RTMP server by libavformat (``flv`` over ``rtmp://``).

Video is copied (H.264; H.265 goes out as enhanced FLV, which only recent servers accept), audio
is transcoded to AAC or dropped (``audio="aac"|"drop"``). When the server goes away — refused
connection, reset, closed publish — the sink reconnects with exponential backoff
(``backoff_initial`` doubling up to ``backoff_max`` seconds), resuming at the last keyframe it
kept; ``max_retries`` consecutive failures (default: no limit) end it in state ``failed``.

libavformat's ``rtmp`` protocol has no timeouts when opened from PyAV: a refused or reset
connection fails at once, but a server that stops reading (or a host that silently drops
packets) blocks the push thread until the kernel gives up on the TCP connection. :meth:`stop`
does not wait for that thread; :meth:`wait_closed` does.

::

    push = RtmpPushSink("rtmp://127.0.0.1/live/cam1")
    push.start(); relay.add_sink(push)
    push.status()            # state, counters, last error
    relay.remove_sink(push); push.stop(); await push.wait_closed()
"""

from __future__ import annotations

import enum
import logging
import time
import urllib.parse
from typing import Any

import av

from .._frame import Frame
from ._av import VIDEO_CODECS, AvWriter, OutputError, ThreadedSink

__all__ = ["RtmpPushSink", "RtmpState", "check_rtmp_url"]

log = logging.getLogger("media.outputs.rtmp")

#: Frames kept since the last keyframe, to resume a push after a reconnection.
MAX_GOP_FRAMES = 1500


class RtmpState(str, enum.Enum):
    CONNECTING = "connecting"
    STREAMING = "streaming"
    RECONNECTING = "reconnecting"   # waiting for the next attempt
    STOPPED = "stopped"
    FAILED = "failed"


def check_rtmp_url(url: str) -> str:
    """``url`` when it can be published to (``rtmp[s]://host[:port]/app/stream``), else
    :class:`OutputError` saying why."""
    if not isinstance(url, str) or not url:
        raise OutputError("RTMP URL is empty")
    if any(c.isspace() for c in url) or any(ord(c) < 0x20 for c in url):
        raise OutputError("RTMP URL contains white space or control characters")
    try:
        parts = urllib.parse.urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise OutputError(f"malformed RTMP URL: {exc}") from None
    if parts.scheme not in ("rtmp", "rtmps"):
        raise OutputError(f"RTMP URL must start with rtmp:// or rtmps://, not {parts.scheme or url!r}")
    if not parts.hostname:
        raise OutputError("RTMP URL has no host")
    if port == 0:
        raise OutputError("RTMP URL has port 0")
    segments = [s for s in parts.path.split("/") if s]
    if len(segments) < 2:
        raise OutputError("RTMP URL needs an application and a stream name: rtmp://host/app/stream")
    return url


class RtmpPushSink(ThreadedSink):
    """Frame sink publishing the stream to ``url``, reconnecting with backoff (in its thread)."""

    thread_name = "rtmp-push"

    def __init__(self, url: str, *, audio: str = "aac", backoff_initial: float = 1.0,
                 backoff_max: float = 30.0, max_retries: int | None = None,
                 max_queue: int = 1000) -> None:
        super().__init__(max_queue=max_queue)
        self.url = check_rtmp_url(url)
        if backoff_initial <= 0 or backoff_max < backoff_initial:
            raise OutputError("backoff needs 0 < backoff_initial <= backoff_max")
        AvWriter(lambda: None, audio=audio)  # checks the audio mode now, not in the thread
        self.audio = audio
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self.max_retries = max_retries
        self.state = RtmpState.CONNECTING
        self.last_error: str | None = None
        self.connects = 0            # successful publishes
        self.failures = 0            # failed attempts and broken connections, in total
        self.frames_sent = 0         # video and audio
        self.video_frames_sent = 0
        self.bytes_sent = 0
        self.frames_discarded = 0    # received while not connected and not kept for resuming
        self.streaming_since: float | None = None
        self._writer: AvWriter | None = None
        self._gop: list[Frame] = []
        self._retries = 0            # consecutive failures
        self._next_attempt = 0.0     # monotonic time
        self._delay = backoff_initial

    @property
    def display_url(self) -> str:
        """The URL without credentials or query (stream keys often ride in the query)."""
        parts = urllib.parse.urlsplit(self.url)
        host = parts.hostname or ""
        if parts.port:
            host = f"{host}:{parts.port}"
        return urllib.parse.urlunsplit((parts.scheme, host, parts.path, "", ""))

    def status(self) -> dict[str, Any]:
        return {"url": self.display_url, "state": self.state.value, "connects": self.connects,
                "failures": self.failures, "frames_sent": self.frames_sent,
                "video_frames_sent": self.video_frames_sent,
                "bytes_sent": self.bytes_sent, "dropped_frames": self.dropped_frames,
                "frames_discarded": self.frames_discarded, "last_error": self.last_error,
                "retry_in": (round(max(0.0, self._next_attempt - time.monotonic()), 3)
                             if self.state is RtmpState.RECONNECTING else None),
                "streaming_since": self.streaming_since}

    # -- thread side -------------------------------------------------------------------------
    def _open_container(self) -> Any:
        return av.open(self.url, "w", format="flv", options={"flvflags": "no_duration_filesize"})

    def _keep(self, frames: list[Frame]) -> None:
        for f in frames:
            if f.keyframe and f.codec in VIDEO_CODECS:
                self.frames_discarded += len(self._gop) if self._writer is None else 0
                self._gop = [f]
            elif self._gop and len(self._gop) < MAX_GOP_FRAMES:
                self._gop.append(f)
            elif self._writer is None:
                self.frames_discarded += 1

    def _process(self, frames: list[Frame]) -> None:
        self._keep(frames)
        if self._writer is not None:
            self._send(frames)
        elif time.monotonic() >= self._next_attempt:
            self._connect()

    def _idle_timeout(self) -> float | None:
        if self.state is RtmpState.RECONNECTING:
            return max(0.01, self._next_attempt - time.monotonic())
        return None

    def _idle(self) -> None:
        if self._writer is None and time.monotonic() >= self._next_attempt and self._gop:
            self._connect()

    def _connect(self) -> None:
        if not self._gop:
            return       # nothing to start with until a keyframe comes
        self.state = RtmpState.CONNECTING
        self._writer = AvWriter(self._open_container, audio=self.audio)
        self._send(list(self._gop))

    def _send(self, frames: list[Frame]) -> None:
        writer = self._writer
        assert writer is not None
        before_v, before_a = writer.counters["video_frames"], writer.counters["audio_frames"]
        before_b = writer.counters["video_bytes"]
        try:
            writer.write(frames)
        except (av.error.FFmpegError, OSError) as exc:
            self._failed(exc)
            return
        if writer.opened and self.state is not RtmpState.STREAMING:
            self.state = RtmpState.STREAMING
            self.connects += 1
            self._retries = 0
            self._delay = self.backoff_initial
            self.streaming_since = time.time()
            self.last_error = None
            log.info("RTMP push to %s streaming", self.display_url)
        self.video_frames_sent += writer.counters["video_frames"] - before_v
        self.frames_sent += (writer.counters["video_frames"] - before_v
                             + writer.counters["audio_frames"] - before_a)
        self.bytes_sent += writer.counters["video_bytes"] - before_b

    def _failed(self, exc: BaseException) -> None:
        writer, self._writer = self._writer, None
        if writer is not None:
            writer.abort()
        self.failures += 1
        self._retries += 1
        self.streaming_since = None
        self.last_error = str(exc) or type(exc).__name__
        if self.max_retries is not None and self._retries > self.max_retries:
            self.state = RtmpState.FAILED
            raise OutputError(f"RTMP push to {self.display_url} failed {self._retries} times, "
                              f"last: {self.last_error}")
        self.state = RtmpState.RECONNECTING
        self._next_attempt = time.monotonic() + self._delay
        log.warning("RTMP push to %s: %s; next attempt in %.1f s", self.display_url,
                    self.last_error, self._delay)
        self._delay = min(self._delay * 2, self.backoff_max)

    def _finish(self, reason: str) -> None:
        writer, self._writer = self._writer, None
        self._gop = []
        if writer is not None:
            writer.abort()
        if self.state is not RtmpState.FAILED:
            self.state = RtmpState.STOPPED
        log.info("RTMP push to %s ended: %s", self.display_url, reason)
