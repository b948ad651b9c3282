"""media.udpsend: grouping RTP packets into UDP GSO sends, and the sender's fallbacks."""

from __future__ import annotations

import errno
import socket
import struct

import pytest

from media import _psmux_py, parse_rtp, udpsend
from media.psmux import RtpPacketizer
from media.psrtp import PsRtpSink
from media.udpsend import MAX_SEGMENTS, UDP_SEGMENT, UdpSender, gso_runs

from media_gen import encode_video


def covers(runs, n):
    """The runs are consecutive and cover range(n)."""
    return [i for start, stop, _ in runs for i in range(start, stop)] == list(range(n))


@pytest.mark.parametrize("sizes, expected", [
    ([], []),
    ([500], [(0, 1, 500)]),
    ([1412, 1412, 1412, 300], [(0, 4, 1412)]),
    # a frame of one short packet, then a frame of three: two runs
    ([300, 1412, 1412, 90], [(0, 1, 300), (1, 4, 1412)]),
    # a frame whose last packet is full joins the next frame (all segments full, last shorter)
    ([1412, 1412, 1412, 1412, 700], [(0, 5, 1412)]),
    # a larger packet cannot be a later segment: it starts a run of its own
    ([600, 600, 1412, 1412, 100], [(0, 2, 600), (2, 5, 1412)]),
    # only the last segment may be shorter
    ([1412, 700, 700], [(0, 2, 1412), (2, 3, 700)]),
    ([1412, 1412], [(0, 2, 1412)]),
])
def test_gso_runs(sizes, expected):
    runs = gso_runs(sizes)
    assert runs == expected
    assert covers(runs, len(sizes))


def test_gso_runs_respect_segment_and_byte_limits():
    sizes = [1412] * 150 + [20]
    runs = gso_runs(sizes)
    assert covers(runs, len(sizes))
    assert all(stop - start <= MAX_SEGMENTS and sum(sizes[start:stop]) <= udpsend.MAX_GSO_BYTES
               for start, stop, _ in runs)
    assert [stop - start for start, stop, _ in runs] == [46, 46, 46, 13]     # 46 × 1412 ≤ 65,000
    small = [100] * 200
    assert [stop - start for start, stop, _ in gso_runs(small)] == [64, 64, 64, 8]
    assert [stop - start for start, stop, _ in gso_runs(small, max_segments=10, max_bytes=450)] == [4] * 50


@pytest.mark.parametrize("packetizer", [RtpPacketizer, _psmux_py.RtpPacketizer], ids=["compiled", "python"])
@pytest.mark.parametrize("size", [1, 1399, 1400, 1401, 2800, 9000, 64 * 1400 + 5, 150_000])
def test_one_frame_of_the_packetizer_is_gso_shaped(packetizer, size):
    """Every packet of a frame is 12 + mtu_payload bytes except the last: one run per frame
    (more only where a run reaches the segment or byte limit)."""
    packets = packetizer(1234, mtu_payload=1400, seq=0).packetize(bytes(size), 9000)
    runs = gso_runs([len(p) for p in packets])
    assert covers(runs, len(packets))
    if len(packets) <= 46:
        assert runs == [(0, len(packets), len(packets[0]))]
    for start, stop, segment in runs:
        assert all(len(p) == segment for p in packets[start:stop - 1]) and len(packets[stop - 1]) <= segment
    assert all(len(p) == 1412 for p in packets[:-1])


def test_psrtp_batches_of_frames_make_a_run_per_frame():
    """What PsRtpSink hands invite.py: several frames per batch; each run ends at the packet with
    the marker bit (the frame's last), unless that packet is full size."""
    batches = []
    sink = PsRtpSink(106000001, batches.append, video_codec="h264")
    frames = encode_video("h264", frames=30, width=640, height=480)
    for i in range(0, len(frames), 5):
        sink.on_frames(frames[i:i + 5])
    assert batches
    multi = 0
    for packets in batches:
        runs = gso_runs([len(p) for p in packets])
        assert covers(runs, len(packets))
        for start, stop, segment in runs:
            last = parse_rtp(packets[stop - 1])
            assert last.marker or len(packets[stop - 1]) == segment
            assert all(len(p) == segment for p in packets[start:stop - 1])
            multi += stop - start > 1
        assert len(runs) <= sum(parse_rtp(p).marker for p in packets)
    assert multi > 0


class FakeSocket:
    """Records sends; ``fail`` maps a send's index to the errno it raises."""

    def __init__(self, fail: dict[int, int] | None = None) -> None:
        self.fail = dict(fail or {})
        self.calls: list[tuple[str, list[bytes], int | None]] = []
        self.n = 0

    def _maybe_fail(self) -> None:
        code = self.fail.pop(self.n, None)
        self.n += 1
        if code == errno.EAGAIN:
            raise BlockingIOError(code, "would block")
        if code is not None:
            raise OSError(code, errno.errorcode[code])

    def sendmsg(self, buffers, ancdata, flags, address):
        self._maybe_fail()
        ((level, kind, data),) = ancdata
        assert (level, kind) == (socket.SOL_UDP, UDP_SEGMENT) and address == ("127.0.0.1", 9)
        self.calls.append(("gso", list(buffers), struct.unpack("=H", data)[0]))
        return sum(map(len, buffers))

    def sendto(self, data, address):
        self._maybe_fail()
        self.calls.append(("sendto", [data], None))
        return len(data)


def frame(n: int, tail: int = 100, full: int = 1412) -> list[bytes]:
    return [bytes([i]) * full for i in range(n - 1)] + [b"t" * tail]


DEST = ("127.0.0.1", 9)


@pytest.fixture(autouse=True)
def kernel_has_gso(monkeypatch):
    monkeypatch.setattr(udpsend, "_kernel_lacks_gso", False)


def test_sender_sends_a_frame_with_one_gso_call_and_single_packets_with_sendto():
    sock = FakeSocket()
    sender = UdpSender(sock)
    packets = frame(5) + [b"x" * 50] + frame(3)
    assert sender.send(packets, DEST) == 9
    assert [(kind, len(bufs), seg) for kind, bufs, seg in sock.calls] == [
        ("gso", 5, 1412), ("sendto", 1, None), ("gso", 3, 1412)]
    assert [p for _, bufs, _ in sock.calls for p in bufs] == packets
    s = sender.stats()
    assert s["datagrams"] == 9 and s["syscalls"] == 3 and s["gso_sends"] == 2 and s["dropped"] == 0


@pytest.mark.parametrize("code", [errno.EIO, errno.EINVAL, errno.ENOPROTOOPT])
def test_gso_refused_at_first_use_falls_back_to_a_send_per_packet(code):
    sock = FakeSocket(fail={0: code})
    sender = UdpSender(sock)
    packets = frame(4)
    assert sender.send(packets, DEST) == 4
    # the refused send took nothing: the same packets went one by one, in order
    assert [kind for kind, _, _ in sock.calls] == ["sendto"] * 4
    assert [bufs[0] for _, bufs, _ in sock.calls] == packets
    assert not sender.gso and sender.gso_error and sender.dropped == 0
    assert sender.send(frame(3), DEST) == 3 and [k for k, _, _ in sock.calls[4:]] == ["sendto"] * 3
    # a kernel without GSO is remembered for every socket; a refusal by one route only for its sender
    assert UdpSender(FakeSocket()).gso == (code != errno.ENOPROTOOPT)


def test_would_block_drops_the_rest_and_says_so():
    sock = FakeSocket(fail={1: errno.EAGAIN})
    sender = UdpSender(sock)
    packets = frame(3) + frame(4) + frame(2)
    assert sender.send(packets, DEST) == 3          # the first frame left, the second blocked
    assert len(sock.calls) == 1 and sender.gso      # blocking is no reason to give up GSO
    s = sender.stats()
    assert s["blocked"] == 1 and s["dropped"] == 6 and s["datagrams"] == 3
    # per packet too: stops at the packet that blocked
    sock = FakeSocket(fail={2: errno.EAGAIN})
    sender = UdpSender(sock, gso=False)
    assert sender.send(frame(5), DEST) == 2 and sender.dropped == 3 and sender.blocked == 1


def test_other_errors_drop_the_rest_and_are_counted():
    sock = FakeSocket(fail={0: errno.ENETUNREACH})
    sender = UdpSender(sock)
    assert sender.send(frame(3) + frame(2), DEST) == 0
    assert sender.errors == 1 and sender.dropped == 5 and sender.gso and sender.last_error
    assert sender.send(frame(2), DEST) == 2


def test_gso_off_sends_each_packet():
    sock = FakeSocket()
    sender = UdpSender(sock, gso=False)
    assert sender.send(frame(4), DEST) == 4
    assert [kind for kind, _, _ in sock.calls] == ["sendto"] * 4 and sender.stats()["gso"] is False


@pytest.mark.skipif(not udpsend.gso_supported(), reason="no UDP GSO on this platform")
def test_real_socket_receiver_gets_each_packet_as_its_own_datagram():
    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        rx.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        rx.bind(("127.0.0.1", 0))
        rx.settimeout(2)
        tx.bind(("127.0.0.1", 0))
        tx.setblocking(False)
        packetizer = RtpPacketizer(77, mtu_payload=1400, seq=65530)
        packets = packetizer.packetize(bytes(range(256)) * 40, 0) + packetizer.packetize(b"\x01" * 200, 3600)
        sender = UdpSender(tx)
        assert sender.send(packets, rx.getsockname()) == len(packets)
        got = [rx.recv(65536) for _ in packets]
        assert got == packets
        assert sender.gso and sender.gso_sends >= 1 and sender.syscalls < len(packets)
        assert [parse_rtp(p).sequence for p in got] == [(65530 + i) & 0xFFFF for i in range(len(packets))]
    finally:
        rx.close()
        tx.close()
