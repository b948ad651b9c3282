"""RTMP push against a real nginx-rtmp server on loopback, read back with PyAV and ffprobe."""

from __future__ import annotations

import asyncio
import threading

import av
import pytest

from media.outputs import OutputError
from media.outputs.rtmp import RtmpPushSink, RtmpState, check_rtmp_url
from outputs_support import (NginxRtmp, batches, count_frames, free_port, looped, nginx,  # noqa: F401
                             running_output_threads, sample_frames)



async def wait_until(predicate, timeout=20.0, what="condition"):
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


class Feeder:
    """Feeds a looped sample to a sink, a little faster than real time, until stopped."""

    def __init__(self, sink, frames) -> None:
        self.sink = sink
        self.frames = frames
        self.task = asyncio.ensure_future(self._run())

    async def _run(self) -> None:
        loop = 0
        while True:
            for batch in batches(looped(self.frames, 1, start=loop), 10):
                self.sink.on_frames(batch)
                await asyncio.sleep(0.05)
            loop += 1

    async def stop(self) -> None:
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)


def play(url: str, result: dict) -> None:
    """Play ``url`` from nginx until the publisher goes (read timeout), counting frames."""
    counts = {"video": 0, "audio": 0}
    try:
        with av.open(url, timeout=(20, 3)) as container:
            result["codecs"] = sorted(s.codec_context.name for s in container.streams)
            try:
                for frame in container.decode(*container.streams):
                    counts["video" if isinstance(frame, av.VideoFrame) else "audio"] += 1
            except (av.error.FFmpegError, OSError) as exc:   # the read timeout after unpublish
                result["end"] = repr(exc)
    except (av.error.FFmpegError, OSError) as exc:
        result["error"] = repr(exc)
    result["counts"] = counts


async def test_push_is_received_and_played_back(nginx):
    url = nginx.url("cam1")
    played: dict = {}
    player = threading.Thread(target=play, args=(url, played))
    player.start()                      # nginx holds the player until the publish starts
    await asyncio.sleep(0.5)
    sink = RtmpPushSink(url)
    sink.start()
    frames = sample_frames()
    for batch in batches(frames):
        sink.on_frames(batch)
        await asyncio.sleep(0.01)
    await wait_until(lambda: sink.frames_sent >= len(frames) - 1, what="all frames sent")
    status = sink.status()
    assert status["state"] == "streaming" and status["connects"] == 1 and status["failures"] == 0
    assert status["bytes_sent"] > 0
    sink.stop()
    await sink.wait_closed()
    assert sink.state is RtmpState.STOPPED and sink.error is None
    await asyncio.to_thread(player.join, 30)
    assert not player.is_alive()
    # What nginx recorded: every video frame, the audio as AAC.
    record = nginx.record("cam1")
    await wait_until(lambda: record.is_file() and record.stat().st_size > 0, what="record file")
    counts = count_frames(record)
    assert counts["video"] == 150
    assert counts["audio"] == pytest.approx(149 * 320 / 1024, abs=1)
    # What a player got live from nginx.
    assert "error" not in played, played
    assert played["codecs"] == ["aac", "h264"]
    assert played["counts"]["video"] == 150
    assert running_output_threads() == []


async def test_video_only_push(nginx):
    sink = RtmpPushSink(nginx.url("novoice"), audio="drop")
    sink.start()
    for batch in batches(sample_frames()):
        sink.on_frames(batch)
    sink.stop()
    await sink.wait_closed()
    assert sink.error is None and sink.connects == 1
    await wait_until(lambda: nginx.record("novoice").is_file(), what="record file")
    await asyncio.sleep(0.2)
    counts = count_frames(nginx.record("novoice"))
    assert counts == {"video": 150, "audio": 0}


async def test_reconnects_with_backoff_when_the_server_comes_and_goes(tmp_path):
    server = NginxRtmp(tmp_path / "nginx", port=free_port())
    sink = RtmpPushSink(server.url("flaky"), backoff_initial=0.05, backoff_max=0.4)
    sink.start()
    feeder = Feeder(sink, sample_frames())
    try:
        # No server yet: refused, retried with growing delays.
        await wait_until(lambda: sink.failures >= 3, what="failed attempts")
        status = sink.status()
        assert status["state"] in ("reconnecting", "connecting")
        assert "refused" in status["last_error"].lower()
        assert status["connects"] == 0
        server.start()
        await wait_until(lambda: sink.state is RtmpState.STREAMING, what="streaming")
        await wait_until(lambda: sink.frames_sent > 100, what="frames sent")
        assert sink.connects == 1 and sink.last_error is None
        # The server goes away while streaming: detected, retried, resumed once it is back.
        failures = sink.failures
        server.stop()
        await wait_until(lambda: sink.failures > failures, what="the broken connection noticed")
        assert sink.state in (RtmpState.RECONNECTING, RtmpState.CONNECTING)
        server.start()
        await wait_until(lambda: sink.connects == 2 and sink.state is RtmpState.STREAMING,
                         what="second publish")
        sent = sink.frames_sent
        await wait_until(lambda: sink.frames_sent > sent + 50, what="frames after reconnecting")
    finally:
        await feeder.stop()
        sink.stop()
        await sink.wait_closed()
        server.stop()
    assert sink.state is RtmpState.STOPPED
    # The second publish starts on a keyframe and decodes.
    counts = count_frames(server.record("flaky"))
    assert counts["video"] > 0
    assert running_output_threads() == []


async def test_gives_up_after_max_retries():
    sink = RtmpPushSink(f"rtmp://127.0.0.1:{free_port()}/live/x", backoff_initial=0.01,
                        backoff_max=0.02, max_retries=2)
    sink.start()
    feeder = Feeder(sink, sample_frames())
    try:
        await asyncio.wait_for(sink.wait_closed(), 20)
    finally:
        await feeder.stop()
    assert sink.state is RtmpState.FAILED
    assert sink.failures == 3
    assert isinstance(sink.error, OutputError) and "failed 3 times" in str(sink.error)
    assert sink.status()["state"] == "failed"


async def test_stop_while_waiting_to_reconnect_is_prompt():
    sink = RtmpPushSink(f"rtmp://127.0.0.1:{free_port()}/live/x", backoff_initial=30,
                        backoff_max=60)
    sink.start()
    sink.on_frames(sample_frames()[:60])
    await wait_until(lambda: sink.state is RtmpState.RECONNECTING, what="backoff")
    assert sink.status()["retry_in"] > 1
    sink.stop()
    await asyncio.wait_for(sink.wait_closed(), 5)      # not after the 30 s backoff
    assert sink.state is RtmpState.STOPPED


@pytest.mark.parametrize("url, message", [
    ("", "empty"),
    ("http://127.0.0.1/live/x", "must start with rtmp"),
    ("rtmp:///live/x", "no host"),
    ("rtmp://127.0.0.1", "application and a stream"),
    ("rtmp://127.0.0.1/live", "application and a stream"),
    ("rtmp://127.0.0.1:99999/live/x", "malformed"),
    ("rtmp://127.0.0.1:0/live/x", "port 0"),
    ("rtmp://127.0.0.1/live/x y", "white space"),
    ("rtmp://127.0.0.1/live/x\r\n", "white space"),
])
def test_bad_urls(url, message):
    with pytest.raises(OutputError, match=message):
        check_rtmp_url(url)
    with pytest.raises(OutputError, match=message):
        RtmpPushSink(url)


def test_display_url_hides_credentials_and_keys():
    sink = RtmpPushSink("rtmp://user:secret@127.0.0.1:1935/live/cam?key=abc")
    assert sink.display_url == "rtmp://127.0.0.1:1935/live/cam"
    assert check_rtmp_url("rtmps://127.0.0.1/app/stream") == "rtmps://127.0.0.1/app/stream"


def test_bad_options():
    with pytest.raises(OutputError):
        RtmpPushSink("rtmp://127.0.0.1/live/x", audio="opus")
    with pytest.raises(OutputError):
        RtmpPushSink("rtmp://127.0.0.1/live/x", backoff_initial=0)
