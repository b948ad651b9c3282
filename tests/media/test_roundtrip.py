"""Round trips through the media stages: PsMuxer → (RTP) → PsDemuxer gives back the same frames,
and the whole chain ends in an FLV that PyAV decodes."""

from __future__ import annotations

import functools
import io
import random

import av
import pytest

from media import Frame

from conftest import DATA, resolve, stage_params
from media_gen import aac_frames, encode_video, g711_frames, interleave

pytest.importorskip("media._ps_py", reason="the PS demuxer stage is not in the tree yet")

PSMUX = stage_params("psmux")
PS = stage_params("ps")
RTP = stage_params("rtp")
FLV = stage_params("flv")


@functools.lru_cache(maxsize=None)
def h264_av() -> tuple[Frame, ...]:
    video = encode_video("h264", frames=50, width=320, height=240, bframes=2, first_pts=90000)
    return tuple(interleave(video, g711_frames("g711a", count=100, first_pts=90000)))


@functools.lru_cache(maxsize=None)
def h265_aac() -> tuple[Frame, ...]:
    video = encode_video("h265", frames=30, width=320, height=240, bframes=2)
    return tuple(interleave(video, aac_frames(count=20, sample_rate=16000)))


def big_frames() -> list[Frame]:
    """Keyframes larger than one PES holds (split on the way in, joined on the way out)."""
    out = []
    for i, size in enumerate((70_000, 200_000, 65_600)):
        body = bytes((j * 13 + i) & 0xFF for j in range(size)).replace(b"\x00\x00", b"\x00\x01")
        data = (b"\x00\x00\x00\x01\x67\x42\xc0\x1e\x8c\x8d\x40\xa0\xf9\x00\xf0\x88\x46\xa0"
                b"\x00\x00\x00\x01\x68\xce\x3c\x80\x00\x00\x00\x01\x65" + body)
        out.append(Frame("h264", 3600 * i, 3600 * i, True, data, 0xE0))
    return out


def demux_all(ps_mod, data: bytes, chunk: int | None) -> list[Frame]:
    demuxer = ps_mod.PsDemuxer()
    frames: list[Frame] = []
    if chunk is None:
        frames += demuxer.feed(data)
    else:
        for i in range(0, len(data), chunk):
            frames += demuxer.feed(data[i:i + chunk])
    frames += demuxer.flush()
    return frames


def as_tuples(frames) -> dict[int, list[tuple]]:
    """Frames per stream id, in order (the demuxer may interleave streams differently: a video
    frame is complete only when the next one starts, an audio frame at once)."""
    streams: dict[int, list[tuple]] = {}
    for f in frames:
        streams.setdefault(f.stream_id, []).append(
            (f.codec, f.pts, f.dts, f.keyframe, bytes(f.data)))
    return streams


@pytest.mark.parametrize("psmux_param", PSMUX)
@pytest.mark.parametrize("ps_param", PS)
@pytest.mark.parametrize("source,codecs", [(h264_av, ("h264", "g711a")),
                                           (h265_aac, ("h265", "aac")),
                                           (big_frames, ("h264", None))])
@pytest.mark.parametrize("chunk", [None, 1400, 7])
def test_ps_mux_demux_gives_back_the_frames(psmux_param, ps_param, source, codecs, chunk):
    psmux, ps = resolve(psmux_param), resolve(ps_param)
    frames = list(source())
    if chunk == 7 and source is not big_frames:
        frames = frames[:12]
    muxer = psmux.PsMuxer(*codecs)
    data = b"".join(muxer.mux(f) for f in frames)
    got = demux_all(ps, data, chunk)
    assert as_tuples(got) == as_tuples(frames)


@pytest.mark.parametrize("impl", ["py", "cy"][: len(PS)])
def test_rtp_round_trip_with_reordering(impl):
    from media import _psmux_py, _rtp_py, _ps_py, _flv_py
    from media import _impl
    if impl == "py":
        psmux, rtp, ps, flv = _psmux_py, _rtp_py, _ps_py, _flv_py
    else:
        psmux, rtp, ps, flv = (_impl.compiled(n) for n in ("psmux", "rtp", "ps", "flv"))
    frames = list(h264_av())
    muxer = psmux.PsMuxer("h264", "g711a")
    packetizer = psmux.RtpPacketizer(100000001, seq=65500)
    packets = []
    for f in frames:
        packets += packetizer.packetize(muxer.mux(f), f.pts)
    # Light reordering inside windows of 4 packets, as UDP might deliver them.
    rng = random.Random(28181)
    for i in range(4, len(packets) - 4, 4):       # the first packet arrives first
        window = packets[i:i + 4]
        rng.shuffle(window)
        packets[i:i + 4] = window
    jitter = rtp.JitterBuffer()
    demuxer = ps.PsDemuxer()
    flv_mux = flv.FlvMuxer("h264", "g711a")
    got: list[Frame] = []
    for raw in packets:
        for pkt in jitter.add(rtp.parse_rtp(raw)):
            got += demuxer.feed(bytes(pkt.payload))
    for pkt in jitter.flush():
        got += demuxer.feed(bytes(pkt.payload))
    got += demuxer.flush()
    assert jitter.lost == 0 and jitter.reordered > 0
    assert as_tuples(got) == as_tuples(frames)
    out = flv_mux.header() + b"".join(flv_mux.mux(f) for f in got)
    with av.open(io.BytesIO(out), format="flv") as c:
        assert sum(1 for _ in c.decode(video=0)) == 50


@pytest.mark.parametrize("name,vcodec,count", [("libmpeg_h264_g711a.ps", "h264", 150),
                                               ("libmpeg_h265_g711a.ps", "h265", 150),
                                               ("psmux_h264_g711a.ps", "h264", 150)])
@pytest.mark.parametrize("flv_param", FLV)
def test_vendor_ps_to_flv_and_remux(name, vcodec, count, flv_param):
    from media import _ps_py, _psmux_py
    flv = resolve(flv_param)
    data = (DATA / "ps" / name).read_bytes()
    frames = demux_all(_ps_py, data, 1400)
    video = [f for f in frames if f.codec == vcodec]
    assert len(video) == count
    audio_codec = next((f.codec for f in frames if f.codec.startswith("g711")), None)
    muxer = flv.FlvMuxer(vcodec, audio_codec)
    out = muxer.header() + b"".join(muxer.mux(f) for f in frames)
    with av.open(io.BytesIO(out), format="flv") as c:
        assert sum(1 for _ in c.decode(video=0)) == count
    # Our muxer re-packs the vendor frames losslessly.
    remuxed = _psmux_py.PsMuxer(vcodec, audio_codec)
    again = demux_all(_ps_py, b"".join(remuxed.mux(f) for f in frames), None)
    assert as_tuples(again) == as_tuples(frames)
