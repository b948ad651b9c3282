"""A cascade end to end on loopback: camera → city → province (→ ministry), every level a real server.

The province lists the camera's channels, plays one over HTTP-FLV (frames decoded), turns it, and
gets its HJ alarm with the image URL intact; each platform restarts and the chain heals; four levels
play. Each part is tested where it is built (test_link*, test_catalog*, test_forward*, test_invite*,
...); here it is the whole path a user relies on.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from sip28181.platform.events import (DeviceOffline, DeviceOnline, StreamStopped, UpperOffline,
                                      UpperOnline)

from ..integration.conftest import TOKEN, wait_for
from ..integration.livekit import decode, read_flv
from .chain import Level, chain

CITY_PROVINCE = ("city", "province")
PATTERN_FRAMES = 50          # the simulated camera's recording: 2 s at 25 fps


def _names(events) -> list[str]:
    return [type(e).__name__ for e in events]


# -- registration and restarts ----------------------------------------------------------------------

@pytest.mark.parametrize("transport", ["udp", "tcp"])
async def test_chain_registers_level_by_level(tmp_path, transport):
    levels = [Level("city", transport=transport), Level("province")]
    async with chain(tmp_path, levels) as c:
        await c.ready()
        city, province = c["city"], c["province"]
        state = province.platform.registry.get(city.sip_id)
        assert state.transport.lower() == transport and state.status == "online"
        assert city.link.online and city.link.local_id == city.sip_id
        # the camera is the city's device, not the province's
        assert city.platform.registry.get(c.device_id).status == "online"
        assert province.platform.registry.get(c.device_id) is None
        # the province's API shows the city as a device; the city's shows its upper online
        status, body = await province.api.get(f"/api/v1/devices/{city.sip_id}")
        assert status == 200 and body["status"] == "online", body
        await asyncio.wait_for(_keepalive_seen(city), 10)
        assert _names(city.events_of(UpperOnline)) == ["UpperOnline"]


async def _keepalive_seen(node) -> None:
    while node.link.last_keepalive_at is None:
        await asyncio.sleep(0.05)


@pytest.mark.parametrize("transport", ["udp", "tcp"])
async def test_province_restart_city_registers_again(tmp_path, transport):
    levels = [Level("city", transport=transport), Level("province")]
    async with chain(tmp_path, levels) as c:
        await c.ready()
        city, province = c["city"], c["province"]
        first = city.link.registered_at
        await province.restart()
        # the city finds the new province does not know it (404 to a keepalive, or the TCP
        # connection closed) and registers again; the province sees it online once more
        await c.registered(city, timeout=20)
        # the province shows the city online when it answers the REGISTER; the city takes the
        # answer a moment later
        await wait_for(lambda: city.link.registered_at > first, 20)
        assert _names(city.events_of(UpperOnline, UpperOffline)) == ["UpperOnline", "UpperOffline", "UpperOnline"]
        assert _names(province.events_of(DeviceOnline))[-1:] == ["DeviceOnline"]
        state = province.platform.registry.get(city.sip_id)
        assert state.registered and state.transport.lower() == transport


async def test_city_restart_province_sees_offline_then_online(tmp_path):
    async with chain(tmp_path, CITY_PROVINCE) as c:
        await c.ready()
        city, province = c["city"], c["province"]
        await city.stop()
        # a clean stop unregisters: offline at the province at once
        offline = await _wait_event(province, DeviceOffline, city.sip_id)
        assert offline.reason == "unregistered"
        assert province.platform.registry.get(city.sip_id).status == "offline"
        status, body = await province.api.get(f"/api/v1/devices/{city.sip_id}")
        assert status == 200 and body["status"] == "offline"
        await city.start()
        await c.registered(city)
        ups = [e for e in province.events_of(DeviceOnline, DeviceOffline) if e.device_id == city.sip_id]
        assert _names(ups) == ["DeviceOnline", "DeviceOffline", "DeviceOnline"]
        # the camera below comes back to the restarted city as well (its next keepalive is
        # refused, it registers again)
        await c.ready(timeout=20)


async def test_city_that_dies_goes_offline_at_the_province_by_keepalive_timeout(tmp_path):
    async with chain(tmp_path, CITY_PROVINCE) as c:
        await c.ready()
        city, province = c["city"], c["province"]
        await city.stop(unregister=False)
        offline = await _wait_event(province, DeviceOffline, city.sip_id, timeout=20)
        assert offline.reason == "keepalive timeout"
        await city.start()
        await c.registered(city)


async def _wait_event(node, kind, device_id, timeout: float = 10.0):
    async def find():
        while True:
            for event in node.events_of(kind):
                if event.device_id == device_id:
                    return event
            await asyncio.sleep(0.05)
    return await asyncio.wait_for(find(), timeout)


# -- what the province sees and does ----------------------------------------------------------------

@pytest.mark.parametrize("tree", ["2016", "2022"])
async def test_province_lists_the_cameras_channels_and_tree(tmp_path, tree):
    async with chain(tmp_path, CITY_PROVINCE, channels=3, upper={"tree": tree}) as c:
        await c.ready()
        city, province = c["city"], c["province"]
        await c.catalog_up()
        status, page = await province.api.get(f"/api/v1/devices/{city.sip_id}/channels",
                                              params={"kind": "channel"})
        assert status == 200, page
        items = page["items"]
        assert sorted(i["channel_id"] for i in items) == sorted(c.channel_ids)
        assert all(i["device_id"] == city.sip_id and i["status"] == "ON" for i in items)
        # the camera's own names reach the province unchanged
        names = {i["channel_id"]: i["name"] for i in items}
        local = {ch.channel_id: ch.name for ch in city.platform.channels(c.device_id)}
        assert all(names[cid] == local[cid] for cid in c.channel_ids)
        status, body = await province.api.get(f"/api/v1/devices/{city.sip_id}/tree")
        assert status == 200, body
        in_tree = _tree_ids(body["roots"])
        assert set(c.channel_ids) <= in_tree
        # a channel the province does not know is a clean 404
        status, body = await province.api.get(
            f"/api/v1/devices/{city.sip_id}/channels/{city.sip_id[:10]}131{'9' * 7}")
        assert status == 404 and "error" in str(body).lower()


def _tree_ids(nodes) -> set[str]:
    out: set[str] = set()
    for node in nodes:
        out.add(node["id"])
        out |= _tree_ids(node["children"])
    return out


@pytest.mark.parametrize("media_transport", ["udp", "tcp-passive", "tcp-active"])
async def test_province_plays_the_city_channel_over_http_flv(tmp_path, media_transport):
    async with chain(tmp_path, CITY_PROVINCE, media_transport=media_transport) as c:
        await c.ready()
        city, province = c["city"], c["province"]
        await c.catalog_up()
        channel = c.channel_ids[0]
        async with c.http.get(province.live_url(channel)) as resp:
            assert resp.status == 200, await resp.text()
            assert resp.headers["Content-Type"] == "video/x-flv"
            tags = await read_flv(resp, frames=40, timeout=30)
            # one session per hop: the province INVITEd the city, the city the camera
            assert c.device.media.invites_received == 1
            assert [s.device_id for s in city.platform.streams.list()] == [c.device_id]
            assert [s.device_id for s in province.platform.streams.list()] == [city.sip_id]
            # the city shows the province's call, sending over the transport the province chose
            status, calls = await city.api.get(f"/api/v1/uppers/{province.sip_id}/calls")
            assert status == 200 and len(calls) == 1, calls
            call = calls[0]
            assert (call["channel_id"], call["device_id"], call["kind"]) == (channel, c.device_id, "Play")
            assert call["transport"] == media_transport and call["state"] == "sending"
            status, catalog = await city.api.get(f"/api/v1/uppers/{province.sip_id}/catalog")
            assert status == 200 and channel in [i["id"] for i in catalog["items"]], catalog
        frames = len(tags.video_frames)
        assert frames >= 40 and tags.audio_frames > 0
        pictures, key_first = await asyncio.to_thread(decode, tags.data)
        assert key_first and pictures >= frames - 1
        # the viewer left: the province ends its session, the city then frees the camera's
        await _wait(lambda: len(province.platform.streams) == 0)
        await _wait(lambda: len(city.platform.streams) == 0)
        await _wait(lambda: len(city.platform.sessions) == 0 and len(province.platform.sessions) == 0)


async def test_province_turns_the_camera_through_the_city(tmp_path):
    async with chain(tmp_path, CITY_PROVINCE, channels=2) as c:
        await c.ready()
        city, province = c["city"], c["province"]
        await c.catalog_up()
        channel = c.channel_ids[1]
        log = c.device.management.ptz_log
        status, body = await province.api.call(
            "POST", f"/api/v1/devices/{city.sip_id}/channels/{channel}/ptz",
            json={"action": "right", "speed": 128})
        assert status == 200, body
        await _wait(lambda: log)
        # the PTZCmd crossed the city verbatim, to the camera's own channel ID
        assert [(e.channel_id, e.raw) for e in log] == [(channel, body["ptz_cmd"])]
        assert log[0].command is not None and log[0].error is None
        status, stop = await province.api.call(
            "POST", f"/api/v1/devices/{city.sip_id}/channels/{channel}/ptz", json={"action": "stop"})
        assert status == 200, stop
        await _wait(lambda: len(log) == 2)
        assert log[1].raw == stop["ptz_cmd"]


async def test_hj_alarm_reaches_the_province_intact(tmp_path):
    async with chain(tmp_path, CITY_PROVINCE, channels=2) as c:
        await c.ready()
        city, province = c["city"], c["province"]
        await c.catalog_up()
        channel = c.channel_ids[1]
        image = "http://127.0.0.1/outfall-2.jpg?at=20260101T000000&sig=a%2Fb"
        sent = await c.device.management.send_alarm(
            channel, method=5, alarm_type=100003, event_type=1, priority=2,
            description="排口超标 outfall 2", image_urls=[image], longitude=113.3, latitude=23.1)

        async def at_province():
            status, page = await province.api.get("/api/v1/alarms", params={"device_id": city.sip_id})
            return page["items"] if status == 200 and page["items"] else None

        items = await _wait(at_province, timeout=15)
        assert len(items) == 1, items
        alarm = items[0]
        assert alarm["device_id"] == city.sip_id and alarm["alarm_device_id"] == channel
        assert alarm["method"] == 5 and alarm["alarm_type"] == 100003 and alarm["priority"] == 2
        assert alarm["image_urls"] == [image]
        assert alarm["description"] == "排口超标 outfall 2"
        assert alarm["event_type"] == 1
        assert alarm["alarm_time"] == sent.alarm_time
        assert alarm["longitude"] == pytest.approx(113.3) and alarm["latitude"] == pytest.approx(23.1)
        # the city stored it too, from the camera
        status, page = await city.api.get("/api/v1/alarms", params={"device_id": c.device_id})
        assert status == 200 and [a["image_urls"] for a in page["items"]] == [[image]]


FOUR_LEVELS = {
    "udp": ["unit", "city", "province", "ministry"],
    # TCP signalling on every link; each level pulls from the one below over another media transport
    "tcp": [Level("unit", transport="tcp", config={"media_transport": "tcp-passive"}),
            Level("city", transport="tcp", config={"media_transport": "tcp-active"}),
            Level("province", transport="tcp", config={"media_transport": "udp"}),
            Level("ministry", config={"media_transport": "tcp-passive"})],
}


@pytest.mark.parametrize("variant", sorted(FOUR_LEVELS))
async def test_four_levels_play(tmp_path, variant):
    async with chain(tmp_path, FOUR_LEVELS[variant]) as c:
        await c.ready(timeout=30)
        ministry, province = c["ministry"], c["province"]
        await c.catalog_up(timeout=40)
        channel = c.channel_ids[0]
        assert channel in c.listed(ministry) and province.sip_id == ministry.lower_id
        async with c.http.get(ministry.live_url(channel)) as resp:
            assert resp.status == 200, await resp.text()
            tags = await read_flv(resp, frames=30, timeout=40)
            # one session per hop, each level pulling from the one below
            assert c.device.media.invites_received == 1
            for node in c.nodes:
                assert [s.device_id for s in node.platform.streams.list()] == [node.lower_id], node
        frames = len(tags.video_frames)
        pictures, key_first = await asyncio.to_thread(decode, tags.data)
        assert frames >= 30 and key_first and pictures >= frames - 1
        for node in c.nodes:
            await _wait(lambda node=node: len(node.platform.streams) == 0)
        # an HJ alarm climbs the three hops with its image URL
        image = "http://127.0.0.1/outfall-9.jpg"
        await c.device.management.send_alarm(channel, method=5, alarm_type=100002, image_urls=[image])

        async def at_ministry():
            status, page = await ministry.api.get("/api/v1/alarms", params={"device_id": province.sip_id})
            return page["items"] if status == 200 and page["items"] else None

        (alarm,) = await _wait(at_ministry, timeout=20)
        assert (alarm["alarm_device_id"], alarm["alarm_type"], alarm["image_urls"]) == (channel, 100002, [image])


async def test_camera_arriving_later_reaches_the_province_unasked(tmp_path):
    """The city shares what comes after it registered: the province learns of the camera from
    the city's catalog notification, without querying again."""
    async with chain(tmp_path, CITY_PROVINCE, device=False, channels=2) as c:
        await c.ready()
        city, province = c["city"], c["province"]
        await _wait(lambda: province.platform.registry.get(city.sip_id).status == "online")
        assert c.listed(province) == []
        await c.start_device()
        await c.ready()
        assert sorted(await c.catalog_up(ask=False)) == sorted(c.channel_ids)


async def test_mapped_ids_are_translated_both_ways(tmp_path):
    """With ``ids = "map"`` the province only ever sees the upper-side IDs: it lists, plays and
    turns them, and its alarms carry them; the camera only ever sees its own."""
    async with chain(tmp_path, CITY_PROVINCE, channels=2, upper={"ids": "map", "id_prefix": "4499"}) as c:
        await c.ready()
        city, province = c["city"], c["province"]
        listed = await c.catalog_up()
        local = c.channel_ids[0]
        mapped = c.channel_at(province, local)
        assert mapped == "4499" + local[4:]
        assert set(listed) >= {c.channel_at(province, cid) for cid in c.channel_ids}
        assert not set(c.listed(province)) & set(c.channel_ids)
        async with c.http.get(province.live_url(mapped)) as resp:
            assert resp.status == 200, await resp.text()
            tags = await read_flv(resp, frames=25, timeout=30)
            # the province asked for the mapped ID, the city played the camera's own
            assert [s.channel_id for s in province.platform.streams.list()] == [mapped]
            assert [s.channel_id for s in city.platform.streams.list()] == [local]
        assert len(tags.video_frames) >= 25 and c.device.media.invites_received == 1
        status, body = await province.api.call(
            "POST", f"/api/v1/devices/{city.sip_id}/channels/{mapped}/ptz", json={"action": "up", "speed": 64})
        assert status == 200, body
        await _wait(lambda: c.device.management.ptz_log)
        assert [(e.channel_id, e.raw) for e in c.device.management.ptz_log] == [(local, body["ptz_cmd"])]
        await c.device.management.send_alarm(local, method=5, alarm_type=100001,
                                             image_urls=["http://127.0.0.1/a.jpg"])

        async def alarm_at_province():
            status, page = await province.api.get("/api/v1/alarms", params={"device_id": city.sip_id})
            return page["items"] if status == 200 and page["items"] else None

        (alarm,) = await _wait(alarm_at_province, timeout=15)
        assert alarm["alarm_device_id"] == mapped and alarm["image_urls"] == ["http://127.0.0.1/a.jpg"]


async def test_local_control_wins_and_every_control_is_logged(tmp_path):
    """A PTZ through the city's own API holds the channel: the province's command meanwhile is
    refused, not forwarded; both are in the city's control log, the province logs its own."""
    async with chain(tmp_path, CITY_PROVINCE, cascade_local_control_hold=30.0) as c:
        await c.ready()
        city, province = c["city"], c["province"]
        await c.catalog_up()
        channel = c.channel_ids[0]
        log = c.device.management.ptz_log
        status, mine = await city.api.call(
            "POST", f"/api/v1/devices/{c.device_id}/channels/{channel}/ptz", json={"action": "left", "speed": 50})
        assert status == 200, mine
        await _wait(lambda: log)
        status, theirs = await province.api.call(
            "POST", f"/api/v1/devices/{city.sip_id}/channels/{channel}/ptz", json={"action": "right", "speed": 200})
        assert status == 200, theirs           # the city took the MESSAGE; it decides afterwards

        async def city_log():
            status, rows = await city.api.get("/api/v1/control-log", params={"device_id": c.device_id})
            return rows if status == 200 and len(rows) >= 2 else None

        rows = await _wait(city_log)
        by_source = {r["source"]: r for r in rows}
        assert by_source["local"]["result"] == "ok" and by_source["local"]["channel_id"] == channel
        refused = by_source[province.sip_id]        # an upper's controls are logged under its ID
        assert refused["result"] == "refused" and refused["channel_id"] == channel
        assert theirs["ptz_cmd"] in refused["detail"]
        # nothing from the province reached the camera
        assert [e.raw for e in log] == [mine["ptz_cmd"]]
        status, rows = await province.api.get("/api/v1/control-log", params={"source": "local"})
        assert status == 200 and [(r["device_id"], r["channel_id"]) for r in rows] == [(city.sip_id, channel)]


async def test_bad_requests_at_the_province_are_clean_errors(tmp_path):
    async with chain(tmp_path, CITY_PROVINCE) as c:
        await c.ready()
        city, province = c["city"], c["province"]
        await c.catalog_up()
        unknown = city.sip_id[:10] + "1319999999"
        async with c.http.get(province.live_url(unknown)) as resp:
            assert resp.status == 404
            assert "error" in (await resp.json())
        status, body = await province.api.call(
            "POST", f"/api/v1/devices/{city.sip_id}/channels/{c.channel_ids[0]}/ptz", json={"action": "spin"})
        assert status == 422 and "error" in body
        async with c.http.get(province.live_url(c.channel_ids[0], device_id="4401000000200000000x")) as resp:
            assert resp.status in (400, 404)
        assert c.device.media.invites_received == 0 and not c.device.management.ptz_log
        # and the chain still works afterwards
        async with c.http.get(province.live_url(c.channel_ids[0])) as resp:
            assert resp.status == 200
            await read_flv(resp, frames=5, timeout=30)


async def test_province_finds_and_plays_back_a_recording_through_the_city(tmp_path):
    async with chain(tmp_path, CITY_PROVINCE, channels=2) as c:
        await c.ready()
        city, province = c["city"], c["province"]
        await c.catalog_up()
        channel = c.channel_ids[1]
        start = int(time.time()) - 3600
        end = start + 600
        status, found = await province.api.get(
            f"/api/v1/devices/{city.sip_id}/channels/{channel}/records",
            params={"start": str(start), "end": str(end)})
        assert status == 200, found
        # the camera's recordings, answered through the city under the channel's ID
        assert found["sum_num"] == len(found["items"]) >= 1 and not found["partial"]
        assert all(r["device_id"] == channel for r in found["items"])
        assert found["items"][0]["file_path"].startswith(f"/rec/{channel}/")
        status, out = await province.api.call("POST", "/api/v1/playback", json={
            "device_id": city.sip_id, "channel_id": channel, "start": start, "end": end})
        assert status == 200, out
        assert out["kind"] == "Playback"
        async with c.http.get(out["urls"]["flv"], params={"token": TOKEN}) as resp:
            assert resp.status == 200
            ds = await _wait(c.device.media.stream)
            tags = await read_flv(resp, timeout=30)            # until the recording ends
        assert ds.kind == "Playback" and (ds.offer.start, ds.offer.stop) == (start, end)
        # the whole recording (the simulator's two-second pattern) reached the province
        assert len(tags.video_frames) == PATTERN_FRAMES
        pictures, key_first = await asyncio.to_thread(decode, tags.data)
        assert pictures == PATTERN_FRAMES and key_first
        stopped = province.events_of(StreamStopped)
        # the camera's MediaStatus 121 came up through the city: the province saw the end of file
        assert [(e.kind, e.reason) for e in stopped] == [("Playback", "end of file")]
        for node in c.nodes:
            await _wait(lambda node=node: len(node.platform.streams) == 0 and len(node.platform.sessions) == 0)


async def test_city_going_away_ends_the_provinces_viewer(tmp_path):
    async with chain(tmp_path, CITY_PROVINCE) as c:
        await c.ready()
        city, province = c["city"], c["province"]
        await c.catalog_up()
        async with c.http.get(province.live_url(c.channel_ids[0])) as resp:
            assert resp.status == 200
            tags = await read_flv(resp, frames=10, timeout=30)
            ds = c.device.media.stream()
            await city.stop()
            await read_flv(resp, timeout=20, tags=tags)     # returns when the response ends
        await _wait(lambda: len(province.platform.streams) == 0 and len(province.platform.sessions) == 0)
        stopped = province.events_of(StreamStopped)
        assert len(stopped) == 1 and stopped[0].device_id == city.sip_id
        # the city ended the camera's session on its way out
        assert await asyncio.wait_for(ds.ended, 10) == "bye received"


async def _wait(predicate, timeout: float = 10.0):
    from ..integration.conftest import wait_for
    return await wait_for(predicate, timeout)
