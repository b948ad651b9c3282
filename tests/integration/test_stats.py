"""Statistics over the API: online rate from a stored presence history, live devices, access rate,
device lists, streaming recorded from StreamStarted."""

from __future__ import annotations

import time

import aiohttp
import pytest

from sip28181.config import DeviceSettings
from sip28181.platform.events import StreamStarted
from sip28181.server import Server
from sip28181.store import DeviceRecord, PresenceEvent, SqliteStore

from .conftest import Api, wait_for
from .scripted_device import NVR, ScriptedDevice

OLD = "34020000001320000301"        # known from the store, with a constructed history
EXPECTED = "34020000001320000302"   # configured, never registered
DAY = 86400.0


@pytest.fixture
async def env(config_factory):
    config = config_factory(catalog_query_on_register=False, devices={EXPECTED: DeviceSettings(name="Outfall 3")})
    t0 = time.time() - 10 * DAY
    async with SqliteStore(config.db_path) as store:
        await store.upsert_devices([DeviceRecord(device_id=OLD, name="Old camera", created_at=t0)])
        # online 2 days, offline 1 day, online 3 days, offline since (6 days ago)
        await store.add_presence_events([
            PresenceEvent(OLD, "online", t0 + 1 * DAY, "register"),
            PresenceEvent(OLD, "offline", t0 + 3 * DAY, "keepalive timeout"),
            PresenceEvent(OLD, "online", t0 + 4 * DAY, "keepalive"),
            PresenceEvent(OLD, "offline", t0 + 7 * DAY, "keepalive timeout"),
        ])
    srv = Server(config)
    await srv.start()
    async with aiohttp.ClientSession() as session:
        yield srv, Api(session, f"http://127.0.0.1:{srv.http_port}"), t0
    await srv.stop()


async def test_online_rate_from_stored_history(env):
    srv, api, t0 = env
    status, body = await api.get("/api/v1/stats/online-rate",
                                 params={"device_id": OLD, "start": t0, "end": t0 + 8 * DAY})
    assert status == 200
    [rate] = body["items"]
    assert rate["online_seconds"] == pytest.approx(5 * DAY) and rate["expected_seconds"] == pytest.approx(8 * DAY)
    assert rate["rate"] == pytest.approx(5 / 8)
    # a period before the device was known: nothing expected
    status, body = await api.get("/api/v1/stats/online-rate",
                                 params={"device_id": OLD, "start": t0 - 5 * DAY, "end": t0 - DAY})
    assert body["items"][0]["rate"] is None


async def test_live_device_rates_lists_and_streaming(env):
    srv, api, t0 = env
    start = time.time() - 1
    async with ScriptedDevice(srv) as dev:
        await wait_for(lambda: srv.platform.device(NVR).status == "online")
        status, body = await api.get("/api/v1/stats/online-rate", params={"start": start, "end": time.time() + 60})
        rates = {r["device_id"]: r for r in body["items"]}
        assert rates[NVR]["rate"] == pytest.approx(1.0, abs=0.05)       # online since it was created
        assert rates[OLD]["online_seconds"] == 0
        status, body = await api.get("/api/v1/stats/devices/online_never_streamed")
        assert [d["device_id"] for d in body["items"]] == [NVR, OLD]
        srv.platform.events.publish(StreamStarted(NVR, "34020000001310000001", "Play", time.time()))
        status, body = await api.get("/api/v1/stats/devices/online_never_streamed")
        assert [d["device_id"] for d in body["items"]] == [OLD]
        status, body = await api.get("/api/v1/stats/access-rate", params={"start": start, "end": time.time() + 1})
        assert status == 200
        assert (body["accessed"], body["expected"], body["missing"]) == (1, 3, [OLD, EXPECTED])
        assert body["rate"] == pytest.approx(1 / 3)
        status, body = await api.get("/api/v1/stats/devices/new_online_today")
        assert [d["device_id"] for d in body["items"]] == [NVR] and body["items"][0]["status"] == "online"
    await wait_for(lambda: srv.platform.device(NVR).status == "offline")     # unregistered by the simulator
    lists = {}
    for name in ("ever_online", "new_offline_today", "offline_within_3_days", "offline_over_3_days"):
        status, body = await api.get(f"/api/v1/stats/devices/{name}")
        assert status == 200
        lists[name] = [d["device_id"] for d in body["items"]]
    assert lists["ever_online"] == [NVR, OLD]
    assert lists["new_offline_today"] == [NVR]
    assert lists["offline_within_3_days"] == [NVR]
    assert lists["offline_over_3_days"] == [OLD, EXPECTED]
    # the stream survives in the device record
    await srv.platform.flush()
    record = await srv.platform.store.get_device(NVR)
    assert isinstance(record.extra.get("first_stream_at"), float)


async def test_bad_statistics_parameters(env):
    srv, api, t0 = env
    for path, params in (("/api/v1/stats/online-rate", {"start": t0 + DAY, "end": t0}),
                         ("/api/v1/stats/online-rate", {"start": "soon", "end": t0}),
                         ("/api/v1/stats/online-rate", {"start": t0, "end": t0 + 500 * DAY}),
                         ("/api/v1/stats/online-rate", {"start": t0, "end": t0 + DAY, "device_id": "1"}),
                         ("/api/v1/stats/access-rate", {"start": t0}),
                         ("/api/v1/stats/devices/everyone", {})):
        status, body = await api.get(path, params=params)
        assert status == 400, (path, params)
    status, body = await api.get("/api/v1/stats/online-rate",
                                 params={"start": t0, "end": t0 + DAY, "device_id": "34020000001320000999"})
    assert status == 404


async def test_server_stop_ends_online_time(config_factory):
    config = config_factory(catalog_query_on_register=False)
    srv = Server(config)
    await srv.start()
    try:
        dev = ScriptedDevice(srv)
        await dev.sim.start()
        await wait_for(lambda: srv.platform.device(NVR).status == "online")
    finally:
        await srv.stop()
    await dev.sim.stop(unregister=False)
    async with SqliteStore(config.db_path) as store:
        events = await store.presence_events(NVR)
    assert [(e.status, e.reason) for e in events] == [("online", "register"), ("offline", "server stop")]
