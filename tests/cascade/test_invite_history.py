"""Playback and download requested by the upper: t=, u= and a=downloadspeed down the chain, INFO
(MANSRTSP) applied to the camera's session, MediaStatus 121 relayed up in the upper's dialog."""

from __future__ import annotations

import asyncio
import time

import aiohttp
import pytest
from lxml import etree

from sip28181.device.media import MediaOptions
from sip28181.platform.events import StreamStopped

from ..integration.conftest import TOKEN, wait_for
from ..integration.livekit import decode, read_flv
from .test_invite import CHANNEL, CITY, DEVICE, chain, upper_calls

PATTERN_FRAMES = 50          # the simulator's pattern: 2 s at 25 fps, one pass per recording


def window(length: int = 600) -> tuple[int, int]:
    start = int(time.time()) - 3600
    return start, start + length


def api(server) -> str:
    return f"http://127.0.0.1:{server.http_port}/api/v1"


AUTH = {"Authorization": f"Bearer {TOKEN}"}


async def start(http, province, path="playback", **body):
    payload = {"device_id": CITY, "channel_id": CHANNEL, **body}
    async with http.post(f"{api(province)}/{path}", headers=AUTH, json=payload) as r:
        return r.status, await r.json()


async def control(http, province, stream_id, **body):
    async with http.post(f"{api(province)}/streams/{stream_id}/control", headers=AUTH, json=body) as r:
        return r.status, await r.json()


@pytest.mark.parametrize("transport", ["udp", "tcp-active"])
async def test_playback_to_the_end_relays_media_status_121(tmp_path, transport):
    async with chain(tmp_path) as (province, city, camera), aiohttp.ClientSession() as http:
        stopped = []
        province.platform.events.on(stopped.append, StreamStopped)
        # what reaches the province's SIP stack, before any lenient parsing
        received = []
        handlers = province.platform.request_handlers
        next_message = handlers["MESSAGE"]

        def on_message(request, flow):
            received.append(request.body)
            next_message(request, flow)
        handlers["MESSAGE"] = on_message
        s, e = window()
        status, out = await start(http, province, start=s, end=e, transport=transport)
        assert status == 200, out
        # the range went down the chain: the city asked the camera for the same recording
        ds = camera.media.stream()
        assert ds.kind == "Playback" and (ds.offer.start, ds.offer.stop) == (s, e)
        assert ds.offer.uri == f"{CHANNEL}:0"
        call = upper_calls(city)[0]
        assert call.kind.value == "Playback" and (call.start, call.end) == (s, e)
        assert call.ssrc == out["ssrc"] and call.ssrc[0] == "1"
        async with http.get(out["urls"]["flv"], params={"token": TOKEN}) as resp:
            assert resp.status == 200
            tags = await read_flv(resp, timeout=20)           # until the stream ends
        # the camera reached the end: MediaStatus 121 to the city, the city sent one to the province
        # in the province's dialog, which ended its stream for that reason (not for a BYE)
        assert ds.media_status_sent and call.media_status_sent
        # a well-formed document for any strict parser (dom4j at WVP): one declaration
        statuses = [b for b in received if b"MediaStatus" in b]
        assert len(statuses) == 1
        root = etree.fromstring(statuses[0], etree.XMLParser(recover=False))
        assert root.tag == "Notify" and root.findtext("CmdType") == "MediaStatus"
        assert root.findtext("NotifyType") == "121" and root.findtext("DeviceID") == CHANNEL
        assert int(root.findtext("SN")) > 0
        await wait_for(lambda: stopped)
        assert stopped[-1].reason == "end of file" and stopped[-1].device_id == CITY
        assert await asyncio.wait_for(call.closed, 5) == "upper bye"
        assert len(tags.video_frames) >= PATTERN_FRAMES - 1
        pictures, key_first = decode(tags.data)
        assert key_first and pictures >= PATTERN_FRAMES - 2
        await wait_for(lambda: len(city.platform.streams) == 0 and len(province.platform.streams) == 0)
        assert len(city.platform.sessions) == 0 and len(province.platform.sessions) == 0


async def test_pause_resume_scale_and_seek_reach_the_camera(tmp_path):
    options = MediaOptions(history_seconds=60)                # a long recording
    async with chain(tmp_path, options=options) as (province, city, camera), aiohttp.ClientSession() as http:
        s, e = window()
        status, out = await start(http, province, start=s, end=e, transport="tcp-passive")
        assert status == 200, out
        sid = out["stream_id"]
        ds = camera.media.stream()
        async with http.get(out["urls"]["flv"], params={"token": TOKEN}) as resp:
            tags = await read_flv(resp, frames=10)
            status, _ = await control(http, province, sid, action="pause")
            assert status == 200
            assert ds.paused and ds.controls[-1].method.value == "PAUSE"
            await asyncio.sleep(0.3)
            sent = ds.frames_sent
            await asyncio.sleep(0.5)
            assert ds.frames_sent == sent                     # nothing flows while paused

            status, _ = await control(http, province, sid, action="resume")
            assert status == 200 and not ds.paused
            await wait_for(lambda: ds.frames_sent > sent + 5)

            status, _ = await control(http, province, sid, action="scale", scale=2.0)
            assert status == 200 and ds.scale == 2.0

            status, _ = await control(http, province, sid, action="seek", position=30)
            assert status == 200 and ds.controls[-1].range_start == 30
            await read_flv(resp, frames=len(tags.video_frames) + 40, tags=tags)
            video_ts = [ts for kind, ts, body in tags.tags if kind == 9 and body[1:2] == b"\x01"]
            assert max(video_ts) - min(video_ts) >= 25_000     # ms of media time: the seek
        pictures, key_first = decode(tags.data)
        assert key_first and pictures >= len(tags.video_frames) - 1
        assert [c.method.value for c in ds.controls] == ["PAUSE", "PLAY", "PLAY", "PLAY"]


async def test_download_with_speed(tmp_path):
    async with chain(tmp_path) as (province, city, camera), aiohttp.ClientSession() as http:
        s, e = window(10)
        status, out = await start(http, province, "download", start=s, end=e, speed=4, transport="tcp-active")
        assert status == 200, out
        ds = camera.media.stream()
        assert ds.kind == "Download" and ds.download_speed == 4
        call = upper_calls(city)[0]
        assert call.kind.value == "Download" and call.speed == 4
        # the city's answer carries the file size the camera announced (a=filesize), for progress
        device_size = city.platform.sessions.list()[0].filesize
        assert device_size and province.platform.sessions.list()[0].filesize == device_size
        async with http.get(out["urls"]["flv"], params={"token": TOKEN}) as resp:
            tags = await read_flv(resp, timeout=20)
        assert len(tags.video_frames) >= PATTERN_FRAMES - 1
        assert decode(tags.data)[1]
        await wait_for(lambda: len(province.platform.sessions) == 0)


async def test_the_upper_s_pause_leaves_a_local_viewer_of_the_same_recording_alone(tmp_path):
    options = MediaOptions(history_seconds=60)
    async with chain(tmp_path, options=options) as (province, city, camera), aiohttp.ClientSession() as http:
        s, e = window()
        # the city's own viewer of the recording
        async with http.post(f"{api(city)}/playback", headers=AUTH,
                             json={"device_id": DEVICE, "channel_id": CHANNEL, "start": s, "end": e}) as r:
            assert r.status == 200
            local = await r.json()
        async with http.get(local["urls"]["flv"], params={"token": TOKEN}) as local_view:
            local_tags = await read_flv(local_view, frames=5)
            mine = camera.media.stream()
            # the province plays the same recording: a device session of its own
            status, out = await start(http, province, start=s, end=e, transport="udp")
            assert status == 200, out
            assert len(camera.media.streams) == 2
            theirs = camera.media.stream()
            assert theirs is not mine
            async with http.get(out["urls"]["flv"], params={"token": TOKEN}) as resp:
                await read_flv(resp, frames=5)
                status, _ = await control(http, province, out["stream_id"], action="pause")
                assert status == 200
                assert theirs.paused and not mine.paused and not mine.controls
                # the local viewer goes on
                await read_flv(local_view, frames=len(local_tags.video_frames) + 10, tags=local_tags)
