"""RtpPsReceiver: the same frames and counters as parse_rtp → JitterBuffer → PsDemuxer by hand.

Every test runs on the compiled receiver and its pure-Python twin; the hypothesis test also checks
both against the hand-run chain of pure-Python stages on shuffled, lossy, noisy input.
"""

from __future__ import annotations

import random
import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import DATA, resolve, stage_params
from media import _ps_py, _rtp_py
from media.errors import MediaFormatError
from test_ps_demux import DEVICE_SIM_PCAP, DEVICE_SIM_PS, rtp_payloads

PSMUX_H264 = DATA / "ps" / "psmux_h264_g711a.ps"
SSRC = 100000001
JITTER_KEYS = ("received", "lost", "duplicate", "late", "reordered", "bad_sequence", "resets",
               "expected")


@pytest.fixture(params=stage_params("receiver"))
def rx(request):
    return resolve(request.param)


def receivers() -> list:
    return [resolve(param.values[0]) for param in stage_params("receiver")]


def make_rtp(seq: int, payload: bytes, ssrc: int = SSRC, pt: int = 96, csrc: int = 0,
             ext: bytes | None = None, pad: int = 0) -> bytes:
    b0 = 0x80 | csrc | (0x10 if ext is not None else 0) | (0x20 if pad else 0)
    out = struct.pack(">BBHII", b0, pt, seq & 0xFFFF, 3600 * seq, ssrc)
    out += bytes(range(4 * csrc))
    if ext is not None:
        out += struct.pack(">HH", 0xABAC, len(ext) // 4) + ext
    out += payload
    if pad:
        out += bytes(pad - 1) + bytes([pad])
    return out


def packetize(data: bytes, start: int, size: int = 1400, variants: bool = False) -> list[bytes]:
    out = []
    rnd = random.Random(start)
    for i, pos in enumerate(range(0, len(data), size)):
        kwargs = {}
        if variants:
            kwargs = rnd.choice([{}, {"csrc": 2}, {"ext": b"\x01\x02\x03\x04"}, {"pad": 3},
                                 {"csrc": 1, "ext": b"", "pad": 1}])
        out.append(make_rtp(start + i, data[pos:pos + size], **kwargs))
    return out


def by_hand(packets, ssrc=None, payload_types=None, **jitter_kwargs):
    """The reference chain of pure-Python stages: what the receiver must equal."""
    jitter = _rtp_py.JitterBuffer(**jitter_kwargs)
    demuxer = _ps_py.PsDemuxer()
    counts = {"packets": 0, "malformed": 0, "ssrc_mismatch": 0, "payload_type_mismatch": 0}
    frames: list = []
    last = None

    def deliver(released):
        nonlocal last
        for pkt in released:
            if last is not None and _rtp_py.seq_diff(pkt.sequence, last) != 1:
                demuxer.discontinuity()
            last = pkt.sequence
            frames.extend(demuxer.feed(pkt.payload))

    for raw in packets:
        counts["packets"] += 1
        try:
            pkt = _rtp_py.parse_rtp(bytes(raw))
        except MediaFormatError:
            counts["malformed"] += 1
            continue
        if ssrc is not None and pkt.ssrc != ssrc:
            counts["ssrc_mismatch"] += 1
            continue
        if payload_types is not None and pkt.payload_type not in payload_types:
            counts["payload_type_mismatch"] += 1
            continue
        deliver(jitter.add(pkt))
    deliver(jitter.flush())
    frames += demuxer.flush()
    counts.update(jitter.stats())
    return frames, counts, demuxer


def run(mod, packets, batches=None, **kwargs):
    receiver = mod.RtpPsReceiver(**kwargs)
    frames = []
    if batches is None:
        frames += receiver.feed_packets(packets)
    else:
        pos = 0
        for size in batches:
            frames += receiver.feed_packets(packets[pos:pos + size])
            pos += size
        for raw in packets[pos:]:
            frames += receiver.feed_packet(raw)
    frames += receiver.flush()
    return frames, receiver


def observed(frames, stats, errors, dstats, sets):
    return ([(f.codec, f.pts, f.dts, f.keyframe, bytes(f.data), f.stream_id) for f in frames],
            stats, errors, dstats, sets)


def of_receiver(frames, receiver):
    return observed(frames, receiver.rtp_stats(), receiver.demuxer_errors,
                    receiver.demuxer_stats, receiver.parameter_sets)


def of_hand(frames, counts, demuxer):
    return observed(frames, counts, demuxer.errors, demuxer.stats, demuxer.parameter_sets)


# ---- behaviour ----------------------------------------------------------------------------------


def test_in_order_stream_matches_plain_demux(rx):
    data = PSMUX_H264.read_bytes()
    packets = packetize(data, 65500)  # crosses the sequence wrap
    frames, receiver = run(rx, packets)
    demuxer = _ps_py.PsDemuxer()
    expected = demuxer.feed(data) + demuxer.flush()
    assert frames == expected and len(frames) == 300
    stats = receiver.rtp_stats()
    assert stats["received"] == stats["expected"] == stats["packets"] == len(packets)
    assert stats["lost"] == stats["reordered"] == stats["malformed"] == 0
    assert receiver.received_rate == 1.0 and receiver.buffered == 0
    assert receiver.demuxer_errors == {} and receiver.demuxer_stats["bytes"] == len(data)
    assert set(receiver.parameter_sets[0xE0]) == {"sps", "pps"}
    assert isinstance(receiver.jitter.stats(), dict) and receiver.demuxer.streams[0xC0] == "g711a"


def test_header_variants_and_buffer_types(rx):
    data = PSMUX_H264.read_bytes()
    packets = packetize(data, 10, variants=True)
    reference = run(rx, packets)[0]
    assert len(reference) == 300
    views = [memoryview(p) for p in packets]
    arrays = [bytearray(p) for p in packets]
    assert run(rx, views)[0] == reference
    assert run(rx, arrays)[0] == reference
    assert run(rx, iter(packets))[0] == reference  # any iterable, not only lists


def test_reused_datagram_buffer(rx):
    """A recvmmsg-style reader refills the same buffers: held packets must have been copied."""
    packets = packetize(PSMUX_H264.read_bytes(), 0)
    order = list(range(len(packets)))
    rnd = random.Random(3)
    for i in range(1, len(order) - 1, 2):
        if rnd.random() < 0.6:
            order[i], order[i + 1] = order[i + 1], order[i]
    arrived = [packets[i] for i in order]
    expected = run(rx, arrived)
    slots = [bytearray(2048) for _ in range(4)]
    receiver = rx.RtpPsReceiver()
    frames = []
    for pos in range(0, len(arrived), 4):
        batch = []
        for slot, raw in zip(slots, arrived[pos:pos + 4]):
            slot[:] = bytes(2048)
            slot[:len(raw)] = raw
            batch.append(memoryview(slot)[:len(raw)])
        frames += receiver.feed_packets(batch)
        del batch
    frames += receiver.flush()
    assert of_receiver(frames, receiver) == of_receiver(*expected)
    assert receiver.rtp_stats()["reordered"] > 0


def test_ssrc_and_payload_type_filters(rx):
    packets = packetize(PSMUX_H264.read_bytes(), 0)
    noise = [make_rtp(i, b"\x00\x00\x01\xba" + bytes(100), ssrc=7) for i in range(5)]
    other_pt = [make_rtp(1000 + i, bytes(50), pt=8) for i in range(3)]
    mixed = packets[:10] + noise + packets[10:20] + other_pt + packets[20:]
    frames, receiver = run(rx, mixed, ssrc=SSRC, payload_types=[96, 98])
    assert frames == run(rx, packets)[0]
    stats = receiver.rtp_stats()
    assert stats["ssrc_mismatch"] == 5 and stats["payload_type_mismatch"] == 3
    assert stats["packets"] == len(mixed) and stats["received"] == len(packets)
    assert receiver.ssrc == SSRC and receiver.payload_types == frozenset({96, 98})
    # Without filters every payload type is taken (devices label PS as 96, 98, ...).
    tolerant = [make_rtp(i, p[12:], pt=(96, 98, 100)[i % 3]) for i, p in enumerate(packets)]
    frames, receiver = run(rx, tolerant)
    assert len(frames) == 300 and receiver.rtp_stats()["payload_type_mismatch"] == 0


@pytest.mark.parametrize("raw", [b"", b"\x80" * 11, b"\x40" + bytes(20), b"\x8f" + bytes(20),
                                 b"\x90" + bytes(13), b"\x90" + bytes(11) + b"\x00\x00\x00\x09",
                                 b"\xa0" + bytes(11) + b"\x00", b"\xa0" + bytes(11) + b"\x30"],
                         ids=["empty", "short", "version", "csrc", "ext-head", "ext", "pad0",
                              "pad-long"])
def test_malformed_packets_are_counted(rx, raw):
    with pytest.raises(MediaFormatError):
        _rtp_py.parse_rtp(raw)
    receiver = rx.RtpPsReceiver()
    assert receiver.feed_packet(raw) == [] and receiver.flush() == []
    assert receiver.rtp_stats()["malformed"] == 1 and receiver.rtp_stats()["expected"] == 0


def test_loss_calls_discontinuity(rx):
    packets = packetize(PSMUX_H264.read_bytes(), 0)
    del packets[40]
    frames, receiver = run(rx, packets)
    hand = by_hand(packets)
    assert of_receiver(frames, receiver) == of_hand(*hand)
    assert receiver.rtp_stats()["lost"] == 1
    assert receiver.demuxer_stats["discontinuities"] == 1
    assert receiver.demuxer_errors.get("damaged_frame", 0) >= 1  # the units it cut into


def test_options_are_validated(rx):
    with pytest.raises(ValueError):
        rx.RtpPsReceiver(ssrc=-1)
    with pytest.raises(ValueError):
        rx.RtpPsReceiver(ssrc=1 << 32)
    with pytest.raises(ValueError):
        rx.RtpPsReceiver(payload_types=[128])
    with pytest.raises(ValueError):
        rx.RtpPsReceiver(capacity=0)
    receiver = rx.RtpPsReceiver(audio_codec="g711u", capacity=16, max_wait_packets=4)
    assert receiver.jitter.capacity == 16 and receiver.demuxer.audio_codec == "g711u"
    assert receiver.ssrc is None and receiver.payload_types is None


@pytest.mark.parametrize("reorder", [False, True])
def test_device_capture(rx, reorder):
    packets = rtp_payloads(DEVICE_SIM_PCAP)
    assert len(packets) == 798
    if reorder:
        rnd = random.Random(7)
        for i in range(3, len(packets) - 1, 3):
            if rnd.random() < 0.5:
                packets[i], packets[i + 1] = packets[i + 1], packets[i]
    frames, receiver = run(rx, packets, batches=[32] * 24)
    stats = receiver.rtp_stats()
    assert stats["lost"] == 1 and stats["expected"] == 799 and stats["received"] == 798
    assert receiver.received_rate == pytest.approx(798 / 799)
    assert len(frames) == 350 and {f.codec for f in frames} == {"h264"}
    assert receiver.demuxer_errors == {"damaged_frame": 1}
    demuxer = _ps_py.PsDemuxer()
    assert frames[:349] == demuxer.feed(DEVICE_SIM_PS.read_bytes())
    assert of_receiver(frames, receiver) == of_hand(*by_hand(packets))


# ---- twins and the hand-run chain agree on anything ---------------------------------------------

_STREAM = PSMUX_H264.read_bytes()[:60_000]

noise_packet = st.one_of(
    st.binary(max_size=30),                                          # mostly malformed
    st.builds(lambda seq, n: make_rtp(seq, bytes(n), ssrc=12345), st.integers(0, 0xFFFF),
              st.integers(0, 50)),                                   # another SSRC
    st.builds(lambda seq: make_rtp(seq, b"\x00\x00\x01\xba", pt=8), st.integers(0, 0xFFFF)),
)


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.large_base_example])
@given(start=st.integers(0, 0xFFFF), size=st.sampled_from([200, 700, 1400]),
       variants=st.booleans(), rnd=st.randoms(use_true_random=False),
       drop=st.floats(0, 0.1), dup=st.floats(0, 0.1), swap=st.floats(0, 0.4),
       far=st.floats(0, 0.03), noise=st.lists(st.tuples(st.integers(0, 10_000), noise_packet),
                                              max_size=6),
       batches=st.lists(st.integers(0, 40), max_size=12),
       filters=st.sampled_from([{}, {"ssrc": SSRC}, {"ssrc": SSRC, "payload_types": (96,)}]),
       jitter=st.sampled_from([{}, {"capacity": 16, "max_wait_packets": 6, "max_dropout": 16,
                                    "max_misorder": 8}]),
       kind=st.sampled_from([bytes, bytearray, memoryview]))
def test_twins_and_hand_chain_agree(start, size, variants, rnd, drop, dup, swap, far, noise,
                                    batches, filters, jitter, kind):
    packets = packetize(_STREAM, start, size, variants)
    arrived = []
    for raw in packets:
        if rnd.random() < drop:
            continue
        arrived.append(raw)
        if rnd.random() < dup:
            arrived.append(raw)
    for i in range(len(arrived) - 1):
        if rnd.random() < swap:
            arrived[i], arrived[i + 1] = arrived[i + 1], arrived[i]
    for i in range(len(arrived)):
        if rnd.random() < far:
            arrived.insert(rnd.randrange(len(arrived)), arrived.pop(i))
    for pos, raw in noise:
        arrived.insert(pos % (len(arrived) + 1), raw)
    arrived = [kind(raw) for raw in arrived]
    expected = of_hand(*by_hand(arrived, **filters, **jitter))
    for mod in receivers():
        assert of_receiver(*run(mod, arrived, batches, **filters, **jitter)) == expected
