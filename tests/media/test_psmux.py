"""GB-style PS muxer and RTP packetizer: layout, readers (PyAV, ffprobe), parity of the twins."""

from __future__ import annotations

import functools
import shutil
import struct
import subprocess

import av
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from media import Frame, _psmux_py
from media import _impl

from conftest import resolve, stage_params
from media_gen import encode_video, g711_frames, interleave

IMPLS = stage_params("psmux")


@pytest.fixture(params=IMPLS)
def psmux(request):
    return resolve(request.param)


@functools.lru_cache(maxsize=None)
def h264_frames() -> tuple[Frame, ...]:
    return tuple(encode_video("h264", frames=50, width=320, height=240, bframes=2))


def read_ts(b: bytes) -> int:
    return ((b[0] >> 1) & 7) << 30 | b[1] << 22 | (b[2] >> 1) << 15 | b[3] << 7 | (b[4] >> 1)


def read_scr(b: bytes) -> int:
    """SCR base of an MPEG-2 pack header starting at ``b[0]`` (00 00 01 BA)."""
    return (((b[4] >> 3) & 7) << 30 | (b[4] & 3) << 28 | b[5] << 20 | (b[6] >> 3) << 15
            | (b[6] & 3) << 13 | b[7] << 5 | (b[8] >> 3))


def split_unit(unit: bytes) -> list[tuple[int, bytes]]:
    """``[(start code byte, whole packet)]`` of a PS unit, walking lengths (no scanning)."""
    out = []
    pos = 0
    while pos < len(unit):
        assert unit[pos:pos + 3] == b"\x00\x00\x01", pos
        sid = unit[pos + 3]
        if sid == 0xBA:
            size = 14 + (unit[pos + 13] & 7)
        else:
            size = 6 + struct.unpack(">H", unit[pos + 4:pos + 6])[0]
        out.append((sid, unit[pos:pos + size]))
        pos += size
    assert pos == len(unit)
    return out


def pes_payload(pes: bytes) -> tuple[int | None, int | None, bytes, int]:
    """``(pts, dts, payload, flags byte 6)`` of one PES packet."""
    flags = pes[7] >> 6
    hlen = pes[8]
    pts = read_ts(pes[9:14]) if flags & 2 else None
    dts = read_ts(pes[14:19]) if flags == 3 else None
    return pts, dts, pes[9 + hlen:], pes[6]


# ---- layout -----------------------------------------------------------------------------------

def test_builders_match_protocol_examples():
    assert _psmux_py.pack_header(900000).hex(" ") == "00 00 01 ba 44 00 dd dd 04 01 00 5f 6b f8"
    assert _psmux_py.system_header(26234, [0xE0, 0xC0]).hex(" ") == \
        "00 00 01 bb 00 0c 80 cc f5 04 21 7f e0 e4 00 c0 c0 20"
    psm = _psmux_py.psm([(0x1B, 0xE0), (0x90, 0xC0)])
    assert psm.hex(" ") == "00 00 01 bc 00 12 e0 ff 00 00 00 08 1b e0 00 00 90 c0 00 00 fe df b1 d7"
    assert _psmux_py.crc32_mpeg(psm) == 0


def test_keyframe_unit_layout(psmux):
    m = psmux.PsMuxer("h264", "g711a", mux_rate=26234)
    unit = m.mux(Frame("h264", 903600, 903600, True, b"\x00\x00\x00\x01\x65" + b"x" * 995))
    parts = split_unit(unit)
    assert [sid for sid, _ in parts] == [0xBA, 0xBB, 0xBC, 0xE0]
    assert read_scr(parts[0][1]) == 903600
    assert parts[1][1] == _psmux_py.system_header(26234, [0xE0, 0xC0])
    assert parts[2][1] == _psmux_py.psm([(0x1B, 0xE0), (0x90, 0xC0)])
    assert parts[3][1][:14].hex(" ") == "00 00 01 e0 03 f0 84 80 05 21 00 37 93 61"


def test_b_frame_carries_dts_and_audio_has_own_pack(psmux):
    m = psmux.PsMuxer("h264", "g711a")
    m.mux(Frame("h264", 900000, 900000, True, b"\x00\x00\x01\x65key"))
    unit = m.mux(Frame("h264", 907200, 903600, False, b"\x00\x00\x01\x41" + b"p" * 996))
    parts = split_unit(unit)
    assert [sid for sid, _ in parts] == [0xBA, 0xE0]
    assert parts[1][1][:19].hex(" ") == \
        "00 00 01 e0 03 f5 80 c0 0a 31 00 37 af 81 11 00 37 93 61"
    audio = m.mux(Frame("g711a", 904000, 904000, True, b"\xd5" * 160))
    parts = split_unit(audio)
    assert [sid for sid, _ in parts] == [0xBA, 0xC0]
    pts, dts, payload, flags = pes_payload(parts[1][1])
    assert (pts, dts, payload, flags) == (904000, None, b"\xd5" * 160, 0x80)


def test_tables_on_first_unit_keyframes_and_stream_changes(psmux):
    m = psmux.PsMuxer("h264")
    first = m.mux(Frame("g711a", 0, 0, True, b"\xd5" * 80))       # new stream: version bump
    assert m.psm_version == 1 and m.audio_codec == "g711a"
    assert [s for s, _ in split_unit(first)] == [0xBA, 0xBB, 0xBC, 0xC0]
    psm = dict(split_unit(first))[0xBC]
    assert psm[6] & 0x1F == 1 and psm[12:20] == bytes([0x1B, 0xE0, 0, 0, 0x90, 0xC0, 0, 0])
    def ids(frame: Frame) -> list[int]:
        return [sid for sid, _ in split_unit(m.mux(frame))]

    assert ids(Frame("g711a", 720, 720, True, b"\xd5")) == [0xBA, 0xC0]
    assert ids(Frame("h264", 3600, 3600, False, b"\x00\x00\x01\x41")) == [0xBA, 0xE0]
    assert ids(Frame("h264", 7200, 7200, True, b"\x00\x00\x01\x65")) == [0xBA, 0xBB, 0xBC, 0xE0]
    m.mux(Frame("hevc", 10800, 10800, True, b"\x00\x00\x01\x26\x01"))
    assert m.video_codec == "h265" and m.psm_version == 2
    with pytest.raises(ValueError):
        m.mux(Frame("vp9", 0, 0, True, b""))
    with pytest.raises(ValueError):
        psmux.PsMuxer("g711a")
    with pytest.raises(ValueError):
        psmux.PsMuxer("h264", "h265")


@pytest.mark.parametrize("size", [65535 - 13, 65535 - 12, 200_000, 3 * 65532 + 1])
def test_large_frames_split_into_pes(psmux, size):
    data = b"\x00\x00\x00\x01\x65" + bytes(i & 0xFF for i in range(size - 5))
    m = psmux.PsMuxer("h264")
    unit = m.mux(Frame("h264", 90000, 86400, True, data))
    pes = [p for sid, p in split_unit(unit) if sid == 0xE0]
    assert all(len(p) - 6 <= 0xFFFF for p in pes)
    fields = [pes_payload(p) for p in pes]
    assert fields[0][:2] == (90000, 86400) and fields[0][3] == 0x84
    assert all(f[:2] == (None, None) and f[3] == 0x80 for f in fields[1:])
    assert b"".join(f[2] for f in fields) == data
    first_room = 0xFFFF - 3 - 10                       # header flags + PTS + DTS
    continuations = -(-max(0, size - first_room) // (0xFFFF - 3))
    assert len(pes) == 1 + continuations


def test_scr_is_monotonic_and_unwraps(psmux):
    m = psmux.PsMuxer("h264", "g711a")
    start = (1 << 33) - 7200
    scrs = []
    sequence = [("h264", start), ("g711a", start - 1800), ("h264", start + 3600),
                ("h264", start + 7200), ("g711a", start + 5000), ("h264", start + 10800)]
    for i, (codec, t) in enumerate(sequence):
        t &= (1 << 33) - 1
        unit = m.mux(Frame(codec, t, t, i == 0, b"\x00\x00\x01\x41"))
        scrs.append(read_scr(unit))
    unwrapped = [s if s >= start - 10000 else s + (1 << 33) for s in scrs]
    assert unwrapped == [start, start, start + 3600, start + 7200, start + 7200, start + 10800]


def test_frame_without_timestamps(psmux):
    m = psmux.PsMuxer("h264", "g711a")
    m.mux(Frame("h264", 1000, 1000, True, b"\x00\x00\x01\x65"))
    unit = m.mux(Frame("g711a", None, None, True, b"\xd5" * 8))
    parts = split_unit(unit)
    assert read_scr(parts[0][1]) == 1000
    assert pes_payload(parts[1][1]) == (None, None, b"\xd5" * 8, 0x80)


# ---- readers ----------------------------------------------------------------------------------

def _mux_stream(psmux) -> tuple[bytes, int]:
    video = list(h264_frames())
    audio = g711_frames("g711a", count=100)
    m = psmux.PsMuxer("h264", "g711a")
    return b"".join(m.mux(f) for f in interleave(video, audio)), len(video)


def test_pyav_reads_video_and_audio(psmux, tmp_path):
    data, count = _mux_stream(psmux)
    path = tmp_path / "out.ps"
    path.write_bytes(data)
    with av.open(str(path), format="mpeg") as c:
        codecs = sorted(s.codec_context.name for s in c.streams)
        assert codecs == ["h264", "pcm_alaw"]
        assert sum(1 for _ in c.decode(video=0)) == count


@pytest.mark.skipif(shutil.which("ffprobe") is None, reason="ffprobe CLI not installed")
def test_ffprobe_counts_video_frames(psmux, tmp_path):
    data, count = _mux_stream(psmux)
    path = tmp_path / "out.ps"
    path.write_bytes(data)
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-count_frames", "-select_streams", "v:0", "-show_entries",
         "stream=codec_name,nb_read_frames,width,height", "-of", "csv=p=0", str(path)],
        capture_output=True, text=True, timeout=60, check=True).stdout.strip()
    assert out == f"h264,320,240,{count}"


# ---- RTP --------------------------------------------------------------------------------------

def test_rtp_header_example(psmux):
    r = psmux.RtpPacketizer(100000001, seq=1)
    (pkt,) = r.packetize(b"\x00\x00\x01\xba", 903600)
    assert pkt[:12].hex(" ") == "80 e0 00 01 00 0d c9 b0 05 f5 e1 01"
    assert r.seq == 2 and r.packets == 1


def test_rtp_split_marker_seq_wrap(psmux):
    r = psmux.RtpPacketizer(0xDEADBEEF, payload_type=96, mtu_payload=1400, seq=65534)
    unit = bytes(i & 0xFF for i in range(4000))
    pkts = r.packetize(unit, (1 << 32) + 5)
    assert [len(p) - 12 for p in pkts] == [1400, 1400, 1200]
    assert [struct.unpack(">H", p[2:4])[0] for p in pkts] == [65534, 65535, 0]
    assert [p[1] for p in pkts] == [96, 96, 0x80 | 96]
    assert all(p[0] == 0x80 and p[4:8] == b"\x00\x00\x00\x05" and p[8:12] == b"\xde\xad\xbe\xef"
               for p in pkts)
    assert b"".join(p[12:] for p in pkts) == unit
    assert r.seq == 1
    assert r.packetize(b"", 0) == []
    # Exactly one MTU: a single packet carrying the marker.
    (one,) = r.packetize(b"a" * 1400, 0)
    assert one[1] & 0x80


def test_rtp_rfc4571(psmux):
    r = psmux.RtpPacketizer(7, seq=0)
    stream = r.packetize_rfc4571(b"z" * 3000, 90)
    pos = 0
    payload = b""
    while pos < len(stream):
        size = struct.unpack(">H", stream[pos:pos + 2])[0]
        payload += stream[pos + 14:pos + 2 + size]
        pos += 2 + size
    assert pos == len(stream) and payload == b"z" * 3000 and r.seq == 3
    assert psmux.rfc4571_frame(b"abc") == b"\x00\x03abc"
    with pytest.raises(ValueError):
        psmux.rfc4571_frame(b"x" * 65536)


def test_rtp_rejects_bad_arguments(psmux):
    for kwargs in ({"ssrc": -1}, {"ssrc": 1 << 32}, {"ssrc": 1, "payload_type": 128},
                   {"ssrc": 1, "mtu_payload": 0}, {"ssrc": 1, "mtu_payload": 65524}):
        with pytest.raises((ValueError, OverflowError)):
            psmux.RtpPacketizer(**kwargs)
    assert 0 <= psmux.RtpPacketizer(1).seq <= 0xFFFF


def test_rtp_parses_with_rtp_stage(psmux):
    from media.rtp import parse_rtp
    r = psmux.RtpPacketizer(100000001, seq=10)
    pkts = r.packetize(b"q" * 2900, 3600)
    parsed = [parse_rtp(p) for p in pkts]
    assert [p.sequence for p in parsed] == [10, 11, 12]
    assert [p.marker for p in parsed] == [False, False, True]
    assert {p.timestamp for p in parsed} == {3600} and {p.ssrc for p in parsed} == {100000001}
    assert b"".join(bytes(p.payload) for p in parsed) == b"q" * 2900


# ---- parity -----------------------------------------------------------------------------------

_frames = st.lists(st.tuples(
    st.sampled_from(["h264", "g711a", "h265", "aac"]), st.integers(0, 140_000),
    st.one_of(st.none(), st.integers(0, (1 << 33) - 1)), st.integers(0, 9000), st.booleans()),
    max_size=12)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(frames=_frames, seq=st.integers(0, 0xFFFF), mtu=st.integers(1, 3000))
def test_twins_produce_identical_bytes(frames, seq, mtu):
    compiled = _impl.compiled("psmux")
    if compiled is None:
        assert _impl.NO_EXTENSIONS, "media._psmux is not built"
        return
    outs = []
    for mod in (_psmux_py, compiled):
        m = mod.PsMuxer("h264", "g711a")
        r = mod.RtpPacketizer(0x1234, seq=seq, mtu_payload=mtu)
        units = []
        for codec, size, dts, offset, key in frames:
            pts = None if dts is None else (dts + offset) & ((1 << 33) - 1)
            unit = m.mux(Frame(codec, pts, dts, key, bytes([size & 0xFF]) * size))
            units.append((unit, r.packetize(unit, pts or 0), r.seq, m.psm_version))
        outs.append(units)
    assert outs[0] == outs[1]
