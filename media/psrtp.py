"""Relay frames back into GB PS over RTP: the sender side of a cascade (PROTOCOL §9, §10, §11.5).

A lower platform that serves an upper's INVITE sends the channel's video the way a device would:
PS units (:class:`~media.psmux.PsMuxer`) split into RTP packets (:class:`~media.psmux.RtpPacketizer`)
carrying the SSRC of the answer. :class:`PsRtpSink` is a :class:`~media.relay.FrameSink`, so one
running upstream stream serves any number of uppers next to its FLV/HLS viewers::

    sink = PsRtpSink(106000001, send=lambda packets: ..., on_end=lambda reason: ...)
    relay.add_sink(sink)          # the GOP cache first, so the upper decodes from the first packet

Sans-IO: packets go to the ``send`` callback (a list per batch of frames); the caller owns the
socket, and frames them with :func:`~media.psmux.rfc4571_frame` over TCP.

* Output starts at a video keyframe (frames before it are skipped: the upper could not decode
  them) and again after :meth:`PsRtpSink.resync` (a sender that dropped packets because the
  network could not keep up). A stream found to carry no video (``AUDIO_ONLY_AFTER`` audio frames
  and not one video frame) starts with its audio; ``require_keyframe=False`` starts at once.
* Sequence numbers are continuous for the life of the sink, whatever is skipped: a gap means loss
  to the receiver, and nothing was lost on the wire.
* The RTP timestamp is the frame's PTS (90 kHz) shifted to start at a random base (RFC 3550
  §5.1), so a second upper on the same stream does not see the first one's clock.
* A frame PS cannot carry (an unknown codec) is skipped and counted, never raised: one bad frame
  must not end the upper's session.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable

from ._frame import Frame
from .psmux import PsMuxer, RtpPacketizer

__all__ = ["PsRtpSink"]

log = logging.getLogger("media.psrtp")

VIDEO_CODECS = frozenset({"h264", "h265", "mpeg4", "svac"})
MASK32 = 0xFFFFFFFF
#: Audio frames without any video after which a stream is taken to be audio only (~2 s of G.711).
AUDIO_ONLY_AFTER = 50


class PsRtpSink:
    """A relay sink re-muxing frames into PS over RTP with a fixed SSRC (see the module doc).

    ``send(packets)`` gets the RTP packets of each batch (never an empty list); ``on_end(reason)``
    is called once when the relay ends (or the sink is closed by :meth:`close`). ``video_codec`` /
    ``audio_codec`` announce the streams of the first PSM (the relay's codecs when known); a
    codec seen later is added with a new PSM version.
    """

    def __init__(self, ssrc: int, send: Callable[[list[bytes]], None], *,
                 on_end: Callable[[str], None] | None = None, payload_type: int = 96,
                 mtu_payload: int = 1400, seq: int | None = None, timestamp_base: int | None = None,
                 video_codec: str | None = None, audio_codec: str | None = None,
                 require_keyframe: bool = True) -> None:
        self.packetizer = RtpPacketizer(ssrc, payload_type, mtu_payload, seq)
        self._send = send
        self._on_end = on_end
        self._video_codec = video_codec
        self._audio_codec = audio_codec
        self._muxer: PsMuxer | None = None
        self._base = random.randrange(1 << 32) if timestamp_base is None else timestamp_base & MASK32
        self._origin: int | None = None        # PTS of the first frame sent
        self._wait_key = require_keyframe
        self._video_seen = False
        self._audio_waiting = 0
        #: Why the sink ended (None while running).
        self.ended: str | None = None
        self.frames_in = 0
        self.frames_sent = 0
        self.frames_skipped = 0     # before the first keyframe / after a resync
        self.frames_refused = 0     # codecs PS cannot carry
        self.packets_sent = 0
        self.bytes_sent = 0
        self.resyncs = 0

    @property
    def ssrc(self) -> int:
        return self.packetizer.ssrc

    @property
    def started(self) -> bool:
        """Whether a keyframe went out (the receiver can decode from here on)."""
        return self._origin is not None and not self._wait_key

    def resync(self) -> None:
        """Skip frames until the next video keyframe (after the caller dropped output)."""
        if self._origin is not None:
            self._wait_key = True
            self._audio_waiting = 0
            self.resyncs += 1

    # -- FrameSink ----------------------------------------------------------------------------------
    def on_frames(self, frames: list[Frame]) -> None:
        if self.ended is not None:
            return
        packets: list[bytes] = []
        for frame in frames:
            self.frames_in += 1
            if self._wait_key and not self._starts(frame):
                self.frames_skipped += 1
                continue
            out = self._packetize(frame)
            if out is not None:
                packets += out
        if packets:
            self.packets_sent += len(packets)
            self.bytes_sent += sum(len(p) for p in packets)
            self._send(packets)

    def on_end(self, reason: str) -> None:
        if self.ended is not None:
            return
        self.ended = reason
        if self._on_end is not None:
            self._on_end(reason)

    def close(self, reason: str = "closed") -> None:
        """End the sink from the sending side (``on_end`` is called; later frames are ignored)."""
        self.on_end(reason)

    def _starts(self, frame: Frame) -> bool:
        """Whether output may start (again) with ``frame``."""
        if frame.codec in VIDEO_CODECS:
            self._video_seen = True
            if not frame.keyframe:
                return False
        elif self._video_seen:
            return False
        else:
            self._audio_waiting += 1
            if self._audio_waiting < AUDIO_ONLY_AFTER:
                return False
        self._wait_key = False
        return True

    # -- muxing -------------------------------------------------------------------------------------
    def _packetize(self, frame: Frame) -> list[bytes] | None:
        muxer = self._muxer
        if muxer is None:
            video, audio = self._video_codec, self._audio_codec
            if frame.codec in VIDEO_CODECS:
                video = frame.codec
            elif not self._video_seen:
                video, audio = None, frame.codec
            try:
                muxer = self._muxer = PsMuxer(video, audio)
            except ValueError:          # a hint PS cannot describe: start from what is known
                muxer = self._muxer = PsMuxer(video if frame.codec in VIDEO_CODECS else None, None)
        try:
            unit = muxer.mux(frame)
        except ValueError as exc:
            self.frames_refused += 1
            if self.frames_refused == 1:
                log.warning("frame not sent: %s", exc)
            return None
        pts = frame.pts if frame.pts is not None else frame.dts
        if pts is None:
            pts = self._origin or 0
        if self._origin is None:
            self._origin = pts
        self.frames_sent += 1
        return self.packetizer.packetize(unit, (self._base + pts - self._origin) & MASK32)

    def stats(self) -> dict[str, int | str | None]:
        return {"ssrc": self.ssrc, "frames_in": self.frames_in, "frames_sent": self.frames_sent,
                "frames_skipped": self.frames_skipped, "frames_refused": self.frames_refused,
                "packets_sent": self.packets_sent, "bytes_sent": self.bytes_sent,
                "resyncs": self.resyncs, "ended": self.ended}
