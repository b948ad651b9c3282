"""A cascade end to end on loopback: camera → city → province (→ ministry), every level a real server.

The province lists the camera's channels, plays one over HTTP-FLV (frames decoded), turns it, and
gets its HJ alarm with the image URL intact; each platform restarts and the chain heals; four levels
play. Each part is tested where it is built (test_link*, test_catalog*, test_forward*, test_invite*,
...); here it is the whole path a user relies on.
"""

from __future__ import annotations

import asyncio

import pytest

from sip28181.platform.events import DeviceOffline, DeviceOnline, UpperOffline, UpperOnline

from ..integration.livekit import decode, read_flv
from .chain import Level, chain

CITY_PROVINCE = ("city", "province")


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
        assert city.link.registered_at > first
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
