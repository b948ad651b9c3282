"""Playback and download over real sockets: REST start, FLV viewing, MANSRTSP control, end of file."""

from __future__ import annotations

import asyncio
import time

import aiohttp

from sip28181.device.media import MediaOptions
from sip28181.platform.events import StreamStopped

from .conftest import TOKEN, wait_for
from .livekit import CHANNEL, DEVICE, auth, base, camera, decode, media_server, read_flv

PATTERN_FRAMES = 50          # the simulator's pattern: 2 s at 25 fps, one pass per recording


def window(length: int = 600) -> tuple[int, int]:
    start = int(time.time()) - 3600
    return start, start + length


async def start(http, server, path="playback", **body):
    payload = {"device_id": DEVICE, "channel_id": CHANNEL, **body}
    async with http.post(f"{base(server)}/api/v1/{path}", headers=auth(), json=payload) as r:
        return r.status, await r.json()


async def control(http, server, stream_id, **body):
    async with http.post(f"{base(server)}/api/v1/streams/{stream_id}/control", headers=auth(),
                         json=body) as r:
        return r.status, await r.json()


async def test_playback_to_the_end_of_file_decodes_every_frame(tmp_path):
    async with media_server(tmp_path) as server, camera(server) as device, \
            aiohttp.ClientSession() as http:
        events = []
        server.platform.events.on(events.append, StreamStopped)
        s, e = window()
        status, out = await start(http, server, start=s, end=e)
        assert status == 200, out
        assert out["kind"] == "Playback" and out["start"] == s and out["end"] == e
        assert out["stream_id"] == f"{DEVICE}_{CHANNEL}_playback_{s}_{e}"
        assert out["ssrc"][0] == "1"                          # history SSRC (§8.3)
        ds = device.media.stream()
        assert ds.kind == "Playback" and (ds.offer.start, ds.offer.stop) == (s, e)
        async with http.get(out["urls"]["flv"], params={"token": TOKEN}) as resp:
            assert resp.status == 200
            tags = await read_flv(resp, timeout=20)           # until the stream ends
        # the device reached the end of the recording: MediaStatus 121, then BYE
        assert ds.media_status_sent
        assert events[-1].reason == "end of file" and events[-1].kind == "Playback"
        assert len(tags.video_frames) == PATTERN_FRAMES
        pictures, key_first = decode(tags.data)
        assert pictures == PATTERN_FRAMES and key_first
        await wait_for(lambda: len(server.platform.streams) == 0)
        assert len(server.platform.sessions) == 0


async def test_pause_resume_seek_and_scale(tmp_path):
    options = MediaOptions(history_seconds=60)                # a long recording
    async with media_server(tmp_path, media_linger=5.0) as server, camera(server, options) as device, \
            aiohttp.ClientSession() as http:
        s, e = window()
        status, out = await start(http, server, start=s, end=e, transport="tcp-passive")
        assert status == 200 and out["transport"] == "tcp-passive"
        sid = out["stream_id"]
        ds = device.media.stream()
        async with http.get(out["urls"]["flv"], params={"token": TOKEN}) as resp:
            tags = await read_flv(resp, frames=10)

            status, body = await control(http, server, sid, action="pause")
            assert status == 200 and body["stream_id"] == sid
            assert ds.paused and ds.controls[-1].method.value == "PAUSE"
            await asyncio.sleep(0.3)
            sent = ds.frames_sent
            await asyncio.sleep(0.5)
            assert ds.frames_sent == sent                         # nothing flows while paused

            status, _ = await control(http, server, sid, action="resume")
            assert status == 200 and not ds.paused
            await wait_for(lambda: ds.frames_sent > sent + 5)

            status, _ = await control(http, server, sid, action="scale", scale=2.0)
            assert status == 200 and ds.scale == 2.0
            assert ds.controls[-1].scale == 2.0

            status, _ = await control(http, server, sid, action="seek", position=30)
            assert status == 200
            assert ds.controls[-1].range_start == 30
            # after the seek the device sends from the keyframe at 30 s: timestamps jump ahead
            await read_flv(resp, frames=len(tags.video_frames) + 40, tags=tags)
            video_ts = [ts for kind, ts, body in tags.tags if kind == 9 and body[1:2] == b"\x01"]
            assert max(video_ts) - min(video_ts) >= 25_000         # ms of media time: the seek
        # all of it still decodes from the first keyframe
        pictures, key_first = decode(tags.data)
        assert key_first and pictures >= len(tags.video_frames) - 1

        status, body = await control(http, server, sid, action="seek")
        assert status == 422                                      # seek without a position
        status, body = await control(http, server, sid, action="scale", scale=0)
        assert status == 422
        async with http.delete(f"{base(server)}/api/v1/streams/{sid}", headers=auth()) as r:
            assert r.status == 200
        assert await asyncio.wait_for(ds.ended, 5) == "bye received"


async def test_live_streams_cannot_be_controlled(tmp_path):
    async with media_server(tmp_path, media_linger=5.0) as server, camera(server), \
            aiohttp.ClientSession() as http:
        async with http.post(f"{base(server)}/api/v1/live/{DEVICE}/{CHANNEL}", headers=auth()) as r:
            assert r.status == 200
            sid = (await r.json())["stream_id"]
        status, body = await control(http, server, sid, action="pause")
        assert status == 409 and "live" in body["error"]["message"]


async def test_download_with_speed(tmp_path):
    async with media_server(tmp_path) as server, camera(server) as device, \
            aiohttp.ClientSession() as http:
        s, e = window(10)
        status, out = await start(http, server, "download", start=s, end=e, speed=4,
                                  transport="tcp-active")
        assert status == 200, out
        assert out["kind"] == "Download" and out["speed"] == 4 and out["transport"] == "tcp-active"
        ds = device.media.stream()
        assert ds.kind == "Download" and ds.download_speed == 4
        async with http.get(out["urls"]["ws_flv"], params={"token": TOKEN}) as resp:
            # a plain GET on the WS URL is refused; the FLV URL serves it
            assert resp.status == 400
        async with http.get(out["urls"]["flv"], params={"token": TOKEN}) as resp:
            tags = await read_flv(resp, timeout=20)
        assert len(tags.video_frames) == PATTERN_FRAMES and decode(tags.data) == (PATTERN_FRAMES, True)


async def test_history_request_validation(tmp_path):
    async with media_server(tmp_path) as server, camera(server), aiohttp.ClientSession() as http:
        s, e = window()
        status, body = await start(http, server, start=e, end=s)
        assert status == 422 and "start must be before end" in str(body["error"]["detail"])
        status, body = await start(http, server, start="yesterday", end=e)
        assert status == 422
        status, body = await start(http, server, "download", start=s, end=e, speed=0)
        assert status == 422
        status, body = await start(http, server, device_id="3402", start=s, end=e)
        assert status == 422
        status, body = await start(http, server, device_id="34020000001320000077", start=s, end=e)
        assert status == 404
        # ISO 8601 local times are accepted like the RecordInfo times they come from
        iso_start = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(s))
        iso_end = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(e))
        status, body = await start(http, server, start=iso_start, end=iso_end)
        assert status == 200 and (body["start"], body["end"]) == (s, e)
        async with http.post(f"{base(server)}/api/v1/playback", headers=auth(), data=b"{") as r:
            assert r.status == 400
