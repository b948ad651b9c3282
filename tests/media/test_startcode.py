"""Start-code search of the compiled stages (cext/_startcode.h, 64 bytes per step with SSE2).

Start codes and decoy zero runs are put at every offset around the 64-byte steps and the end of an
access unit; the compiled demuxer and FLV muxer must give what their pure-Python twins give.
"""

from __future__ import annotations

import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import DATA, resolve, stage_params
from media import Frame, _flv_py, _ps_py, _psmux_py

PSMUX_H264 = DATA / "ps" / "psmux_h264_g711a.ps"


def compiled(name):
    mods = [resolve(p.values[0]) for p in stage_params(name)]
    if len(mods) < 2:
        pytest.skip("extensions disabled")
    return mods[-1]


def first_keyframe() -> Frame:
    demuxer = _ps_py.PsDemuxer()
    return next(f for f in demuxer.feed(PSMUX_H264.read_bytes()) if f.keyframe)


def access_unit(rnd: random.Random, size: int, marks: list[tuple[int, bytes]]) -> bytes:
    """``size`` bytes without zeros, then ``marks`` (offset, bytes) written over them."""
    data = bytearray(rnd.randrange(1, 256) for _ in range(size))
    for offset, mark in marks:
        data[offset:offset + len(mark)] = mark
    return bytes(data[:size])


MARKS = [b"\x00\x00\x01\x41", b"\x00\x00\x00\x01\x01", b"\x00\x00\x01\x06", b"\x00\x00\x03",
         b"\x00\x00\x00\x00\x02", b"\x00\x00", b"\x00\x00\x01", b"\x00\x00\x01\x65"]


def frames_for(units: list[bytes]) -> list[Frame]:
    key = first_keyframe()
    out = [key]
    for i, data in enumerate(units):
        pts = key.pts + 3600 * (i + 1)
        out.append(Frame("h264", pts, pts, b"\x00\x00\x01\x65" in data, b"\x00\x00\x00\x01\x09\xf0"
                         + data))
    return out


def check(units: list[bytes]) -> None:
    frames = frames_for(units)
    flv_c = compiled("flv")
    ref, comp = _flv_py.FlvMuxer("h264"), flv_c.FlvMuxer("h264")
    assert [comp.mux(f) for f in frames] == [ref.mux(f) for f in frames]
    muxer = _psmux_py.PsMuxer("h264", None)
    ps = b"".join(muxer.mux(f) for f in frames)
    ps_c = compiled("ps")
    results = []
    for mod in (_ps_py, ps_c):
        demuxer = mod.PsDemuxer()
        got = demuxer.feed(ps) + demuxer.flush()
        results.append(([(f.pts, f.keyframe, bytes(f.data)) for f in got], demuxer.errors,
                        demuxer.stats, demuxer.parameter_sets))
    assert results[0] == results[1]


@pytest.mark.parametrize("size", [3, 63, 64, 65, 66, 67, 130, 200])
def test_marks_at_every_offset(size):
    rnd = random.Random(size)
    units = []
    for mark in MARKS:
        for offset in range(size):
            units.append(access_unit(rnd, size, [(offset, mark)]))
    check(units)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.randoms(use_true_random=False),
       st.lists(st.tuples(st.integers(0, 400), st.lists(st.tuples(st.integers(0, 399),
                                                                   st.sampled_from(MARKS)),
                                                         max_size=6)),
                min_size=1, max_size=8))
def test_random_marks(rnd, specs):
    check([access_unit(rnd, size, marks) for size, marks in specs if size])
