"""RTMP push and MP4 recording over the server: simulator → server → nginx-rtmp / MP4, read back."""

from __future__ import annotations

import sys
from pathlib import Path

import aiohttp
import pytest

from sip28181.device.media import MediaOptions
from sip28181.server import Server

from .conftest import Api, wait_for
from .livekit import CHANNEL, DEVICE, camera

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "media"))
from outputs_support import NginxRtmp, count_frames, ffprobe, free_port, nginx  # noqa: E402,F401

PS_FILE = "tests/data/ps/libmpeg_h264_g711a.ps"
UNKNOWN = "34020000001320000999"
PUSH = f"/api/v1/devices/{DEVICE}/channels/{CHANNEL}/push"
RECORD = f"/api/v1/devices/{DEVICE}/channels/{CHANNEL}/record"


@pytest.fixture
async def env(config_factory):
    server = Server(config_factory(media_linger=0.5, media_port_min=31100, media_port_max=31199))
    await server.start()
    try:
        async with camera(server, MediaOptions(source=PS_FILE)) as device, \
                aiohttp.ClientSession() as session:
            yield server, device, Api(session, f"http://127.0.0.1:{server.http_port}")
    finally:
        await server.stop()



async def test_push_to_nginx_and_stop(env, nginx):
    server, device, api = env
    status, push = await api.call("POST", PUSH, json={"url": nginx.url("cam1")})
    assert status == 201, push
    assert push["state"] in ("connecting", "streaming") and push["push_id"]

    async def streaming():
        _, items = await api.get(PUSH)
        return items and items[0]["state"] == "streaming" and items[0]["video_frames_sent"] > 75
    await wait_for(streaming, timeout=30, interval=0.2)
    status, streams = await api.get("/api/v1/streams")
    assert "rtmp" in [o["kind"] for o in streams[0]["outputs"]]
    status, again = await api.call("POST", PUSH, json={"url": nginx.url("cam1")})
    assert status == 409
    status, stopped = await api.call("DELETE", PUSH)
    assert status == 200
    (item,) = stopped
    assert item["state"] == "stopped" and item["end_reason"] == "api" and item["connects"] == 1
    # The push released its hold: the stream lingers, then ends.
    await wait_for(lambda: len(server.platform.streams) == 0, timeout=15)
    status, listed = await api.get("/api/v1/pushes", params={"running": "false"})
    assert [p["push_id"] for p in listed] == [push["push_id"]]
    # What nginx recorded decodes, with AAC audio.
    record = nginx.record("cam1")
    await wait_for(lambda: record.is_file() and record.stat().st_size > 0, timeout=10)
    counts = count_frames(record)
    assert counts["video"] == item["video_frames_sent"] and counts["audio"] > 0


async def test_push_waits_for_a_server_and_ends_with_the_stream(env, tmp_path):
    server, device, api = env
    rtmp = NginxRtmp(tmp_path / "later", port=free_port())
    status, push = await api.call("POST", PUSH, json={"url": rtmp.url("late"), "audio": "drop"})
    assert status == 201
    async def state(expected):
        _, items = await api.get("/api/v1/pushes")
        return items and items[0]["state"] == expected and items[0]
    item = await wait_for(lambda: state("reconnecting"), timeout=15)
    assert "refused" in item["last_error"].lower()
    rtmp.start()
    try:
        await wait_for(lambda: state("streaming"), timeout=30, interval=0.2)
        # The stream ends (API stop): the push ends with it.
        status, _ = await api.call("DELETE", f"/api/v1/streams/{DEVICE}_{CHANNEL}")
        assert status == 200
        item = await wait_for(lambda: state("stopped"), timeout=15)
        assert item["end_reason"] == "api"          # the stream's end reason reaches the push
        assert len(server.platform.streams) == 0
    finally:
        rtmp.stop()
    assert count_frames(rtmp.record("late"))["video"] > 0


@pytest.mark.parametrize("body, status", [
    ({"url": "http://127.0.0.1/live/x"}, 400),
    ({"url": "rtmp://127.0.0.1/onlyapp"}, 400),
    ({"url": "rtmp://127.0.0.1:0/live/x"}, 400),
    ({"url": 5}, 422),
    ({"url": "rtmp://127.0.0.1/live/x", "audio": "opus"}, 422),
    ({}, 422),
])
async def test_push_bad_requests(env, body, status):
    server, device, api = env
    got, answer = await api.call("POST", PUSH, json=body)
    assert got == status, answer
    assert answer["error"]["status"] == status
    assert len(server.platform.streams) == 0          # nothing started for a bad request


async def test_push_errors(env):
    server, device, api = env
    got, _ = await api.call("POST", f"/api/v1/devices/{UNKNOWN}/channels/{CHANNEL}/push",
                            json={"url": "rtmp://127.0.0.1/live/x"})
    assert got == 404
    got, _ = await api.call("DELETE", PUSH)
    assert got == 404
    got, _ = await api.call("POST", PUSH, data=b"{not json")
    assert got == 400


async def test_record_over_the_api(env):
    server, device, api = env
    status, rec = await api.call("POST", RECORD, json={})
    assert status == 201, rec
    assert rec["running"] is True
    status, again = await api.call("POST", RECORD, json={})
    assert status == 409

    async def recorded():
        _, items = await api.get(RECORD)
        files = items[0]["files"]
        return files and files[-1]["video_frames"] >= 125 and items[0]
    await wait_for(recorded, timeout=30, interval=0.2)
    status, done = await api.call("DELETE", RECORD)
    assert status == 200, done
    assert done["running"] is False and done["end_reason"] == "api"
    (f,) = done["files"]
    assert f["complete"] is True
    path = Path(f["path"])
    assert path.parent == server.config.data_dir / "records" / f"{DEVICE}_{CHANNEL}"
    probe = ffprobe(path)
    video = next(s for s in probe["streams"] if s["codec_type"] == "video")
    assert int(video["nb_read_frames"]) == f["video_frames"]
    assert float(video["duration"]) == pytest.approx(f["duration"] + 0.04, abs=0.1)
    assert {s["codec_name"] for s in probe["streams"]} == {"h264", "aac"}
    status, listed = await api.get("/api/v1/records")
    assert [r["record_id"] for r in listed] == [rec["record_id"]]
    got, _ = await api.call("DELETE", RECORD)
    assert got == 404


@pytest.mark.parametrize("body", [{"segment_seconds": 1}, {"audio": "mp3"}, {"transport": "x"}])
async def test_record_bad_requests(env, body):
    server, device, api = env
    got, answer = await api.call("POST", RECORD, json=body)
    assert got == 422, answer
    assert len(server.platform.streams) == 0


async def test_server_stop_finishes_a_recording(config_factory, tmp_path):
    server = Server(config_factory(media_linger=0.5, media_port_min=31200, media_port_max=31299))
    await server.start()
    try:
        async with camera(server, MediaOptions(source=PS_FILE)):
            rec = await server.platform.outputs.start_record(DEVICE, CHANNEL)
            await wait_for(lambda: rec.sink.current is not None and rec.sink.current.video_frames > 60,
                           timeout=30)
            await server.stop()             # outputs closed first: the file is completed
    finally:
        await server.stop()
    (f,) = rec.sink.files
    assert f.complete and rec.end_reason == "shutdown"
    assert count_frames(f.path)["video"] == f.video_frames
