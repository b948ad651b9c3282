"""Hostile input for the PS demuxer: mutated captures, random bytes, adversarial headers.

The invariant (STYLE principle 5): ``feed``/``flush``/``discontinuity`` never raise, always return,
keep memory bounded, and the compiled demuxer and its twin agree on frames and counters.
"""

from __future__ import annotations

import random
import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import DATA, resolve, stage_params
from media import _ps_py
from test_ps_demux import gb_stream, pack_header, pes, psm, state

SAMPLE = (DATA / "ps" / "libmpeg_h264_g711a.ps").read_bytes()[:40_000]
SYNTHETIC = gb_stream(frames=8, gop=4, size=1500)
FUZZ = settings(max_examples=70, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def twins() -> list:
    return [resolve(param.values[0]) for param in stage_params("ps")]


@pytest.fixture(params=stage_params("ps"))
def ps(request):
    return resolve(request.param)


def run(mod, pieces, lost_at=(), **kwargs):
    """Feed ``pieces``, calling discontinuity() before the indexes in ``lost_at``."""
    demuxer = mod.PsDemuxer(**kwargs)
    frames = []
    for i, piece in enumerate(pieces):
        if i in lost_at:
            demuxer.discontinuity()
        frames += demuxer.feed(piece)
    frames += demuxer.flush()
    return state(frames, demuxer)


def split(data: bytes, cuts) -> list[bytes]:
    cuts = sorted({c % (len(data) + 1) for c in cuts})
    return [data[a:b] for a, b in zip([0] + cuts, cuts + [len(data)])]


def assert_twins_agree(pieces, lost_at=(), **kwargs):
    expected = run(_ps_py, pieces, lost_at, **kwargs)
    # Splitting never changes the result (discontinuities aside, which are themselves cuts).
    if not lost_at:
        assert run(_ps_py, [b"".join(pieces)], **kwargs) == expected
    for mod in twins():
        assert run(mod, pieces, lost_at, **kwargs) == expected
    return expected


mutation = st.one_of(
    st.tuples(st.just("flip"), st.integers(0, 10**6), st.integers(1, 255)),
    st.tuples(st.just("delete"), st.integers(0, 10**6), st.integers(1, 3000)),
    st.tuples(st.just("insert"), st.integers(0, 10**6), st.binary(min_size=1, max_size=300)),
    st.tuples(st.just("startcode"), st.integers(0, 10**6), st.sampled_from(
        [0xBA, 0xBB, 0xBC, 0xBD, 0xBE, 0xC0, 0xE0, 0xB9, 0x42, 0xFF])),
    st.tuples(st.just("truncate"), st.integers(0, 10**6), st.just(0)),
)


def mutate(data: bytes, ops) -> bytes:
    buf = bytearray(data)
    for op, at, arg in ops:
        if not buf:
            break
        at %= len(buf)
        if op == "flip":
            buf[at] ^= arg
        elif op == "delete":
            del buf[at:at + arg]
        elif op == "insert":
            buf[at:at] = arg
        elif op == "startcode":
            buf[at:at] = b"\x00\x00\x01" + bytes([arg])
        else:
            del buf[at:]
    return bytes(buf)


@FUZZ
@given(st.sampled_from(["sample", "synthetic"]), st.lists(mutation, min_size=1, max_size=12),
       st.lists(st.integers(0, 10**6), max_size=30))
def test_mutated_streams(base, ops, cuts):
    data = mutate(SAMPLE if base == "sample" else SYNTHETIC, ops)
    frames, errors, stats, _, _ = assert_twins_agree(split(data, cuts))
    assert stats["bytes"] == len(data)
    # (codec, pts, dts, keyframe, data, stream_id): every frame complete and non-empty.
    assert all(f[0] and f[4] and 0xC0 <= f[5] <= 0xEF for f in frames)
    assert all(count > 0 for count in errors.values())


@FUZZ
@given(st.binary(max_size=3000), st.lists(st.integers(0, 3000), max_size=10))
def test_random_bytes(data, cuts):
    assert_twins_agree(split(data, cuts))


@FUZZ
@given(st.lists(st.sampled_from([
    pack_header(0), pack_header(3600, b"\xff\x00\x00\x01\xaf"), psm(), psm(es_map_length=2),
    b"\x00\x00\x01\xbc\xff\xff", b"\x00\x00\x01\xe0\x00\x00\x80\x80\x05\x21\x00\x01\x00\x01",
    pes(0xE0, b"\x00\x00\x00\x01\x65" + b"\x11" * 400, 3600),
    pes(0xE0, b"\x00\x00\x00\x01\x09\xf0" + b"\x12" * 50),
    pes(0xE0, b"\x00\x00\x00\x01\x67\x42" + b"\x13" * 30, 7200),
    pes(0xC0, b"\xd5" * 160), pes(0xC0, b"\xd5" * 160, 100),
    b"\x00\x00\x01\xbd\x00\x10" + b"\x00\x00\x01\xba" * 4, b"\x00\x00\x01\xb9",
    bytes(range(256)), b"\x00" * 7,
]), max_size=60), st.lists(st.integers(0, 10**5), max_size=20), st.sets(st.integers(0, 20)))
def test_adversarial_element_soup(elements, cuts, lost_at):
    data = b"".join(elements)
    pieces = split(data, cuts)
    assert_twins_agree(pieces, lost_at=lost_at, max_frame_size=4096)


def test_memory_bounded_under_garbage(ps):
    """50 MB of hostile input: the stash stays below one PSM and the access units below the
    documented 2 x max_frame_size, whatever the content."""
    max_frame = 1 << 20
    bound = 2 * max_frame + 0x10006 + 65536
    demuxer = ps.PsDemuxer(max_frame_size=max_frame)
    rnd = random.Random(1)
    noise = rnd.randbytes(1 << 20)
    # Unbounded video PES on every video stream id, never ending, with new packs in between.
    unbounded = b"".join(pack_header(0) + b"\x00\x00\x01" + bytes([sid]) + b"\x00\x00\x80\x80\x05"
                         + bytes([0x21, 0, 1, 0, 1]) + b"\x11" * 50_000 for sid in range(0xE0, 0xF0))
    # A PSM announcing 64 KiB that is never completed.
    psm_head = pack_header(0) + b"\x00\x00\x01\xbc\xff\xff" + b"\x22" * 60_000
    total = 0
    size = 50 << 20 if ps is not _ps_py else 14 << 20
    while total < size:
        for block in [unbounded] * 12 + [psm_head, noise]:
            for i in range(0, len(block), 65536):
                demuxer.feed(block[i:i + 65536])
                assert demuxer.buffered <= bound
            total += len(block)
    demuxer.flush()
    assert demuxer.stats["bytes"] == total
    assert demuxer.errors.get("frame_too_large", 0) > 0


def test_discontinuity_anywhere_never_raises(ps):
    data = SYNTHETIC
    for at in range(0, len(data), 97):
        demuxer = ps.PsDemuxer()
        demuxer.feed(data[:at])
        demuxer.discontinuity()
        demuxer.discontinuity()
        frames = demuxer.feed(data[at:]) + demuxer.flush()
        assert all(f.data for f in frames)


def test_pes_length_field_lies_by_a_packet(ps):
    """A PES whose length swallows the next header (the device-capture damage pattern)."""
    good = SYNTHETIC
    at = good.index(b"\x00\x00\x01\xe0", 3000)
    length = struct.unpack(">H", good[at + 4:at + 6])[0]
    bad = good[:at + 4] + struct.pack(">H", length + 200) + good[at + 6:]
    expected = assert_twins_agree([bad])
    assert expected[1].get("sync_lost", 0) >= 1
