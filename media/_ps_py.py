"""MPEG-2 program stream demuxer for GB/T 28181 media (readable reference of ``cext/_ps.pyx``).

Layout followed (ISO/IEC 13818-1): pack header §2.5.3.3 (MPEG-1: ISO/IEC 11172-1 §2.4.3.2), system
header §2.5.3.5, program stream map §2.5.4.1, PES packet §2.4.3.6 (MPEG-1 PES: 11172-1 §2.4.3.3),
PTS/DTS coding §2.4.3.7. Stream types: Table 2-34 plus the GB/T 28181 private values.

Input is hostile (PROTOCOL.md §10.5): every inconsistency is counted in :attr:`PsDemuxer.errors` and
parsing resumes at the next pack start code ``00 00 01 BA``. An access unit that may have lost bytes
is dropped, never emitted. Input may be split at any byte: results never depend on the split.
"""

from __future__ import annotations

from ._frame import Frame

# Stream types (ISO 13818-1 Table 2-34 and GB/T 28181 Annex) -> codec names.
STREAM_TYPES: dict[int, str] = {
    0x10: "mpeg4", 0x1B: "h264", 0x24: "h265", 0x80: "svac",
    0x90: "g711a", 0x91: "g711u", 0x92: "g7221", 0x93: "g7231", 0x99: "g729", 0x9B: "svac_audio",
    0x0F: "aac", 0x03: "mp2", 0x04: "mp2",
}
VIDEO_CODECS = frozenset({"h264", "h265", "mpeg4", "svac"})

#: Base counter names always present in :attr:`PsDemuxer.stats`.
STAT_NAMES = ("bytes", "packs", "system_headers", "psms", "pes", "skipped_pes", "frames",
              "skipped_bytes", "discontinuities")
#: Error reasons that may appear in :attr:`PsDemuxer.errors`.
ERROR_NAMES = ("sync_lost", "unknown_start_code", "pack_header", "psm_invalid", "psm_length",
               "pes_header", "damaged_frame", "orphan_pes", "frame_too_large", "truncated",
               "psm_codec_mismatch")

# Parser states.
_SEARCH = 0     # looking for 00 00 01 BA (start, or after an error)
_EXPECT = 1     # a start code must be at the current position
_BODY = 2       # copying (or skipping) ``_remaining`` bytes of a PES body
_UNBOUNDED = 3  # PES_packet_length 0: body runs to the next system start code (>= 0xB9)

_PACK_START = b"\x00\x00\x01\xba"
_START = b"\x00\x00\x01"
_PEEK = 6  # payload bytes looked at when a PES starts: 00 00 00 01 + 2 NAL header bytes

# Kinds of the first NAL unit of a PES payload.
_NAL_OTHER = 0
_NAL_AUD = 1    # access unit delimiter: always starts an access unit
_NAL_PS = 2     # VPS/SPS (or MPEG-4 VOS/GOV): starts an access unit that follows a picture
_NAL_VCL = 3    # coded picture data


def _read_ts(buf, i: int) -> int:
    """33-bit PTS/DTS from 5 bytes (13818-1 §2.4.3.7: marker bits ignored)."""
    return (((buf[i] >> 1) & 7) << 30 | buf[i + 1] << 22 | (buf[i + 2] >> 1) << 15
            | buf[i + 3] << 7 | buf[i + 4] >> 1)


def _nal_kind(codec: str, b0: int) -> int:
    """Classify a NAL unit header byte for access-unit boundary decisions."""
    if codec == "h264":
        t = b0 & 0x1F
        return _NAL_AUD if t == 9 else _NAL_PS if t == 7 else _NAL_VCL if 1 <= t <= 5 else _NAL_OTHER
    if codec == "h265":
        t = (b0 >> 1) & 0x3F
        return _NAL_AUD if t == 35 else _NAL_PS if t in (32, 33) else _NAL_VCL if t < 32 else _NAL_OTHER
    if codec == "svac":
        t = (b0 >> 2) & 0x0F
        return _NAL_AUD if t == 10 else _NAL_PS if t == 7 else _NAL_VCL if 1 <= t <= 4 else _NAL_OTHER
    if codec == "mpeg4":
        return _NAL_VCL if b0 == 0xB6 else _NAL_PS if b0 in (0xB0, 0xB3) else _NAL_OTHER
    return _NAL_OTHER


def _sniff(b0: int, b1: int) -> str | None:
    """Codec proven by one NAL header, or None when the header fits several codecs.

    H.265 VPS/SPS/PPS/AUD (``40/42/44/46 01``) are invalid or unused as H.264 headers; H.264
    SPS/PPS with nal_ref_idc != 0 and the H.264 AUD byte 0x09 are invalid as H.265 headers; MPEG-4
    visual VOS/VOP start codes are above every NAL header byte.
    """
    if b1 == 0x01 and b0 in (0x40, 0x42, 0x44, 0x46):
        return "h265"
    if b0 == 0x09 or (b0 & 0x80 == 0 and b0 & 0x60 and b0 & 0x1F in (7, 8)):
        return "h264"
    if b0 in (0xB0, 0xB6):
        return "mpeg4"
    return None


class _Stream:
    """Per elementary stream state: the access unit being assembled and what is known of it."""

    __slots__ = ("sid", "video", "declared", "sniffed", "au", "active", "pts", "dts", "has_vcl",
                 "damaged", "damaged_pts", "next_pts4")

    def __init__(self, sid: int) -> None:
        self.sid = sid
        self.video = 0xE0 <= sid <= 0xEF
        self.declared: str | None = None   # from the PSM
        self.sniffed: str | None = None    # proven by the payload (wins over the PSM)
        self.au = bytearray()
        self.active = False
        self.pts: int | None = None
        self.dts: int | None = None
        self.has_vcl = False
        self.damaged = False               # the next access unit start is not yet seen
        self.damaged_pts: int | None = None
        self.next_pts4 = -1                # G.711 timing for PES without PTS, in 1/4 ticks


class PsDemuxer:
    """Turns MPEG-PS bytes (in chunks of any size) into :class:`~media.Frame` access units.

    Video access units end where the next one starts: a PES whose PTS differs, or a PES opening
    with an access unit delimiter (or a parameter set after picture data). Audio frames are one PES
    each. :meth:`flush` emits the last complete access unit at end of input. Call
    :meth:`discontinuity` when the transport lost data (RTP sequence gap): whatever was being
    assembled is dropped and counted and parsing resumes at the next pack header.

    ``audio_codec``/``video_codec`` name the codecs to assume for streams no PSM describes (e.g.
    from the SDP); video is sniffed from NAL units regardless, as PSMs are known to lie.
    """

    def __init__(self, audio_codec: str | None = None, video_codec: str | None = None,
                 max_frame_size: int = 8 << 20) -> None:
        self.audio_codec = audio_codec
        self.video_codec = video_codec
        self.max_frame_size = max_frame_size
        self._streams: dict[int, _Stream] = {}
        self._stash = bytearray()
        self._need = 0
        self._state = _SEARCH
        self._remaining = 0
        self._target: _Stream | None = None
        self._au_total = 0  # bytes held in all access units together
        #: Stream types from the last PSM: stream_id -> stream_type.
        self.stream_types: dict[int, int] = {}
        #: Latest parameter sets per video stream: stream_id -> {"vps"|"sps"|"pps": NAL bytes}.
        self.parameter_sets: dict[int, dict[str, bytes]] = {}
        self._errors: dict[str, int] = {}
        self._stats: dict[str, int] = dict.fromkeys(STAT_NAMES, 0)

    # -- public ---------------------------------------------------------------------------------

    @property
    def errors(self) -> dict[str, int]:
        """Error reason -> count (only reasons that occurred)."""
        return dict(self._errors)

    @property
    def stats(self) -> dict[str, int]:
        """Counters: bytes, packs, system_headers, psms, pes, skipped_pes, frames, skipped_bytes,
        discontinuities, and ``frames_<codec>`` per codec emitted."""
        return dict(self._stats)

    @property
    def streams(self) -> dict[int, str]:
        """stream_id -> codec, for the streams seen so far."""
        return {sid: self._codec(s) for sid, s in self._streams.items()}

    @property
    def buffered(self) -> int:
        """Bytes held: a partial header plus the access units being assembled."""
        return len(self._stash) + self._au_total

    def feed(self, data) -> list[Frame]:
        """Consume a chunk of the program stream; return the access units it completes."""
        out: list[Frame] = []
        if not isinstance(data, (bytes, bytearray)):
            data = bytes(data)
        self._stats["bytes"] += len(data)
        if self._stash:
            self._stash += data
            if len(self._stash) < self._need:
                return out
            buf, self._stash = self._stash, bytearray()
        else:
            buf = data
        with memoryview(buf) as view:
            pos = self._run(buf, view, out)
        if pos < len(buf):
            self._stash = bytearray(buf[pos:])
        return out

    def flush(self) -> list[Frame]:
        """End of input: finish a PES running to end of stream, emit complete access units."""
        out: list[Frame] = []
        stash, self._stash = self._stash, bytearray()
        if self._state == _UNBOUNDED:
            self._append(self._target, stash)
            self._end_pes(out)
        elif self._state == _BODY or (self._state == _EXPECT and stash):
            self._count("truncated")
            target = self._target if self._state == _BODY else None
            if target is not None and target.active:
                self._reset_au(target)
                target.damaged = True
        elif self._state == _SEARCH:
            self._stats["skipped_bytes"] += len(stash)
        for stream in self._streams.values():
            if stream.active:
                self._emit(stream, out)
        self._state = _SEARCH
        self._target = None
        self._need = 0
        return out

    def discontinuity(self) -> None:
        """The transport lost bytes here: drop partial access units, resync on a pack header."""
        self._stats["discontinuities"] += 1
        self._stash = bytearray()
        self._drop_all()
        self._state = _SEARCH
        self._target = None

    # -- parsing --------------------------------------------------------------------------------

    def _run(self, buf, view, out: list) -> int:
        """Parse ``buf`` as far as possible; return where parsing stopped (``_need`` says why)."""
        pos = 0
        end = len(buf)
        while True:
            state = self._state
            if state == _BODY:
                if pos >= end:
                    self._need = 1
                    return pos
                take = min(end - pos, self._remaining)
                if self._target is not None:
                    self._append(self._target, view[pos:pos + take])
                pos += take
                self._remaining -= take
                if self._remaining == 0:
                    self._state = _EXPECT
                    self._end_pes(out)
                continue
            if state == _UNBOUNDED:
                # PES_packet_length 0 (13818-1 §2.4.3.7, video only): the body ends before the
                # next start code of the system layer. Neither H.264/H.265 (NAL header < 0x80) nor
                # MPEG-4 visual (codes < 0xB9) can contain one.
                j = pos
                stop = -1
                while True:
                    k = buf.find(_START, j, end)
                    if k < 0 or k + 3 >= end:
                        break
                    if buf[k + 3] >= 0xB9:
                        stop = k
                        break
                    j = k + 1
                if stop >= 0:
                    self._append(self._target, view[pos:stop])
                    pos = stop
                    self._state = _EXPECT
                    self._end_pes(out)
                    continue
                stop = max(pos, end - 3)  # keep what may be the beginning of a start code
                self._append(self._target, view[pos:stop])
                self._need = end - stop + 1
                return stop
            if state == _SEARCH:
                k = buf.find(_PACK_START, pos, end)
                if k < 0:
                    stop = max(pos, end - 3)
                    self._stats["skipped_bytes"] += stop - pos
                    self._need = end - stop + 1
                    return stop
                self._stats["skipped_bytes"] += k - pos
                pos = k
                self._state = _EXPECT
                continue
            # _EXPECT: a start code (13818-1 §2.5.3.1 start codes) must be here.
            avail = end - pos
            if avail < 4:
                self._need = 4
                return pos
            if buf[pos] != 0 or buf[pos + 1] != 0 or buf[pos + 2] != 1:
                self._lose_sync("sync_lost")
                continue
            sid = buf[pos + 3]
            if sid == 0xBA:
                # Pack header §2.5.3.3: '01' marks MPEG-2 (14 bytes + pack_stuffing_length in the
                # low 3 bits of byte 13, skipped by length: vendors put counters there);
                # '0010' marks an MPEG-1 pack (12 bytes).
                if avail < 5:
                    self._need = 5
                    return pos
                b4 = buf[pos + 4]
                if b4 & 0xC0 == 0x40:
                    if avail < 14:
                        self._need = 14
                        return pos
                    size = 14 + (buf[pos + 13] & 7)
                elif b4 & 0xF0 == 0x20:
                    size = 12
                else:
                    pos += 4
                    self._lose_sync("pack_header")
                    continue
                if avail < size:
                    self._need = size
                    return pos
                self._stats["packs"] += 1
                pos += size
                continue
            if sid < 0xB9:
                self._lose_sync("unknown_start_code")
                continue
            if sid == 0xB9:  # MPEG_program_end_code
                pos += 4
                continue
            if avail < 6:
                self._need = 6
                return pos
            length = (buf[pos + 4] << 8) | buf[pos + 5]
            if sid == 0xBC:
                if avail < 6 + length:
                    self._need = 6 + length
                    return pos
                self._parse_psm(buf, pos, 6 + length)
                pos += 6 + length
                continue
            if sid == 0xBB or sid < 0xC0 or sid >= 0xF0:
                # System header §2.5.3.5, private_stream_1/2, padding, ECM/EMM/DSM-CC...: skipped
                # whole by length so start-code look-alikes inside are never seen.
                if sid == 0xBB:
                    self._stats["system_headers"] += 1
                else:
                    self._stats["skipped_pes"] += 1
                pos += 6
                self._target = None
                self._remaining = length
                self._state = _BODY if length else _EXPECT
                continue
            result = self._parse_pes(buf, pos, avail, length, out)
            if result is None:
                return pos
            pos += result

    def _parse_pes(self, buf, pos: int, avail: int, length: int, out: list) -> int | None:
        """PES header at ``pos`` (§2.4.3.6). Return bytes consumed, or None when more are needed."""
        sid = buf[pos + 3]
        if avail < 7:
            self._need = 7
            return None
        pts = dts = None
        bad = False
        if buf[pos + 6] & 0xC0 == 0x80:
            # MPEG-2 syntax: '10' flags(6) PTS_DTS_flags(2) ... PES_header_data_length(8).
            if avail < 9:
                self._need = 9
                return None
            hsize = 9 + buf[pos + 8]
            if length and (length < 3 or hsize > 6 + length):
                bad = True
            else:
                if avail < hsize:
                    self._need = hsize
                    return None
                flags = buf[pos + 7] >> 6
                if flags == 2 and hsize >= 14:
                    pts = dts = _read_ts(buf, pos + 9)
                elif flags == 3 and hsize >= 19:
                    pts = _read_ts(buf, pos + 9)
                    dts = _read_ts(buf, pos + 14)
                elif flags != 0:
                    bad = True  # '01' is forbidden; or the header is too short for the stamps
        elif length == 0:
            # MPEG-1 PES have no unbounded form: this is not a PES header.
            self._lose_sync("pes_header")
            return 4
        else:
            # MPEG-1 syntax (11172-1 §2.4.3.3): up to 16 stuffing 0xFF, optional '01' STD buffer
            # (2 bytes), then '0010' PTS | '0011' PTS DTS | 0x0F.
            head = min(length, 28)
            if avail < 6 + head:
                self._need = 6 + head
                return None
            k = pos + 6
            limit = pos + 6 + length
            while k < limit and buf[k] == 0xFF and k < pos + 22:
                k += 1
            if k < limit and buf[k] & 0xC0 == 0x40:
                k += 2
            c = buf[k] if k < limit else -1
            if c >= 0 and c & 0xF0 == 0x20 and k + 5 <= limit:
                pts = dts = _read_ts(buf, k)
                k += 5
            elif c >= 0 and c & 0xF0 == 0x30 and k + 10 <= limit:
                pts = _read_ts(buf, k)
                dts = _read_ts(buf, k + 5)
                k += 10
            elif c == 0x0F:
                k += 1
            else:
                bad = True
            hsize = k - pos
        stream = self._stream(sid)
        if bad:
            self._stats["pes"] += 1
            # The length may still be right: skip this PES, the access unit is damaged.
            self._count("pes_header")
            self._drop(stream)
            self._target = None
            self._remaining = length
            self._state = _BODY if length else _EXPECT
            return 6
        payload = 6 + length - hsize if length else -1
        peek = _PEEK if payload < 0 else min(payload, _PEEK)
        if avail < hsize + peek:
            self._need = hsize + peek
            return None
        self._stats["pes"] += 1
        self._start_pes(stream, pts, dts, buf, pos + hsize, peek, out)
        if payload < 0:
            self._state = _UNBOUNDED
        elif payload:
            self._remaining = payload
            self._state = _BODY
        else:
            self._state = _EXPECT
            self._end_pes(out)
        return hsize

    def _parse_psm(self, buf, pos: int, size: int) -> None:
        """Program stream map §2.5.4.1. ``elementary_stream_map_length`` is known to lie (it is 8
        where the entries take 14 bytes in a field tool's sample), so entries are read up to the
        CRC_32 found from ``program_stream_map_length``, and the disagreement is counted."""
        self._stats["psms"] += 1
        end = pos + size - 4  # CRC_32 (not checked: many devices write it wrong or zero)
        if size < 16:
            self._count("psm_invalid")
            return
        info_len = (buf[pos + 8] << 8) | buf[pos + 9]
        p = pos + 10 + info_len  # descriptors of program_stream_info skipped by length
        if p + 2 > end:
            self._count("psm_invalid")
            return
        es_len = (buf[p] << 8) | buf[p + 1]
        p += 2
        if p + es_len != end:
            self._count("psm_length")
        types: dict[int, int] = {}
        while p + 4 <= end:
            stream_type = buf[p]
            sid = buf[p + 1]
            info = (buf[p + 2] << 8) | buf[p + 3]
            if p + 4 + info > end:
                self._count("psm_invalid")
                break
            types[sid] = stream_type
            p += 4 + info
        self.stream_types = types
        for sid, stream_type in types.items():
            codec = STREAM_TYPES.get(stream_type)
            if codec is None or not (0xC0 <= sid <= 0xEF):
                continue
            stream = self._stream(sid)
            stream.declared = codec
            stream.video = codec in VIDEO_CODECS

    # -- access units ---------------------------------------------------------------------------

    def _stream(self, sid: int) -> _Stream:
        stream = self._streams.get(sid)
        if stream is None:
            stream = self._streams[sid] = _Stream(sid)
        return stream

    def _codec(self, stream: _Stream) -> str:
        if stream.video:
            return stream.sniffed or stream.declared or self.video_codec or "h264"
        return stream.declared or stream.sniffed or self.audio_codec or "g711a"

    def _note_sniff(self, stream: _Stream, codec: str) -> None:
        if codec != stream.sniffed:
            stream.sniffed = codec
            if stream.declared is not None and stream.declared != codec:
                self._count("psm_codec_mismatch")

    def _start_pes(self, stream: _Stream, pts, dts, buf, start: int, peek: int,
                   out: list) -> None:
        """Decide where the PES starting at ``start`` belongs (``peek`` payload bytes readable)."""
        if not stream.video:
            # Audio: one PES is one frame. No PTS: continue G.711 timing from the sample count.
            if stream.active:
                self._drop(stream)
            if stream.declared is None and peek >= 2 and buf[start] == 0xFF \
                    and buf[start + 1] & 0xF6 == 0xF0:
                stream.sniffed = "aac"  # ADTS syncword, layer 0
            if pts is None and stream.next_pts4 >= 0 and self._codec(stream) in ("g711a", "g711u"):
                pts = dts = stream.next_pts4 >> 2
            stream.active = True
            stream.pts = pts
            stream.dts = dts
            stream.damaged = False
            self._target = stream
            return
        kind = _NAL_OTHER
        nal = -1
        if peek >= 4 and buf[start] == 0 and buf[start + 1] == 0:
            if buf[start + 2] == 1:
                nal = start + 3
            elif peek >= 5 and buf[start + 2] == 0 and buf[start + 3] == 1:
                nal = start + 4
        if nal >= 0:
            b0 = buf[nal]
            b1 = buf[nal + 1] if nal + 1 < start + peek else -1
            sniffed = _sniff(b0, b1)
            if sniffed is not None and stream.declared not in ("mpeg4", "svac"):
                self._note_sniff(stream, sniffed)
            kind = _nal_kind(self._codec(stream), b0)
        if stream.active:
            if pts is not None and stream.pts is not None and pts != stream.pts:
                self._emit(stream, out)
            elif kind == _NAL_AUD and stream.au or kind == _NAL_PS and stream.has_vcl:
                self._emit(stream, out)
        if not stream.active:
            if stream.damaged:
                # Part of an access unit whose start was lost: only a new timestamp or an access
                # unit opening NAL unit proves a fresh start.
                if not ((pts is not None and pts != stream.damaged_pts)
                        or kind == _NAL_AUD or kind == _NAL_PS):
                    self._count("orphan_pes")
                    self._target = None
                    return
                stream.damaged = False
            stream.active = True
            stream.pts = pts
            stream.dts = dts
            stream.has_vcl = False
        elif stream.pts is None and pts is not None:
            stream.pts = pts
            stream.dts = dts
        if kind == _NAL_VCL:
            stream.has_vcl = True
        self._target = stream

    def _append(self, stream: _Stream | None, data) -> None:
        """Grow the access unit; one unit may not exceed ``max_frame_size`` nor all of them
        together twice that (hostile input must not make memory grow with the stream count)."""
        if stream is None or not data:
            return
        n = len(data)
        if len(stream.au) + n > self.max_frame_size or \
                self._au_total + n > 2 * self.max_frame_size:
            self._count("frame_too_large")
            self._drop(stream, count=False)
            self._target = None
            return
        stream.au += data
        self._au_total += n

    def _end_pes(self, out: list) -> None:
        stream = self._target
        self._target = None
        if stream is not None and not stream.video and stream.active:
            self._emit(stream, out)

    def _emit(self, stream: _Stream, out: list) -> None:
        data = bytes(stream.au)
        codec = self._codec(stream)
        keyframe = True
        if stream.video:
            codec, keyframe = self._inspect(stream, data)
        elif codec in ("g711a", "g711u") and stream.pts is not None:
            stream.next_pts4 = (stream.pts << 2) + len(data) * 45  # 90000 / 8000 = 45 / 4
        self._reset_au(stream)
        if not data:
            return
        out.append(Frame(codec, stream.pts, stream.dts, keyframe, data, stream.sid))
        self._stats["frames"] += 1
        key = "frames_" + codec
        self._stats[key] = self._stats.get(key, 0) + 1

    def _inspect(self, stream: _Stream, data: bytes) -> tuple[str, bool]:
        """Walk the Annex B start codes once: sniff the codec, find keyframes and parameter sets.

        Keyframes: H.264 IDR (5) or SPS (7); H.265 IRAP (16..21); SVAC IDR (2, 4) or SPS (7);
        MPEG-4 I-VOP.
        """
        nals: list[tuple[int, int, int]] = []  # (header offset, b0, b1)
        n = len(data)
        i = data.find(_START)
        while 0 <= i and i + 3 < n:
            h = i + 3
            nals.append((h, data[h], data[h + 1] if h + 1 < n else -1))
            i = data.find(_START, h)
        if stream.declared not in ("mpeg4", "svac"):
            verdict = None
            for _, b0, b1 in nals:
                sniffed = _sniff(b0, b1)
                if sniffed == "h265":
                    verdict = sniffed
                    break
                if verdict is None:
                    verdict = sniffed
            if verdict is not None:
                self._note_sniff(stream, verdict)
        codec = self._codec(stream)
        keyframe = False
        sets: dict[str, bytes] | None = None
        for idx, (h, b0, b1) in enumerate(nals):
            if codec == "h264":
                t = b0 & 0x1F
                if t == 5 or t == 7:
                    keyframe = True
                name = "sps" if t == 7 else "pps" if t == 8 else None
            elif codec == "h265":
                t = (b0 >> 1) & 0x3F
                if 16 <= t <= 21:
                    keyframe = True
                name = "vps" if t == 32 else "sps" if t == 33 else "pps" if t == 34 else None
            elif codec == "svac":
                t = (b0 >> 2) & 0x0F
                if t in (2, 4, 7):
                    keyframe = True
                name = None
            else:
                if b0 == 0xB6 and b1 >= 0 and b1 >> 6 == 0:
                    keyframe = True
                name = None
            if name is not None:
                end = nals[idx + 1][0] - 3 if idx + 1 < len(nals) else n
                while end > h and data[end - 1] == 0:
                    end -= 1
                if sets is None:
                    sets = self.parameter_sets.setdefault(stream.sid, {})
                sets[name] = data[h:end]
        return codec, keyframe

    def _reset_au(self, stream: _Stream) -> None:
        self._au_total -= len(stream.au)
        stream.au = bytearray()
        stream.active = False
        stream.has_vcl = False

    def _drop(self, stream: _Stream, count: bool = True) -> None:
        """Discard the access unit being assembled; wait for a provable fresh start."""
        if stream.active:
            if count:
                self._count("damaged_frame")
            stream.damaged_pts = stream.pts
            self._reset_au(stream)
        elif not stream.damaged:
            stream.damaged_pts = None
        stream.damaged = True

    def _drop_all(self) -> None:
        for stream in self._streams.values():
            self._drop(stream)

    def _lose_sync(self, reason: str) -> None:
        self._count(reason)
        self._drop_all()
        self._target = None
        self._state = _SEARCH

    def _count(self, reason: str) -> None:
        self._errors[reason] = self._errors.get(reason, 0) + 1
