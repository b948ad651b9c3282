"""JPEG snapshots: decoded keyframes re-encoded as JPEG, read back with PyAV."""

from __future__ import annotations

import asyncio
import io

import av
import pytest

from media import Frame
from media.outputs.snapshot import SnapshotError, SnapshotSink, decode_jpeg, snapshot
from outputs_support import codec_sample, sample_frames


def jpeg_size(data: bytes) -> tuple[int, int, str]:
    assert data[:2] == b"\xff\xd8" and data[-2:] == b"\xff\xd9"      # SOI ... EOI
    with av.open(io.BytesIO(data)) as container:
        frame = next(container.decode(video=0))
        return frame.width, frame.height, container.streams.video[0].codec_context.name


class Source:
    """The part of a relay a snapshot uses: its GOP cache and its sinks."""

    def __init__(self, gop=()) -> None:
        self._gop = list(gop)
        self.sinks: list = []

    def gop(self):
        return list(self._gop)

    def add_sink(self, sink) -> None:
        self.sinks.append(sink)

    def remove_sink(self, sink) -> None:
        self.sinks.remove(sink)

    def feed(self, frames) -> None:
        for sink in list(self.sinks):
            sink.on_frames(frames)

    def end(self, reason) -> None:
        for sink in list(self.sinks):
            sink.on_end(reason)


@pytest.mark.parametrize("codec", ["h264", "h265"])
@pytest.mark.parametrize("size, expected", [((None, None), (640, 360)), ((320, None), (320, 180)),
                                            ((None, 90), (160, 90)), ((200, 200), (200, 200))])
def test_decode_jpeg(codec, size, expected):
    frames = codec_sample(codec)
    data = decode_jpeg(frames[1:], width=size[0], height=size[1])   # [0] is audio before the key
    assert jpeg_size(data) == (*expected, "mjpeg")


def test_quality_changes_the_size():
    frames = sample_frames()[1:]
    assert len(decode_jpeg(frames, quality=2)) > len(decode_jpeg(frames, quality=20))
    with pytest.raises(SnapshotError):
        decode_jpeg(frames, quality=1)


def test_no_keyframe_or_garbage():
    frames = sample_frames()
    with pytest.raises(SnapshotError, match="no keyframe"):
        decode_jpeg([f for f in frames if not f.keyframe])
    with pytest.raises(SnapshotError, match="no keyframe"):
        decode_jpeg([])
    garbage = Frame("h264", 0, 0, True, b"\x00\x00\x00\x01\x65" + bytes(range(256)) * 4, 0xE0)
    with pytest.raises(SnapshotError):
        decode_jpeg([garbage])


async def test_snapshot_from_the_gop_cache():
    frames = sample_frames()
    source = Source(frames[:120])          # last keyframe at video frame 100
    data = await snapshot(source, width=320)
    assert jpeg_size(data)[:2] == (320, 180)
    assert source.sinks == []              # the cache was enough: nothing subscribed


async def test_snapshot_waits_for_the_next_keyframe():
    frames = sample_frames()
    source = Source()
    task = asyncio.ensure_future(snapshot(source, timeout=10))
    await asyncio.sleep(0.05)
    assert len(source.sinks) == 1
    source.feed([f for f in frames[:60] if not f.keyframe])    # no keyframe yet
    await asyncio.sleep(0.05)
    assert not task.done()
    source.feed(frames[1:10])              # keyframe
    data = await asyncio.wait_for(task, 10)
    assert jpeg_size(data)[:2] == (640, 360)
    assert source.sinks == []


async def test_snapshot_times_out_clearly():
    source = Source()
    with pytest.raises(SnapshotError, match=r"no keyframe within 0.2 s"):
        await snapshot(source, timeout=0.2)
    assert source.sinks == []


async def test_snapshot_stream_ends_first():
    source = Source()
    task = asyncio.ensure_future(snapshot(source, timeout=10))
    await asyncio.sleep(0.05)
    source.end("device bye")
    with pytest.raises(SnapshotError, match="ended before a keyframe"):
        await task
    assert source.sinks == []


async def test_sink_keeps_following_frames():
    sink = SnapshotSink(following=3)
    frames = [f for f in sample_frames() if f.codec == "h264"]
    sink.on_frames(frames[1:3])            # no keyframe: ignored
    sink.on_frames(frames[50:52])
    sink.on_frames(frames[52:60])
    got = await sink.keyframe(1)
    assert got[0] is frames[50] and len(got) >= 4
    assert all(f.codec == "h264" for f in got)


async def test_bad_size():
    with pytest.raises(SnapshotError):
        await snapshot(Source(sample_frames()), width=0)
