"""The shared parts of the PyAV outputs: timeline, writer, threaded sink."""

from __future__ import annotations

import pytest

from media import Frame
from media.outputs import OutputError
from media.outputs._av import MAX_JUMP, WRAP, AvWriter, Timeline
from media.outputs.record import RecordSink
from outputs_support import count_frames, ffprobe, looped, sample_frames


def test_timeline_starts_at_zero_and_follows():
    t = Timeline()
    assert t.map("video", 9000, 9000) == (0, 0)
    assert t.map("video", 12600, 12600) == (3600, 3600)
    assert t.map("audio", 12600, None) == (3600, 3600)


def test_timeline_wraps_33_bits():
    t = Timeline()
    assert t.map("video", WRAP - 3600, WRAP - 3600) == (0, 0)
    assert t.map("video", 0, 0) == (3600, 3600)
    assert t.map("video", 3600, 3600) == (7200, 7200)


def test_timeline_keeps_composition_offsets():
    t = Timeline()
    assert t.map("video", 7200, 0) == (7200, 0)
    assert t.map("video", 3600, 3600) == (3600, 3600)


def test_timeline_never_goes_back_and_bridges_jumps():
    t = Timeline()
    t.map("video", 90000, 90000)
    assert t.map("video", 90000, 90000) == (1, 1)            # repeated: nudged forward
    assert t.map("video", 80000, 80000) == (2, 2)            # backwards: nudged forward
    pts, dts = t.map("video", 90000 + MAX_JUMP * 3, 90000 + MAX_JUMP * 3)
    assert dts == 2 + 3600                                   # a device restart: one frame later
    assert t.map("video", 90000 + MAX_JUMP * 3 + 3600, None)[1] == dts + 3600


def test_timeline_without_timestamps():
    t = Timeline()
    assert t.map("video", None, None) == (0, 0)
    assert t.map("video", None, None) == (3600, 3600)


def test_bad_audio_mode():
    with pytest.raises(OutputError):
        AvWriter(lambda: None, audio="pcm")


def test_unsupported_video_codec():
    writer = AvWriter(lambda: None)
    with pytest.raises(OutputError, match="not supported"):
        writer.write([Frame("mpeg4", 0, 0, True, b"\x00\x00\x01\xb0\x01", 0xE0)])


async def test_recording_across_the_33_bit_wrap(tmp_path):
    frames = sample_frames()
    start = WRAP - 100 * 3600
    shifted = [Frame(f.codec, (f.pts + start) % WRAP, (f.dts + start) % WRAP, f.keyframe, f.data,
                     f.stream_id) for f in looped(frames, 2)]
    sink = RecordSink(tmp_path / "wrap.mp4")
    sink.start()
    sink.on_frames(shifted)
    sink.stop()
    await sink.wait_closed()
    assert sink.files[0].video_frames == 300
    probe = ffprobe(tmp_path / "wrap.mp4")
    video = next(s for s in probe["streams"] if s["codec_type"] == "video")
    assert float(video["duration"]) == pytest.approx(12.0, abs=0.05)
    assert count_frames(tmp_path / "wrap.mp4")["video"] == 300


async def test_audio_codec_that_cannot_be_transcoded_is_dropped(tmp_path):
    frames = [f if f.codec != "g711a" else Frame("g7221", f.pts, f.dts, True, f.data, f.stream_id)
              for f in sample_frames()]
    sink = RecordSink(tmp_path / "g7221.mp4")
    sink.start()
    sink.on_frames(frames)
    sink.stop()
    await sink.wait_closed()
    assert sink.error is None
    assert count_frames(tmp_path / "g7221.mp4") == {"video": 150, "audio": 0}


async def test_video_only_stream_opens_after_the_audio_wait(tmp_path):
    sink = RecordSink(tmp_path / "v.mp4")
    sink.start()
    sink.on_frames([f for f in sample_frames() if f.codec == "h264"])
    sink.stop()
    await sink.wait_closed()
    assert count_frames(tmp_path / "v.mp4") == {"video": 150, "audio": 0}


async def test_outputs_fed_by_a_relay(tmp_path):
    """A relay feeds the HLS and MP4 sinks (GOP cache first) and a snapshot; its end ends them."""
    from media.outputs.hls import HlsSink
    from media.outputs.snapshot import snapshot
    from media.relay import Relay
    from outputs_support import batches, running_output_threads

    relay = Relay("test")
    frames = looped(sample_frames(), 2)
    relay.feed(frames[:60])                       # a GOP is cached before the outputs join
    hls = HlsSink(tmp_path / "hls", cleanup=False, list_size=10)
    rec = RecordSink(tmp_path / "rec.mp4")
    for sink in (hls, rec):
        sink.start()
        relay.add_sink(sink)
    jpeg = await snapshot(relay, width=160)
    assert jpeg[:2] == b"\xff\xd8"
    for batch in batches(frames[60:]):
        relay.feed(batch)
    relay.end("device bye")
    await hls.wait_closed()
    await rec.wait_closed()
    assert hls.end_reason == rec.end_reason == "device bye"
    # Everything from the cached keyframe on (video frame 0 of the first pass).
    assert count_frames(tmp_path / "rec.mp4")["video"] == 300
    assert count_frames(hls.playlist)["video"] == 300
    assert running_output_threads() == []
