"""MediaIngest over real loopback sockets: a sender built from PsMuxer + RtpPacketizer (and
rfc4571_frame for TCP) streams sample PS files; the frames received must equal the frames demuxed
from the file. Also the batch UDP reader (compiled and twin give the same datagrams and counters),
bad input, port bookkeeping and clean shutdown.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import socket
import struct

import pytest

from conftest import DATA, resolve, stage_params
from media import PsDemuxer, PsMuxer, RtpPacketizer, _receiver_py, _udprecv_py, rfc4571_frame
from media import _impl
from media import ingest as ingest_mod
from media.ingest import IngestError, MediaIngest, PortsExhausted

H264 = DATA / "ps" / "psmux_h264_g711a.ps"
H265 = DATA / "ps" / "libmpeg_h265_g711a.ps"
SSRC_A = 106000001
SSRC_B = 106000002
HOST = "127.0.0.1"


# ---- helpers ------------------------------------------------------------------------------------

def file_frames(path) -> list:
    demuxer = PsDemuxer()
    return demuxer.feed(path.read_bytes()) + demuxer.flush()


def by_stream(frames) -> dict[int, list[tuple]]:
    """Frames per stream id in order (audio and video complete at different moments)."""
    out: dict[int, list[tuple]] = {}
    for f in frames:
        out.setdefault(f.stream_id, []).append((f.codec, f.pts, f.dts, f.keyframe, bytes(f.data)))
    return out


def rtp_packets(path, ssrc: int, seq: int = 1000) -> list[bytes]:
    """The file's frames as a device would send them: PsMuxer → RtpPacketizer."""
    frames = file_frames(path)
    video = next(f.codec for f in frames if f.codec in ("h264", "h265"))
    muxer = PsMuxer(video, "g711a")
    packetizer = RtpPacketizer(ssrc, seq=seq)
    out: list[bytes] = []
    for frame in frames:
        out += packetizer.packetize(muxer.mux(frame), frame.pts or 0)
    return out


class Sink:
    def __init__(self) -> None:
        self.frames: list = []
        self.closed: list[str] = []

    def on_frames(self, frames) -> None:
        self.frames += frames

    def on_close(self, reason: str) -> None:
        self.closed.append(reason)


async def wait_for(predicate, timeout: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not predicate():
        if loop.time() > end:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.005)


async def send_udp(packets, port: int, chunk: int = 32) -> None:
    """Send datagrams to 127.0.0.1:port, yielding to the loop every ``chunk`` so the receiver
    keeps up (loopback drops nothing while the receive buffer has room)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        for i, packet in enumerate(packets):
            sock.sendto(packet, (HOST, port))
            if i % chunk == chunk - 1:
                await asyncio.sleep(0)


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.fixture(params=stage_params("udprecv"))
def reader_mod(request, monkeypatch):
    """Run ingest tests with each batch reader (compiled recvmmsg and the Python twin)."""
    module = resolve(request.param)
    monkeypatch.setattr(ingest_mod, "UdpReader", module.UdpReader)
    return module


@pytest.fixture
def port_range():
    """A free-looking range for this test (bind failures inside it are skipped anyway)."""
    base = random.Random(os.getpid()).randrange(20000, 28000) + random.randrange(0, 1000)
    return (base, base + 9)


@pytest.fixture
def no_leaks():
    before = open_fds()
    yield
    assert open_fds() == before, "file descriptors leaked"


async def settle(ingest: MediaIngest) -> None:
    await ingest.close()
    await asyncio.sleep(0)
    current = asyncio.current_task()
    assert [t for t in asyncio.all_tasks() if t is not current] == []


# ---- the batch reader: compiled and twin alike --------------------------------------------------

def reader_modules() -> list:
    return [resolve(p.values[0]) for p in stage_params("udprecv")]


def test_compiled_reader_is_built():
    if not _impl.NO_EXTENSIONS:
        assert _impl.compiled("udprecv") is not None


def _bound_pair():
    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rx.bind((HOST, 0))
    rx.setblocking(False)
    tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    tx.bind((HOST, 0))
    return rx, tx


def _rtp(seq: int, ssrc: int, payload: bytes = b"x") -> bytes:
    return struct.pack(">BBHII", 0x80, 96, seq, seq * 3600, ssrc) + payload


DATAGRAMS = ([_rtp(i, SSRC_A if i % 3 else SSRC_B, bytes(i)) for i in range(10)]
             + [b"", b"\x80\x60", b"\x00" * 20, b"\x81\xc8" + bytes(26), b"z" * 300]
             + [_rtp(i, SSRC_A, bytes(40)) for i in range(10, 90)])


def _drain(reader, rx, method: str) -> tuple[list, list]:
    results, counts = [], []
    while True:
        got = getattr(reader, method)(rx)
        counts.append((reader.last_count, reader.last_bytes))
        results.append(got)
        if reader.last_count < reader.batch:
            return results, counts


@pytest.mark.parametrize("method", ["read", "read_from", "read_grouped"])
def test_readers_agree_over_a_real_socket(method):
    outcomes = []
    for module in reader_modules():
        rx, tx = _bound_pair()
        with rx, tx:
            reader = module.UdpReader(batch=16, max_size=256)
            for d in DATAGRAMS:
                tx.sendto(d, rx.getsockname())
            results, counts = _drain(reader, rx, method)
            outcomes.append((results, counts, reader.stats(), tx.getsockname()))
    for results, counts, stats, source in outcomes:
        kept = [d for d in DATAGRAMS if len(d) <= 256]
        assert stats["truncated"] == 1 and stats["calls"] == len(results)
        if method == "read":
            assert [d for batch in results for d in batch] == kept
        elif method == "read_from":
            assert [d for batch in results for d, _ in batch] == kept
            assert {a for batch in results for _, a in batch} == {source}
        else:
            assert stats["malformed"] == 3 and stats["rtcp"] == 1
            merged: dict[int, list[bytes]] = {}
            for batch in results:
                for ssrc, packets in batch.items():
                    merged.setdefault(ssrc, []).extend(packets)
            assert merged == {ssrc: [d for d in DATAGRAMS if len(d) >= 12 and d[0] == 0x80
                                     and d[1] == 96 and int.from_bytes(d[8:12], "big") == ssrc]
                              for ssrc in (SSRC_A, SSRC_B)}
            assert list(results[0]) == [SSRC_B, SSRC_A]   # order of first arrival
        assert sum(c for c, _ in counts) == len(DATAGRAMS)
    if len(outcomes) == 2:
        (r1, c1, s1, a1), (r2, c2, s2, a2) = outcomes
        if method == "read_from":   # the sender's port differs between the two runs
            r1 = [[(d, a == a1) for d, a in b] for b in r1]
            r2 = [[(d, a == a2) for d, a in b] for b in r2]
        assert (r1, c1, s1) == (r2, c2, s2)


@pytest.mark.parametrize("module", reader_modules(), ids=lambda m: m.__name__)
def test_reader_edge_cases(module):
    with pytest.raises(ValueError):
        module.UdpReader(batch=0)
    with pytest.raises(ValueError):
        module.UdpReader(max_size=8)
    reader = module.UdpReader(batch=4)
    rx, tx = _bound_pair()
    with rx, tx:
        assert reader.read(rx) == [] and reader.last_count == 0     # nothing waiting: no block
        tx.sendto(b"a" * 65507, rx.getsockname())                    # the largest UDP payload
        assert reader.read(rx) == [b"a" * 65507]
    with pytest.raises(OSError):
        reader.read(rx)                                             # closed socket
    six = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    with six, socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as tx6:
        try:
            six.bind(("::1", 0))
        except OSError:
            pytest.skip("no IPv6 loopback")
        six.setblocking(False)
        tx6.sendto(b"hello", six.getsockname())
        [(data, address)] = reader.read_from(six)
        assert data == b"hello" and address[:2] == ("::1", tx6.getsockname()[1]) and len(address) == 4


@pytest.mark.parametrize("rx_param", stage_params("receiver"))
def test_receiver_ssrc_can_be_changed_mid_stream(rx_param):
    module = resolve(rx_param)
    receiver = module.RtpPsReceiver(ssrc=SSRC_A)
    receiver.feed_packets([_rtp(1, SSRC_B)])
    assert receiver.ssrc_mismatch == 1
    receiver.ssrc = SSRC_B
    receiver.feed_packets([_rtp(2, SSRC_B)])
    assert receiver.ssrc == SSRC_B and receiver.ssrc_mismatch == 1
    receiver.ssrc = None
    receiver.feed_packets([_rtp(3, SSRC_A)])
    assert receiver.ssrc is None and receiver.ssrc_mismatch == 1
    with pytest.raises(ValueError):
        receiver.ssrc = 1 << 32
    assert _receiver_py.RtpPsReceiver(ssrc=None).ssrc is None


# ---- UDP ----------------------------------------------------------------------------------------

async def test_udp_dedicated_port_frames_equal_the_file(reader_mod, port_range, no_leaks):
    ingest = MediaIngest(HOST, port_range)
    sink = Sink()
    stream = await ingest.open("udp", ssrc=SSRC_A, on_frames=sink.on_frames,
                               on_close=sink.on_close)
    assert port_range[0] <= stream.local_port <= port_range[1]
    packets = rtp_packets(H264, SSRC_A)
    await send_udp(packets, stream.local_port)
    await wait_for(lambda: stream.packets == len(packets))
    stats = stream.stats()
    assert stats["bytes"] == sum(map(len, packets))
    assert stats["lost"] == 0 and stats["loss_rate"] == 0.0 and stats["received_rate"] == 1.0
    assert stats["bitrate"] > 0 and stats["ssrc_seen"] == SSRC_A and stats["ssrc_ignored"] == 0
    assert stream.last_packet_at is not None and stream.remote[0] == HOST
    await stream.close()
    assert by_stream(sink.frames) == by_stream(file_frames(H264))
    assert sink.closed == []            # on_close is for ends the stream did not ask for
    assert ingest.counters()["packets"] == len(packets)
    await settle(ingest)


async def test_single_port_demultiplexes_by_ssrc(reader_mod, no_leaks, caplog):
    events: list[str] = []
    ingest = MediaIngest(HOST, (40000, 40001), single_port=0, on_event=events.append)
    await ingest.start()
    a, b = Sink(), Sink()
    sa = await ingest.open("udp", ssrc=SSRC_A, on_frames=a.on_frames)
    sb = await ingest.open("udp", ssrc=SSRC_B, on_frames=b.on_frames)
    assert sa.local_port == sb.local_port == ingest.shared_port
    pa, pb = rtp_packets(H264, SSRC_A), rtp_packets(H265, SSRC_B, seq=65000)
    stray = [_rtp(i, 999) for i in range(5)]
    mixed = []
    for i in range(max(len(pa), len(pb))):
        mixed += pa[i:i + 1] + pb[i:i + 1]
        if i == 100:
            mixed += stray + [b"\x00" * 3, b"\x80\xc9" + bytes(30)]
    with caplog.at_level(logging.WARNING, logger="media.ingest"):
        await send_udp(mixed, ingest.shared_port)
        await wait_for(lambda: sa.packets == len(pa) and sb.packets == len(pb)
                       and ingest.unknown_ssrc == 5)
    await sa.close()
    await sb.close()
    assert by_stream(a.frames) == by_stream(file_frames(H264))
    assert by_stream(b.frames) == by_stream(file_frames(H265))
    counters = ingest.counters()
    assert counters["unknown_ssrc"] == 5 and counters["shared_malformed"] == 1
    assert counters["shared_rtcp"] == 1 and counters["streams_opened"] == 2
    assert events.count("ingest_unknown_ssrc") == 1          # logged once per SSRC
    assert sum("unknown SSRC 999" in r.getMessage() for r in caplog.records) == 1
    await settle(ingest)


async def test_single_port_rules(port_range, no_leaks):
    async with MediaIngest(HOST, port_range, single_port=0) as ingest:
        with pytest.raises(IngestError, match="need an SSRC"):
            await ingest.open("udp", on_frames=print)
        stream = await ingest.open("udp", ssrc=SSRC_A, on_frames=print)
        with pytest.raises(IngestError, match="already in use"):
            await ingest.open("udp", ssrc=SSRC_A, on_frames=print)
        other = await ingest.open("udp", ssrc=SSRC_B, on_frames=print)
        with pytest.raises(IngestError, match="already in use"):
            stream.set_ssrc(SSRC_B)
        sink = Sink()
        stream._on_frames = sink.on_frames
        stream.set_ssrc(7)                       # the device answered another y=
        assert stream.ssrc == 7
        packets = rtp_packets(H264, 7)
        await send_udp(packets, ingest.shared_port)
        await wait_for(lambda: stream.packets == len(packets))
        await other.close()
        # the SSRC of a closed stream is free again
        again = await ingest.open("udp", ssrc=SSRC_B, on_frames=print)
        assert again.local_port == ingest.shared_port
        # TCP streams still take ports of the range
        tcp = await ingest.open("tcp-passive", on_frames=print)
        assert port_range[0] <= tcp.local_port <= port_range[1]
    assert stream.closed and again.closed and tcp.closed


async def test_device_that_ignores_the_offered_ssrc_is_played(reader_mod, port_range, caplog):
    ingest = MediaIngest(HOST, port_range)
    sink = Sink()
    stream = await ingest.open("udp", ssrc=SSRC_A, on_frames=sink.on_frames)
    packets = rtp_packets(H264, SSRC_B)
    with caplog.at_level(logging.WARNING, logger="media.ingest"):
        await send_udp(packets, stream.local_port)
        await wait_for(lambda: stream.packets == len(packets))
    await stream.close()
    assert by_stream(sink.frames) == by_stream(file_frames(H264))
    stats = stream.stats()
    assert stats["ssrc_seen"] == SSRC_B and stats["ssrc"] == SSRC_A
    assert stats["ssrc_ignored"] == 1 and stats["ssrc_mismatch"] == 0
    assert sum("ignored y=" in r.getMessage() for r in caplog.records) == 1
    await settle(ingest)


async def test_offered_ssrc_wins_over_a_stale_sender(port_range):
    ingest = MediaIngest(HOST, port_range)
    sink = Sink()
    stream = await ingest.open("udp", ssrc=SSRC_A, on_frames=sink.on_frames)
    stale = rtp_packets(H265, SSRC_B)[:20]            # an old device still sending here
    good = rtp_packets(H264, SSRC_A)
    await send_udp(stale, stream.local_port)
    await wait_for(lambda: stream.packets == len(stale))
    assert stream.ssrc_seen == SSRC_B
    await send_udp(good[:1] + stale[:3] + good[1:], stream.local_port)
    await wait_for(lambda: stream.packets == len(stale) + 3 + len(good))
    await stream.close()
    assert stream.ssrc_seen == SSRC_A
    video = [f for f in sink.frames if f.codec == "h264"]
    assert by_stream(video) == by_stream([f for f in file_frames(H264) if f.codec == "h264"])
    await settle(ingest)


async def test_packet_loss_is_counted(reader_mod, port_range):
    ingest = MediaIngest(HOST, port_range)
    sink = Sink()
    stream = await ingest.open("udp", ssrc=SSRC_A, on_frames=sink.on_frames)
    packets = rtp_packets(H264, SSRC_A)
    dropped = set(range(10, len(packets) - 10, 25))
    sent = [p for i, p in enumerate(packets) if i not in dropped]
    await send_udp(sent, stream.local_port)
    await wait_for(lambda: stream.packets == len(sent))
    await stream.close()
    stats = stream.stats()
    assert stats["lost"] == len(dropped)
    assert stats["loss_rate"] == pytest.approx(len(dropped) / len(packets))
    assert stats["received_rate"] == pytest.approx(len(sent) / len(packets))
    assert 0 < len(sink.frames) < len(file_frames(H264))
    await settle(ingest)


async def test_reordered_packets_give_the_same_frames(reader_mod, port_range):
    ingest = MediaIngest(HOST, port_range)
    sink = Sink()
    stream = await ingest.open("udp", ssrc=SSRC_A, on_frames=sink.on_frames)
    packets = rtp_packets(H264, SSRC_A, seq=65500)    # wraps around
    shuffled = list(packets)
    rnd = random.Random(5)
    for i in range(0, len(shuffled) - 4, 4):
        window = shuffled[i:i + 4]
        rnd.shuffle(window)
        shuffled[i:i + 4] = window
    await send_udp(shuffled, stream.local_port)
    await wait_for(lambda: stream.packets == len(packets))
    await stream.close()
    stats = stream.stats()
    assert stats["lost"] == 0 and stats["reordered"] > 0
    assert by_stream(sink.frames) == by_stream(file_frames(H264))
    await settle(ingest)


async def test_garbage_datagrams_are_counted_not_fatal(reader_mod, port_range, no_leaks):
    ingest = MediaIngest(HOST, port_range)
    sink = Sink()
    stream = await ingest.open("udp", ssrc=SSRC_A, on_frames=sink.on_frames)
    rnd = random.Random(1)
    garbage = [b"", b"\x80", bytes(11), b"\xff" * 100, b"\x80\x60" + bytes(10) + b"\x00",
               bytes([0x8F]) + bytes(20),                       # CSRC count beyond the end
               bytes([0x90]) + bytes(11) + b"\x00\x00\xff\xff",  # extension beyond the end
               bytes([0xA0]) + bytes(10) + b"\x00\x00\x00\x00\x00\xff"]  # padding > length
    garbage += [bytes(rnd.randrange(256) for _ in range(rnd.randrange(0, 1500)))
                for _ in range(200)]
    packets = rtp_packets(H264, SSRC_A)
    mixed = packets[:50] + garbage + packets[50:]
    await send_udp(mixed, stream.local_port)
    await wait_for(lambda: stream.packets == len(mixed))
    await stream.close()
    stats = stream.stats()
    assert stats["malformed"] >= 8
    video = [f for f in sink.frames if f.codec == "h264"]
    assert len(video) >= 140           # a few frames around the garbage may be cut
    await settle(ingest)


async def test_on_frames_errors_do_not_stop_the_stream(port_range, caplog):
    ingest = MediaIngest(HOST, port_range)
    got = []

    def flaky(frames):
        got.append(len(frames))
        if len(got) == 1:
            raise RuntimeError("consumer bug")

    stream = await ingest.open("udp", ssrc=SSRC_A, on_frames=flaky)
    packets = rtp_packets(H264, SSRC_A)
    with caplog.at_level(logging.ERROR, logger="media.ingest"):
        await send_udp(packets, stream.local_port)
        await wait_for(lambda: stream.packets == len(packets))
    await stream.close()
    assert stream.stats()["callback_errors"] == 1 and sum(got) == len(file_frames(H264))
    assert any("on_frames failed" in r.getMessage() for r in caplog.records)
    await settle(ingest)


# ---- TCP ----------------------------------------------------------------------------------------

def tcp_bytes(path, ssrc: int) -> bytes:
    return b"".join(rfc4571_frame(p) for p in rtp_packets(path, ssrc))


async def write_in_pieces(writer: asyncio.StreamWriter, data: bytes, seed: int = 3) -> None:
    rnd = random.Random(seed)
    pos = 0
    while pos < len(data):
        n = rnd.choice([1, 2, 3, 7, 100, 1401, 5000, 20000])
        writer.write(data[pos:pos + n])
        pos += n
        if rnd.random() < 0.2:
            await writer.drain()
            await asyncio.sleep(0)
    await writer.drain()


async def test_tcp_passive_one_connection_frames_equal_the_file(port_range, no_leaks, caplog):
    events: list[str] = []
    ingest = MediaIngest(HOST, port_range, on_event=events.append)
    sink = Sink()
    stream = await ingest.open("tcp-passive", ssrc=SSRC_A, on_frames=sink.on_frames,
                               on_close=sink.on_close)
    reader, writer = await asyncio.open_connection(HOST, stream.local_port)
    await wait_for(lambda: stream.remote is not None)
    with caplog.at_level(logging.WARNING, logger="media.ingest"):
        reader2, writer2 = await asyncio.open_connection(HOST, stream.local_port)
        assert await asyncio.wait_for(reader2.read(), 5) == b""     # closed by the ingest
        writer2.close()
        await writer2.wait_closed()
    assert stream.stats()["tcp_rejected"] == 1 and "ingest_tcp_rejected" in events
    assert any("refused a second TCP connection" in r.getMessage() for r in caplog.records)
    data = tcp_bytes(H264, SSRC_A)
    await write_in_pieces(writer, data)
    writer.close()
    await writer.wait_closed()
    await wait_for(lambda: sink.closed)
    assert sink.closed == ["tcp closed"] and stream.closed and stream.close_reason == "tcp closed"
    assert by_stream(sink.frames) == by_stream(file_frames(H264))
    stats = stream.stats()
    assert stats["bytes"] == len(data) and stats["lost"] == 0 and stats["malformed"] == 0
    # the port is free at once: a new stream can listen on it
    again = await MediaIngest(HOST, (stream.local_port, stream.local_port)).open(
        "tcp-passive", on_frames=print)
    assert again.local_port == stream.local_port
    await again.close()
    await again._ingest.close()
    await settle(ingest)


async def test_tcp_active_connects_to_a_listening_device(port_range, no_leaks):
    data = tcp_bytes(H265, SSRC_B)
    accepted: list[tuple] = []

    async def device(reader, writer):
        accepted.append(writer.get_extra_info("peername"))
        await write_in_pieces(writer, data, seed=9)
        writer.close()

    server = await asyncio.start_server(device, HOST, 0)
    device_port = server.sockets[0].getsockname()[1]
    ingest = MediaIngest(HOST, port_range)
    sink = Sink()
    stream = await ingest.open("tcp-active", ssrc=SSRC_B, on_frames=sink.on_frames,
                               on_close=sink.on_close)
    assert port_range[0] <= stream.local_port <= port_range[1]
    await stream.connect(HOST, device_port)
    await wait_for(lambda: sink.closed)
    assert accepted == [(HOST, stream.local_port)]     # we connect from our media port
    assert sink.closed == ["tcp closed"]
    assert by_stream(sink.frames) == by_stream(file_frames(H265))
    with pytest.raises(IngestError):
        await stream.connect(HOST, device_port)          # closed
    server.close()
    await server.wait_closed()
    await settle(ingest)


async def test_tcp_active_connect_failures(port_range, no_leaks):
    ingest = MediaIngest(HOST, port_range)
    stream = await ingest.open("tcp-active", on_frames=print)
    with socket.socket() as probe:                       # a port nobody listens on
        probe.bind((HOST, 0))
        dead = probe.getsockname()[1]
    with pytest.raises(IngestError, match="after 3 attempts"):
        await stream.connect(HOST, dead, timeout=1, retries=2, retry_delay=0.01)
    with pytest.raises(IngestError, match="bad port"):
        await stream.connect(HOST, 0)
    udp = await ingest.open("udp", on_frames=print)
    with pytest.raises(IngestError, match="tcp-active"):
        await udp.connect(HOST, dead)
    # closing while a connect is pending ends the attempt with a clear error
    with socket.socket() as backlog:                     # a listener that never accepts
        backlog.bind((HOST, 0))
        backlog.listen(0)
        fillers = []
        try:
            for _ in range(8):                           # fill the accept queue
                s = socket.socket()
                s.setblocking(False)
                s.connect_ex(backlog.getsockname())
                fillers.append(s)
            other = await ingest.open("tcp-active", on_frames=print)
            task = asyncio.ensure_future(other.connect(*backlog.getsockname(), timeout=30,
                                                       retries=0))
            await asyncio.sleep(0.05)
            await other.close()
            with pytest.raises(IngestError):
                await task
        finally:
            for s in fillers:
                s.close()
    await settle(ingest)


async def test_tcp_garbage_oversized_lengths_and_truncation(port_range, no_leaks):
    ingest = MediaIngest(HOST, port_range)
    sink = Sink()
    stream = await ingest.open("tcp-passive", ssrc=SSRC_A, on_frames=sink.on_frames,
                               on_close=sink.on_close)
    packets = rtp_packets(H264, SSRC_A)
    framed = [rfc4571_frame(p) for p in packets]
    rnd = random.Random(2)
    garbage = bytes(rnd.randrange(256) for _ in range(3000))
    data = (b"\x00\x05abcde" + garbage + b"".join(framed[100:200])
            + b"\xff\xff" + b"\x80" + bytes(500))   # a 65,535-byte frame that never completes
    reader, writer = await asyncio.open_connection(HOST, stream.local_port)
    await write_in_pieces(writer, b"".join(framed[:100]))
    await wait_for(lambda: stream.packets == 100)
    await write_in_pieces(writer, data)
    writer.close()
    await writer.wait_closed()
    await wait_for(lambda: sink.closed)
    assert sink.closed == ["tcp closed"]
    stats = stream.stats()
    assert stats["tcp_resyncs"] >= 1 and stats["malformed"] >= 1
    assert stats["tcp_discarded_bytes"] > 0
    video = [f for f in sink.frames if f.codec == "h264"]
    reference = [f for f in file_frames(H264) if f.codec == "h264"]
    assert 90 <= len(video) < len(reference), stats
    assert all(f.data[:4] == b"\x00\x00\x00\x01" for f in video)
    await settle(ingest)


async def test_tcp_peer_reset_ends_the_stream(port_range, no_leaks):
    ingest = MediaIngest(HOST, port_range)
    sink = Sink()
    stream = await ingest.open("tcp-passive", on_frames=sink.on_frames, on_close=sink.on_close)
    sock = socket.socket()
    sock.connect((HOST, stream.local_port))
    sock.sendall(rfc4571_frame(rtp_packets(H264, SSRC_A)[0])[:30])   # cut mid-packet
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()                                                    # RST
    await wait_for(lambda: sink.closed)
    assert sink.closed[0] in ("tcp closed",) or sink.closed[0].startswith("tcp error")
    await settle(ingest)


# ---- ports, parameters, shutdown ----------------------------------------------------------------

async def test_port_range_exhaustion_and_reuse_after_close(port_range, no_leaks):
    low = port_range[0]
    ingest = MediaIngest(HOST, (low, low + 1))
    first = await ingest.open("udp", on_frames=print)
    second = await ingest.open("tcp-passive", on_frames=print)
    assert {first.local_port, second.local_port} == {low, low + 1}
    with pytest.raises(PortsExhausted, match=f"no free media port in {low}-{low + 1}"):
        await ingest.open("udp", on_frames=print)
    port = first.local_port
    await first.close()
    reused = await ingest.open("udp", ssrc=SSRC_A, on_frames=print)
    assert reused.local_port == port                   # freed at once
    packets = rtp_packets(H264, SSRC_A)[:40]
    await send_udp(packets, port)
    await wait_for(lambda: reused.packets == len(packets))
    await ingest.close()
    assert first.closed and second.closed and reused.closed
    with pytest.raises(IngestError, match="closed"):
        await ingest.open("udp", on_frames=print)
    await settle(ingest)


async def test_ports_used_by_others_are_skipped(port_range):
    low = port_range[0]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind((HOST, low))
        async with MediaIngest(HOST, (low, low + 1)) as ingest:
            stream = await ingest.open("udp", on_frames=print)
            assert stream.local_port == low + 1
            with pytest.raises(PortsExhausted):
                await ingest.open("udp", on_frames=print)


async def test_bad_parameters(port_range):
    with pytest.raises(IngestError):
        MediaIngest(HOST, (2000, 1000))
    with pytest.raises(IngestError):
        MediaIngest(HOST, port_range, single_port=70000)
    async with MediaIngest(HOST, port_range) as ingest:
        with pytest.raises(IngestError, match="unknown media transport"):
            await ingest.open("sctp", on_frames=print)
        with pytest.raises(IngestError, match="ssrc"):
            await ingest.open("udp", ssrc=1 << 32, on_frames=print)
        with pytest.raises(IngestError, match="ssrc"):
            await ingest.open("udp", ssrc="0106000001", on_frames=print)
        with pytest.raises(IngestError, match="callable"):
            await ingest.open("udp", on_frames=None)
        stream = await ingest.open("udp", on_frames=print)
        with pytest.raises(IngestError):
            stream.set_ssrc(-1)
        assert ingest.streams == [stream]
    assert ingest.streams == []


async def test_ingest_close_notifies_streams_and_frees_everything(port_range, no_leaks):
    ingest = MediaIngest(HOST, port_range, single_port=0)
    sinks = [Sink() for _ in range(4)]
    streams = [
        await ingest.open("udp", ssrc=SSRC_A, on_frames=sinks[0].on_frames,
                          on_close=sinks[0].on_close),
        await ingest.open("tcp-passive", on_frames=sinks[1].on_frames,
                          on_close=sinks[1].on_close),
        await ingest.open("tcp-active", on_frames=sinks[2].on_frames,
                          on_close=sinks[2].on_close),
    ]
    conn = socket.create_connection((HOST, streams[1].local_port))
    await wait_for(lambda: streams[1].remote is not None)
    await ingest.close()
    assert [s.closed for s in streams] == [True] * 3
    assert [s.closed for s in sinks[:3]] == [["ingest closed"]] * 3
    assert ingest.shared_port is None
    conn.close()
    await settle(ingest)


async def test_transport_enum_values_are_accepted(port_range):
    import enum

    class MediaTransport(str, enum.Enum):
        UDP = "udp"
        TCP_PASSIVE = "tcp-passive"

    async with MediaIngest(HOST, port_range) as ingest:
        stream = await ingest.open(MediaTransport.TCP_PASSIVE, on_frames=print)
        assert stream.transport == "tcp-passive"


def test_twin_is_used_without_extensions():
    assert _udprecv_py.UdpReader is not None
    if _impl.NO_EXTENSIONS:
        from media import udprecv
        assert not udprecv.COMPILED
