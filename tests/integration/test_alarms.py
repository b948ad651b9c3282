"""Alarms and mobile positions over loopback: acknowledged, stored with every field (HJ extension
included), published on the event bus and the SSE stream, searchable through the API."""

from __future__ import annotations

import asyncio
import json

import aiohttp
import pytest

from sip28181.platform.events import AlarmReceived

from .conftest import TOKEN, wait_for
from .scripted_device import NVR, channel_id, scripted_server

CAM = channel_id(1)

HJ_ALARM = f"""<Notify>
<CmdType>Alarm</CmdType>
<SN>301</SN>
<DeviceID>{CAM}</DeviceID>
<AlarmPriority>2</AlarmPriority>
<AlarmMethod>5</AlarmMethod>
<AlarmTime>2024-05-20T09:30:12</AlarmTime>
<AlarmDescription>排口2颜色异常</AlarmDescription>
<Info>
<AlarmType>100002</AlarmType>
</Info>
<Info>
<ImageURL>http://192.0.2.12/evidence/{CAM}/20240520093012.jpg</ImageURL>
</Info>
</Notify>
"""

INTRUSION = f"""<Notify><CmdType>Alarm</CmdType><SN>302</SN><DeviceID>{CAM}</DeviceID>
<AlarmPriority>1</AlarmPriority><AlarmMethod>5</AlarmMethod><AlarmTime>2024-05-20T09:31:00</AlarmTime>
<Longitude>113.36</Longitude><Latitude>23.12</Latitude>
<Info><AlarmType>2</AlarmType><AlarmTypeParam><EventType>1</EventType></AlarmTypeParam>
<ImageURL>http://192.0.2.12/a.jpg</ImageURL></Info><Info><ImageURL>http://192.0.2.12/b.jpg</ImageURL></Info>
<Info><Plate>粤A12345</Plate></Info></Notify>"""

DISK_FAULT = f"""<Notify><CmdType>Alarm</CmdType><SN>303</SN><DeviceID>{NVR}</DeviceID>
<AlarmPriority>3</AlarmPriority><AlarmMethod>6</AlarmMethod><AlarmTime>2024-05-20T09:32:00</AlarmTime>
<Info><AlarmType>1</AlarmType></Info></Notify>"""

DEVICE_ALARM = f"""<Notify><CmdType>Alarm</CmdType><SN>304</SN><DeviceID>{NVR}</DeviceID>
<AlarmPriority>4</AlarmPriority><AlarmMethod>2</AlarmMethod><AlarmTime>2024-05-20T09:33:00</AlarmTime></Notify>"""

POSITION = f"""<Notify><CmdType>MobilePosition</CmdType><SN>401</SN><DeviceID>{CAM}</DeviceID>
<Time>2024-05-20T09:40:00</Time><Longitude>113.3612</Longitude><Latitude>23.1247</Latitude>
<Speed>36.5</Speed><Direction>90</Direction><Altitude>12</Altitude></Notify>"""


@pytest.fixture
async def env(config_factory):
    async with scripted_server(config_factory(catalog_query_on_register=False, query_timeout=2.0)) as (srv, api, dev):
        yield srv, api, dev, api.session


async def read_events(resp: aiohttp.ClientResponse, n: int) -> list[tuple[str, dict]]:
    out: list[tuple[str, dict]] = []
    name = None
    while len(out) < n:
        line = (await asyncio.wait_for(resp.content.readline(), 5)).decode().rstrip("\n")
        if line.startswith("event: "):
            name = line[7:]
        elif line.startswith("data: "):
            out.append((name, json.loads(line[6:])))
    return out


async def test_hj_alarm_acknowledged_stored_published_and_streamed(env):
    srv, api, dev, session = env
    received: list[AlarmReceived] = []
    srv.platform.events.on(received.append, AlarmReceived)
    url = f"http://127.0.0.1:{srv.http_port}/api/v1/events"
    async with session.get(url, params={"type": "alarm", "device_id": NVR},
                           headers={"Authorization": f"Bearer {TOKEN}"}) as stream:
        assert stream.status == 200 and stream.headers["Content-Type"].startswith("text/event-stream")
        assert (await stream.content.readline()).startswith(b": connected")
        response = (await dev.sim.send_manscdp(HJ_ALARM))
        assert response.status == 200
        [(name, data)] = await read_events(stream, 1)
    assert name == "alarm" and data["device_id"] == NVR
    alarm = data["alarm"]
    assert (alarm["alarm_type"], alarm["method"], alarm["priority"]) == (100002, 5, 2)
    assert alarm["image_urls"] == [f"http://192.0.2.12/evidence/{CAM}/20240520093012.jpg"]
    assert alarm["description"] == "排口2颜色异常" and alarm["alarm_device_id"] == CAM
    assert len(received) == 1 and received[0].alarm.alarm_type == 100002
    # the business acknowledgement: Response Alarm, same SN, Result OK
    ack = await wait_for(lambda: next((q for q in dev.received if q.cmd_type == "Alarm"), None))
    assert (ack.kind.value, ack.sn, ack.result, ack.device_id) == ("Response", 301, "OK", CAM)
    status, body = await api.get("/api/v1/alarms", params={"alarm_type": 100002})
    assert status == 200 and body["total"] == 1
    item = body["items"][0]
    assert item["alarm_time"] == "2024-05-20T09:30:12" and item["alarm_type_name"].startswith("hj_")
    assert item["infos"] == [{"AlarmType": 100002}, {"ImageURL": alarm["image_urls"][0]}]


async def test_every_field_kept_and_searchable(env):
    srv, api, dev, session = env
    for body in (HJ_ALARM, INTRUSION, DISK_FAULT, DEVICE_ALARM):
        assert (await dev.sim.send_manscdp(body)).status == 200
    status, body = await api.get("/api/v1/alarms")
    assert status == 200 and body["total"] == 4
    assert [a["alarm_time"][11:] for a in body["items"]] == ["09:33:00", "09:32:00", "09:31:00", "09:30:12"]
    intrusion = body["items"][2]
    assert (intrusion["alarm_type"], intrusion["event_type"], intrusion["longitude"]) == (2, 1, 113.36)
    assert intrusion["image_urls"] == ["http://192.0.2.12/a.jpg", "http://192.0.2.12/b.jpg"]
    assert intrusion["alarm_type_param"] == {"EventType": 1}
    assert intrusion["infos"][2] == {"Plate": "粤A12345"}
    device_alarm = body["items"][0]
    assert (device_alarm["method"], device_alarm["alarm_type"], device_alarm["alarm_device_id"]) == (2, None, NVR)
    status, body = await api.get("/api/v1/alarms", params={"method": 6})
    assert body["total"] == 1 and body["items"][0]["alarm_type"] == 1
    status, body = await api.get("/api/v1/alarms", params={"device_id": CAM, "limit": 1, "offset": 1})
    assert (body["total"], len(body["items"]), body["items"][0]["sn"]) == (2, 1, 301)
    status, body = await api.get("/api/v1/alarms", params={"priority": 4, "start": "2000-01-01T00:00:00"})
    assert body["total"] == 1
    status, body = await api.get("/api/v1/alarms", params={"end": "2000-01-01T00:00:00"})
    assert body["total"] == 0
    for params in ({"method": 9}, {"start": "2024-01-02", "end": "2024-01-01"}, {"device_id": "x"},
                   {"alarm_type": "abc"}, {"limit": 5000}):
        status, body = await api.get("/api/v1/alarms", params=params)
        assert status == 400, params


async def test_mobile_position_by_message(env):
    srv, api, dev, session = env
    assert (await dev.sim.send_manscdp(POSITION)).status == 200
    status, body = await api.get(f"/api/v1/devices/{NVR}/positions")
    assert status == 200 and len(body) == 1
    p = body[0]
    assert (p["target_id"], p["longitude"], p["speed"], p["time"]) == (CAM, 113.3612, 36.5, "2024-05-20T09:40:00")
    status, body = await api.get(f"/api/v1/devices/{NVR}/positions", params={"channel_id": channel_id(2)})
    assert status == 200 and body == []


async def test_malformed_alarm_gets_400_and_nothing_is_stored(env):
    srv, api, dev, session = env
    response = await dev.sim.send_manscdp("<Notify><CmdType>Alarm</CmdType><SN>1</SN><DeviceID>" + NVR)
    assert response.status in (200, 400)      # recovering parser, or refused; never a crash
    response = await dev.sim.send_manscdp('<!DOCTYPE x [<!ENTITY a "aaaa">]><Notify><CmdType>Alarm</CmdType></Notify>')
    assert response.status == 400
    status, body = await api.get("/api/v1/alarms")
    assert status == 200


async def test_event_stream_ends_when_the_client_leaves(env):
    srv, api, dev, session = env
    baseline = len(srv.platform.events._callbacks)
    url = f"http://127.0.0.1:{srv.http_port}/api/v1/events"
    resp = await session.get(url, params={"type": ["alarm", "device_offline"]},
                             headers={"Authorization": f"Bearer {TOKEN}"})
    assert (await resp.content.readline()).startswith(b": connected")
    assert len(srv.platform.events._callbacks) == baseline + 1
    resp.close()
    await wait_for(lambda: len(srv.platform.events._callbacks) == baseline)
    status, body = await api.get("/api/v1/events", params={"type": "bogus"})
    assert status == 400


async def test_event_stream_ends_when_the_server_stops(env):
    srv, api, dev, session = env
    url = f"http://127.0.0.1:{srv.http_port}/api/v1/events"
    async with session.get(url, headers={"Authorization": f"Bearer {TOKEN}"}) as resp:
        assert (await resp.content.readline()).startswith(b": connected")
        await asyncio.wait_for(srv.stop(), 10)
        rest = await asyncio.wait_for(resp.content.read(), 5)
    assert b"event:" not in rest or rest.endswith(b"\n\n")
    srv.platform = None
