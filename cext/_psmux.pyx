# cython: language_level=3
"""GB-style PS muxer and RTP packetizer, compiled twin of ``media/_psmux_py.py``.

Each PS unit (pack header, tables when due, every PES) is written into one preallocated ``bytes``;
each RTP packet is one allocation plus one ``memcpy``. The system header and PSM come from the
reference module, so both implementations produce identical bytes.
"""

import random

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.list cimport PyList_New, PyList_SET_ITEM
from cpython.ref cimport Py_INCREF
from libc.stdint cimport int64_t, uint8_t
from libc.string cimport memcpy

from media import _psmux_py as _ref

__all__ = ["PsMuxer", "RtpPacketizer", "rfc4571_frame"]

cdef int64_t MASK33 = (<int64_t>1 << 33) - 1
cdef int64_t HALF33 = <int64_t>1 << 32
cdef int64_t WRAP33 = <int64_t>1 << 33

cdef enum:
    PES_MAX = 0xFFFF
    VIDEO_STREAM_ID = 0xE0
    AUDIO_STREAM_ID = 0xC0


cdef inline void _put_ts(uint8_t* o, int prefix, int64_t t) noexcept nogil:
    t &= MASK33
    o[0] = <uint8_t>((prefix << 4) | (((t >> 30) & 7) << 1) | 1)
    o[1] = <uint8_t>((t >> 22) & 0xFF)
    o[2] = <uint8_t>((((t >> 15) & 0x7F) << 1) | 1)
    o[3] = <uint8_t>((t >> 7) & 0xFF)
    o[4] = <uint8_t>(((t & 0x7F) << 1) | 1)


cdef inline void _put_pack_header(uint8_t* o, int64_t scr, int mux_rate) noexcept nogil:
    scr &= MASK33
    o[0] = 0
    o[1] = 0
    o[2] = 1
    o[3] = 0xBA
    o[4] = <uint8_t>(0x44 | ((scr >> 27) & 0x38) | ((scr >> 28) & 0x03))
    o[5] = <uint8_t>((scr >> 20) & 0xFF)
    o[6] = <uint8_t>(0x04 | ((scr >> 12) & 0xF8) | ((scr >> 13) & 0x03))
    o[7] = <uint8_t>((scr >> 5) & 0xFF)
    o[8] = <uint8_t>(0x04 | ((scr << 3) & 0xF8))
    o[9] = 0x01
    o[10] = <uint8_t>((mux_rate >> 14) & 0xFF)
    o[11] = <uint8_t>((mux_rate >> 6) & 0xFF)
    o[12] = <uint8_t>(0x03 | ((mux_rate << 2) & 0xFC))
    o[13] = 0xF8


cdef class PsMuxer:
    """One PS unit per :class:`~media.Frame` (see ``media._psmux_py.PsMuxer``)."""

    cdef readonly int mux_rate
    cdef readonly object video_codec
    cdef readonly object audio_codec
    cdef readonly int psm_version
    cdef public long long units
    cdef bint _has_scr
    cdef int64_t _last_scr
    cdef bint _has_wref
    cdef int64_t _wref
    cdef bytes _tables
    cdef bint _send_tables

    def __init__(self, video_codec="h264", audio_codec=None, int mux_rate=_ref.DEFAULT_MUX_RATE):
        if not 1 <= mux_rate < (1 << 22):
            raise ValueError("mux_rate must fit 22 bits")
        self.mux_rate = mux_rate
        self.video_codec = None
        self.audio_codec = None
        self.psm_version = 0
        self.units = 0
        self._has_scr = False
        self._has_wref = False
        self._tables = b""
        self._send_tables = True
        if video_codec is not None:
            self._set_stream(video_codec, True)
        if audio_codec is not None:
            self._set_stream(audio_codec, False)
        self._rebuild_tables(False)

    cdef _set_stream(self, codec, bint video):
        name = _ref.ps_codec(codec)
        if name is None or (name in _ref.VIDEO) != video:
            raise ValueError(f"unsupported PS {'video' if video else 'audio'} codec {codec!r}")
        if video:
            self.video_codec = name
        else:
            self.audio_codec = name

    cdef _rebuild_tables(self, bint bump):
        if bump:
            self.psm_version = (self.psm_version + 1) & 0x1F
        streams = []
        if self.video_codec is not None:
            streams.append((_ref.STREAM_TYPES[self.video_codec], VIDEO_STREAM_ID))
        if self.audio_codec is not None:
            streams.append((_ref.STREAM_TYPES[self.audio_codec], AUDIO_STREAM_ID))
        self._tables = (_ref.system_header(self.mux_rate, [sid for _, sid in streams])
                        + _ref.psm(streams, self.psm_version))
        self._send_tables = True

    def tables(self):
        """The current system header followed by the PSM."""
        return self._tables

    cdef int64_t _scr(self, object dts) except? -1:
        cdef int64_t ext, raw
        if dts is not None:
            raw = dts
            if not self._has_wref:
                ext = raw & MASK33
                self._has_wref = True
            else:
                ext = (raw - self._wref) & MASK33
                if ext >= HALF33:
                    ext -= WRAP33
                ext += self._wref
            self._wref = ext
            if not self._has_scr or ext > self._last_scr:
                self._last_scr = ext
                self._has_scr = True
        elif not self._has_scr:
            self._last_scr = 0
            self._has_scr = True
        return self._last_scr

    cdef int _stream_of(self, frame, bint* video) except -1:
        codec = frame.codec
        if codec == self.video_codec:
            video[0] = True
            return VIDEO_STREAM_ID
        if codec == self.audio_codec:
            video[0] = False
            return AUDIO_STREAM_ID
        name = _ref.ps_codec(codec)
        if name is None:
            raise ValueError(f"codec {codec!r} cannot be carried in GB PS")
        if name == self.video_codec:
            video[0] = True
            return VIDEO_STREAM_ID
        if name == self.audio_codec:
            video[0] = False
            return AUDIO_STREAM_ID
        video[0] = name in _ref.VIDEO
        self._set_stream(name, video[0])
        self._rebuild_tables(True)
        return VIDEO_STREAM_ID if video[0] else AUDIO_STREAM_ID

    def mux(self, frame):
        """The PS unit carrying ``frame``."""
        cdef bint video = False
        cdef int stream_id = self._stream_of(frame, &video)
        pts_obj = frame.pts
        dts_obj = frame.dts
        cdef int64_t scr = self._scr(dts_obj if dts_obj is not None else pts_obj)
        cdef bint key = video and bool(frame.keyframe)
        cdef bytes data = frame.data if type(frame.data) is bytes else bytes(frame.data)
        cdef const uint8_t* src = <const uint8_t*>PyBytes_AS_STRING(data)
        cdef Py_ssize_t n = PyBytes_GET_SIZE(data)
        cdef bint tables = key or self._send_tables
        cdef Py_ssize_t tables_len = PyBytes_GET_SIZE(self._tables) if tables else 0
        cdef int64_t pts = 0, dts = 0
        cdef int opt = 0
        if pts_obj is not None:
            pts = pts_obj
            opt = 5
            if dts_obj is not None:
                dts = dts_obj
                if (dts & MASK33) != (pts & MASK33):
                    opt = 10

        # Size: pack header, tables, first PES (timed), then untimed continuation PES.
        cdef Py_ssize_t first_room = PES_MAX - 3 - opt
        cdef Py_ssize_t first = n if n < first_room else first_room
        cdef Py_ssize_t rest = n - first
        cdef Py_ssize_t more = (rest + (PES_MAX - 3) - 1) // (PES_MAX - 3)
        cdef Py_ssize_t total = 14 + tables_len + 9 + opt + n + 9 * more
        cdef bytes out = PyBytes_FromStringAndSize(NULL, total)
        cdef uint8_t* o = <uint8_t*>PyBytes_AS_STRING(out)
        cdef Py_ssize_t chunk, pos

        _put_pack_header(o, scr, self.mux_rate)
        o += 14
        if tables:
            memcpy(o, PyBytes_AS_STRING(self._tables), <size_t>tables_len)
            o += tables_len
            self._send_tables = False
        # First PES.
        o[0] = 0
        o[1] = 0
        o[2] = 1
        o[3] = <uint8_t>stream_id
        o[4] = <uint8_t>((3 + opt + first) >> 8)
        o[5] = <uint8_t>((3 + opt + first) & 0xFF)
        o[6] = 0x84 if key else 0x80
        o[7] = 0xC0 if opt == 10 else (0x80 if opt == 5 else 0x00)
        o[8] = <uint8_t>opt
        if opt == 10:
            _put_ts(o + 9, 3, pts)
            _put_ts(o + 14, 1, dts)
        elif opt == 5:
            _put_ts(o + 9, 2, pts)
        o += 9 + opt
        memcpy(o, src, <size_t>first)
        o += first
        pos = first
        while pos < n:
            chunk = n - pos
            if chunk > PES_MAX - 3:
                chunk = PES_MAX - 3
            o[0] = 0
            o[1] = 0
            o[2] = 1
            o[3] = <uint8_t>stream_id
            o[4] = <uint8_t>((3 + chunk) >> 8)
            o[5] = <uint8_t>((3 + chunk) & 0xFF)
            o[6] = 0x80
            o[7] = 0x00
            o[8] = 0
            memcpy(o + 9, src + pos, <size_t>chunk)
            o += 9 + chunk
            pos += chunk
        self.units += 1
        return out


def rfc4571_frame(packet):
    """``packet`` with the RFC 4571 two-byte length prefix used for RTP over TCP."""
    return _ref.rfc4571_frame(packet)


cdef class RtpPacketizer:
    """Splits PS units into RTP packets (see ``media._psmux_py.RtpPacketizer``)."""

    cdef readonly unsigned int ssrc
    cdef readonly int payload_type
    cdef readonly Py_ssize_t mtu_payload
    cdef public int seq
    cdef public long long packets

    def __init__(self, ssrc, int payload_type=96, Py_ssize_t mtu_payload=1400, seq=None):
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

    cdef list _packets(self, bytes payload, unsigned int ts, int prefix):
        cdef const uint8_t* src = <const uint8_t*>PyBytes_AS_STRING(payload)
        cdef Py_ssize_t n = PyBytes_GET_SIZE(payload)
        cdef Py_ssize_t mtu = self.mtu_payload
        cdef Py_ssize_t count = (n + mtu - 1) // mtu
        cdef list out = PyList_New(count)
        cdef Py_ssize_t k, start = 0, size
        cdef unsigned int seq = <unsigned int>self.seq
        cdef unsigned int ssrc = self.ssrc
        cdef bytes pkt
        cdef uint8_t* o
        for k in range(count):
            size = n - start
            if size > mtu:
                size = mtu
            pkt = PyBytes_FromStringAndSize(NULL, prefix + 12 + size)
            o = <uint8_t*>PyBytes_AS_STRING(pkt)
            if prefix:
                o[0] = <uint8_t>((12 + size) >> 8)
                o[1] = <uint8_t>((12 + size) & 0xFF)
                o += 2
            o[0] = 0x80
            o[1] = <uint8_t>((0x80 if k == count - 1 else 0) | self.payload_type)
            o[2] = <uint8_t>(seq >> 8)
            o[3] = <uint8_t>(seq & 0xFF)
            o[4] = <uint8_t>(ts >> 24)
            o[5] = <uint8_t>((ts >> 16) & 0xFF)
            o[6] = <uint8_t>((ts >> 8) & 0xFF)
            o[7] = <uint8_t>(ts & 0xFF)
            o[8] = <uint8_t>(ssrc >> 24)
            o[9] = <uint8_t>((ssrc >> 16) & 0xFF)
            o[10] = <uint8_t>((ssrc >> 8) & 0xFF)
            o[11] = <uint8_t>(ssrc & 0xFF)
            memcpy(o + 12, src + start, <size_t>size)
            Py_INCREF(pkt)
            PyList_SET_ITEM(out, k, pkt)
            start += size
            seq = (seq + 1) & 0xFFFF
        self.seq = <int>seq
        self.packets += count
        return out

    def packetize(self, payload, timestamp):
        """RTP packets for one frame's ``payload``; the marker bit is set on the last one."""
        cdef bytes data = payload if type(payload) is bytes else bytes(payload)
        return self._packets(data, <unsigned int>(<unsigned long long>(timestamp & 0xFFFFFFFF)), 0)

    def packetize_rfc4571(self, payload, timestamp):
        """:meth:`packetize` output framed for TCP (RFC 4571), concatenated."""
        cdef bytes data = payload if type(payload) is bytes else bytes(payload)
        return b"".join(self._packets(data, <unsigned int>(<unsigned long long>(timestamp & 0xFFFFFFFF)), 2))
