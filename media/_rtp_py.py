"""RTP for PS media: header parsing (RFC 3550 §5.1), RFC 4571 TCP framing, and a reorder buffer.

Pure-Python reference twin of ``cext/_rtp.pyx``; both must behave identically (tests compare them).
Nothing here touches sockets or clocks: bytes and packets in, packets and counters out.
"""

from __future__ import annotations

from .errors import MediaFormatError

RTP_VERSION = 2
RTP_HEADER_SIZE = 12


class RtpPacket:
    """One parsed RTP packet.

    ``payload`` is a memoryview over the buffer given to :func:`parse_rtp` (no copy); call
    ``bytes(packet.payload)`` to keep it beyond the life of that buffer.
    """

    __slots__ = ("marker", "payload_type", "sequence", "timestamp", "ssrc", "csrc",
                 "extension_profile", "extension", "padding", "payload")

    def __init__(self, marker: bool, payload_type: int, sequence: int, timestamp: int, ssrc: int,
                 csrc: tuple = (), extension_profile: int | None = None,
                 extension: bytes | None = None, padding: int = 0,
                 payload: bytes | memoryview = b"") -> None:
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

    def _key(self) -> tuple:
        return (self.marker, self.payload_type, self.sequence, self.timestamp, self.ssrc,
                tuple(self.csrc), self.extension_profile,
                None if self.extension is None else bytes(self.extension), self.padding,
                bytes(self.payload))

    def __eq__(self, other: object) -> bool:
        if not hasattr(other, "payload_type") or not hasattr(other, "extension_profile"):
            return NotImplemented
        return self._key() == other._key()  # type: ignore[attr-defined]

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return (f"RtpPacket(pt={self.payload_type}, seq={self.sequence}, ts={self.timestamp}, "
                f"ssrc=0x{self.ssrc:08X}, marker={self.marker}, {len(self.payload)} bytes)")


def parse_rtp(data) -> RtpPacket:
    """Parse one RTP packet (RFC 3550 §5.1) from a bytes-like object.

    Raises :class:`~media.errors.MediaFormatError` when the header is malformed: wrong version,
    CSRC list or extension running past the end, or a padding count larger than what remains.
    """
    view = memoryview(data)
    if view.ndim != 1 or view.itemsize != 1:
        view = view.cast("B")
    n = len(view)
    if n < RTP_HEADER_SIZE:
        raise MediaFormatError(f"RTP packet too short ({n} bytes)")
    b0 = view[0]
    if b0 >> 6 != RTP_VERSION:
        raise MediaFormatError(f"RTP version {b0 >> 6} (expected 2)")
    b1 = view[1]
    cc = b0 & 0x0F
    off = RTP_HEADER_SIZE + 4 * cc
    if off > n:
        raise MediaFormatError("RTP CSRC list runs past the packet")
    csrc = tuple(int.from_bytes(view[12 + 4 * i:16 + 4 * i], "big") for i in range(cc))
    profile = None
    extension = None
    if b0 & 0x10:
        # RFC 3550 §5.3.1: 16-bit profile-defined value, 16-bit length in 32-bit words.
        if off + 4 > n:
            raise MediaFormatError("RTP extension header runs past the packet")
        profile = (view[off] << 8) | view[off + 1]
        words = (view[off + 2] << 8) | view[off + 3]
        end = off + 4 + 4 * words
        if end > n:
            raise MediaFormatError("RTP extension runs past the packet")
        extension = bytes(view[off + 4:end])
        off = end
    padding = 0
    end = n
    if b0 & 0x20:
        # RFC 3550 §5.1: the last octet counts the padding octets, itself included.
        padding = view[n - 1]
        if padding == 0 or off + padding > n:
            raise MediaFormatError(f"RTP padding count {padding} is invalid")
        end = n - padding
    return RtpPacket(
        bool(b1 & 0x80), b1 & 0x7F, (view[2] << 8) | view[3],
        int.from_bytes(view[4:8], "big"), int.from_bytes(view[8:12], "big"),
        csrc, profile, extension, padding, view[off:end])


class Rfc4571Framer:
    """Splits an RFC 4571 TCP byte stream (2-byte big-endian length + RTP packet) into packets.

    Input may be cut anywhere. A frame whose length is below 12 or whose first byte is not RTP
    version 2 marks lost framing (a reconnect, a private header, garbage): the error is counted and
    bytes are dropped until a plausible header: length >= 12, version 2, and, when given,
    ``payload_type``/``ssrc`` matching. Buffered data never exceeds one maximal frame
    (2 + 65535 bytes) between calls.
    """

    MAX_BUFFER = 2 + 0xFFFF

    def __init__(self, payload_type: int | None = None, ssrc: int | None = None) -> None:
        self.payload_type = payload_type
        self.ssrc = ssrc
        self._buf = bytearray()
        self._resyncing = False
        #: Packets returned.
        self.packets = 0
        #: Zero-length frames skipped (RFC 4571 allows them).
        self.empty_frames = 0
        #: Times framing was lost and a search for the next plausible header began.
        self.resyncs = 0
        #: Bytes dropped while searching.
        self.discarded_bytes = 0

    @property
    def buffered(self) -> int:
        """Bytes held waiting for the rest of a frame."""
        return len(self._buf)

    def stats(self) -> dict[str, int]:
        return {"packets": self.packets, "empty_frames": self.empty_frames,
                "resyncs": self.resyncs, "discarded_bytes": self.discarded_bytes}

    def _plausible(self, buf, i: int) -> bool:
        """Frame header at ``i`` looks like the start of an RTP packet (needs 14 bytes)."""
        length = (buf[i] << 8) | buf[i + 1]
        if length < RTP_HEADER_SIZE or buf[i + 2] >> 6 != RTP_VERSION:
            return False
        if self.payload_type is not None and buf[i + 3] & 0x7F != self.payload_type:
            return False
        if self.ssrc is not None and int.from_bytes(buf[i + 10:i + 14], "big") != self.ssrc:
            return False
        return True

    def feed(self, data) -> list[bytes]:
        """Add bytes from the stream; return the complete RTP packets they finish, in order."""
        buf = self._buf
        buf += data
        out: list[bytes] = []
        pos = 0
        n = len(buf)
        while True:
            if self._resyncing:
                # Search the first offset carrying a plausible header; keep a short tail that
                # may still become one once more bytes arrive.
                while pos + 14 <= n and not self._plausible(buf, pos):
                    pos += 1
                    self.discarded_bytes += 1
                if pos + 14 > n:
                    break
                self._resyncing = False
            if pos + 2 > n:
                break
            length = (buf[pos] << 8) | buf[pos + 1]
            if length == 0:
                self.empty_frames += 1
                pos += 2
                continue
            if length < RTP_HEADER_SIZE:
                self._lose_sync()
                continue
            if pos + 3 > n:
                break
            if buf[pos + 2] >> 6 != RTP_VERSION:
                self._lose_sync()
                continue
            if pos + 2 + length > n:
                break
            out.append(bytes(buf[pos + 2:pos + 2 + length]))
            self.packets += 1
            pos += 2 + length
        if pos:
            del buf[:pos]
        return out

    def _lose_sync(self) -> None:
        self.resyncs += 1
        self._resyncing = True


def seq_diff(a: int, b: int) -> int:
    """Signed distance ``a - b`` between 16-bit sequence numbers (RFC 1982 serial arithmetic)."""
    return ((a - b + 0x8000) & 0xFFFF) - 0x8000


class JitterBuffer:
    """Reorders RTP packets by 16-bit sequence number and reports loss.

    ``add(packet)`` returns the packets it releases, in sequence order. A missing packet is
    waited for while fewer than ``max_wait_packets`` later packets are held and the window of
    ``capacity`` sequence numbers is not exceeded; then it is declared lost and skipped. A released
    packet whose sequence number is not the previous one + 1 follows a loss: that is where the PS
    layer must be told (``PsDemuxer.discontinuity()``).

    A jump of more than ``max_dropout`` ahead or ``max_misorder`` behind is a suspected sender
    restart (RFC 3550 Appendix A.1): it is confirmed when the next packet continues near it, and the
    buffer then restarts at the new numbers; otherwise the stray packet is dropped (``bad_sequence``).

    Counters: ``received`` (distinct packets accepted), ``lost`` (sequence numbers skipped),
    ``duplicate``, ``late`` (arrived after their number was skipped or released), ``reordered``
    (accepted although a higher number had already arrived), ``bad_sequence``, ``resets``;
    ``expected`` and ``received_rate``. After :meth:`flush`, ``received + lost == expected``.
    """

    def __init__(self, capacity: int = 128, max_wait_packets: int = 64, max_dropout: int = 3000,
                 max_misorder: int = 100) -> None:
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
        self._slots: list = [None] * capacity
        self._held = 0
        self._next = -1          # next sequence number to release; -1 before the first packet
        self._highest = 0        # highest sequence number accepted (valid once started)
        self._history = bytearray(0x10000)  # per sequence number: 1 released, 2 skipped
        self._probe = None       # packet that jumped far away, pending confirmation
        self._ext_base = 0       # extended numbers of the current run (RFC 3550 A.1 style)
        self._ext_highest = 0
        self._expected_before = 0
        self.received = 0
        self.lost = 0
        self.duplicate = 0
        self.late = 0
        self.reordered = 0
        self.bad_sequence = 0
        self.resets = 0

    @property
    def expected(self) -> int:
        """Sequence numbers spanned since the first packet (across restarts)."""
        if self._next < 0:
            return self._expected_before
        return self._expected_before + self._ext_highest - self._ext_base + 1

    @property
    def received_rate(self) -> float:
        """``received / expected``; 1.0 before anything is expected."""
        expected = self.expected
        return self.received / expected if expected else 1.0

    @property
    def buffered(self) -> int:
        """Packets held waiting for a missing one."""
        return self._held

    def stats(self) -> dict[str, int]:
        return {"received": self.received, "lost": self.lost, "duplicate": self.duplicate,
                "late": self.late, "reordered": self.reordered,
                "bad_sequence": self.bad_sequence, "resets": self.resets,
                "expected": self.expected}

    def add(self, packet) -> list:
        """Accept ``packet`` (anything with a ``sequence`` attribute); return released packets."""
        out: list = []
        seq = packet.sequence & 0xFFFF
        if self._next < 0:
            self._start(seq)
        delta = seq_diff(seq, self._next)
        jump = delta >= self.max_dropout or delta < -self.max_misorder
        if self._probe is not None:
            probe, self._probe = self._probe, None
            if jump and abs(seq_diff(seq, probe.sequence & 0xFFFF)) <= self.capacity // 2:
                # Two packets agree on the new numbering: the sender restarted.
                self._release_all(out)
                self._expected_before = self.expected
                self.resets += 1
                first = probe.sequence & 0xFFFF
                if seq_diff(seq, first) < 0:
                    first = seq
                self._history = bytearray(0x10000)
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

    def flush(self) -> list:
        """Release every held packet in order, counting the gaps between them as lost."""
        out: list = []
        if self._probe is not None:
            self._probe = None
            self.bad_sequence += 1
        self._release_all(out)
        return out

    # -- internals ------------------------------------------------------------------------------

    def _start(self, seq: int) -> None:
        self._next = seq
        self._highest = seq
        self._ext_base = seq
        self._ext_highest = seq

    def _accept(self, packet, out: list) -> None:
        seq = packet.sequence & 0xFFFF
        delta = seq_diff(seq, self._next)
        if delta < 0:
            if self._history[seq] == 1:
                self.duplicate += 1
            else:
                self.late += 1
            return
        slot = seq % self.capacity
        held = self._slots[slot]
        if held is not None and (held.sequence & 0xFFFF) == seq:
            self.duplicate += 1
            return
        if delta >= self.capacity:
            # Too far ahead for the window: give up on what is missing before it.
            self._skip_to((seq - self.capacity + 1) & 0xFFFF, out)
        ahead = seq_diff(seq, self._highest)
        if ahead > 0:
            self._highest = seq
            self._ext_highest += ahead
        elif ahead < 0:
            self.reordered += 1
        self.received += 1
        self._slots[seq % self.capacity] = packet
        self._held += 1
        self._drain(out)
        while self._held >= self.max_wait_packets:
            # The gap at _next persisted for max_wait_packets packets: declare it lost.
            self._skip_gap(out)

    def _drain(self, out: list) -> None:
        slots = self._slots
        cap = self.capacity
        history = self._history
        while self._held:
            slot = self._next % cap
            packet = slots[slot]
            if packet is None or (packet.sequence & 0xFFFF) != self._next:
                return
            slots[slot] = None
            self._held -= 1
            out.append(packet)
            history[self._next] = 1
            self._advance()

    def _advance(self) -> None:
        self._next = (self._next + 1) & 0xFFFF
        # Forget the number half a cycle behind so an old mark never meets a new packet.
        self._history[(self._next + 0x8000) & 0xFFFF] = 0

    def _skip_gap(self, out: list) -> None:
        """Skip the missing numbers at the head of the window up to the next held packet."""
        while True:
            packet = self._slots[self._next % self.capacity]
            if packet is not None and (packet.sequence & 0xFFFF) == self._next:
                break
            self._history[self._next] = 2
            self.lost += 1
            self._advance()
        self._drain(out)

    def _skip_to(self, target: int, out: list) -> None:
        """Release or skip everything before ``target``."""
        while seq_diff(target, self._next) > 0:
            if self._held:
                slot = self._next % self.capacity
                packet = self._slots[slot]
                if packet is not None and (packet.sequence & 0xFFFF) == self._next:
                    self._slots[slot] = None
                    self._held -= 1
                    out.append(packet)
                    self._history[self._next] = 1
                    self._advance()
                    continue
            self._history[self._next] = 2
            self.lost += 1
            self._advance()
        self._drain(out)

    def _release_all(self, out: list) -> None:
        while self._held:
            self._skip_gap(out)
