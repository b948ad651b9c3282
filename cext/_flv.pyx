# cython: language_level=3
"""FLV muxer, compiled twin of ``media/_flv_py.py`` (read that file for the format references).

Only the per-frame path lives here: Annex B start codes are found by ``cext/_startcode.h`` into a reusable
C array of NAL spans, and every frame's tag (plus a sequence header when one is due) is written
into one preallocated ``bytes`` object. Parameter-set parsing, configuration records, AMF0 and
ADTS splitting are shared with the reference module, so both produce identical bytes.
"""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.ref cimport PyObject, Py_INCREF, Py_XDECREF
from libc.stdint cimport int64_t, uint8_t
from libc.stdlib cimport free, realloc
from libc.string cimport memcpy

from media import _flv_py as _ref

__all__ = ["FlvMuxer"]

cdef int64_t MASK33 = (<int64_t>1 << 33) - 1
cdef int64_t HALF33 = <int64_t>1 << 32
cdef int64_t WRAP33 = <int64_t>1 << 33

cdef enum:
    TAG_AUDIO = 8
    TAG_VIDEO = 9
    CODEC_ID_AVC = 7
    CODEC_ID_HEVC_LEGACY = 12


cdef inline int64_t _floor90(int64_t t) noexcept nogil:
    """90 kHz ticks to milliseconds, rounding towards minus infinity (C division truncates)."""
    if t >= 0:
        return t // 90
    return -((-t + 89) // 90)


cdef inline int64_t _signed33(int64_t d) noexcept nogil:
    d &= MASK33
    if d >= HALF33:
        d -= WRAP33
    return d


cdef extern from "Python.h":
    int _PyBytes_Resize(PyObject** bytes, Py_ssize_t newsize) except -1


cdef extern from "_startcode.h":
    # First k >= i with p[k:k+3] == 00 00 01 and k + 3 <= n, else -1 (like bytes.find);
    # SSE2 where available (see cext/_startcode.h).
    Py_ssize_t _find_start "sip28181_find_start"(const uint8_t *p, Py_ssize_t i,
                                                 Py_ssize_t n) noexcept nogil


cdef inline void _put_tag_header(uint8_t* o, int tag_type, Py_ssize_t size, int64_t ms) noexcept nogil:
    cdef unsigned int ts = <unsigned int>(<unsigned long long>ms)
    o[0] = <uint8_t>tag_type
    o[1] = <uint8_t>((size >> 16) & 0xFF)
    o[2] = <uint8_t>((size >> 8) & 0xFF)
    o[3] = <uint8_t>(size & 0xFF)
    o[4] = <uint8_t>((ts >> 16) & 0xFF)
    o[5] = <uint8_t>((ts >> 8) & 0xFF)
    o[6] = <uint8_t>(ts & 0xFF)
    o[7] = <uint8_t>(ts >> 24)
    o[8] = 0
    o[9] = 0
    o[10] = 0


cdef inline void _put_u32(uint8_t* o, unsigned int v) noexcept nogil:
    o[0] = <uint8_t>(v >> 24)
    o[1] = <uint8_t>((v >> 16) & 0xFF)
    o[2] = <uint8_t>((v >> 8) & 0xFF)
    o[3] = <uint8_t>(v & 0xFF)


cdef class FlvMuxer:
    """Turns :class:`~media.Frame` access units into FLV tags (see ``media._flv_py.FlvMuxer``)."""

    cdef readonly object video_codec
    cdef readonly object audio_codec
    cdef readonly str hevc_mode
    cdef public int width
    cdef public int height
    cdef public long long frames_in
    cdef public long long frames_out
    cdef public long long frames_dropped

    cdef bint _hevc
    cdef bint _enhanced
    cdef int _codec_id
    cdef bint _started
    cdef bint _has_base
    cdef int64_t _base
    cdef bint _has_last
    cdef int64_t _last
    cdef int64_t _video_ms
    cdef int64_t _audio_ms
    cdef bint _has_video_dts
    cdef int64_t _video_dts
    cdef bint _has_audio_next
    cdef int64_t _audio_next
    cdef list _vps
    cdef list _sps
    cdef list _pps
    cdef object _param_sets
    cdef object _video_config
    cdef bytes _video_seq_body
    cdef bytes _video_seq_tag
    cdef bytes _audio_seq_tag
    cdef object _aac_config
    cdef int _aac_rate
    cdef int _g711_byte
    cdef Py_ssize_t* _spans
    cdef Py_ssize_t _spans_cap
    # output: one bytes per frame (mux) or one per run of tags between keyframes (mux_batch)
    cdef object _out
    cdef bint _batch
    cdef list _chunks
    cdef PyObject* _chunk           # owned reference to the bytes being filled, or NULL
    cdef Py_ssize_t _chunk_used
    cdef Py_ssize_t _chunk_cap
    cdef Py_ssize_t _estimate       # bytes the rest of the batch is expected to take

    def __cinit__(self):
        self._spans = NULL
        self._spans_cap = 0
        self._chunk = NULL

    def __dealloc__(self):
        free(self._spans)
        Py_XDECREF(self._chunk)

    def __init__(self, video_codec=None, audio_codec=None, hevc_mode="enhanced"):
        vc = _ref.normalize_codec(video_codec)
        ac = _ref.normalize_codec(audio_codec)
        if video_codec is not None and vc not in _ref.VIDEO_CODECS:
            raise ValueError(f"unsupported FLV video codec {video_codec!r}")
        if audio_codec is not None and ac not in _ref.AUDIO_CODECS:
            raise ValueError(f"unsupported FLV audio codec {audio_codec!r}")
        if vc is None and ac is None:
            raise ValueError("an FLV stream needs a video or an audio codec")
        if hevc_mode not in ("enhanced", "legacy"):
            raise ValueError("hevc_mode must be 'enhanced' or 'legacy'")
        self.video_codec = vc
        self.audio_codec = ac
        self.hevc_mode = hevc_mode
        self._hevc = vc == "h265"
        self._enhanced = self._hevc and hevc_mode == "enhanced"
        self._codec_id = CODEC_ID_AVC if vc == "h264" else CODEC_ID_HEVC_LEGACY
        self._g711_byte = _ref.AUDIO_TAG_BYTE.get(ac, 0)
        self.width = 0
        self.height = 0
        self.frames_in = 0
        self.frames_out = 0
        self.frames_dropped = 0
        self._started = vc is None
        self._has_base = False
        self._has_last = False
        self._video_ms = 0
        self._audio_ms = 0
        self._has_video_dts = False
        self._has_audio_next = False
        self._vps = []
        self._sps = []
        self._pps = []
        self._param_sets = None
        self._video_config = None
        self._video_seq_body = b""
        self._video_seq_tag = b""
        self._audio_seq_tag = b""
        self._aac_config = None
        self._aac_rate = 0
        self._reserve(64)

    cdef int _reserve(self, Py_ssize_t pairs) except -1:
        cdef Py_ssize_t* grown
        if pairs <= self._spans_cap:
            return 0
        grown = <Py_ssize_t*>realloc(self._spans, <size_t>pairs * 2 * sizeof(Py_ssize_t))
        if grown == NULL:
            raise MemoryError()
        self._spans = grown
        self._spans_cap = pairs
        return 0

    # ---- public ---------------------------------------------------------------------------

    def header(self):
        """FLV header, ``PreviousTagSize0`` and the ``onMetaData`` script tag."""
        return (_ref.flv_file_header(self.audio_codec is not None, self.video_codec is not None)
                + _ref.amf0_script_tag("onMetaData", self.metadata()))

    def metadata(self):
        """The ``onMetaData`` properties as known now."""
        return _ref.build_metadata(self.video_codec, self.audio_codec, self._enhanced, self.width,
                                   self.height, self._aac_config, self._aac_rate)

    def init_segment(self):
        """:meth:`header` plus the sequence headers in force; None until the stream can start."""
        if not self._started:
            return None
        return self.header() + self._video_seq_tag + self._audio_seq_tag

    @property
    def started(self):
        """True once the first video keyframe (or, audio-only, the first frame) was emitted."""
        return self._started

    def mux(self, frame):
        """Tags for ``frame`` (empty when the frame is dropped or only carried parameter sets)."""
        cdef bytes out
        if self._mux_frame(frame):
            out = self._out
            self._out = None
            return out
        return b""

    def mux_batch(self, frames, refused=None):
        """Tags for several frames, as few ``bytes`` as possible: a new one starts at every
        video keyframe tag (so only the first may start elsewhere). The bytes equal the joined
        :meth:`mux` results. A frame that raises is skipped and ``(frame, exception)`` appended
        to ``refused`` when given, else the exception propagates (the batch's tags are lost)."""
        cdef Py_ssize_t est = 1024
        cdef list chunks = []
        for frame in frames:
            est += PyBytes_GET_SIZE(frame.data) + 64 if type(frame.data) is bytes else 4096
        self._batch = True
        self._chunks = chunks
        self._estimate = est
        try:
            for frame in frames:
                if refused is None:
                    self._mux_frame(frame)
                else:
                    try:
                        self._mux_frame(frame)
                    except Exception as exc:
                        refused.append((frame, exc))
            self._close_chunk()
        finally:
            self._batch = False
            self._chunks = None
            Py_XDECREF(self._chunk)
            self._chunk = NULL
        return chunks

    cdef bint _mux_frame(self, frame) except -1:
        cdef Py_ssize_t n
        self.frames_in += 1
        codec = frame.codec
        if codec != self.video_codec and codec != self.audio_codec:
            codec = _ref.normalize_codec(codec)
        if codec is not None and codec == self.video_codec:
            n = self._mux_video(frame)
        elif codec is not None and codec == self.audio_codec:
            n = self._mux_audio(frame)
        else:
            n = 0
        if n:
            self.frames_out += 1
        else:
            self.frames_dropped += 1
        return n != 0

    # ---- output ---------------------------------------------------------------------------

    cdef uint8_t* _alloc(self, Py_ssize_t size, bint key) except NULL:
        """Room for ``size`` bytes of tags: a new ``bytes`` (mux) or the batch's current chunk,
        closed first when ``key`` (a keyframe starts a new chunk)."""
        cdef object b
        cdef Py_ssize_t cap
        if not self._batch:
            self._out = PyBytes_FromStringAndSize(NULL, size)
            return <uint8_t*>PyBytes_AS_STRING(self._out)
        if key and self._chunk_used:
            self._close_chunk()
        if self._chunk == NULL:
            cap = self._estimate if self._estimate > size else size
            b = PyBytes_FromStringAndSize(NULL, cap)
            Py_INCREF(b)
            self._chunk = <PyObject*>b
            self._chunk_used = 0
            self._chunk_cap = cap
        elif self._chunk_used + size > self._chunk_cap:
            cap = 2 * self._chunk_cap
            if cap < self._chunk_used + size:
                cap = self._chunk_used + size
            _PyBytes_Resize(&self._chunk, cap)
            self._chunk_cap = cap
        cdef uint8_t* o = <uint8_t*>PyBytes_AS_STRING(<object>self._chunk) + self._chunk_used
        self._chunk_used += size
        self._estimate -= size
        return o

    cdef int _emit(self, bytes data, bint key) except -1:
        """Tags built elsewhere (AAC): kept as they are (mux) or copied into the chunk."""
        cdef Py_ssize_t n = PyBytes_GET_SIZE(data)
        if not self._batch:
            self._out = data
            return 0
        memcpy(self._alloc(n, key), PyBytes_AS_STRING(data), <size_t>n)
        return 0

    cdef int _close_chunk(self) except -1:
        if self._chunk == NULL:
            return 0
        if self._chunk_used:
            if self._chunk_used != self._chunk_cap:
                _PyBytes_Resize(&self._chunk, self._chunk_used)
            self._chunks.append(<object>self._chunk)
        Py_XDECREF(self._chunk)
        self._chunk = NULL
        self._chunk_used = 0
        self._chunk_cap = 0
        return 0

    def end(self):
        """End-of-sequence tag for the video stream (empty if no video was written)."""
        if self.video_codec is None or not self._started or not self._has_video_dts:
            return b""
        return _ref.tag(TAG_VIDEO, self._video_ms, _ref.video_end_body(self._enhanced, self._codec_id))

    # ---- timing ---------------------------------------------------------------------------

    cdef inline int64_t _unwrap(self, int64_t raw) noexcept:
        cdef int64_t ext
        if not self._has_last:
            ext = raw & MASK33
            self._has_last = True
        else:
            ext = self._last + _signed33(raw - self._last)
        self._last = ext
        return ext

    # ---- video ----------------------------------------------------------------------------

    cdef Py_ssize_t _mux_video(self, frame) except -1:
        cdef bytes data = frame.data if type(frame.data) is bytes else bytes(frame.data)
        cdef const uint8_t* p = <const uint8_t*>PyBytes_AS_STRING(data)
        cdef Py_ssize_t n = PyBytes_GET_SIZE(data)
        cdef Py_ssize_t i, j, s, e, count = 0, payload = 0, k
        cdef int t
        cdef bint key = bool(frame.keyframe)
        cdef list vps = None, sps = None, pps = None
        cdef bytes nal

        i = _find_start(p, 0, n)
        while i >= 0:
            s = i + 3
            j = _find_start(p, s, n)
            e = n if j < 0 else j
            while e > s and p[e - 1] == 0:
                e -= 1
            i = j
            if e <= s:
                continue
            if self._hevc:
                t = (p[s] >> 1) & 0x3F
                if 32 <= t <= 35:
                    if t == 35:
                        continue
                    nal = PyBytes_FromStringAndSize(<const char*>p + s, e - s)
                    if t == 32:
                        if vps is None:
                            vps = []
                        vps.append(nal)
                    elif t == 33:
                        if sps is None:
                            sps = []
                        sps.append(nal)
                    else:
                        if pps is None:
                            pps = []
                        pps.append(nal)
                    continue
                if 16 <= t <= 23:
                    key = True
            else:
                t = p[s] & 0x1F
                if 7 <= t <= 9:
                    if t == 9:
                        continue
                    nal = PyBytes_FromStringAndSize(<const char*>p + s, e - s)
                    if t == 7:
                        if sps is None:
                            sps = []
                        sps.append(nal)
                    else:
                        if pps is None:
                            pps = []
                        pps.append(nal)
                    continue
                if t == 5:
                    key = True
            if count == self._spans_cap:
                self._reserve(count * 2)
            self._spans[2 * count] = s
            self._spans[2 * count + 1] = e
            count += 1
            payload += 4 + e - s
        if vps is not None:
            self._vps = vps
        if sps is not None:
            self._sps = sps
        if pps is not None:
            self._pps = pps
        if count == 0:
            return 0
        if not self._started and not key:
            return 0

        cdef object dts_obj = frame.dts
        cdef object pts_obj = frame.pts
        if dts_obj is None:
            dts_obj = pts_obj
        if dts_obj is None and not self._has_video_dts:
            return 0
        cdef bytes seq_body = None
        if key:
            config = self._video_configuration()
            if config is None:
                if not self._started:
                    return 0
            elif config != self._video_config:
                self._video_config = config
                self._video_seq_body = _ref.video_sequence_header_body(config, self._enhanced,
                                                                       self._codec_id)
                seq_body = self._video_seq_body
        cdef int64_t dts, pts, raw_dts
        if dts_obj is None:
            dts = self._video_dts
            pts = dts
        else:
            raw_dts = dts_obj
            dts = self._unwrap(raw_dts)
            pts = dts
            if pts_obj is not None:
                pts = dts + _signed33(<int64_t>pts_obj - raw_dts)
        if not self._has_base:
            self._base = dts
            self._has_base = True
        self._started = True
        self._video_dts = dts
        self._has_video_dts = True
        cdef int64_t ms = _floor90(dts - self._base)
        if ms < self._video_ms:
            ms = self._video_ms
        self._video_ms = ms
        cdef int64_t cts = _floor90(pts - self._base) - ms

        cdef Py_ssize_t seq_size = 0
        if seq_body is not None:
            seq_size = 11 + PyBytes_GET_SIZE(seq_body) + 4
            self._video_seq_tag = _ref.tag(TAG_VIDEO, 0, seq_body)
        cdef int frame_type = 1 if key else 2
        cdef Py_ssize_t head = 5
        if self._enhanced:
            head = 8 if cts != 0 else 5
        cdef Py_ssize_t body_size = head + payload
        cdef Py_ssize_t total = seq_size + 11 + body_size + 4
        cdef uint8_t* o = self._alloc(total, key)
        if seq_body is not None:
            _put_tag_header(o, TAG_VIDEO, seq_size - 15, ms)
            memcpy(o + 11, PyBytes_AS_STRING(seq_body), <size_t>(seq_size - 15))
            _put_u32(o + seq_size - 4, <unsigned int>(seq_size - 4))
            o += seq_size
        _put_tag_header(o, TAG_VIDEO, body_size, ms)
        o += 11
        if self._enhanced:
            o[0] = <uint8_t>(0x80 | (frame_type << 4) | (1 if cts != 0 else 3))
            o[1] = b'h'
            o[2] = b'v'
            o[3] = b'c'
            o[4] = b'1'
            if cts != 0:
                o[5] = <uint8_t>((cts >> 16) & 0xFF)
                o[6] = <uint8_t>((cts >> 8) & 0xFF)
                o[7] = <uint8_t>(cts & 0xFF)
        else:
            o[0] = <uint8_t>((frame_type << 4) | self._codec_id)
            o[1] = 1
            o[2] = <uint8_t>((cts >> 16) & 0xFF)
            o[3] = <uint8_t>((cts >> 8) & 0xFF)
            o[4] = <uint8_t>(cts & 0xFF)
        o += head
        for k in range(count):
            s = self._spans[2 * k]
            e = self._spans[2 * k + 1]
            _put_u32(o, <unsigned int>(e - s))
            memcpy(o + 4, p + s, <size_t>(e - s))
            o += 4 + e - s
        _put_u32(o, <unsigned int>(11 + body_size))
        return total

    cdef object _video_configuration(self):
        current = (self._vps, self._sps, self._pps)
        if current == self._param_sets:
            return self._video_config
        found = _ref.video_configuration(self.video_codec, self._vps, self._sps, self._pps)
        if found is None:
            return None
        self._param_sets = current
        record, self.width, self.height = found
        return record

    # ---- audio ----------------------------------------------------------------------------

    cdef Py_ssize_t _mux_audio(self, frame) except -1:
        if not self._started:
            return 0
        if self._g711_byte != 0xAF:
            return self._mux_g711(frame)
        return self._mux_aac(frame)

    cdef inline bint _audio_dts(self, frame, int64_t* dts) except -1:
        raw = frame.dts
        if raw is None:
            raw = frame.pts
        if raw is None:
            if not self._has_audio_next:
                return False
            dts[0] = self._audio_next
        else:
            dts[0] = self._unwrap(raw)
        if not self._has_base:
            self._base = dts[0]
            self._has_base = True
        return True

    cdef Py_ssize_t _mux_g711(self, frame) except -1:
        cdef bytes data = frame.data if type(frame.data) is bytes else bytes(frame.data)
        cdef Py_ssize_t n = PyBytes_GET_SIZE(data)
        cdef int64_t dts, ms
        if n == 0:
            return 0
        if not self._audio_dts(frame, &dts):
            return 0
        self._audio_next = dts + n * 90000 // 8000
        self._has_audio_next = True
        ms = _floor90(dts - self._base)
        if ms < self._audio_ms:
            ms = self._audio_ms
        self._audio_ms = ms
        cdef uint8_t* o = self._alloc(11 + 1 + n + 4, False)
        _put_tag_header(o, TAG_AUDIO, 1 + n, ms)
        o[11] = <uint8_t>self._g711_byte
        memcpy(o + 12, PyBytes_AS_STRING(data), <size_t>n)
        _put_u32(o + 12 + n, <unsigned int>(12 + n))
        return 16 + n

    cdef Py_ssize_t _mux_aac(self, frame) except -1:
        data = frame.data
        asc, rate, spans = _ref.parse_adts(data)
        if asc is None:
            return 0
        cdef int64_t dts, t, ms
        cdef int r = rate
        cdef Py_ssize_t k
        if not self._audio_dts(frame, &dts):
            return 0
        self._audio_next = dts + <int64_t>(1024 * len(spans)) * 90000 // r
        self._has_audio_next = True
        out = []
        if asc != self._aac_config:
            self._aac_config = asc
            self._aac_rate = r
            body = b"\xaf\x00" + asc
            self._audio_seq_tag = _ref.tag(TAG_AUDIO, 0, body)
            ms = _floor90(dts - self._base)
            if ms < self._audio_ms:
                ms = self._audio_ms
            if ms < 0:
                ms = 0
            out.append(_ref.tag(TAG_AUDIO, ms, body))
        for k in range(len(spans)):
            s, e = spans[k]
            t = dts + <int64_t>k * 1024 * 90000 // r
            ms = _floor90(t - self._base)
            if ms < self._audio_ms:
                ms = self._audio_ms
            self._audio_ms = ms
            out.append(_ref.tag(TAG_AUDIO, ms, b"\xaf\x01" + data[s:e]))
        cdef bytes joined = b"".join(out)
        self._emit(joined, False)
        return PyBytes_GET_SIZE(joined)
