"""MP4 recording: files read back with ffprobe and PyAV, rotation, and a recorder killed mid-way."""

from __future__ import annotations

import asyncio
import os
import pathlib
import signal
import subprocess
import sys
import time

import pytest

from media.outputs import OutputError
from media.outputs.record import RecordSink
from outputs_support import (batches, codec_sample, count_frames, ffprobe, looped,
                             running_output_threads, sample_frames)

ROOT = pathlib.Path(__file__).resolve().parents[2]


async def record(sink, frames, size=10):
    sink.start()
    for batch in batches(frames, size):
        sink.on_frames(batch)
        await asyncio.sleep(0)
    sink.stop()
    await sink.wait_closed()


def top_level_boxes(path) -> list[str]:
    data = pathlib.Path(path).read_bytes()
    boxes, i = [], 0
    while i + 8 <= len(data):
        size = int.from_bytes(data[i:i + 4], "big")
        boxes.append(data[i + 4:i + 8].decode("latin-1"))
        if size == 1:
            size = int.from_bytes(data[i + 8:i + 16], "big")
        if size < 8:
            break
        i += size
    return boxes


@pytest.mark.parametrize("codec", ["h264", "h265"])
async def test_record_plays_with_expected_frames_and_duration(tmp_path, codec):
    path = tmp_path / "rec" / f"{codec}.mp4"
    sink = RecordSink(path)
    await record(sink, looped(codec_sample(codec), 3))       # 18 s
    assert sink.error is None
    assert [f.path for f in sink.files] == [str(path)]
    info = sink.files[0]
    assert info.complete and info.video_frames == 450
    assert info.duration == pytest.approx(18.0, abs=0.05)
    probe = ffprobe(path)
    streams = {s["codec_type"]: s for s in probe["streams"]}
    assert streams["video"]["codec_name"] == {"h264": "h264", "h265": "hevc"}[codec]
    assert int(streams["video"]["nb_read_frames"]) == 450
    assert (streams["video"]["width"], streams["video"]["height"]) == (640, 360)
    assert streams["audio"]["codec_name"] == "aac"
    assert float(probe["format"]["duration"]) == pytest.approx(18.0, abs=0.1)
    # faststart: the index comes before the media data; no fragments are left.
    boxes = top_level_boxes(path)
    assert boxes.index("moov") < boxes.index("mdat") and "moof" not in boxes
    assert count_frames(path)["video"] == 450
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]   # no temp file left
    assert running_output_threads() == []


async def test_rotation_by_duration(tmp_path):
    sink = RecordSink(tmp_path / "cam.mp4", segment_seconds=4, audio="drop")
    await record(sink, looped(sample_frames(), 3), 25)        # 18 s, keyframe every 2 s
    assert sink.error is None
    names = [pathlib.Path(f.path).name for f in sink.files]
    assert names == [f"cam-{i:03d}.mp4" for i in range(5)]
    assert [f.video_frames for f in sink.files] == [100, 100, 100, 100, 50]
    for f in sink.files:
        probe = ffprobe(f.path)
        assert len(probe["streams"]) == 1                    # audio="drop"
        assert int(probe["streams"][0]["nb_read_frames"]) == f.video_frames
        assert float(probe["format"]["duration"]) == pytest.approx(f.video_frames / 25, abs=0.05)


async def test_path_template(tmp_path):
    sink = RecordSink(str(tmp_path / "{start}_{index}.mov"), segment_seconds=100)
    await record(sink, sample_frames())
    (only,) = sink.files
    name = pathlib.Path(only.path).name
    assert name.endswith("_0.mov") and len(name) == len("20260101-120000_0.mov")
    assert int(ffprobe(only.path)["streams"][0]["nb_read_frames"]) == 150


async def test_without_faststart_the_fragmented_file_stays(tmp_path):
    path = tmp_path / "frag.mp4"
    sink = RecordSink(path, faststart=False)
    await record(sink, looped(sample_frames(), 2))
    assert "moof" in top_level_boxes(path)
    probe = ffprobe(path)
    assert int(next(s for s in probe["streams"] if s["codec_type"] == "video")["nb_read_frames"]) == 300
    assert float(probe["format"]["duration"]) == pytest.approx(12.0, abs=0.1)


KILLED_RECORDER = """
import asyncio, sys
sys.path[:0] = [{root!r}, {tests!r}]
from media.outputs.record import RecordSink
from outputs_support import batches, looped, sample_frames

async def main():
    sink = RecordSink({path!r})
    sink.start()
    frames = sample_frames()
    loop = 0
    while True:
        for batch in batches(looped(frames, 1, start=loop), 10):
            sink.on_frames(batch)
            await asyncio.sleep(0.01)
        loop += 1
        print("loop", loop, flush=True)

asyncio.run(main())
"""


def test_recording_killed_abruptly_stays_playable(tmp_path):
    path = tmp_path / "killed.mp4"
    script = KILLED_RECORDER.format(root=str(ROOT), tests=str(ROOT / "tests" / "media"),
                                    path=str(path))
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        # Two passes of the sample written (12 s of stream): several fragments are on disk.
        for _ in range(2):
            line = proc.stdout.readline()
            assert line.startswith("loop"), proc.stderr.read()
        time.sleep(0.2)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        proc.stdout.close()
        proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL
    probe = ffprobe(path)
    video = next(s for s in probe["streams"] if s["codec_type"] == "video")
    frames = int(video["nb_read_frames"])
    # Whole GOPs (fragments are cut at keyframes, 50 frames each), at least the first two passes.
    assert frames >= 250 and frames % 50 == 0
    assert float(video["duration"]) == pytest.approx(frames / 25, abs=0.1)
    assert float(probe["format"]["duration"]) >= frames / 25 - 0.1
    assert count_frames(path)["video"] == frames


async def test_end_of_stream_writes_what_was_queued(tmp_path):
    path = tmp_path / "end.mp4"
    sink = RecordSink(path)
    sink.start()
    frames = looped(sample_frames(), 2)
    sink.on_frames(frames)                 # one big batch, then the stream ends at once
    sink.on_end("device bye")
    sink.on_frames(frames)                 # after the end: ignored
    await sink.wait_closed()
    assert sink.end_reason == "device bye"
    assert sink.files[0].video_frames == 300
    assert count_frames(path)["video"] == 300


async def test_queue_overflow_drops_until_a_keyframe(tmp_path):
    path = tmp_path / "slow.mp4"
    sink = RecordSink(path, max_queue=120, audio="drop")
    frames = looped(sample_frames(), 2)
    sink.start()
    sink.on_frames(frames[:100])           # fits
    sink.on_frames(frames[100:200])        # would exceed 120 queued frames: dropped
    assert sink.dropped_frames >= 100
    await asyncio.to_thread(lambda: _wait(lambda: sink.queued_frames == 0))
    sink.on_frames(frames[200:])           # resumes at its first keyframe
    sink.stop()
    await sink.wait_closed()
    written = sink.files[0].video_frames
    assert written % 50 == 0 and 50 <= written < 300
    assert count_frames(path)["video"] == written


def _wait(predicate, timeout=20):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline
        time.sleep(0.01)


async def test_no_keyframe_no_file(tmp_path):
    path = tmp_path / "none.mp4"
    sink = RecordSink(path)
    await record(sink, [f for f in sample_frames() if not f.keyframe or f.codec == "g711a"])
    assert sink.files == [] and not path.exists()


@pytest.mark.parametrize("path, message", [("x.avi", "must end in"), ("x", "must end in"),
                                            ("{oops}.mp4", "template")])
def test_bad_paths(tmp_path, path, message):
    with pytest.raises(OutputError, match=message):
        RecordSink(tmp_path / path)


def test_bad_options(tmp_path):
    with pytest.raises(OutputError):
        RecordSink(tmp_path / "a.mp4", segment_seconds=0)
    with pytest.raises(OutputError):
        RecordSink(tmp_path / "a.mp4", audio="g711")


async def test_unwritable_directory(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(OutputError, match="cannot create"):
        RecordSink(blocker / "sub" / "a.mp4").start()
    assert not os.path.exists(blocker / "sub")
