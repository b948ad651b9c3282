"""RTP stage: header parsing, RFC 4571 framing, jitter buffer; compiled and pure-Python alike."""

from __future__ import annotations

import random
import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from media import _rtp_py
from media.errors import MediaError, MediaFormatError

from conftest import resolve, stage_params

HYPO = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.fixture(params=stage_params("rtp"))
def rtp(request):
    return resolve(request.param)


def other_twins():
    """Modules to compare against the Python reference (the compiled one when built)."""
    mods = []
    for param in stage_params("rtp"):
        mod = resolve(param.values[0])
        if mod is not _rtp_py:
            mods.append(mod)
    return mods


def make_rtp(seq=1, ts=903600, ssrc=100000001, pt=96, marker=False, payload=b"", csrc=(),
             ext=None, pad=0) -> bytes:
    b0 = 0x80 | len(csrc) | (0x10 if ext else 0) | (0x20 if pad else 0)
    out = struct.pack(">BBHII", b0, (0x80 if marker else 0) | pt, seq & 0xFFFF, ts, ssrc)
    out += b"".join(struct.pack(">I", c) for c in csrc)
    if ext:
        profile, body = ext
        out += struct.pack(">HH", profile, len(body) // 4) + body
    out += payload
    if pad:
        out += bytes(pad - 1) + bytes([pad])
    return out


# -- parse_rtp ----------------------------------------------------------------------------------

def test_protocol_example_header(rtp):
    # PROTOCOL.md §9.1: last packet of a frame, seq 1, ts 903600, y=0100000001.
    pkt = rtp.parse_rtp(bytes.fromhex("80e000010 00dc9b0 05f5e101".replace(" ", "")) + b"PS")
    assert (pkt.marker, pkt.payload_type, pkt.sequence, pkt.timestamp, pkt.ssrc) == (
        True, 96, 1, 903600, 100000001)
    assert pkt.csrc == () and pkt.extension_profile is None and pkt.extension is None
    assert pkt.padding == 0 and bytes(pkt.payload) == b"PS"


def test_csrc_extension_padding(rtp):
    data = make_rtp(seq=65535, ts=0xFFFFFFFF, ssrc=0xDEADBEEF, csrc=(1, 0xFFFFFFFF),
                    ext=(0xBEDE, b"\x10\xAA\x00\x00"), pad=3, payload=b"\x00\x00\x01\xBA")
    pkt = rtp.parse_rtp(data)
    assert pkt.sequence == 65535 and pkt.timestamp == 0xFFFFFFFF and pkt.ssrc == 0xDEADBEEF
    assert pkt.csrc == (1, 0xFFFFFFFF)
    assert pkt.extension_profile == 0xBEDE and pkt.extension == b"\x10\xAA\x00\x00"
    assert pkt.padding == 3
    assert bytes(pkt.payload) == b"\x00\x00\x01\xBA"


def test_payload_is_a_view_not_a_copy(rtp):
    buf = bytearray(make_rtp(payload=b"abcdef"))
    pkt = rtp.parse_rtp(buf)
    assert isinstance(pkt.payload, memoryview)
    buf[12] = ord("X")
    assert bytes(pkt.payload) == b"Xbcdef"


def test_accepts_memoryview_and_bytearray(rtp):
    raw = make_rtp(payload=b"xyz")
    assert bytes(rtp.parse_rtp(memoryview(raw)).payload) == b"xyz"
    assert bytes(rtp.parse_rtp(bytearray(raw)).payload) == b"xyz"


@pytest.mark.parametrize("data, why", [
    (b"", "too short"),
    (b"\x80" * 11, "too short"),
    (bytes([0x40]) + bytes(11), "version"),
    (bytes([0x83]) + bytes(11) + bytes(8), "CSRC"),
    (bytes([0x90]) + bytes(11) + b"\x00\x00", "extension header"),
    (bytes([0x90]) + bytes(11) + b"\x00\x00\x00\x02" + bytes(4), "extension runs"),
    (bytes([0xA0]) + bytes(11) + b"ab\x00", "padding"),
    (bytes([0xA0]) + bytes(11) + b"ab\x04", "padding"),
])
def test_malformed_raise_media_format_error(rtp, data, why):
    with pytest.raises(MediaFormatError, match=why.split()[0]) as info:
        rtp.parse_rtp(data)
    assert isinstance(info.value, MediaError) and isinstance(info.value, ValueError)


@HYPO
@given(st.binary(max_size=80))
def test_parse_twins_agree_on_any_bytes(data):
    try:
        expected = _rtp_py.parse_rtp(data)
    except MediaFormatError as exc:
        expected = ("error", str(exc))
    for mod in other_twins():
        try:
            got = mod.parse_rtp(data)
        except MediaFormatError as exc:
            got = ("error", str(exc))
        if isinstance(expected, tuple):
            assert got == expected
        else:
            assert got._key() == expected._key()


# -- Rfc4571Framer ------------------------------------------------------------------------------

def frame(pkt: bytes) -> bytes:
    return struct.pack(">H", len(pkt)) + pkt


def test_framer_partial_and_many_per_read(rtp):
    pkts = [make_rtp(seq=i, payload=bytes([i]) * (i * 37 % 1400)) for i in range(30)]
    stream = b"".join(frame(p) for p in pkts)
    framer = rtp.Rfc4571Framer()
    out = []
    for i in range(0, len(stream), 1000):
        out += framer.feed(stream[i:i + 1000])
    assert out == pkts
    assert framer.packets == 30 and framer.resyncs == 0 and framer.buffered == 0
    framer2 = rtp.Rfc4571Framer()
    assert [p for b in stream for p in framer2.feed(bytes([b]))] == pkts


def test_framer_skips_zero_length(rtp):
    pkt = make_rtp(payload=b"x")
    framer = rtp.Rfc4571Framer()
    assert framer.feed(b"\x00\x00" + frame(pkt) + b"\x00\x00") == [pkt]
    assert framer.empty_frames == 2 and framer.resyncs == 0


def test_framer_resyncs_after_garbage(rtp):
    pkts = [make_rtp(seq=i, payload=b"\x00\x00\x01\xBA" * 5) for i in range(4)]
    garbage = b"\x00\x05hello\xff\x01\x02\x03" * 3
    stream = frame(pkts[0]) + garbage + frame(pkts[1]) + frame(pkts[2]) + frame(pkts[3])
    framer = rtp.Rfc4571Framer(payload_type=96, ssrc=100000001)
    assert framer.feed(stream) == pkts
    assert framer.resyncs == 1 and framer.discarded_bytes == len(garbage)


def test_framer_buffer_is_bounded_under_garbage(rtp):
    framer = rtp.Rfc4571Framer(payload_type=96, ssrc=100000001)
    rnd = random.Random(5)
    for _ in range(200):
        framer.feed(rnd.randbytes(4096))
        assert framer.buffered <= framer.MAX_BUFFER
    pkt = make_rtp(seq=9)
    # A real packet after the garbage is found again (possibly after a stale partial frame).
    out = []
    for _ in range(50):
        out += framer.feed(frame(pkt))
    assert pkt in out


@HYPO
@given(st.lists(st.binary(min_size=0, max_size=60), max_size=12), st.binary(max_size=40),
       st.lists(st.integers(0, 2000), max_size=8), st.data())
def test_framer_twins_agree_on_random_splits(payloads, garbage, cuts, data):
    pkts = [make_rtp(seq=i, payload=p) for i, p in enumerate(payloads)]
    stream = b"".join(frame(p) for p in pkts)
    at = data.draw(st.integers(0, len(stream)))
    stream = stream[:at] + garbage + stream[at:]
    cuts = sorted({c % (len(stream) + 1) for c in cuts})
    pieces = [stream[a:b] for a, b in zip([0] + cuts, cuts + [len(stream)])]
    ref = _rtp_py.Rfc4571Framer(payload_type=96)
    ref_out = [p for piece in pieces for p in ref.feed(piece)]
    whole = _rtp_py.Rfc4571Framer(payload_type=96)
    assert [p for p in whole.feed(stream)] == ref_out
    assert whole.stats() == ref.stats()
    if not garbage:
        assert ref_out == pkts
    for mod in other_twins():
        framer = mod.Rfc4571Framer(payload_type=96)
        assert [p for piece in pieces for p in framer.feed(piece)] == ref_out
        assert framer.stats() == ref.stats()


# -- JitterBuffer -------------------------------------------------------------------------------

class P:
    """Minimal packet: the jitter buffer needs only ``sequence``."""

    __slots__ = ("sequence",)

    def __init__(self, sequence):
        self.sequence = sequence

    def __repr__(self):
        return f"P({self.sequence})"


def seqs(packets):
    return [p.sequence for p in packets]


def run(jb, order):
    out = []
    for s in order:
        out += jb.add(P(s))
    return out


def test_seq_diff(rtp):
    assert rtp.seq_diff(1, 65535) == 2 and rtp.seq_diff(65535, 1) == -2
    assert rtp.seq_diff(5, 5) == 0 and rtp.seq_diff(0x8000, 0) == -0x8000


def test_in_order_passes_through(rtp):
    jb = rtp.JitterBuffer()
    for s in range(10):
        assert seqs(jb.add(P(s))) == [s]
    assert jb.stats() == {"received": 10, "lost": 0, "duplicate": 0, "late": 0, "reordered": 0,
                          "bad_sequence": 0, "resets": 0, "expected": 10}
    assert jb.received_rate == 1.0


def test_reorder_across_wraparound(rtp):
    jb = rtp.JitterBuffer()
    out = run(jb, [65533, 65535, 65534, 1, 0, 2])
    assert seqs(out) == [65533, 65534, 65535, 0, 1, 2]
    assert jb.reordered == 2 and jb.lost == 0 and jb.expected == 6


def test_duplicates_and_late(rtp):
    jb = rtp.JitterBuffer(capacity=16, max_wait_packets=3)
    out = run(jb, [10, 10, 12, 12, 13, 14, 11, 13])
    # 11 is given up after 3 held packets (12, 13, 14); it arrives late.
    assert seqs(out) == [10, 12, 13, 14]
    assert (jb.duplicate, jb.late, jb.lost, jb.received) == (3, 1, 1, 4)
    assert jb.expected == 5 and jb.received_rate == pytest.approx(0.8)


def test_gap_beyond_capacity_skips_ahead(rtp):
    jb = rtp.JitterBuffer(capacity=8, max_wait_packets=8)
    out = run(jb, [0, 2, 20])
    assert seqs(out) == [0, 2]
    # The window (8 numbers) now ends at 20: 1 and 3..12 are given up, 13..19 still awaited.
    assert jb.lost == 1 + 10 and jb.buffered == 1
    assert seqs(jb.flush()) == [20]
    assert jb.lost == 18
    assert jb.received + jb.lost == jb.expected == 21


def test_sender_restart_resets(rtp):
    jb = rtp.JitterBuffer()
    out = run(jb, [100, 101, 102, 40000, 40001, 40002])
    assert seqs(out) == [100, 101, 102, 40000, 40001, 40002]
    assert jb.resets == 1 and jb.lost == 0 and jb.expected == 6 and jb.received == 6


def test_single_stray_packet_is_dropped(rtp):
    jb = rtp.JitterBuffer()
    out = run(jb, [1, 2, 30000, 3, 4])
    assert seqs(out) == [1, 2, 3, 4]
    assert jb.bad_sequence == 1 and jb.resets == 0


def test_loss_is_visible_in_release_order(rtp):
    jb = rtp.JitterBuffer(capacity=32, max_wait_packets=4)
    out = run(jb, [1, 2, 4, 5, 6, 7, 8])
    assert seqs(out) == [1, 2, 4, 5, 6, 7, 8]
    gaps = [b.sequence for a, b in zip(out, out[1:]) if rtp.seq_diff(b.sequence, a.sequence) != 1]
    assert gaps == [4] and jb.lost == 1


def test_accepts_parsed_packets(rtp):
    jb = rtp.JitterBuffer()
    pkts = [rtp.parse_rtp(make_rtp(seq=s, payload=bytes([s]))) for s in (3, 5, 4)]
    out = []
    for p in pkts:
        out += jb.add(p)
    assert [bytes(p.payload) for p in out] == [b"\x03", b"\x04", b"\x05"]


@pytest.mark.parametrize("kwargs", [dict(capacity=0), dict(capacity=8, max_wait_packets=9),
                                    dict(capacity=200, max_dropout=100)])
def test_bad_configuration(rtp, kwargs):
    with pytest.raises(ValueError):
        rtp.JitterBuffer(**kwargs)


@HYPO
@given(st.integers(0, 65535), st.integers(1, 300), st.randoms(use_true_random=False),
       st.floats(0, 0.3), st.floats(0, 0.2), st.integers(0, 12))
def test_jitter_buffer_invariants_and_twins(start, count, rnd, drop, dup, shuffle):
    order = [(start + i) & 0xFFFF for i in range(count) if rnd.random() >= drop]
    order += [s for s in order if rnd.random() < dup]
    order.sort(key=lambda s: ((s - start) & 0xFFFF) + rnd.uniform(0, shuffle))
    ref = _rtp_py.JitterBuffer(capacity=32, max_wait_packets=8)
    ref_out = seqs(run(ref, order)) + seqs(ref.flush())
    # Released in strictly increasing serial order, each at most once.
    assert all(_rtp_py.seq_diff(b, a) > 0 for a, b in zip(ref_out, ref_out[1:]))
    assert len(set(ref_out)) == len(ref_out) == ref.received
    assert ref.received + ref.lost == ref.expected
    assert ref.duplicate + ref.late + ref.received + ref.bad_sequence == len(order)
    for mod in other_twins():
        jb = mod.JitterBuffer(capacity=32, max_wait_packets=8)
        assert seqs(run(jb, order)) + seqs(jb.flush()) == ref_out
        assert jb.stats() == ref.stats()
        assert jb.received_rate == ref.received_rate


@HYPO
@given(st.lists(st.integers(0, 65535), max_size=200))
def test_jitter_buffer_twins_agree_on_arbitrary_numbers(order):
    ref = _rtp_py.JitterBuffer(capacity=16, max_wait_packets=4, max_dropout=500, max_misorder=50)
    ref_out = seqs(run(ref, order)) + seqs(ref.flush())
    assert ref.received + ref.lost == ref.expected
    for mod in other_twins():
        jb = mod.JitterBuffer(capacity=16, max_wait_packets=4, max_dropout=500, max_misorder=50)
        assert seqs(run(jb, order)) + seqs(jb.flush()) == ref_out
        assert jb.stats() == ref.stats()
