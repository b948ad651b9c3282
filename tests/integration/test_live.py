"""Live on demand over real sockets: simulator → SIP INVITE → RTP → relay → HTTP-FLV / WS-FLV.

Every test runs a server with media ports on loopback and a simulated camera that streams a
generated pattern (H.264 320x240 25 fps, keyframe every second, G.711 A-law) as PS over RTP.
"""

from __future__ import annotations

import asyncio

import aiohttp
import pytest

from sip28181.device.media import MediaOptions
from sip28181.platform.events import StreamStarted, StreamStopped

from .conftest import wait_for
from .livekit import (CHANNEL, DEVICE, auth, base, camera, decode, live_url, media_server,
                      read_flv)


def device_stream(device, call_id=None):
    return device.media.stream(call_id)


@pytest.mark.parametrize("transport", ["udp", "tcp-passive", "tcp-active"])
async def test_live_flv_on_demand_over_each_transport(tmp_path, transport):
    async with media_server(tmp_path) as server, camera(server) as device, \
            aiohttp.ClientSession() as http:
        events = []
        server.platform.events.on(events.append, StreamStarted, StreamStopped)
        async with http.get(live_url(server, transport=transport)) as resp:
            assert resp.status == 200 and resp.headers["Content-Type"] == "video/x-flv"
            tags = await read_flv(resp, frames=40)
            # the device got one INVITE with the transport asked for, and streams to us
            assert device.media.invites_received == 1
            ds = device_stream(device)
            assert ds.transport == transport and ds.kind == "Play"
            async with http.get(base(server) + "/api/v1/streams", headers=auth()) as r:
                streams = await r.json()
            assert len(streams) == 1
            s = streams[0]
            assert s["stream_id"] == f"{DEVICE}_{CHANNEL}" and s["transport"] == transport
            assert s["state"] == "live" and s["viewers"] == 1 and s["outputs"][0]["kind"] == "flv"
            assert s["packets"] > 0 and s["bytes_received"] > 0 and s["video_codec"] == "h264"
            assert s["received_rate"] > 0.99 and s["lost"] == 0
            assert s["urls"]["flv"].endswith(f"/live/{DEVICE}/{CHANNEL}.flv")
            assert s["urls"]["ws_flv"].startswith("ws://")
        # what the viewer got decodes: every coded frame a picture, starting on a keyframe
        frames = len(tags.video_frames)
        assert frames >= 40 and tags.audio_frames > 0
        pictures, key_first = decode(tags.data)
        assert key_first and pictures >= frames - 1        # the last tag may be cut by the close
        # the viewer left: after the linger the device gets a BYE and everything is released
        stream = server.platform.streams
        await wait_for(lambda: len(stream) == 0, timeout=5)
        assert await asyncio.wait_for(ds.ended, 5) == "bye received"
        assert len(server.platform.sessions) == 0 and len(server.platform.sessions.ssrcs) == 0
        await wait_for(lambda: not stream.ingest.streams)
        assert [type(e).__name__ for e in events] == ["StreamStarted", "StreamStopped"]
        assert events[1].reason == "no viewers" and events[0].kind == "Play"


async def test_two_viewers_share_one_invite_and_identical_bytes(tmp_path):
    async with media_server(tmp_path) as server, camera(server) as device, \
            aiohttp.ClientSession() as http:
        r1, r2 = await asyncio.gather(http.get(live_url(server)), http.get(live_url(server)))
        try:
            assert r1.status == r2.status == 200
            t1, t2 = await asyncio.gather(read_flv(r1, frames=30), read_flv(r2, frames=30))
            assert device.media.invites_received == 1
            assert len(server.platform.sessions) == 1
            streams = server.platform.streams.list()
            assert len(streams) == 1 and streams[0].viewers == 2 and streams[0].relay.flv_viewers == 2
            # both decode from a keyframe
            assert decode(t1.data)[1] and decode(t2.data)[1]
            # a third viewer joining later gets the same stream, still no new INVITE
            async with http.get(live_url(server)) as r3:
                t3 = await read_flv(r3, frames=5)
                assert decode(t3.data)[1]
            assert device.media.invites_received == 1
        finally:
            r1.close()
            await wait_for(lambda: server.platform.streams.list()[0].viewers == 1)
            ds = device_stream(device)
            await asyncio.sleep(0.8)                   # longer than the linger: one viewer remains
            assert not ds.ended.done()
            r2.close()
        await wait_for(lambda: len(server.platform.streams) == 0, timeout=5)
        assert await asyncio.wait_for(ds.ended, 5) == "bye received"


async def test_viewer_returning_within_the_linger_keeps_the_session(tmp_path):
    async with media_server(tmp_path, media_linger=1.5) as server, camera(server) as device, \
            aiohttp.ClientSession() as http:
        async with http.get(live_url(server)) as resp:
            await read_flv(resp, frames=5)
        await asyncio.sleep(0.3)
        assert len(server.platform.streams) == 1       # lingering
        async with http.get(live_url(server)) as resp:
            tags = await read_flv(resp, frames=5)
            assert decode(tags.data)[1]                # the GOP cache: starts on a keyframe at once
        assert device.media.invites_received == 1
        ds = device_stream(device)
        assert await asyncio.wait_for(ds.ended, 6) == "bye received"
        assert len(server.platform.streams) == 0


async def test_silent_device_closes_its_viewers(tmp_path):
    async with media_server(tmp_path, media_no_media_timeout=0.8) as server, camera(server) as device, \
            aiohttp.ClientSession() as http:
        events = []
        server.platform.events.on(events.append, StreamStopped)
        async with http.get(live_url(server)) as resp:
            tags = await read_flv(resp, frames=5)
            ds = device_stream(device)
            device.media.silence()
            await read_flv(resp, timeout=10, tags=tags)        # the response ends by itself
            assert resp.content.at_eof()
        kind, _, body = tags.tags[-1]
        assert kind == 9 and body[:2] == b"\x17\x02"             # closed by the end-of-sequence tag
        assert decode(tags.data)[1]
        assert events and events[0].reason == "no media"
        assert await asyncio.wait_for(ds.ended, 5) == "bye received"
        assert len(server.platform.streams) == 0 and len(server.platform.sessions) == 0


async def test_device_bye_ends_the_viewers_stream(tmp_path):
    async with media_server(tmp_path) as server, camera(server) as device, \
            aiohttp.ClientSession() as http:
        events = []
        server.platform.events.on(events.append, StreamStopped)
        async with http.get(live_url(server)) as resp:
            tags = await read_flv(resp, frames=5)
            ds = device_stream(device)
            await device.media.bye()
            await read_flv(resp, timeout=5, tags=tags)
            assert resp.content.at_eof()
        assert events[0].reason == "device bye"
        assert len(server.platform.streams) == 0
        assert len(server.platform.sessions.ssrcs) == 0
        assert ds.ended.result() == "bye sent" and not ds.bye_received   # no BYE of ours after theirs


async def test_ws_flv_live_and_flv_url_with_upgrade(tmp_path):
    async with media_server(tmp_path) as server, camera(server) as device, \
            aiohttp.ClientSession() as http:
        for url in (live_url(server, ".ws"), live_url(server, ".flv")):
            async with http.ws_connect(url.replace("http://", "ws://")) as ws:
                data = b""
                while data.count(b"\x09") < 1 or len(data) < 20000:
                    msg = await asyncio.wait_for(ws.receive(), 10)
                    assert msg.type == aiohttp.WSMsgType.BINARY
                    data += msg.data
                assert data.startswith(b"FLV")
                pictures, key_first = decode(data)
                assert pictures > 0 and key_first
                streams = server.platform.streams.list()
                assert streams[0].viewers == 1
            await wait_for(lambda: not server.platform.streams.list()
                           or server.platform.streams.list()[0].viewers == 0)
        assert device.media.invites_received == 1
        # a plain GET on the .ws URL is not a WebSocket
        async with http.get(live_url(server, ".ws")) as resp:
            assert resp.status == 400 and (await resp.json())["error"]["status"] == 400


async def test_ws_flv_stream_end_closes_the_websocket_with_the_reason(tmp_path):
    async with media_server(tmp_path) as server, camera(server) as device, \
            aiohttp.ClientSession() as http:
        async with http.ws_connect(live_url(server, ".ws").replace("http://", "ws://")) as ws:
            await asyncio.wait_for(ws.receive(), 10)
            await device.media.bye()
            while True:
                msg = await asyncio.wait_for(ws.receive(), 10)
                if msg.type != aiohttp.WSMsgType.BINARY:
                    break
            assert msg.type == aiohttp.WSMsgType.CLOSE and msg.extra == "device bye"


async def test_start_and_stop_live_through_the_api(tmp_path):
    async with media_server(tmp_path, media_linger=5.0) as server, camera(server) as device, \
            aiohttp.ClientSession() as http:
        url = f"{base(server)}/api/v1/live/{DEVICE}/{CHANNEL}"
        async with http.post(url + "?transport=tcp-passive", headers=auth()) as r:
            assert r.status == 200
            started = await r.json()
        assert started["state"] == "live" and started["transport"] == "tcp-passive"
        assert started["ssrc"] and started["ssrc"][0] == "0"
        # a player arriving while it lingers joins the running stream
        ds = device_stream(device)
        async with http.get(started["urls"]["flv"] + "?token=test-token") as resp:
            tags = await read_flv(resp, frames=5)
            assert decode(tags.data)[1]
            assert device.media.invites_received == 1
            async with http.delete(url, headers=auth()) as r:
                assert r.status == 200 and (await r.json())["stopped"] is True
            await read_flv(resp, timeout=5, tags=tags)    # the viewer's stream ended with the stop
            assert resp.content.at_eof()
        assert await asyncio.wait_for(ds.ended, 5) == "bye received"
        async with http.delete(url, headers=auth()) as r:
            assert r.status == 404
        async with http.get(f"{base(server)}/api/v1/streams", headers=auth()) as r:
            assert await r.json() == []


async def test_transport_from_per_device_setting(tmp_path):
    from sip28181.config import DeviceSettings
    devices = {DEVICE: DeviceSettings(transport="tcp-active")}
    async with media_server(tmp_path, devices=devices) as server, camera(server) as device, \
            aiohttp.ClientSession() as http:
        async with http.get(live_url(server)) as resp:
            await read_flv(resp, frames=5)
        assert device_stream(device).transport == "tcp-active"


async def test_device_ignoring_the_offered_ssrc_is_still_played(tmp_path):
    async with media_server(tmp_path) as server, camera(server, MediaOptions(ssrc_mode="omit-own")) as device, \
            aiohttp.ClientSession() as http:
        async with http.get(live_url(server)) as resp:
            tags = await read_flv(resp, frames=20)
        assert decode(tags.data)[0] >= 19
        assert device_stream(device).ssrc != int(device_stream(device).offered_ssrc)


async def test_bad_requests_and_unknown_devices(tmp_path):
    async with media_server(tmp_path) as server, camera(server), aiohttp.ClientSession() as http:
        b = base(server)

        async def get(url, **kw):
            async with http.get(url, **kw) as r:
                return r.status, await r.json()

        status, body = await get(live_url(server, transport="sctp"))
        assert status == 400 and body["error"]["message"] == "invalid query parameters"
        status, body = await get(f"{b}/live/123/{CHANNEL}.flv?token=test-token")
        assert status == 400
        status, body = await get(live_url(server, device="34020000001320000099"))
        assert status == 404 and "34020000001320000099" in body["error"]["message"]
        status, _ = await get(f"{b}/live/{DEVICE}/{CHANNEL}.flv")                 # no token
        assert status == 401
        status, _ = await get(f"{b}/live/{DEVICE}/{CHANNEL}.flv?token=wrong")
        assert status == 401
        status, _ = await get(f"{b}/api/v1/streams/{DEVICE}_{CHANNEL}", headers=auth())
        assert status == 404
        status, _ = await get(f"{b}/api/v1/streams/nonsense", headers=auth())
        assert status == 400
        status, _ = await get(f"{b}/streams/{DEVICE}_{CHANNEL}.flv?token=test-token")
        assert status == 404
        async with http.post(f"{b}/api/v1/streams/{DEVICE}_{CHANNEL}/control", headers=auth(),
                             json={"action": "warp"}) as r:
            assert r.status == 422
        assert len(server.platform.streams) == 0 and len(server.platform.sessions) == 0


async def test_device_refusing_or_not_answering(tmp_path):
    async with media_server(tmp_path, media_invite_timeout=1.0) as server, aiohttp.ClientSession() as http:
        async with camera(server, MediaOptions(reject_status=486)):
            async with http.get(live_url(server)) as r:
                assert r.status == 502
                body = await r.json()
                assert body["error"]["detail"]["sip_status"] == 486 and "486" in body["error"]["message"]
        async with camera(server, MediaOptions(answer_delay=5.0)) as device:
            async with http.get(live_url(server)) as r:
                assert r.status == 504
            assert device.media.cancels_received == 1 or device.media.invites_received == 1
        assert len(server.platform.streams) == 0
        assert len(server.platform.sessions.ssrcs) == 0
        await wait_for(lambda: not server.platform.streams.ingest.streams)


async def test_viewer_giving_up_while_the_device_answers_late(tmp_path):
    """The only viewer leaves during the INVITE: the linger ends it with CANCEL; nothing leaks."""
    async with media_server(tmp_path, media_linger=0.2) as server, \
            camera(server, MediaOptions(answer_delay=1.5)) as device, aiohttp.ClientSession() as http:
        with pytest.raises(asyncio.TimeoutError):
            async with http.get(live_url(server), timeout=aiohttp.ClientTimeout(total=0.4)):
                pass
        await wait_for(lambda: len(server.platform.streams) == 0, timeout=5)
        await wait_for(lambda: device.media.cancels_received == 1, timeout=5)
        await wait_for(lambda: len(server.platform.sessions) == 0, timeout=5)
        assert len(server.platform.sessions.ssrcs) == 0


async def test_openapi_documents_the_media_routes(tmp_path):
    async with media_server(tmp_path) as server, aiohttp.ClientSession() as http:
        async with http.get(base(server) + "/api/v1/openapi.json") as r:
            doc = await r.json()
    paths = doc["paths"]
    assert {"/live/{device_id}/{channel_id}.flv", "/live/{device_id}/{channel_id}.ws",
            "/streams/{stream_id}.flv", "/streams/{stream_id}.ws", "/api/v1/streams",
            "/api/v1/streams/{stream_id}", "/api/v1/streams/{stream_id}/control",
            "/api/v1/live/{device_id}/{channel_id}", "/api/v1/playback", "/api/v1/download"} <= set(paths)
    flv = paths["/live/{device_id}/{channel_id}.flv"]["get"]
    assert "video/x-flv" in flv["responses"]["200"]["content"]
    assert {"502", "504", "404"} <= set(flv["responses"])
    assert {p["name"] for p in flv["parameters"]} >= {"device_id", "channel_id", "transport"}
    from openapi_spec_validator import validate

    validate(doc)


async def test_metrics_count_streams_viewers_and_rtp(tmp_path):
    async with media_server(tmp_path) as server, camera(server), aiohttp.ClientSession() as http:
        async with http.get(live_url(server)) as resp:
            await read_flv(resp, frames=10)
            async with http.get(base(server) + "/metrics", headers=auth()) as r:
                text = await r.text()
        from prometheus_client.parser import text_string_to_metric_families
        samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
                   for fam in text_string_to_metric_families(text) for s in fam.samples}
        assert samples[("sip28181_media_streams", ())] == 1
        assert samples[("sip28181_media_viewers", ())] == 1
        assert samples[("sip28181_rtp_packets_received_total", ())] > 0
        assert samples[("sip28181_media_bytes_received_total", ())] > 0
        assert samples[("sip28181_media_streams_started_total", (("kind", "Play"),))] == 1
