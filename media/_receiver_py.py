"""One RTP stream carrying MPEG-PS, from datagrams to access units: the readable reference.

Pure-Python twin of ``cext/_receiver.pyx``; both give the same frames and the same counters as
running ``parse_rtp`` → ``JitterBuffer`` → ``PsDemuxer`` by hand (tests compare them). This twin is
that loop, over the pure-Python stages; the compiled one takes a shortcut for the packet that is
next in sequence while nothing waits, and the general path for everything else.
"""

from __future__ import annotations

from collections.abc import Iterable

from ._ps_py import PsDemuxer
from ._rtp_py import JitterBuffer, parse_rtp, seq_diff
from .errors import MediaFormatError

#: Receiver counters (besides the jitter buffer's) in the order :meth:`rtp_stats` lists them.
RECEIVER_COUNTERS = ("packets", "malformed", "ssrc_mismatch", "payload_type_mismatch")


class RtpPsReceiver:
    """Reassembles the access units of one PS-over-RTP stream (GB/T 28181 media).

    Feed it RTP packets — one at a time with :meth:`feed_packet`, or the batch a ``recvmmsg``
    reader or an :class:`~media.Rfc4571Framer` delivers with :meth:`feed_packets` — and get back
    the :class:`~media.Frame` access units they complete. Each packet goes through
    :func:`~media.parse_rtp`, a :class:`~media.JitterBuffer` and a :class:`~media.PsDemuxer`;
    a sequence step other than +1 between released packets (a loss) calls
    ``PsDemuxer.discontinuity()`` first.

    ``ssrc``: when given, packets of any other SSRC are counted (``ssrc_mismatch``) and dropped.
    ``payload_types``: every payload type is accepted by default (devices label PS as 96, 98 and
    others); when given, packets of other types are counted (``payload_type_mismatch``) and
    dropped. Malformed packets (what ``parse_rtp`` rejects) are counted (``malformed``) and
    dropped. Packets are never kept by reference: a datagram buffer may be reused once the call
    returns.

    The remaining keyword arguments configure the demuxer (``audio_codec``, ``video_codec``,
    ``max_frame_size``) and the jitter buffer (``capacity``, ``max_wait_packets``, ``max_dropout``,
    ``max_misorder``); both are reachable as :attr:`demuxer` and :attr:`jitter` for their other
    properties (``streams``, ``parameter_sets``, ``received_rate``…) — feed only through the
    receiver.
    """

    def __init__(self, ssrc: int | None = None, payload_types: Iterable[int] | None = None, *,
                 audio_codec: str | None = None, video_codec: str | None = None,
                 max_frame_size: int = 8 << 20, capacity: int = 128, max_wait_packets: int = 64,
                 max_dropout: int = 3000, max_misorder: int = 100) -> None:
        if ssrc is not None and not 0 <= ssrc <= 0xFFFFFFFF:
            raise ValueError("ssrc must be within 0..2**32-1")
        types = None
        if payload_types is not None:
            types = frozenset(payload_types)
            if not all(isinstance(t, int) and 0 <= t <= 127 for t in types):
                raise ValueError("payload types must be within 0..127")
        self._ssrc = ssrc
        self._payload_types = types
        self.jitter = JitterBuffer(capacity, max_wait_packets, max_dropout, max_misorder)
        self.demuxer = PsDemuxer(audio_codec, video_codec, max_frame_size)
        self._last = -1          # sequence number of the last packet handed to the demuxer
        #: Datagrams offered.
        self.packets = 0
        #: Datagrams ``parse_rtp`` rejected.
        self.malformed = 0
        #: Packets of another SSRC than ``ssrc``.
        self.ssrc_mismatch = 0
        #: Packets of a payload type outside ``payload_types``.
        self.payload_type_mismatch = 0

    @property
    def ssrc(self) -> int | None:
        return self._ssrc

    @ssrc.setter
    def ssrc(self, value: int | None) -> None:
        """Change the accepted SSRC mid-stream (None: any), e.g. to lock onto the SSRC a device
        actually sends when it ignored the one offered."""
        if value is not None and not 0 <= value <= 0xFFFFFFFF:
            raise ValueError("ssrc must be within 0..2**32-1")
        self._ssrc = value

    @property
    def payload_types(self) -> frozenset[int] | None:
        return self._payload_types

    # -- counters -------------------------------------------------------------------------------

    def rtp_stats(self) -> dict[str, int]:
        """The receiver's counters followed by the jitter buffer's ``stats()``."""
        out = {name: getattr(self, name) for name in RECEIVER_COUNTERS}
        out.update(self.jitter.stats())
        return out

    @property
    def received_rate(self) -> float:
        return self.jitter.received_rate

    @property
    def demuxer_errors(self) -> dict[str, int]:
        return self.demuxer.errors

    @property
    def demuxer_stats(self) -> dict[str, int]:
        return self.demuxer.stats

    @property
    def parameter_sets(self) -> dict[int, dict[str, bytes]]:
        return self.demuxer.parameter_sets

    @property
    def buffered(self) -> int:
        """Packets held by the jitter buffer waiting for a missing one."""
        return self.jitter.buffered

    # -- input ----------------------------------------------------------------------------------

    def feed_packet(self, data) -> list:
        """One RTP packet (bytes-like); return the access units it completes."""
        out: list = []
        self._packet(data, out)
        return out

    def feed_packets(self, packets: Iterable) -> list:
        """A batch of RTP packets, in arrival order; return the access units they complete."""
        out: list = []
        for data in packets:
            self._packet(data, out)
        return out

    def flush(self) -> list:
        """End of stream: release what the jitter buffer holds, then flush the demuxer."""
        out: list = []
        self._deliver(self.jitter.flush(), out)
        out += self.demuxer.flush()
        return out

    def _packet(self, data, out: list) -> None:
        self.packets += 1
        if type(data) is not bytes:
            data = bytes(data)  # the jitter buffer may hold it past this call
        try:
            packet = parse_rtp(data)
        except MediaFormatError:
            self.malformed += 1
            return
        if self._ssrc is not None and packet.ssrc != self._ssrc:
            self.ssrc_mismatch += 1
            return
        if self._payload_types is not None and packet.payload_type not in self._payload_types:
            self.payload_type_mismatch += 1
            return
        self._deliver(self.jitter.add(packet), out)

    def _deliver(self, released: list, out: list) -> None:
        demuxer = self.demuxer
        for packet in released:
            if self._last >= 0 and seq_diff(packet.sequence, self._last) != 1:
                demuxer.discontinuity()
            self._last = packet.sequence
            out += demuxer.feed(packet.payload)
