"""GB/T 28181-style MPEG-PS muxer and RTP packetizer — the readable reference implementation.

The compiled twin ``cext/_psmux.pyx`` produces byte-identical output and shares the cold helpers
below (system header, PSM with its CRC).

Layout (PROTOCOL.md §10, ISO/IEC 13818-1 §2.5): every frame becomes one PS unit ::

    video keyframe:  pack header | system header | PSM | PES 0xE0 [| PES 0xE0 …]
    other video:     pack header | PES 0xE0 [| PES 0xE0 …]
    audio frame:     pack header | PES 0xC0 [| …]

* Pack header: MPEG-2, SCR = DTS (kept monotonic, 33-bit), ``program_mux_rate`` as configured, no
  stuffing (byte 13 = 0xF8).
* System header and PSM before every video keyframe, before the first unit and whenever the stream
  set changes (the PSM ``version`` is then incremented).
* PES: PTS, plus DTS when it differs; ``data_alignment_indicator`` on keyframes; a frame larger
  than one PES holds is split into consecutive PES packets, only the first carrying timestamps.

RTP (PROTOCOL.md §9): PT 96, 90 kHz timestamp shared by all packets of a frame, marker bit on the
last packet of each frame, payloads of at most ``mtu_payload`` bytes, one continuous sequence space;
RFC 4571 framing (2-byte length prefix) for TCP.
"""

from __future__ import annotations

import random
import struct

from ._flv_py import normalize_codec
from ._frame import Frame

__all__ = ["PsMuxer", "RtpPacketizer", "STREAM_TYPES", "pack_header", "system_header", "psm",
           "crc32_mpeg", "rfc4571_frame"]

#: PSM ``stream_type`` per codec (PROTOCOL.md §10.3).
STREAM_TYPES = {
    "mpeg4": 0x10, "h264": 0x1B, "h265": 0x24, "svac": 0x80,
    "g711a": 0x90, "g711u": 0x91, "g722.1": 0x92, "g723.1": 0x93, "g729": 0x99,
    "svac_audio": 0x9B, "aac": 0x0F,
}
VIDEO = frozenset(("mpeg4", "h264", "h265", "svac"))
AUDIO = frozenset(("g711a", "g711u", "g722.1", "g723.1", "g729", "svac_audio", "aac"))

VIDEO_STREAM_ID = 0xE0
AUDIO_STREAM_ID = 0xC0
MASK33 = (1 << 33) - 1
HALF33 = 1 << 32
#: Default ``program_mux_rate`` in units of 50 bytes/s (≈ 2.4 Mbit/s; readers ignore it).
DEFAULT_MUX_RATE = 6106
PES_MAX = 0xFFFF


def ps_codec(name: str | None) -> str | None:
    """Canonical PS codec name for ``name`` or None."""
    if name is None:
        return None
    canonical = normalize_codec(name)
    if canonical is not None:
        return canonical
    lowered = name.lower()
    return lowered if lowered in STREAM_TYPES else None


def pack_header(scr: int, mux_rate: int = DEFAULT_MUX_RATE) -> bytes:
    """MPEG-2 pack header (14 bytes, no stuffing) with SCR base ``scr`` (33 bits), extension 0."""
    scr &= MASK33
    return bytes([
        0, 0, 1, 0xBA,
        0x44 | ((scr >> 27) & 0x38) | ((scr >> 28) & 0x03),
        (scr >> 20) & 0xFF,
        0x04 | ((scr >> 12) & 0xF8) | ((scr >> 13) & 0x03),
        (scr >> 5) & 0xFF,
        0x04 | ((scr << 3) & 0xF8),
        0x01,
        (mux_rate >> 14) & 0xFF, (mux_rate >> 6) & 0xFF, 0x03 | ((mux_rate << 2) & 0xFC),
        0xF8,
    ])


def system_header(rate_bound: int, stream_ids: list[int]) -> bytes:
    """System header (0xBB) listing ``stream_ids`` with P-STD bounds for video/audio."""
    audio_bound = sum(1 for s in stream_ids if 0xC0 <= s <= 0xDF)
    video_bound = sum(1 for s in stream_ids if 0xE0 <= s <= 0xEF)
    body = bytearray([0x80 | ((rate_bound >> 15) & 0x7F), (rate_bound >> 7) & 0xFF,
                      ((rate_bound & 0x7F) << 1) | 1, audio_bound << 2, 0x20 | video_bound, 0x7F])
    for sid in stream_ids:
        if 0xE0 <= sid <= 0xEF:
            body += bytes([sid, 0xC0 | (1 << 5) | (1024 >> 8), 1024 & 0xFF])   # 1024 × 1024 B
        else:
            body += bytes([sid, 0xC0 | (32 >> 8), 32 & 0xFF])                   # 32 × 128 B
    return b"\x00\x00\x01\xBB" + struct.pack(">H", len(body)) + bytes(body)


def _crc_table() -> list[int]:
    table = []
    for i in range(256):
        crc = i << 24
        for _ in range(8):
            crc = ((crc << 1) ^ 0x04C11DB7) if crc & 0x80000000 else (crc << 1)
        table.append(crc & 0xFFFFFFFF)
    return table


_CRC_TABLE = _crc_table()


def crc32_mpeg(data: bytes) -> int:
    """MPEG-2 CRC-32 (poly 0x04C11DB7, init 0xFFFFFFFF, no reflection, no final xor)."""
    crc = 0xFFFFFFFF
    for byte in data:
        crc = ((crc << 8) & 0xFFFFFFFF) ^ _CRC_TABLE[((crc >> 24) ^ byte) & 0xFF]
    return crc


def psm(streams: list[tuple[int, int]], version: int = 0) -> bytes:
    """Program stream map for ``[(stream_type, stream_id), …]`` without descriptors."""
    es = b"".join(bytes([st, sid, 0, 0]) for st, sid in streams)
    body = bytes([0xE0 | (version & 0x1F), 0xFF, 0, 0]) + struct.pack(">H", len(es)) + es
    head = b"\x00\x00\x01\xBC" + struct.pack(">H", len(body) + 4) + body
    return head + struct.pack(">I", crc32_mpeg(head))


def _ts(prefix: int, t: int) -> bytes:
    t &= MASK33
    return bytes([(prefix << 4) | (((t >> 30) & 7) << 1) | 1, (t >> 22) & 0xFF,
                  (((t >> 15) & 0x7F) << 1) | 1, (t >> 7) & 0xFF, ((t & 0x7F) << 1) | 1])


def pes_packets(stream_id: int, payload: bytes, pts: int | None, dts: int | None,
                aligned: bool) -> list[bytes]:
    """PES packets of at most 65,535 bytes after the length field; only the first is timed."""
    out = []
    first = True
    pos = 0
    n = len(payload)
    while first or pos < n:
        if first and pts is not None:
            if dts is not None and (dts & MASK33) != (pts & MASK33):
                opt = _ts(3, pts) + _ts(1, dts)
                flags = 0xC0
            else:
                opt = _ts(2, pts)
                flags = 0x80
        else:
            opt = b""
            flags = 0x00
        hdr = bytes([0x84 if (aligned and first) else 0x80, flags, len(opt)]) + opt
        room = PES_MAX - len(hdr)
        chunk = payload[pos:pos + room]
        pos += len(chunk)
        out.append(b"\x00\x00\x01" + bytes([stream_id]) + struct.pack(">H", len(hdr) + len(chunk))
                   + hdr + chunk)
        first = False
    return out


class PsMuxer:
    """One PS unit per :class:`~media.Frame` (see the module docstring for the layout).

    ``video_codec``/``audio_codec`` declare the streams of the PSM (``h264``, ``h265``, ``mpeg4``,
    ``svac``; ``g711a``, ``g711u``, ``aac``, ``g722.1``, ``g723.1``, ``g729``…). A frame of another
    codec replaces the stream of its kind and bumps the PSM version; a codec the PSM cannot
    describe raises ValueError. ``mux_rate`` is ``program_mux_rate`` in units of 50 bytes/s.
    """

    def __init__(self, video_codec: str | None = "h264", audio_codec: str | None = None,
                 mux_rate: int = DEFAULT_MUX_RATE) -> None:
        if not 1 <= mux_rate < (1 << 22):
            raise ValueError("mux_rate must fit 22 bits")
        self.mux_rate = mux_rate
        self.video_codec: str | None = None
        self.audio_codec: str | None = None
        self.psm_version = 0
        self.units = 0
        self._last_scr: int | None = None
        self._ref: int | None = None
        self._tables = b""
        self._send_tables = True
        if video_codec is not None:
            self._set_stream(video_codec, video=True)
        if audio_codec is not None:
            self._set_stream(audio_codec, video=False)
        self._rebuild_tables(bump=False)

    def _set_stream(self, codec: str, video: bool) -> None:
        name = ps_codec(codec)
        if name is None or (name in VIDEO) != video:
            raise ValueError(f"unsupported PS {'video' if video else 'audio'} codec {codec!r}")
        if video:
            self.video_codec = name
        else:
            self.audio_codec = name

    def _rebuild_tables(self, bump: bool) -> None:
        if bump:
            self.psm_version = (self.psm_version + 1) & 0x1F
        streams = []
        if self.video_codec is not None:
            streams.append((STREAM_TYPES[self.video_codec], VIDEO_STREAM_ID))
        if self.audio_codec is not None:
            streams.append((STREAM_TYPES[self.audio_codec], AUDIO_STREAM_ID))
        self._tables = (system_header(self.mux_rate, [sid for _, sid in streams])
                        + psm(streams, self.psm_version))
        self._send_tables = True

    def tables(self) -> bytes:
        """The current system header followed by the PSM."""
        return self._tables

    def _scr(self, dts: int | None) -> int:
        if dts is not None:
            if self._ref is None:
                ext = dts & MASK33
            else:
                d = (dts - self._ref) & MASK33
                if d >= HALF33:
                    d -= 1 << 33
                ext = self._ref + d
            self._ref = ext
            if self._last_scr is None or ext > self._last_scr:
                self._last_scr = ext
        elif self._last_scr is None:
            self._last_scr = 0
        return self._last_scr

    def _stream_of(self, frame: Frame) -> tuple[int, bool]:
        """``(stream_id, is_video)`` for ``frame``, updating the stream set when it changes."""
        codec = frame.codec
        if codec == self.video_codec:
            return VIDEO_STREAM_ID, True
        if codec == self.audio_codec:
            return AUDIO_STREAM_ID, False
        name = ps_codec(codec)
        if name is None:
            raise ValueError(f"codec {codec!r} cannot be carried in GB PS")
        if name == self.video_codec:
            return VIDEO_STREAM_ID, True
        if name == self.audio_codec:
            return AUDIO_STREAM_ID, False
        video = name in VIDEO
        self._set_stream(name, video)
        self._rebuild_tables(bump=True)
        return (VIDEO_STREAM_ID if video else AUDIO_STREAM_ID), video

    def mux(self, frame: Frame) -> bytes:
        """The PS unit carrying ``frame``."""
        stream_id, video = self._stream_of(frame)
        dts = frame.dts if frame.dts is not None else frame.pts
        scr = self._scr(dts)
        key = video and bool(frame.keyframe)
        parts = [pack_header(scr, self.mux_rate)]
        if key or self._send_tables:
            parts.append(self._tables)
            self._send_tables = False
        parts.extend(pes_packets(stream_id, frame.data, frame.pts, frame.dts, key))
        self.units += 1
        return b"".join(parts)


def rfc4571_frame(packet: bytes) -> bytes:
    """``packet`` with the RFC 4571 two-byte length prefix used for RTP over TCP."""
    if len(packet) > 0xFFFF:
        raise ValueError("an RFC 4571 frame holds at most 65,535 bytes")
    return struct.pack(">H", len(packet)) + packet


class RtpPacketizer:
    """Splits PS units into RTP packets (RFC 3550 header, no CSRC/extension).

    ``seq`` is the sequence number of the next packet (random when not given, RFC 3550 §5.1).
    """

    def __init__(self, ssrc: int, payload_type: int = 96, mtu_payload: int = 1400,
                 seq: int | None = None) -> None:
        if not 0 <= ssrc <= 0xFFFFFFFF:
            raise ValueError("ssrc must fit 32 bits")
        if not 0 <= payload_type <= 127:
            raise ValueError("payload_type must fit 7 bits")
        if not 1 <= mtu_payload <= 0xFFFF - 12:
            raise ValueError("mtu_payload must be between 1 and 65,523")
        self.ssrc = ssrc
        self.payload_type = payload_type
        self.mtu_payload = mtu_payload
        self.seq = (random.randrange(0x10000) if seq is None else seq) & 0xFFFF
        self.packets = 0

    def packetize(self, payload: bytes, timestamp: int) -> list[bytes]:
        """RTP packets for one frame's ``payload``; the marker bit is set on the last one."""
        n = len(payload)
        if n == 0:
            return []
        ts = timestamp & 0xFFFFFFFF
        mtu = self.mtu_payload
        out = []
        seq = self.seq
        for start in range(0, n, mtu):
            marker = 0x80 if start + mtu >= n else 0
            out.append(struct.pack(">BBHII", 0x80, marker | self.payload_type, seq, ts, self.ssrc)
                       + payload[start:start + mtu])
            seq = (seq + 1) & 0xFFFF
        self.seq = seq
        self.packets += len(out)
        return out

    def packetize_rfc4571(self, payload: bytes, timestamp: int) -> bytes:
        """:meth:`packetize` output framed for TCP (RFC 4571), concatenated."""
        return b"".join(struct.pack(">H", len(p)) + p for p in self.packetize(payload, timestamp))
