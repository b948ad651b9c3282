# cython: language_level=3
"""RTP for PS media, compiled twin of ``media/_rtp_py.py`` (the readable reference).

Same classes, same results and same counters as the twin; tests compare them on random input.
"""

from cpython.buffer cimport PyBUF_SIMPLE, PyBuffer_Release, PyObject_GetBuffer
from cpython.bytes cimport PyBytes_FromStringAndSize
from cpython.memoryview cimport PyMemoryView_FromObject
from cpython.pycapsule cimport PyCapsule_New

from media.errors import MediaFormatError

DEF RTP_HEADER_SIZE = 12

RTP_VERSION = 2


cdef inline unsigned int _u32(const unsigned char *p) noexcept nogil:
    return (<unsigned int>p[0] << 24) | (<unsigned int>p[1] << 16) | (<unsigned int>p[2] << 8) | p[3]


cdef inline int _seq_diff(int a, int b) noexcept nogil:
    return ((a - b + 0x8000) & 0xFFFF) - 0x8000


def seq_diff(int a, int b):
    """Signed distance ``a - b`` between 16-bit sequence numbers (RFC 1982 serial arithmetic)."""
    return _seq_diff(a & 0xFFFF, b & 0xFFFF)


cdef class RtpPacket:
    """One parsed RTP packet; ``payload`` is a memoryview over the parsed buffer (no copy)."""

    cdef readonly bint marker
    cdef readonly int payload_type
    cdef readonly int sequence
    cdef readonly unsigned int timestamp
    cdef readonly unsigned int ssrc
    cdef readonly tuple csrc
    cdef readonly object extension_profile
    cdef readonly object extension
    cdef readonly int padding
    cdef readonly object payload

    def __init__(self, bint marker, int payload_type, int sequence, unsigned int timestamp,
                 unsigned int ssrc, tuple csrc=(), extension_profile=None, extension=None,
                 int padding=0, payload=b""):
        self.marker = marker
        self.payload_type = payload_type
        self.sequence = sequence
        self.timestamp = timestamp
        self.ssrc = ssrc
        self.csrc = csrc
        self.extension_profile = extension_profile
        self.extension = extension
        self.padding = padding
        self.payload = payload

    def _key(self):
        return (self.marker, self.payload_type, self.sequence, self.timestamp, self.ssrc,
                tuple(self.csrc), self.extension_profile,
                None if self.extension is None else bytes(self.extension), self.padding,
                bytes(self.payload))

    def __eq__(self, other):
        if not hasattr(other, "payload_type") or not hasattr(other, "extension_profile"):
            return NotImplemented
        return self._key() == other._key()

    def __ne__(self, other):
        result = self.__eq__(other)
        return result if result is NotImplemented else not result

    __hash__ = None

    def __repr__(self):
        return (f"RtpPacket(pt={self.payload_type}, seq={self.sequence}, ts={self.timestamp}, "
                f"ssrc=0x{self.ssrc:08X}, marker={self.marker}, {len(self.payload)} bytes)")


def parse_rtp(data):
    """Parse one RTP packet (RFC 3550 §5.1); raise MediaFormatError when malformed."""
    cdef Py_buffer buf
    cdef Py_ssize_t n, off, end
    cdef const unsigned char *p
    cdef int b0, b1, cc, i, words, padding = 0
    cdef RtpPacket pkt
    cdef tuple csrc = ()
    profile = None
    extension = None
    PyObject_GetBuffer(data, &buf, PyBUF_SIMPLE)
    try:
        n = buf.len
        p = <const unsigned char *>buf.buf
        if n < RTP_HEADER_SIZE:
            raise MediaFormatError(f"RTP packet too short ({n} bytes)")
        b0 = p[0]
        if b0 >> 6 != 2:
            raise MediaFormatError(f"RTP version {b0 >> 6} (expected 2)")
        b1 = p[1]
        cc = b0 & 0x0F
        off = RTP_HEADER_SIZE + 4 * cc
        if off > n:
            raise MediaFormatError("RTP CSRC list runs past the packet")
        if cc:
            csrc = tuple([_u32(p + 12 + 4 * i) for i in range(cc)])
        if b0 & 0x10:
            if off + 4 > n:
                raise MediaFormatError("RTP extension header runs past the packet")
            profile = (p[off] << 8) | p[off + 1]
            words = (p[off + 2] << 8) | p[off + 3]
            end = off + 4 + 4 * words
            if end > n:
                raise MediaFormatError("RTP extension runs past the packet")
            extension = PyBytes_FromStringAndSize(<const char *>p + off + 4, end - off - 4)
            off = end
        end = n
        if b0 & 0x20:
            padding = p[n - 1]
            if padding == 0 or off + padding > n:
                raise MediaFormatError(f"RTP padding count {padding} is invalid")
            end = n - padding
        pkt = RtpPacket.__new__(RtpPacket)
        pkt.marker = (b1 & 0x80) != 0
        pkt.payload_type = b1 & 0x7F
        pkt.sequence = (p[2] << 8) | p[3]
        pkt.timestamp = _u32(p + 4)
        pkt.ssrc = _u32(p + 8)
        pkt.csrc = csrc
        pkt.extension_profile = profile
        pkt.extension = extension
        pkt.padding = padding
    finally:
        PyBuffer_Release(&buf)
    view = PyMemoryView_FromObject(data)
    if (<memoryview>view).ndim != 1 or (<memoryview>view).itemsize != 1:
        view = view.cast("B")
    pkt.payload = view[off:end]
    return pkt


cdef class Rfc4571Framer:
    """Splits an RFC 4571 TCP byte stream into RTP packets; resynchronises after garbage."""

    cdef bytearray _buf
    cdef bint _resyncing
    cdef int _pt
    cdef long long _ssrc
    cdef readonly long long packets
    cdef readonly long long empty_frames
    cdef readonly long long resyncs
    cdef readonly long long discarded_bytes

    MAX_BUFFER = 2 + 0xFFFF

    def __init__(self, payload_type=None, ssrc=None):
        self._buf = bytearray()
        self._resyncing = False
        self._pt = -1 if payload_type is None else payload_type
        self._ssrc = -1 if ssrc is None else ssrc
        self.packets = 0
        self.empty_frames = 0
        self.resyncs = 0
        self.discarded_bytes = 0

    @property
    def payload_type(self):
        return None if self._pt < 0 else self._pt

    @property
    def ssrc(self):
        return None if self._ssrc < 0 else self._ssrc

    @property
    def buffered(self):
        return len(self._buf)

    def stats(self):
        return {"packets": self.packets, "empty_frames": self.empty_frames,
                "resyncs": self.resyncs, "discarded_bytes": self.discarded_bytes}

    cdef inline bint _plausible(self, const unsigned char *p) noexcept:
        cdef int length = (p[0] << 8) | p[1]
        if length < RTP_HEADER_SIZE or p[2] >> 6 != 2:
            return False
        if self._pt >= 0 and (p[3] & 0x7F) != self._pt:
            return False
        if self._ssrc >= 0 and <long long>_u32(p + 10) != self._ssrc:
            return False
        return True

    def feed(self, data):
        """Add bytes from the stream; return the complete RTP packets they finish, in order."""
        cdef bytearray buf = self._buf
        buf += data
        cdef list out = []
        cdef Py_ssize_t pos = 0, n = len(buf), length
        cdef const unsigned char *p = <const unsigned char *><char *>buf
        while True:
            if self._resyncing:
                while pos + 14 <= n and not self._plausible(p + pos):
                    pos += 1
                    self.discarded_bytes += 1
                if pos + 14 > n:
                    break
                self._resyncing = False
            if pos + 2 > n:
                break
            length = (p[pos] << 8) | p[pos + 1]
            if length == 0:
                self.empty_frames += 1
                pos += 2
                continue
            if length < RTP_HEADER_SIZE:
                self.resyncs += 1
                self._resyncing = True
                continue
            if pos + 3 > n:
                break
            if p[pos + 2] >> 6 != 2:
                self.resyncs += 1
                self._resyncing = True
                continue
            if pos + 2 + length > n:
                break
            out.append(p[pos + 2:pos + 2 + length])
            self.packets += 1
            pos += 2 + length
        if pos:
            del buf[:pos]
        return out


cdef class JitterBuffer:
    """Reorders RTP packets by 16-bit sequence number and reports loss (see the Python twin)."""

    cdef readonly int capacity
    cdef readonly int max_wait_packets
    cdef readonly int max_dropout
    cdef readonly int max_misorder
    cdef list _slots
    cdef int _held
    cdef int _next
    cdef int _highest
    cdef unsigned char _history[0x10000]
    cdef object _probe
    cdef long long _ext_base
    cdef long long _ext_highest
    cdef long long _expected_before
    cdef readonly long long received
    cdef readonly long long lost
    cdef readonly long long duplicate
    cdef readonly long long late
    cdef readonly long long reordered
    cdef readonly long long bad_sequence
    cdef readonly long long resets

    def __init__(self, int capacity=128, int max_wait_packets=64, int max_dropout=3000,
                 int max_misorder=100):
        if not 1 <= capacity <= 0x4000:
            raise ValueError("capacity must be within 1..16384")
        if not 1 <= max_wait_packets <= capacity:
            raise ValueError("max_wait_packets must be within 1..capacity")
        if not capacity <= max_dropout < 0x8000:
            raise ValueError("max_dropout must be within capacity..32767")
        if not 0 <= max_misorder < 0x8000:
            raise ValueError("max_misorder must be within 0..32767")
        self.capacity = capacity
        self.max_wait_packets = max_wait_packets
        self.max_dropout = max_dropout
        self.max_misorder = max_misorder
        self._slots = [None] * capacity
        self._held = 0
        self._next = -1
        self._highest = 0
        self._clear_history()
        self._probe = None
        self._ext_base = 0
        self._ext_highest = 0
        self._expected_before = 0
        self.received = 0
        self.lost = 0
        self.duplicate = 0
        self.late = 0
        self.reordered = 0
        self.bad_sequence = 0
        self.resets = 0

    cdef void _clear_history(self) noexcept:
        cdef int i
        for i in range(0x10000):
            self._history[i] = 0

    @property
    def expected(self):
        return self._expected()

    cdef long long _expected(self):
        if self._next < 0:
            return self._expected_before
        return self._expected_before + self._ext_highest - self._ext_base + 1

    @property
    def received_rate(self):
        cdef long long expected = self._expected()
        return <double>self.received / expected if expected else 1.0

    @property
    def buffered(self):
        return self._held

    def stats(self):
        return {"received": self.received, "lost": self.lost, "duplicate": self.duplicate,
                "late": self.late, "reordered": self.reordered,
                "bad_sequence": self.bad_sequence, "resets": self.resets,
                "expected": self._expected()}

    cdef inline int _seq_of(self, object packet) except -1:
        if type(packet) is RtpPacket:
            return (<RtpPacket>packet).sequence & 0xFFFF
        return packet.sequence & 0xFFFF

    def add(self, packet):
        """Accept ``packet`` (anything with a ``sequence`` attribute); return released packets."""
        cdef list out
        cdef int seq = self._seq_of(packet)
        cdef int delta, first
        cdef bint jump
        if self._in_order(seq):
            return [packet]
        out = []
        if self._next < 0:
            self._start(seq)
        delta = _seq_diff(seq, self._next)
        jump = delta >= self.max_dropout or delta < -self.max_misorder
        if self._probe is not None:
            probe = self._probe
            self._probe = None
            if jump and abs(_seq_diff(seq, self._seq_of(probe))) <= self.capacity // 2:
                self._release_all(out)
                self._expected_before = self._expected()
                self.resets += 1
                first = self._seq_of(probe)
                if _seq_diff(seq, first) < 0:
                    first = seq
                self._clear_history()
                self._start(first)
                self._accept(probe, out)
                self._accept(packet, out)
                return out
            self.bad_sequence += 1
        if jump:
            self._probe = packet
            return out
        self._accept(packet, out)
        return out

    cdef bint _in_order(self, int seq) noexcept:
        """Accept ``seq`` when it is the next number and nothing waits (what :meth:`add` would do,
        without the detours) and return True; False when the general path must decide."""
        cdef int delta
        if seq != self._next or self._held != 0 or self._probe is not None:
            return False
        delta = _seq_diff(seq, self._highest)
        if delta > 0:
            self._highest = seq
            self._ext_highest += delta
        elif delta < 0:
            self.reordered += 1
        self.received += 1
        self._history[seq] = 1
        self._advance()
        return True

    def flush(self):
        """Release every held packet in order, counting the gaps between them as lost."""
        cdef list out = []
        if self._probe is not None:
            self._probe = None
            self.bad_sequence += 1
        self._release_all(out)
        return out

    cdef void _start(self, int seq) noexcept:
        self._next = seq
        self._highest = seq
        self._ext_base = seq
        self._ext_highest = seq

    cdef int _accept(self, object packet, list out) except -1:
        cdef int seq = self._seq_of(packet)
        cdef int delta = _seq_diff(seq, self._next)
        cdef int slot, ahead
        if delta < 0:
            if self._history[seq] == 1:
                self.duplicate += 1
            else:
                self.late += 1
            return 0
        slot = seq % self.capacity
        held = self._slots[slot]
        if held is not None and self._seq_of(held) == seq:
            self.duplicate += 1
            return 0
        if delta >= self.capacity:
            self._skip_to((seq - self.capacity + 1) & 0xFFFF, out)
        ahead = _seq_diff(seq, self._highest)
        if ahead > 0:
            self._highest = seq
            self._ext_highest += ahead
        elif ahead < 0:
            self.reordered += 1
        self.received += 1
        self._slots[slot] = packet
        self._held += 1
        self._drain(out)
        while self._held >= self.max_wait_packets:
            self._skip_gap(out)
        return 0

    cdef inline bint _holds_next(self) except -1:
        packet = self._slots[self._next % self.capacity]
        return packet is not None and self._seq_of(packet) == self._next

    cdef inline void _advance(self) noexcept:
        self._next = (self._next + 1) & 0xFFFF
        self._history[(self._next + 0x8000) & 0xFFFF] = 0

    cdef int _pop_next(self, list out) except -1:
        cdef int slot = self._next % self.capacity
        out.append(self._slots[slot])
        self._slots[slot] = None
        self._held -= 1
        self._history[self._next] = 1
        self._advance()
        return 0

    cdef int _drain(self, list out) except -1:
        while self._held and self._holds_next():
            self._pop_next(out)
        return 0

    cdef int _skip_gap(self, list out) except -1:
        while not self._holds_next():
            self._history[self._next] = 2
            self.lost += 1
            self._advance()
        self._drain(out)
        return 0

    cdef int _skip_to(self, int target, list out) except -1:
        while _seq_diff(target, self._next) > 0:
            if self._held and self._holds_next():
                self._pop_next(out)
                continue
            self._history[self._next] = 2
            self.lost += 1
            self._advance()
        self._drain(out)
        return 0

    cdef int _release_all(self, list out) except -1:
        while self._held:
            self._skip_gap(out)
        return 0


cdef bint _c_in_order(object jitter, int seq) noexcept:
    return (<JitterBuffer>jitter)._in_order(seq)


#: ``int in_order(JitterBuffer jitter, int seq)``: accept sequence number ``seq`` (0..65535) when
#: it is the next one and nothing is held, exactly as :meth:`JitterBuffer.add` would, and return 1;
#: return 0 (changing nothing) when ``add`` must decide. For other compiled stages that hold a
#: buffer of this module and release the packet themselves (the caller guarantees the type).
_C_IN_ORDER = PyCapsule_New(<void *>_c_in_order, b"media._rtp._C_IN_ORDER", NULL)
