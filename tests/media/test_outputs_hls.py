"""HLS output: playlist and segments written by libavformat, read back and decoded with PyAV."""

from __future__ import annotations

import asyncio
import re

import pytest

from media.outputs import OutputError
from media.outputs.hls import HlsSink
from outputs_support import (batches, codec_sample, count_frames, looped, running_output_threads,
                             sample_frames)


async def feed(sink, frames, size=10):
    for batch in batches(frames, size):
        sink.on_frames(batch)
        await asyncio.sleep(0)


def aac_frames(g711_frames: int) -> float:
    return g711_frames * 320 / 1024


def playlist_segments(text: str) -> list[tuple[float, str]]:
    return [(float(d), n) for d, n in re.findall(r"#EXTINF:([\d.]+),\s*\n(\S+)", text)]


@pytest.mark.parametrize("codec", ["h264", "h265"])
@pytest.mark.parametrize("segment_type", ["mpegts", "fmp4"])
async def test_playlist_and_segments_decode(tmp_path, codec, segment_type):
    frames = looped(codec_sample(codec), 2)            # 12 s, keyframe every 2 s
    sink = HlsSink(tmp_path / "hls", segment_seconds=2, list_size=10, cleanup=False,
                   segment_type=segment_type)
    sink.start()
    await feed(sink, frames)
    await sink.wait_ready(timeout=30)
    sink.on_end("end of stream")
    await sink.wait_closed()
    assert sink.error is None
    text = sink.playlist.read_text()
    assert text.startswith("#EXTM3U") and "#EXT-X-ENDLIST" in text
    segments = playlist_segments(text)
    assert len(segments) == 6
    assert all(d == pytest.approx(2.0, abs=0.05) for d, _ in segments)
    suffix = ".ts" if segment_type == "mpegts" else ".m4s"
    assert all(name.endswith(suffix) for _, name in segments)
    if segment_type == "fmp4":
        assert '#EXT-X-MAP:URI="init.mp4"' in text
    # The whole playlist decodes: every video frame and the AAC audio.
    counts = count_frames(sink.playlist)
    assert counts["video"] == 300
    # G.711 frames of 320 samples re-framed into AAC frames of 1024 (the first G.711 frame comes
    # before the first keyframe and is not written).
    assert counts["audio"] == pytest.approx(aac_frames(2 * 150 - 1), abs=1)
    # Each segment starts on a keyframe and decodes alone (50 pictures).
    if segment_type == "mpegts":
        for _, name in segments:
            assert count_frames(sink.directory / name)["video"] == 50


async def test_cleanup_at_the_end(tmp_path):
    directory = tmp_path / "live"
    sink = HlsSink(directory, segment_seconds=2, list_size=3, audio="drop")
    sink.start()
    await feed(sink, looped(sample_frames(), 2), 25)
    await sink.wait_ready(timeout=30)
    assert sink.playlist.is_file()
    sink.on_end("bye")
    await sink.wait_closed()
    assert sink.error is None and sink.end_reason == "bye"
    assert not directory.exists()                   # created by the sink, removed at the end
    assert running_output_threads() == []


async def test_cleanup_keeps_a_directory_it_did_not_create(tmp_path):
    directory = tmp_path / "mine"
    directory.mkdir()
    (directory / "notes.txt").write_text("kept")
    sink = HlsSink(directory, segment_seconds=2)
    sink.start()
    await feed(sink, looped(sample_frames(), 2), 25)
    sink.stop()
    await sink.wait_closed()
    assert sorted(p.name for p in directory.iterdir()) == ["notes.txt"]


async def test_window_on_disk_is_bounded(tmp_path):
    frames = looped(sample_frames(), 4)
    sink = HlsSink(tmp_path / "w", segment_seconds=2, list_size=3, cleanup=False, audio="drop")
    sink.start()
    await feed(sink, frames, 25)
    sink.stop()
    await sink.wait_closed()
    segments = playlist_segments(sink.playlist.read_text())
    assert len(segments) == 3
    on_disk = sorted(p.name for p in sink.directory.glob("seg*.ts"))
    # Deleted behind the window (libavformat keeps one extra for clients still downloading).
    assert len(on_disk) <= 3 + 1
    assert {n for _, n in segments} <= set(on_disk)
    assert count_frames(sink.playlist)["audio"] == 0      # audio="drop"


async def test_serving_paths(tmp_path):
    sink = HlsSink(tmp_path / "s", segment_seconds=2, cleanup=False)
    sink.start()
    await feed(sink, looped(sample_frames(), 2))
    await sink.wait_ready(timeout=30)
    sink.stop()
    await sink.wait_closed()
    name = playlist_segments(sink.playlist.read_text())[0][1]
    assert sink.segment_path(name) == sink.directory / name
    for bad in ("../index.m3u8", "index.m3u8", ".hidden.ts", "x/seg000001.ts", "seg999999.ts"):
        assert sink.segment_path(bad) is None


async def test_no_keyframe_times_out_clearly(tmp_path):
    sink = HlsSink(tmp_path / "nokey")
    sink.start()
    frames = [f for f in sample_frames() if not f.keyframe or f.codec == "g711a"]
    sink.on_frames(frames)
    with pytest.raises(OutputError, match="no HLS segment within"):
        await sink.wait_ready(timeout=0.5)
    sink.stop()
    await sink.wait_closed()
    assert sink.status()["video_frames"] == 0
    assert not (tmp_path / "nokey").exists()


async def test_end_before_first_segment(tmp_path):
    sink = HlsSink(tmp_path / "early")
    sink.start()
    sink.on_frames(sample_frames()[:5])
    sink.on_end("device bye")
    with pytest.raises(OutputError, match="ended before its first segment"):
        await sink.wait_ready(timeout=10)
    await sink.wait_closed()
    assert sink.end_reason == "device bye"


async def test_unsupported_video_codec_is_an_error_not_a_crash(tmp_path):
    from media import Frame
    sink = HlsSink(tmp_path / "svac")
    sink.start()
    sink.on_frames([Frame("svac", 3600, 3600, True, b"\x00\x00\x00\x01\x1c\x00" + bytes(40), 0xE0)])
    sink.on_frames([Frame("svac", 7200, 7200, False, b"\x00\x00\x00\x01\x04\x00" + bytes(40), 0xE0)])
    await sink.wait_closed()      # the thread ends by itself on the error
    assert isinstance(sink.error, OutputError)
    assert "not supported" in str(sink.error)
    assert not sink.running


@pytest.mark.parametrize("kwargs", [dict(segment_seconds=0), dict(list_size=0),
                                    dict(segment_type="webm"), dict(audio="g711")])
def test_bad_options(tmp_path, kwargs):
    with pytest.raises(OutputError):
        HlsSink(tmp_path / "x", **kwargs)


async def test_unwritable_directory(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    sink = HlsSink(blocker / "hls")
    with pytest.raises(OutputError, match="cannot create HLS directory"):
        sink.start()
