"""FLV muxer: PyAV decodes what we write, tag structure, timing, and compiled/Python parity."""

from __future__ import annotations

import functools
import io
import struct

import av
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from media import Frame

from conftest import resolve, stage_params
from media_gen import aac_frames, encode_video, g711_frames, interleave

IMPLS = stage_params("flv")


@pytest.fixture(params=IMPLS)
def flv(request):
    return resolve(request.param)


# ---- helpers written independently of the muxer ----------------------------------------------

@functools.lru_cache(maxsize=None)
def video(codec: str, frames: int = 50, width: int = 320, height: int = 240, bframes: int = 2,
          first_pts: int = 0) -> tuple[Frame, ...]:
    return tuple(encode_video(codec, frames=frames, width=width, height=height, bframes=bframes,
                              first_pts=first_pts))


def nal_units(annexb: bytes) -> list[bytes]:
    """NAL units of an Annex B stream (split on 3-byte start codes, trailing zeros stripped)."""
    parts = annexb.split(b"\x00\x00\x01")[1:]
    return [p.rstrip(b"\x00") for p in parts if p.rstrip(b"\x00")]


def expected_avcc(frame: Frame, hevc: bool) -> bytes:
    """Length-prefixed NAL units of a frame without AUD and parameter sets."""
    drop = {32, 33, 34, 35} if hevc else {7, 8, 9}
    out = b""
    for nal in nal_units(frame.data):
        nal_type = (nal[0] >> 1) & 0x3F if hevc else nal[0] & 0x1F
        if nal_type not in drop:
            out += struct.pack(">I", len(nal)) + nal
    return out


def parse_flv(data: bytes) -> tuple[bytes, list[tuple[int, int, bytes]]]:
    """``(header, [(tag_type, timestamp_ms, body)])``; checks every PreviousTagSize."""
    assert data[:3] == b"FLV" and data[3] == 1
    offset = struct.unpack(">I", data[5:9])[0]
    assert data[offset:offset + 4] == b"\x00\x00\x00\x00"
    pos = offset + 4
    tags = []
    while pos < len(data):
        tag_type = data[pos]
        size = int.from_bytes(data[pos + 1:pos + 4], "big")
        ts = int.from_bytes(data[pos + 4:pos + 7], "big") | (data[pos + 7] << 24)
        assert data[pos + 8:pos + 11] == b"\x00\x00\x00"
        body = data[pos + 11:pos + 11 + size]
        assert len(body) == size
        prev = struct.unpack(">I", data[pos + 11 + size:pos + 15 + size])[0]
        assert prev == size + 11
        tags.append((tag_type, ts, body))
        pos += 15 + size
    assert pos == len(data)
    return data[:offset], tags


def mux_all(flv, frames, *args, **kwargs) -> tuple[bytes, object]:
    m = flv.FlvMuxer(*args, **kwargs)
    tags = b"".join(m.mux(f) for f in frames)
    return m.header() + tags + m.end(), m


def demux_packets(data: bytes):
    with av.open(io.BytesIO(data), format="flv") as c:
        return [(p.stream.type, p.pts, p.dts, bytes(p), p.is_keyframe) for p in c.demux() if p.size]


def decode_count(data: bytes) -> int:
    with av.open(io.BytesIO(data), format="flv") as c:
        return sum(1 for _ in c.decode(video=0))


# ---- video ------------------------------------------------------------------------------------

@pytest.mark.parametrize("codec,mode", [("h264", "enhanced"), ("h265", "enhanced"),
                                        ("h265", "legacy")])
def test_video_decodes_with_same_bytes_and_timing(flv, codec, mode):
    frames = video(codec)
    audio = g711_frames("g711a", count=100)
    data, m = mux_all(flv, interleave(list(frames), audio), codec, "g711a", hevc_mode=mode)
    assert (m.width, m.height) == (320, 240)
    packets = demux_packets(data)
    vpk = [p for p in packets if p[0] == "video"]
    assert len(vpk) == len(frames)
    base = frames[0].dts
    for (_, pts, dts, payload, key), frame in zip(vpk, frames):
        assert payload == expected_avcc(frame, codec == "h265")
        assert dts == (frame.dts - base) // 90
        assert pts == (frame.pts - base) // 90
        assert key == frame.keyframe
    # B-frames really are there: composition offsets differ from zero somewhere.
    assert any(p[1] != p[2] for p in vpk)
    assert decode_count(data) == len(frames)
    apk = [p for p in packets if p[0] == "audio"]
    assert [p[3] for p in apk] == [f.data for f in audio if f.dts >= base]
    assert all(a[2] <= b[2] for a, b in zip(apk, apk[1:]))


def test_h264_sequence_header_and_metadata(flv):
    frames = video("h264", 10, 640, 360, 0)          # 360 needs SPS cropping (coded as 368)
    data, m = mux_all(flv, frames, "h264")
    header, tags = parse_flv(data)
    assert header[4] == 0x01                          # video only
    script = tags[0]
    assert script[0] == 18 and b"onMetaData" in script[2]
    assert b"width\x00" + struct.pack(">d", 640.0) in script[2]
    assert b"height\x00" + struct.pack(">d", 360.0) in script[2]
    assert b"videocodecid\x00" + struct.pack(">d", 7.0) in script[2]
    seq = tags[1]
    assert seq[0] == 9 and seq[2][:5] == b"\x17\x00\x00\x00\x00"
    record = seq[2][5:]
    sps = next(n for n in nal_units(frames[0].data) if n[0] & 0x1F == 7)
    pps = next(n for n in nal_units(frames[0].data) if n[0] & 0x1F == 8)
    assert record[:5] == bytes([1, sps[1], sps[2], sps[3], 0xFF])
    assert record[5] == 0xE1 and record[6:8] == struct.pack(">H", len(sps))
    assert record[8:8 + len(sps)] == sps
    rest = record[8 + len(sps):]
    assert rest[0] == 1 and rest[1:3] == struct.pack(">H", len(pps)) and rest[3:3 + len(pps)] == pps
    first = tags[2]
    assert first[2][:2] == b"\x17\x01"
    assert all(t[2][0] in (0x17, 0x27) for t in tags[2:-1])
    assert tags[-1][2] == b"\x17\x02\x00\x00\x00"    # end of sequence
    with av.open(io.BytesIO(data), format="flv") as c:
        assert (c.streams.video[0].codec_context.width,
                c.streams.video[0].codec_context.height) == (640, 360)


def test_h265_enhanced_structure(flv):
    frames = video("h265")
    data, m = mux_all(flv, frames, "hevc")
    _, tags = parse_flv(data)
    fourcc = float(int.from_bytes(b"hvc1", "big"))
    assert b"videocodecid\x00" + struct.pack(">d", fourcc) in tags[0][2]
    seq = tags[1][2]
    assert seq[:5] == b"\x90hvc1"                     # IsExHeader | keyframe | SequenceStart
    record = seq[5:]
    assert record[0] == 1 and record[22] == 3         # version, VPS/SPS/PPS arrays
    coded = [t[2] for t in tags[2:-1]]
    assert {b[0] & 0x0F for b in coded} <= {1, 3}     # CodedFrames / CodedFramesX
    assert all(b[1:5] == b"hvc1" for b in coded)
    assert coded[0][0] >> 4 == 0x9 and any(b[0] >> 4 == 0xA for b in coded)
    assert tags[-1][2] == b"\x92hvc1"
    assert decode_count(data) == len(frames)


def test_h265_legacy_codec_id_12(flv):
    frames = video("h265")
    data, m = mux_all(flv, frames, "h265", hevc_mode="legacy")
    _, tags = parse_flv(data)
    assert b"videocodecid\x00" + struct.pack(">d", 12.0) in tags[0][2]
    seq = tags[1][2]
    assert seq[:5] == b"\x1c\x00\x00\x00\x00"
    record = seq[5:]
    assert record[0] == 1
    # Array of VPS, SPS, PPS with array_completeness set, holding the frame's parameter sets.
    pos = 23
    params = {(n[0] >> 1) & 0x3F: n for n in nal_units(frames[0].data)}
    for nal_type in (32, 33, 34):
        assert record[pos] == 0x80 | nal_type and record[pos + 1:pos + 3] == b"\x00\x01"
        size = int.from_bytes(record[pos + 3:pos + 5], "big")
        assert record[pos + 5:pos + 5 + size] == params[nal_type]
        pos += 5 + size
    assert pos == len(record)
    body = [t[2] for t in tags[2:-1]]
    assert body[0][:2] == b"\x1c\x01" and all(b[0] in (0x1C, 0x2C) and b[1] == 1 for b in body)
    for b, frame in zip(body, frames):
        assert b[5:] == expected_avcc(frame, True)


def test_drops_until_first_keyframe_and_init_segment(flv):
    frames = list(video("h264", 60))
    gop2 = next(i for i, f in enumerate(frames) if i and f.keyframe)
    m = flv.FlvMuxer("h264", "g711a")
    assert m.init_segment() is None and not m.started
    # Start in the middle of the first GOP: nothing is emitted until the next keyframe.
    out = [m.mux(f) for f in frames[3:gop2]]
    assert out == [b""] * len(out) and m.frames_dropped == len(out)
    assert m.mux(g711_frames(count=1, first_pts=frames[3].dts)[0]) == b""
    tags = b"".join(m.mux(f) for f in frames[gop2:])
    init = m.init_segment()
    assert init is not None and m.started
    assert init.startswith(m.header())
    # A late viewer: init segment then tags from the last keyframe on.
    late = flv.FlvMuxer("h264")
    for f in frames[:gop2 + 5]:
        late.mux(f)
    join = late.init_segment() + b"".join(late.mux(f) for f in frames[gop2 + 5:])
    assert decode_count(init + tags) == len(frames) - gop2
    # Frames after the keyframe reference it: the late stream decodes once its own keyframe comes.
    assert decode_count(join) >= 1


def test_parameter_set_change_emits_new_sequence_header(flv):
    a = list(video("h264", 10, 320, 240, 0))
    b = list(video("h264", 10, 640, 360, 0, first_pts=a[-1].pts + 3600))
    data, m = mux_all(flv, a + b, "h264")
    _, tags = parse_flv(data)
    seq = [t for t in tags if t[0] == 9 and t[2][1] == 0]
    assert len(seq) == 2
    assert (m.width, m.height) == (640, 360)
    packets = demux_packets(data)
    assert len([p for p in packets if p[0] == "video"]) == 20


def test_timestamps_unwrap_33_bit(flv):
    start = (1 << 33) - 90000 * 1                      # wraps one second in
    frames = list(video("h264", 50, first_pts=start))
    assert any(f.dts < start for f in frames)          # the wrap is inside the sequence
    data, _ = mux_all(flv, frames, "h264")
    _, tags = parse_flv(data)
    vts = [t[1] for t in tags if t[0] == 9][1:-1]
    assert vts == [i * 40 for i in range(50)]


def test_timestamps_start_at_zero_and_stay_monotonic(flv):
    frames = list(video("h264", 20, first_pts=123456789))
    audio = g711_frames(count=40, first_pts=123456789)
    # Audio arriving with a slightly older timestamp must not move time backwards.
    audio[10] = Frame("g711a", audio[9].pts - 900, audio[9].pts - 900, True, audio[10].data, 0xC0)
    data, _ = mux_all(flv, interleave(frames, audio), "h264", "g711a")
    _, tags = parse_flv(data)
    for tag_type in (8, 9):
        ts = [t[1] for t in tags if t[0] == tag_type]
        assert ts[0] == 0 and ts == sorted(ts)


# ---- audio ------------------------------------------------------------------------------------

@pytest.mark.parametrize("codec,first,name", [("g711a", 0x72, "pcm_alaw"),
                                              ("g711u", 0x82, "pcm_mulaw")])
def test_g711_tags(flv, codec, first, name):
    audio = g711_frames(codec, count=30)
    data, m = mux_all(flv, audio, None, codec)
    header, tags = parse_flv(data)
    assert header[4] == 0x04
    atags = [t for t in tags if t[0] == 8]
    assert len(atags) == 30
    assert all(t[2][0] == first for t in atags)
    assert [t[2][1:] for t in atags] == [f.data for f in audio]
    assert [t[1] for t in atags] == [i * 40 for i in range(30)]
    with av.open(io.BytesIO(data), format="flv") as c:
        cc = c.streams.audio[0].codec_context
        assert (cc.name, cc.sample_rate, cc.channels) == (name, 8000, 1)
        samples = sum(f.samples for f in c.decode(audio=0))
    assert samples == sum(len(f.data) for f in audio)


def test_g711_without_timestamps_derives_them_from_samples(flv):
    audio = g711_frames("g711a", count=5)
    audio[2] = Frame("g711a", None, None, True, audio[2].data, 0xC0)
    data, _ = mux_all(flv, audio, None, "pcma")
    _, tags = parse_flv(data)
    assert [t[1] for t in tags if t[0] == 8] == [0, 40, 80, 120, 160]


def test_aac_tags(flv):
    audio = aac_frames(count=20, sample_rate=16000)
    data, m = mux_all(flv, audio, None, "aac")
    _, tags = parse_flv(data)
    assert b"audiosamplerate\x00" + struct.pack(">d", 16000.0) in tags[0][2]
    seq = tags[1]
    assert seq[0] == 8 and seq[2][:2] == b"\xaf\x00"
    # AudioSpecificConfig: AAC LC (2), 16 kHz (index 8), mono.
    assert seq[2][2:] == bytes([(2 << 3) | (8 >> 1), ((8 & 1) << 7) | (1 << 3)])
    raw = [t for t in tags[2:] if t[0] == 8]
    assert len(raw) == 20 and all(t[2][:2] == b"\xaf\x01" for t in raw)
    for t, f in zip(raw, audio):
        header = 7 if f.data[1] & 1 else 9
        assert t[2][2:] == f.data[header:]
    assert [t[1] for t in raw] == [(i * 1024 * 1000) // 16000 for i in range(20)]
    with av.open(io.BytesIO(data), format="flv") as c:
        assert c.streams.audio[0].codec_context.name == "aac"
        assert c.streams.audio[0].codec_context.sample_rate == 16000
        assert sum(1 for _ in c.decode(audio=0)) >= 19


def test_aac_several_adts_frames_in_one_access_unit(flv):
    audio = aac_frames(count=6, sample_rate=16000)
    merged = Frame("aac", audio[0].pts, audio[0].dts, True, b"".join(f.data for f in audio[:3]))
    data, _ = mux_all(flv, [merged] + audio[3:], None, "aac")
    _, tags = parse_flv(data)
    raw = [t for t in tags if t[0] == 8 and t[2][1] == 1]
    assert [t[1] for t in raw] == [0, 64, 128, 192, 256, 320]


# ---- API --------------------------------------------------------------------------------------

def test_rejects_bad_configuration(flv):
    with pytest.raises(ValueError):
        flv.FlvMuxer("vp8")
    with pytest.raises(ValueError):
        flv.FlvMuxer(None, "opus")
    with pytest.raises(ValueError):
        flv.FlvMuxer()
    with pytest.raises(ValueError):
        flv.FlvMuxer("h265", hevc_mode="other")


def test_ignores_frames_of_other_codecs(flv):
    m = flv.FlvMuxer("h264")
    assert m.mux(g711_frames(count=1)[0]) == b""
    assert m.frames_dropped == 1


def test_facade_exports():
    import media
    from media import flv as facade
    assert media.FlvMuxer is facade.FlvMuxer
    m = media.FlvMuxer("h264")
    assert m.header()[:3] == b"FLV"


# ---- parity -----------------------------------------------------------------------------------

def _random_frames(draw_ops, base_frames):
    """Build frames from hypothesis-drawn operations around real parameter sets."""
    keyframe = base_frames[0]
    params = [n for n in nal_units(keyframe.data) if n[0] & 0x1F in (7, 8)]
    frames = []
    dts = draw_ops["start"]
    for op in draw_ops["ops"]:
        kind, size, step, offset, key, flag = op
        dts = (dts + step) & ((1 << 33) - 1)
        if kind == "audio":
            frames.append(Frame("g711a", None if flag else dts, None if flag else dts, True,
                                bytes([size & 0xFF]) * size, 0xC0))
            continue
        body = bytes([(0x65 if key else 0x41)]) + bytes((i * 7 + size) & 0xFF for i in range(size))
        nals = []
        if key and not flag:
            nals += params
        if flag and kind == "aud":
            nals.append(b"\x09\xf0")
        nals.append(body)
        annexb = b"".join((b"\x00\x00\x00\x01" if i % 2 else b"\x00\x00\x01") + n
                          for i, n in enumerate(nals))
        pts = (dts + offset) & ((1 << 33) - 1)
        frames.append(Frame("h264", pts, dts, key, annexb + b"\x00" * (size % 3), 0xE0))
    return frames


_ops = st.fixed_dictionaries({
    "start": st.integers(0, (1 << 33) - 1),
    "ops": st.lists(st.tuples(st.sampled_from(["video", "audio", "aud"]), st.integers(1, 3000),
                              st.integers(0, 9000), st.integers(0, 18000), st.booleans(),
                              st.booleans()), max_size=40),
})


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=_ops)
def test_twins_produce_identical_bytes(ops):
    from media import _flv_py
    from media import _impl
    compiled = _impl.compiled("flv")
    if compiled is None:
        assert _impl.NO_EXTENSIONS, "media._flv is not built"
        return
    frames = _random_frames(ops, video("h264", 2))
    outs = []
    for mod in (_flv_py, compiled):
        m = mod.FlvMuxer("h264", "g711a")
        tags = [m.mux(f) for f in frames]
        outs.append((tags, m.header(), m.init_segment(), m.end(), m.frames_dropped, m.width))
        b = mod.FlvMuxer("h264", "g711a")
        outs[-1] += tuple(tuple(b.mux_batch(frames[i:i + 5])) for i in range(0, len(frames), 5))
        outs[-1] += (b.frames_dropped, b.end())
    assert outs[0] == outs[1]


# ---- batches ----------------------------------------------------------------------------------

def _is_key_tag(chunk: bytes) -> bool:
    return chunk[0] == 9 and (chunk[11] >> 4) & 7 == 1


@pytest.mark.parametrize("codec,mode", [("h264", "enhanced"), ("h265", "enhanced"),
                                        ("h265", "legacy")])
@pytest.mark.parametrize("size", [1, 2, 3, 7, 64])
def test_batch_mux_equals_per_frame_mux(flv, codec, mode, size):
    frames = list(interleave(list(video(codec, 60)), g711_frames("g711a", count=60, samples=320)))
    single = flv.FlvMuxer(codec, "g711a", mode)
    batched = flv.FlvMuxer(codec, "g711a", mode)
    for i in range(0, len(frames), size):
        part = frames[i:i + size]
        tags = [single.mux(f) for f in part]
        chunks = batched.mux_batch(part)
        assert b"".join(chunks) == b"".join(tags)
        assert all(chunks)
        # a chunk starts at every keyframe tag, nowhere else but the first
        keys = [t for t in tags if t and _is_key_tag(t)]
        assert all(_is_key_tag(c) for c in chunks[1:])
        assert len(chunks) == len(keys) + (0 if not chunks or _is_key_tag(chunks[0]) else 1)
        assert batched.init_segment() == single.init_segment()
    assert (batched.frames_in, batched.frames_out, batched.frames_dropped) == \
        (single.frames_in, single.frames_out, single.frames_dropped)
    assert batched.end() == single.end()


def test_batch_mux_aac(flv):
    frames = list(interleave(list(video("h264", 30)), aac_frames(count=40)))
    single, batched = flv.FlvMuxer("h264", "aac"), flv.FlvMuxer("h264", "aac")
    for i in range(0, len(frames), 5):
        part = frames[i:i + 5]
        assert b"".join(batched.mux_batch(part)) == b"".join(single.mux(f) for f in part)


def test_batch_mux_refused_frames(flv):
    frames = list(video("h264", 10))
    bad = Frame("h264", "x", "y", False, frames[1].data, 0xE0)     # timestamps of the wrong type
    m = flv.FlvMuxer("h264")
    refused = []
    chunks = m.mux_batch([frames[0], bad, frames[1]], refused)
    assert [f for f, _ in refused] == [bad] and isinstance(refused[0][1], Exception)
    ref = flv.FlvMuxer("h264")
    assert b"".join(chunks) == ref.mux(frames[0]) + ref.mux(frames[1])
    with pytest.raises(Exception):
        m.mux_batch([frames[2], bad])
    assert m.mux_batch([]) == []
