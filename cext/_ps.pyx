# cython: language_level=3
"""MPEG-PS demuxer, compiled twin of ``media/_ps_py.py`` (the readable reference, with the
ISO/IEC 13818-1 section references). Same frames and same counters for any input and any split.

Speed comes from working on C pointers: PES bodies are copied with one memcpy per chunk into a
per-stream growing buffer, start codes are found by ``cext/_startcode.h`` (SSE2 where
available), and one ``bytes`` is made per frame.
"""

from cpython.buffer cimport PyBUF_SIMPLE, PyBuffer_Release, PyObject_GetBuffer
from cpython.bytes cimport _PyBytes_Resize
from cpython.object cimport PyObject
from cpython.pycapsule cimport PyCapsule_New
from cpython.ref cimport Py_XDECREF
from libc.stdlib cimport free, realloc
from libc.string cimport memchr, memcpy, memmove

from media._frame import Frame

cdef extern from "Python.h":
    PyObject *_new_bytes "PyBytes_FromStringAndSize"(const char *v, Py_ssize_t n)
    char *_bytes_buf "PyBytes_AS_STRING"(PyObject *o)

ctypedef unsigned char uchar
ctypedef long long i64

# Parser states (see the twin).
cdef enum:
    S_SEARCH = 0
    S_EXPECT = 1
    S_BODY = 2
    S_UNBOUNDED = 3

cdef enum:
    PEEK = 6

# First-NAL kinds.
cdef enum:
    NAL_OTHER = 0
    NAL_AUD = 1
    NAL_PS = 2
    NAL_VCL = 3

# Codec ids: indexes into CODEC_NAMES; hints given by name get ids after these.
cdef enum:
    C_NONE = 0
    C_H264 = 1
    C_H265 = 2
    C_MPEG4 = 3
    C_SVAC = 4
    C_G711A = 5
    C_G711U = 6
    C_G7221 = 7
    C_G7231 = 8
    C_G729 = 9
    C_SVAC_AUDIO = 10
    C_AAC = 11
    C_MP2 = 12
    N_STD_CODECS = 13
    MAX_CODECS = 16

CODEC_NAMES = ("", "h264", "h265", "mpeg4", "svac", "g711a", "g711u", "g7221", "g7231", "g729",
               "svac_audio", "aac", "mp2")

STREAM_TYPES = {0x10: "mpeg4", 0x1B: "h264", 0x24: "h265", 0x80: "svac", 0x90: "g711a",
                0x91: "g711u", 0x92: "g7221", 0x93: "g7231", 0x99: "g729", 0x9B: "svac_audio",
                0x0F: "aac", 0x03: "mp2", 0x04: "mp2"}

# Error reasons (same names as the twin).
cdef enum:
    E_SYNC_LOST = 0
    E_UNKNOWN_START_CODE = 1
    E_PACK_HEADER = 2
    E_PSM_INVALID = 3
    E_PSM_LENGTH = 4
    E_PES_HEADER = 5
    E_DAMAGED_FRAME = 6
    E_ORPHAN_PES = 7
    E_FRAME_TOO_LARGE = 8
    E_TRUNCATED = 9
    E_PSM_CODEC_MISMATCH = 10
    N_ERRORS = 11

ERROR_NAMES = ("sync_lost", "unknown_start_code", "pack_header", "psm_invalid", "psm_length",
               "pes_header", "damaged_frame", "orphan_pes", "frame_too_large", "truncated",
               "psm_codec_mismatch")
STAT_NAMES = ("bytes", "packs", "system_headers", "psms", "pes", "skipped_pes", "frames",
              "skipped_bytes", "discontinuities")

cdef tuple _CODEC_NAMES = CODEC_NAMES


cdef inline i64 _read_ts(const uchar *p) noexcept nogil:
    return ((<i64>((p[0] >> 1) & 7)) << 30 | (<i64>p[1]) << 22 | (<i64>(p[2] >> 1)) << 15
            | (<i64>p[3]) << 7 | (p[4] >> 1))


cdef extern from "_startcode.h":
    # First k >= i with p[k:k+3] == 00 00 01 and k + 3 <= n, else -1 (like bytes.find);
    # SSE2 where available (see cext/_startcode.h).
    Py_ssize_t _find_start "sip28181_find_start"(const uchar *p, Py_ssize_t i,
                                                 Py_ssize_t n) noexcept nogil


cdef inline Py_ssize_t _find_pack(const uchar *p, Py_ssize_t i, Py_ssize_t n) noexcept nogil:
    """First k >= i with p[k:k+4] == 00 00 01 BA, else -1."""
    cdef const uchar *q
    cdef Py_ssize_t j
    while i + 4 <= n:
        q = <const uchar *>memchr(p + i + 3, 0xBA, n - i - 3)
        if q == NULL:
            return -1
        j = q - p
        if p[j - 1] == 1 and p[j - 2] == 0 and p[j - 3] == 0:
            return j - 3
        i = j - 2
    return -1


cdef inline int _nal_kind(int codec, int b0) noexcept nogil:
    cdef int t
    if codec == C_H264:
        t = b0 & 0x1F
        if t == 9:
            return NAL_AUD
        if t == 7:
            return NAL_PS
        if 1 <= t <= 5:
            return NAL_VCL
        return NAL_OTHER
    if codec == C_H265:
        t = (b0 >> 1) & 0x3F
        if t == 35:
            return NAL_AUD
        if t == 32 or t == 33:
            return NAL_PS
        if t < 32:
            return NAL_VCL
        return NAL_OTHER
    if codec == C_SVAC:
        t = (b0 >> 2) & 0x0F
        if t == 10:
            return NAL_AUD
        if t == 7:
            return NAL_PS
        if 1 <= t <= 4:
            return NAL_VCL
        return NAL_OTHER
    if codec == C_MPEG4:
        if b0 == 0xB6:
            return NAL_VCL
        if b0 == 0xB0 or b0 == 0xB3:
            return NAL_PS
    return NAL_OTHER


cdef inline int _sniff(int b0, int b1) noexcept nogil:
    if b1 == 0x01 and (b0 == 0x40 or b0 == 0x42 or b0 == 0x44 or b0 == 0x46):
        return C_H265
    if b0 == 0x09 or ((b0 & 0x80) == 0 and (b0 & 0x60) != 0 and ((b0 & 0x1F) == 7 or (b0 & 0x1F) == 8)):
        return C_H264
    if b0 == 0xB0 or b0 == 0xB6:
        return C_MPEG4
    return C_NONE


cdef class _Stream:
    """Per elementary stream state.

    The access unit grows inside a ``bytes`` object sized from the PES lengths, which is shrunk
    and handed out as the frame's data: each payload byte is copied once.
    """

    cdef int sid
    cdef bint video
    cdef int declared
    cdef int sniffed
    cdef PyObject *au
    cdef Py_ssize_t au_len
    cdef Py_ssize_t au_cap
    cdef bint active
    cdef i64 pts
    cdef i64 dts
    cdef bint has_vcl
    cdef bint damaged
    cdef i64 damaged_pts
    cdef i64 next_pts4

    def __cinit__(self, int sid):
        self.sid = sid
        self.video = 0xE0 <= sid <= 0xEF
        self.declared = C_NONE
        self.sniffed = C_NONE
        self.au = NULL
        self.au_len = 0
        self.au_cap = 0
        self.active = False
        self.pts = -1
        self.dts = -1
        self.has_vcl = False
        self.damaged = False
        self.damaged_pts = -1
        self.next_pts4 = -1

    def __dealloc__(self):
        Py_XDECREF(self.au)

    cdef int reserve(self, Py_ssize_t n) except -1:
        """Room for ``n`` more bytes: exact for a unit's first PES, growing by half after."""
        cdef Py_ssize_t cap = self.au_len + n
        if cap <= self.au_cap:
            return 0
        if self.au == NULL:
            self.au = _new_bytes(NULL, cap)
            if self.au == NULL:
                self.au_cap = 0
                raise MemoryError()
        else:
            if self.au_len and cap < self.au_cap + (self.au_cap >> 1):
                cap = self.au_cap + (self.au_cap >> 1)
            if _PyBytes_Resize(&self.au, cap) < 0:
                self.au = NULL
                self.au_len = self.au_cap = 0
                return -1
        self.au_cap = cap
        return 0

    cdef int append(self, const uchar *src, Py_ssize_t n) except -1:
        if self.au_len + n > self.au_cap:
            self.reserve(n if n > 4096 else 4096)
        memcpy(_bytes_buf(self.au) + self.au_len, src, n)
        self.au_len += n
        return 0

    cdef bytes take(self):
        """The access unit as bytes (ownership moves to the caller)."""
        cdef bytes out
        if self.au_len == 0:
            return b""
        if self.au_len != self.au_cap and _PyBytes_Resize(&self.au, self.au_len) < 0:
            self.au = NULL
            self.au_len = self.au_cap = 0
            raise MemoryError()
        out = <bytes>self.au
        Py_XDECREF(self.au)
        self.au = NULL
        self.au_len = self.au_cap = 0
        return out

    cdef void reset_au(self) noexcept:
        self.au_len = 0
        self.active = False
        self.has_vcl = False
        if self.au_cap > (1 << 20):
            # Give back the memory of an exceptionally large access unit.
            Py_XDECREF(self.au)
            self.au = NULL
            self.au_cap = 0


cdef class PsDemuxer:
    """Turns MPEG-PS bytes (in chunks of any size) into Frame access units (see the twin)."""

    cdef readonly object audio_codec
    cdef readonly object video_codec
    cdef readonly Py_ssize_t max_frame_size
    cdef list _names
    cdef int _audio_hint
    cdef int _video_hint
    cdef list _by_sid
    cdef list _order
    cdef uchar *_stash
    cdef Py_ssize_t _stash_len
    cdef Py_ssize_t _stash_cap
    cdef Py_ssize_t _need
    cdef int _state
    cdef Py_ssize_t _remaining
    cdef _Stream _target
    cdef Py_ssize_t _au_total
    cdef public dict stream_types
    cdef public dict parameter_sets
    cdef i64 _errors[N_ERRORS]
    cdef i64 _frames_by_codec[MAX_CODECS]
    cdef i64 _bytes
    cdef i64 _packs
    cdef i64 _system_headers
    cdef i64 _psms
    cdef i64 _pes
    cdef i64 _skipped_pes
    cdef i64 _frames
    cdef i64 _skipped_bytes
    cdef i64 _discontinuities

    def __cinit__(self):
        self._stash = NULL
        self._stash_len = 0
        self._stash_cap = 0

    def __init__(self, audio_codec=None, video_codec=None, Py_ssize_t max_frame_size=8 << 20):
        cdef int i
        self.audio_codec = audio_codec
        self.video_codec = video_codec
        self.max_frame_size = max_frame_size
        self._names = list(_CODEC_NAMES)
        self._audio_hint = self._codec_id(audio_codec) if audio_codec is not None else C_G711A
        self._video_hint = self._codec_id(video_codec) if video_codec is not None else C_H264
        self._by_sid = [None] * 256
        self._order = []
        self._stash_len = 0
        self._need = 0
        self._state = S_SEARCH
        self._remaining = 0
        self._target = None
        self._au_total = 0
        self.stream_types = {}
        self.parameter_sets = {}
        for i in range(N_ERRORS):
            self._errors[i] = 0
        for i in range(MAX_CODECS):
            self._frames_by_codec[i] = 0
        self._bytes = self._packs = self._system_headers = self._psms = self._pes = 0
        self._skipped_pes = self._frames = self._skipped_bytes = self._discontinuities = 0

    def __dealloc__(self):
        free(self._stash)

    cdef int _codec_id(self, name) except -1:
        if name in self._names:
            return self._names.index(name)
        if len(self._names) >= MAX_CODECS:
            raise ValueError("too many codec names")
        self._names.append(name)
        return len(self._names) - 1

    # -- public ---------------------------------------------------------------------------------

    @property
    def errors(self):
        """Error reason -> count (only reasons that occurred)."""
        cdef int i
        return {ERROR_NAMES[i]: self._errors[i] for i in range(N_ERRORS) if self._errors[i]}

    @property
    def stats(self):
        """Counters: bytes, packs, system_headers, psms, pes, skipped_pes, frames, skipped_bytes,
        discontinuities, and ``frames_<codec>`` per codec emitted."""
        cdef int i
        out = {"bytes": self._bytes, "packs": self._packs, "system_headers": self._system_headers,
               "psms": self._psms, "pes": self._pes, "skipped_pes": self._skipped_pes,
               "frames": self._frames, "skipped_bytes": self._skipped_bytes,
               "discontinuities": self._discontinuities}
        for i in range(len(self._names)):
            if self._frames_by_codec[i]:
                out["frames_" + self._names[i]] = self._frames_by_codec[i]
        return out

    @property
    def streams(self):
        """stream_id -> codec, for the streams seen so far."""
        cdef _Stream s
        return {s.sid: self._names[self._codec(s)] for s in self._order}

    @property
    def buffered(self):
        """Bytes held: a partial header plus the access units being assembled."""
        return self._stash_len + self._au_total

    def feed(self, data):
        """Consume a chunk of the program stream; return the access units it completes."""
        cdef list out = []
        cdef Py_buffer view
        PyObject_GetBuffer(data, &view, PyBUF_SIMPLE)
        try:
            self._feed(<const uchar *>view.buf, view.len, out)
        finally:
            PyBuffer_Release(&view)
        return out

    cdef int _feed(self, const uchar *data, Py_ssize_t n, list out) except -1:
        """:meth:`feed` on a C buffer, appending the completed access units to ``out``."""
        cdef Py_ssize_t pos
        self._bytes += n
        if self._stash_len:
            self._stash_add(data, n)
            if self._stash_len < self._need:
                return 0
            n = self._stash_len
            pos = self._run(self._stash, n, out)
            # Parsing only reads the stash (it calls no user code): keep the unparsed tail.
            if pos < n:
                memmove(self._stash, self._stash + pos, n - pos)
            self._stash_len = n - pos
        else:
            pos = self._run(data, n, out)
            if pos < n:
                self._stash_len = 0
                self._stash_add(data + pos, n - pos)
        return 0

    def flush(self):
        """End of input: finish a PES running to end of stream, emit complete access units."""
        cdef list out = []
        cdef _Stream stream, target
        cdef Py_ssize_t stash_len = self._stash_len
        self._stash_len = 0
        if self._state == S_UNBOUNDED:
            if stash_len:
                self._append(self._target, self._stash, stash_len)
            self._end_pes(out)
        elif self._state == S_BODY or (self._state == S_EXPECT and stash_len):
            self._errors[E_TRUNCATED] += 1
            target = self._target if self._state == S_BODY else None
            if target is not None and target.active:
                self._reset(target)
                target.damaged = True
        elif self._state == S_SEARCH:
            self._skipped_bytes += stash_len
        for stream in list(self._order):
            if stream.active:
                self._emit(stream, out)
        self._state = S_SEARCH
        self._target = None
        self._need = 0
        return out

    def discontinuity(self):
        """The transport lost bytes here: drop partial access units, resync on a pack header."""
        self._discontinuities += 1
        self._stash_len = 0
        self._drop_all()
        self._state = S_SEARCH
        self._target = None

    # -- parsing --------------------------------------------------------------------------------

    cdef int _stash_add(self, const uchar *src, Py_ssize_t n) except -1:
        cdef Py_ssize_t cap
        cdef uchar *grown
        if self._stash_len + n > self._stash_cap:
            cap = self._stash_cap * 2 if self._stash_cap else 4096
            while cap < self._stash_len + n:
                cap *= 2
            grown = <uchar *>realloc(self._stash, cap)
            if grown == NULL:
                raise MemoryError()
            self._stash = grown
            self._stash_cap = cap
        memcpy(self._stash + self._stash_len, src, n)
        self._stash_len += n
        return 0

    cdef Py_ssize_t _run(self, const uchar *buf, Py_ssize_t end, list out) except -2:
        cdef Py_ssize_t pos = 0, take, k, j, stop, avail, size, length, result
        cdef int sid, b4, state
        while True:
            state = self._state
            if state == S_BODY:
                if pos >= end:
                    self._need = 1
                    return pos
                take = end - pos
                if take > self._remaining:
                    take = self._remaining
                if self._target is not None:
                    self._append(self._target, buf + pos, take)
                pos += take
                self._remaining -= take
                if self._remaining == 0:
                    self._state = S_EXPECT
                    self._end_pes(out)
                continue
            if state == S_UNBOUNDED:
                j = pos
                stop = -1
                while True:
                    k = _find_start(buf, j, end)
                    if k < 0 or k + 3 >= end:
                        break
                    if buf[k + 3] >= 0xB9:
                        stop = k
                        break
                    j = k + 1
                if stop >= 0:
                    self._append(self._target, buf + pos, stop - pos)
                    pos = stop
                    self._state = S_EXPECT
                    self._end_pes(out)
                    continue
                stop = end - 3
                if stop < pos:
                    stop = pos
                self._append(self._target, buf + pos, stop - pos)
                self._need = end - stop + 1
                return stop
            if state == S_SEARCH:
                k = _find_pack(buf, pos, end)
                if k < 0:
                    stop = end - 3
                    if stop < pos:
                        stop = pos
                    self._skipped_bytes += stop - pos
                    self._need = end - stop + 1
                    return stop
                self._skipped_bytes += k - pos
                pos = k
                self._state = S_EXPECT
                continue
            avail = end - pos
            if avail < 4:
                self._need = 4
                return pos
            if buf[pos] != 0 or buf[pos + 1] != 0 or buf[pos + 2] != 1:
                self._lose_sync(E_SYNC_LOST)
                continue
            sid = buf[pos + 3]
            if sid == 0xBA:
                if avail < 5:
                    self._need = 5
                    return pos
                b4 = buf[pos + 4]
                if (b4 & 0xC0) == 0x40:
                    if avail < 14:
                        self._need = 14
                        return pos
                    size = 14 + (buf[pos + 13] & 7)
                elif (b4 & 0xF0) == 0x20:
                    size = 12
                else:
                    pos += 4
                    self._lose_sync(E_PACK_HEADER)
                    continue
                if avail < size:
                    self._need = size
                    return pos
                self._packs += 1
                pos += size
                continue
            if sid < 0xB9:
                self._lose_sync(E_UNKNOWN_START_CODE)
                continue
            if sid == 0xB9:
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
                self._parse_psm(buf + pos, 6 + length)
                pos += 6 + length
                continue
            if sid == 0xBB or sid < 0xC0 or sid >= 0xF0:
                if sid == 0xBB:
                    self._system_headers += 1
                else:
                    self._skipped_pes += 1
                pos += 6
                self._target = None
                self._remaining = length
                self._state = S_BODY if length else S_EXPECT
                continue
            result = self._parse_pes(buf + pos, avail, length, out)
            if result == 0:
                return pos
            pos += result

    cdef Py_ssize_t _parse_pes(self, const uchar *p, Py_ssize_t avail, Py_ssize_t length,
                               list out) except -1:
        """PES header at ``p``; bytes consumed, or 0 when more are needed (``_need`` set)."""
        cdef int sid = p[3]
        cdef i64 pts = -1, dts = -1
        cdef bint bad = False
        cdef Py_ssize_t hsize, head, k, payload, peek
        cdef int flags, c
        cdef _Stream stream
        if avail < 7:
            self._need = 7
            return 0
        if (p[6] & 0xC0) == 0x80:
            if avail < 9:
                self._need = 9
                return 0
            hsize = 9 + p[8]
            if length and (length < 3 or hsize > 6 + length):
                bad = True
            else:
                if avail < hsize:
                    self._need = hsize
                    return 0
                flags = p[7] >> 6
                if flags == 2 and hsize >= 14:
                    pts = dts = _read_ts(p + 9)
                elif flags == 3 and hsize >= 19:
                    pts = _read_ts(p + 9)
                    dts = _read_ts(p + 14)
                elif flags != 0:
                    bad = True
        elif length == 0:
            self._lose_sync(E_PES_HEADER)
            return 4
        else:
            head = length if length < 28 else 28
            if avail < 6 + head:
                self._need = 6 + head
                return 0
            k = 6
            while k < 6 + length and p[k] == 0xFF and k < 22:
                k += 1
            if k < 6 + length and (p[k] & 0xC0) == 0x40:
                k += 2
            c = p[k] if k < 6 + length else -1
            if c >= 0 and (c & 0xF0) == 0x20 and k + 5 <= 6 + length:
                pts = dts = _read_ts(p + k)
                k += 5
            elif c >= 0 and (c & 0xF0) == 0x30 and k + 10 <= 6 + length:
                pts = _read_ts(p + k)
                dts = _read_ts(p + k + 5)
                k += 10
            elif c == 0x0F:
                k += 1
            else:
                bad = True
            hsize = k
        stream = self._stream(sid)
        if bad:
            self._pes += 1
            self._errors[E_PES_HEADER] += 1
            self._drop(stream, True)
            self._target = None
            self._remaining = length
            self._state = S_BODY if length else S_EXPECT
            return 6
        payload = 6 + length - hsize if length else -1
        if payload < 0:
            peek = PEEK
        else:
            peek = payload if payload < PEEK else PEEK
        if avail < hsize + peek:
            self._need = hsize + peek
            return 0
        self._pes += 1
        self._start_pes(stream, pts, dts, p + hsize, peek, out)
        if payload > 0 and self._target is not None \
                and stream.au_len + payload <= self.max_frame_size:
            stream.reserve(payload)
        if payload < 0:
            self._state = S_UNBOUNDED
        elif payload:
            self._remaining = payload
            self._state = S_BODY
        else:
            self._state = S_EXPECT
            self._end_pes(out)
        return hsize

    cdef int _parse_psm(self, const uchar *p, Py_ssize_t size) except -1:
        cdef Py_ssize_t end = size - 4, q, es_len, info_len, info
        cdef int stream_type, sid
        cdef _Stream stream
        self._psms += 1
        if size < 16:
            self._errors[E_PSM_INVALID] += 1
            return 0
        info_len = (p[8] << 8) | p[9]
        q = 10 + info_len
        if q + 2 > end:
            self._errors[E_PSM_INVALID] += 1
            return 0
        es_len = (p[q] << 8) | p[q + 1]
        q += 2
        if q + es_len != end:
            self._errors[E_PSM_LENGTH] += 1
        types = {}
        while q + 4 <= end:
            stream_type = p[q]
            sid = p[q + 1]
            info = (p[q + 2] << 8) | p[q + 3]
            if q + 4 + info > end:
                self._errors[E_PSM_INVALID] += 1
                break
            types[sid] = stream_type
            q += 4 + info
        self.stream_types = types
        for sid, stream_type in types.items():
            name = STREAM_TYPES.get(stream_type)
            if name is None or not (0xC0 <= sid <= 0xEF):
                continue
            stream = self._stream(sid)
            stream.declared = self._codec_id(name)
            stream.video = stream.declared in (C_H264, C_H265, C_MPEG4, C_SVAC)
        return 0

    # -- access units ---------------------------------------------------------------------------

    cdef _Stream _stream(self, int sid):
        cdef object stream = self._by_sid[sid]
        if stream is None:
            stream = _Stream(sid)
            self._by_sid[sid] = stream
            self._order.append(stream)
        return <_Stream>stream

    cdef inline int _codec(self, _Stream stream) noexcept:
        if stream.video:
            if stream.sniffed:
                return stream.sniffed
            if stream.declared:
                return stream.declared
            return self._video_hint
        if stream.declared:
            return stream.declared
        if stream.sniffed:
            return stream.sniffed
        return self._audio_hint

    cdef inline void _note_sniff(self, _Stream stream, int codec) noexcept:
        if codec != stream.sniffed:
            stream.sniffed = codec
            if stream.declared != C_NONE and stream.declared != codec:
                self._errors[E_PSM_CODEC_MISMATCH] += 1

    cdef int _start_pes(self, _Stream stream, i64 pts, i64 dts, const uchar *p, Py_ssize_t peek,
                        list out) except -1:
        cdef int kind = NAL_OTHER, b0, b1, sniffed, codec
        cdef Py_ssize_t nal = -1
        if not stream.video:
            if stream.active:
                self._drop(stream, True)
            if stream.declared == C_NONE and peek >= 2 and p[0] == 0xFF and (p[1] & 0xF6) == 0xF0:
                stream.sniffed = C_AAC
            if pts < 0 and stream.next_pts4 >= 0:
                codec = self._codec(stream)
                if codec == C_G711A or codec == C_G711U:
                    pts = dts = stream.next_pts4 >> 2
            stream.active = True
            stream.pts = pts
            stream.dts = dts
            stream.damaged = False
            self._target = stream
            return 0
        if peek >= 4 and p[0] == 0 and p[1] == 0:
            if p[2] == 1:
                nal = 3
            elif peek >= 5 and p[2] == 0 and p[3] == 1:
                nal = 4
        if nal >= 0:
            b0 = p[nal]
            b1 = p[nal + 1] if nal + 1 < peek else -1
            sniffed = _sniff(b0, b1)
            if sniffed != C_NONE and stream.declared != C_MPEG4 and stream.declared != C_SVAC:
                self._note_sniff(stream, sniffed)
            kind = _nal_kind(self._codec(stream), b0)
        if stream.active:
            if pts >= 0 and stream.pts >= 0 and pts != stream.pts:
                self._emit(stream, out)
            elif (kind == NAL_AUD and stream.au_len) or (kind == NAL_PS and stream.has_vcl):
                self._emit(stream, out)
        if not stream.active:
            if stream.damaged:
                if not ((pts >= 0 and pts != stream.damaged_pts) or kind == NAL_AUD
                        or kind == NAL_PS):
                    self._errors[E_ORPHAN_PES] += 1
                    self._target = None
                    return 0
                stream.damaged = False
            stream.active = True
            stream.pts = pts
            stream.dts = dts
            stream.has_vcl = False
        elif stream.pts < 0 and pts >= 0:
            stream.pts = pts
            stream.dts = dts
        if kind == NAL_VCL:
            stream.has_vcl = True
        self._target = stream
        return 0

    cdef inline int _append(self, _Stream stream, const uchar *src, Py_ssize_t n) except -1:
        if stream is None or n <= 0:
            return 0
        if stream.au_len + n > self.max_frame_size or self._au_total + n > 2 * self.max_frame_size:
            self._errors[E_FRAME_TOO_LARGE] += 1
            self._drop(stream, False)
            self._target = None
            return 0
        stream.append(src, n)
        self._au_total += n
        return 0

    cdef int _end_pes(self, list out) except -1:
        cdef _Stream stream = self._target
        self._target = None
        if stream is not None and not stream.video and stream.active:
            self._emit(stream, out)
        return 0

    cdef int _emit(self, _Stream stream, list out) except -1:
        cdef Py_ssize_t size = stream.au_len
        cdef bytes data = stream.take()
        cdef int codec = self._codec(stream)
        cdef bint keyframe = True
        if stream.video:
            codec, keyframe = self._inspect(stream, data)
        elif (codec == C_G711A or codec == C_G711U) and stream.pts >= 0:
            stream.next_pts4 = (stream.pts << 2) + size * 45
        self._reset(stream)
        if not data:
            return 0
        out.append(Frame(self._names[codec], stream.pts if stream.pts >= 0 else None,
                         stream.dts if stream.dts >= 0 else None, keyframe, data, stream.sid))
        self._frames += 1
        self._frames_by_codec[codec] += 1
        return 0

    cdef tuple _inspect(self, _Stream stream, bytes data):
        """One walk over the start codes, evaluating every codec reading at once: the
        sniff verdict picks which keyframe flag and parameter sets count (same as the twin)."""
        cdef const uchar *p = <const uchar *>(<char *>data)
        cdef Py_ssize_t n = len(data), i, h, nxt, e, k
        cdef int verdict = C_NONE, sniffed, codec, t, b0, b1, slot
        cdef bint key264 = False, key265 = False, keysvac = False, keympeg4 = False
        cdef bint found_h265 = False
        # Last parameter set of each kind: H.264 sps, pps; H.265 vps, sps, pps.
        cdef Py_ssize_t ps_start[5]
        cdef Py_ssize_t ps_end[5]
        cdef bint sniff = stream.declared != C_MPEG4 and stream.declared != C_SVAC
        cdef dict sets = None
        for k in range(5):
            ps_start[k] = -1
        i = _find_start(p, 0, n)
        while 0 <= i and i + 3 < n:
            h = i + 3
            b0 = p[h]
            b1 = p[h + 1] if h + 1 < n else -1
            nxt = _find_start(p, h, n)
            if sniff and not found_h265:
                sniffed = _sniff(b0, b1)
                if sniffed == C_H265:
                    verdict = sniffed
                    found_h265 = True
                elif verdict == C_NONE:
                    verdict = sniffed
            t = b0 & 0x1F
            slot = -1
            if t == 5 or t == 7:
                key264 = True
            if t == 7:
                slot = 0
            elif t == 8:
                slot = 1
            t = (b0 >> 1) & 0x3F
            if 16 <= t <= 21:
                key265 = True
            if slot < 0:
                pass
            else:
                e = nxt if (0 <= nxt and nxt + 3 < n) else n
                while e > h and p[e - 1] == 0:
                    e -= 1
                ps_start[slot] = h
                ps_end[slot] = e
            if t == 32 or t == 33 or t == 34:
                e = nxt if (0 <= nxt and nxt + 3 < n) else n
                while e > h and p[e - 1] == 0:
                    e -= 1
                ps_start[t - 30] = h
                ps_end[t - 30] = e
            t = (b0 >> 2) & 0x0F
            if t == 2 or t == 4 or t == 7:
                keysvac = True
            if b0 == 0xB6 and b1 >= 0 and (b1 >> 6) == 0:
                keympeg4 = True
            i = nxt
        if verdict != C_NONE:
            self._note_sniff(stream, verdict)
        codec = self._codec(stream)
        if codec == C_H264:
            if ps_start[0] >= 0 or ps_start[1] >= 0:
                sets = self._sets(stream.sid)
                if ps_start[0] >= 0:
                    sets["sps"] = data[ps_start[0]:ps_end[0]]
                if ps_start[1] >= 0:
                    sets["pps"] = data[ps_start[1]:ps_end[1]]
            return codec, key264
        if codec == C_H265:
            if ps_start[2] >= 0 or ps_start[3] >= 0 or ps_start[4] >= 0:
                sets = self._sets(stream.sid)
                if ps_start[2] >= 0:
                    sets["vps"] = data[ps_start[2]:ps_end[2]]
                if ps_start[3] >= 0:
                    sets["sps"] = data[ps_start[3]:ps_end[3]]
                if ps_start[4] >= 0:
                    sets["pps"] = data[ps_start[4]:ps_end[4]]
            return codec, key265
        if codec == C_SVAC:
            return codec, keysvac
        return codec, keympeg4

    cdef dict _sets(self, int sid):
        cdef dict sets = self.parameter_sets.get(sid)
        if sets is None:
            sets = self.parameter_sets[sid] = {}
        return sets

    cdef void _drop(self, _Stream stream, bint count) noexcept:
        if stream.active:
            if count:
                self._errors[E_DAMAGED_FRAME] += 1
            stream.damaged_pts = stream.pts
            self._reset(stream)
        elif not stream.damaged:
            stream.damaged_pts = -1
        stream.damaged = True

    cdef inline void _reset(self, _Stream stream) noexcept:
        self._au_total -= stream.au_len
        stream.reset_au()

    cdef void _drop_all(self) noexcept:
        cdef _Stream stream
        for stream in self._order:
            self._drop(stream, True)

    cdef void _lose_sync(self, int reason) noexcept:
        self._errors[reason] += 1
        self._drop_all()
        self._target = None
        self._state = S_SEARCH


cdef int _c_feed(object demuxer, const uchar *data, Py_ssize_t n, list out) except -1:
    return (<PsDemuxer>demuxer)._feed(data, n, out)


#: ``int feed(PsDemuxer demuxer, const unsigned char *data, Py_ssize_t n, list out)`` (-1 with an
#: exception set on error): :meth:`PsDemuxer.feed` on a C buffer, for other compiled stages that
#: hold a demuxer of this module (the caller guarantees the type).
_C_FEED = PyCapsule_New(<void *>_c_feed, b"media._ps._C_FEED", NULL)
