# cython: language_level=3
"""One RTP stream carrying MPEG-PS, compiled twin of ``media/_receiver_py.py`` (the reference).

Same frames and same counters as running ``parse_rtp`` → ``JitterBuffer`` → ``PsDemuxer`` by hand.
The packet that is next in sequence while the jitter buffer holds nothing — nearly every packet
of a healthy stream — never becomes a Python object: its fixed header is read in place, the
jitter buffer's in-order step runs through ``media._rtp._C_IN_ORDER`` and the payload goes to
the demuxer's C-level feed (``media._ps._C_FEED``). Every other packet is copied, parsed by
``parse_rtp`` and given to ``JitterBuffer.add``, exactly as the reference does.
"""

from cpython.buffer cimport PyBUF_SIMPLE, PyBuffer_Release, PyObject_GetBuffer
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.pycapsule cimport PyCapsule_GetPointer

from media import _ps, _rtp

__all__ = ["RtpPsReceiver", "RECEIVER_COUNTERS"]

RECEIVER_COUNTERS = ("packets", "malformed", "ssrc_mismatch", "payload_type_mismatch")

ctypedef unsigned char uchar
ctypedef int (*feed_fn)(object, const uchar *, Py_ssize_t, list) except -1
ctypedef bint (*in_order_fn)(object, int) noexcept

cdef feed_fn _demux_feed = <feed_fn>PyCapsule_GetPointer(_ps._C_FEED, b"media._ps._C_FEED")
cdef in_order_fn _jitter_in_order = <in_order_fn>PyCapsule_GetPointer(
    _rtp._C_IN_ORDER, b"media._rtp._C_IN_ORDER")
cdef object _parse_rtp = _rtp.parse_rtp
cdef object _JitterBuffer = _rtp.JitterBuffer
cdef object _PsDemuxer = _ps.PsDemuxer


cdef inline int _seq_diff(int a, int b) noexcept nogil:
    return ((a - b + 0x8000) & 0xFFFF) - 0x8000


cdef class RtpPsReceiver:
    """Reassembles the access units of one PS-over-RTP stream (see ``media._receiver_py``)."""

    cdef readonly object jitter
    cdef readonly object demuxer
    cdef long long _ssrc
    cdef uchar _pt_ok[128]
    cdef object _payload_types
    cdef int _last
    cdef readonly long long packets
    cdef readonly long long malformed
    cdef readonly long long ssrc_mismatch
    cdef readonly long long payload_type_mismatch

    def __init__(self, ssrc=None, payload_types=None, *, audio_codec=None, video_codec=None,
                 Py_ssize_t max_frame_size=8 << 20, int capacity=128, int max_wait_packets=64,
                 int max_dropout=3000, int max_misorder=100):
        cdef int i
        if ssrc is not None and not 0 <= ssrc <= 0xFFFFFFFF:
            raise ValueError("ssrc must be within 0..2**32-1")
        types = None
        if payload_types is not None:
            types = frozenset(payload_types)
            if not all(isinstance(t, int) and 0 <= t <= 127 for t in types):
                raise ValueError("payload types must be within 0..127")
        self._ssrc = -1 if ssrc is None else ssrc
        self._payload_types = types
        for i in range(128):
            self._pt_ok[i] = types is None or i in types
        self.jitter = _JitterBuffer(capacity, max_wait_packets, max_dropout, max_misorder)
        self.demuxer = _PsDemuxer(audio_codec, video_codec, max_frame_size)
        self._last = -1
        self.packets = 0
        self.malformed = 0
        self.ssrc_mismatch = 0
        self.payload_type_mismatch = 0

    @property
    def ssrc(self):
        return None if self._ssrc < 0 else self._ssrc

    @ssrc.setter
    def ssrc(self, value):
        if value is not None and not 0 <= value <= 0xFFFFFFFF:
            raise ValueError("ssrc must be within 0..2**32-1")
        self._ssrc = -1 if value is None else value

    @property
    def payload_types(self):
        return self._payload_types

    # -- counters -------------------------------------------------------------------------------

    def rtp_stats(self):
        """The receiver's counters followed by the jitter buffer's ``stats()``."""
        out = {"packets": self.packets, "malformed": self.malformed,
               "ssrc_mismatch": self.ssrc_mismatch,
               "payload_type_mismatch": self.payload_type_mismatch}
        out.update(self.jitter.stats())
        return out

    @property
    def received_rate(self):
        return self.jitter.received_rate

    @property
    def demuxer_errors(self):
        return self.demuxer.errors

    @property
    def demuxer_stats(self):
        return self.demuxer.stats

    @property
    def parameter_sets(self):
        return self.demuxer.parameter_sets

    @property
    def buffered(self):
        return self.jitter.buffered

    # -- input ----------------------------------------------------------------------------------

    def feed_packet(self, data):
        """One RTP packet (bytes-like); return the access units it completes."""
        cdef list out = []
        self._packet(data, out)
        return out

    def feed_packets(self, packets):
        """A batch of RTP packets, in arrival order; return the access units they complete."""
        cdef list out = []
        if type(packets) is list:
            for data in <list>packets:
                self._packet(data, out)
        else:
            for data in packets:
                self._packet(data, out)
        return out

    def flush(self):
        """End of stream: release what the jitter buffer holds, then flush the demuxer."""
        cdef list out = []
        self._deliver(self.jitter.flush(), out)
        out += self.demuxer.flush()
        return out

    # -- internals ------------------------------------------------------------------------------

    cdef int _packet(self, object data, list out) except -1:
        cdef Py_buffer view
        cdef bint has_view = False
        cdef const uchar *p
        cdef Py_ssize_t n
        self.packets += 1
        if type(data) is bytes:
            p = <const uchar *>PyBytes_AS_STRING(data)
            n = PyBytes_GET_SIZE(data)
        else:
            PyObject_GetBuffer(data, &view, PyBUF_SIMPLE)
            has_view = True
            p = <const uchar *>view.buf
            n = view.len
        try:
            self._datagram(p, n, out)
        finally:
            if has_view:
                PyBuffer_Release(&view)
        return 0

    cdef int _datagram(self, const uchar *p, Py_ssize_t n, list out) except -1:
        cdef Py_ssize_t off, end
        cdef int b0, seq, padding
        # RFC 3550 §5.1, with the checks of parse_rtp (any failure is "malformed").
        if n < 12 or (p[0] >> 6) != 2:
            self.malformed += 1
            return 0
        b0 = p[0]
        off = 12 + 4 * (b0 & 0x0F)
        if off > n:
            self.malformed += 1
            return 0
        if b0 & 0x10:
            if off + 4 > n:
                self.malformed += 1
                return 0
            off += 4 + 4 * ((p[off + 2] << 8) | p[off + 3])
            if off > n:
                self.malformed += 1
                return 0
        end = n
        if b0 & 0x20:
            padding = p[n - 1]
            if padding == 0 or off + padding > n:
                self.malformed += 1
                return 0
            end = n - padding
        if self._ssrc >= 0 and <long long>((<unsigned int>p[8] << 24) | (<unsigned int>p[9] << 16)
                                            | (<unsigned int>p[10] << 8) | p[11]) != self._ssrc:
            self.ssrc_mismatch += 1
            return 0
        if not self._pt_ok[p[1] & 0x7F]:
            self.payload_type_mismatch += 1
            return 0
        seq = (p[2] << 8) | p[3]
        if _jitter_in_order(self.jitter, seq):
            self._release(seq, p + off, end - off, out)
            return 0
        # General path: the jitter buffer may hold this packet, so it gets its own copy.
        packet = _parse_rtp(PyBytes_FromStringAndSize(<const char *>p, n))
        self._deliver(self.jitter.add(packet), out)
        return 0

    cdef inline int _release(self, int seq, const uchar *payload, Py_ssize_t n,
                             list out) except -1:
        if self._last >= 0 and _seq_diff(seq, self._last) != 1:
            self.demuxer.discontinuity()
        self._last = seq
        return _demux_feed(self.demuxer, payload, n, out)

    cdef int _deliver(self, list released, list out) except -1:
        cdef Py_buffer view
        for packet in released:
            PyObject_GetBuffer(packet.payload, &view, PyBUF_SIMPLE)
            try:
                self._release(packet.sequence, <const uchar *>view.buf, view.len, out)
            finally:
                PyBuffer_Release(&view)
        return 0
