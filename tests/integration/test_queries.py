"""Live queries over loopback: DeviceInfo, DeviceStatus, RecordInfo, PresetQuery, ConfigDownload,
through the library calls and the HTTP API (errors included)."""

from __future__ import annotations

import pytest

from sip28181.errors import NotFoundError
from sip28181.manscdp import messages as m
from sip28181.platform.queries import DeviceRefused, QueryTimeout

from .scripted_device import NVR, channel_id, scripted_server

CAM = channel_id(1)


@pytest.fixture
async def env(config_factory):
    async with scripted_server(config_factory(catalog_query_on_register=False, query_timeout=2.0)) as env:
        yield env


def records(q: m.RecordInfoQuery, n: int) -> list[m.RecordItem]:
    return [m.RecordItem(device_id=q.device_id, name="Camera 1", file_path=f"/rec/{i}.mp4",
                         start_time=f"2024-05-20T{i:02d}:00:00", end_time=f"2024-05-20T{i:02d}:59:59",
                         type="time", secrecy=0, file_size=1000 + i) for i in range(n)]


async def test_device_info_and_status(env):
    srv, api, dev = env
    dev.answers["DeviceInfo"] = lambda q: [m.DeviceInfoResponse(sn=q.sn, device_id=NVR, device_name="NVR Lobby",
                                                                result="OK", manufacturer="Example", model="NVR-16",
                                                                firmware="V4.2.1", channel=16)]
    dev.answers["DeviceStatus"] = lambda q: [m.DeviceStatusResponse(sn=q.sn, device_id=NVR, result="OK", online="ONLINE",
                                                                    status="OK", record="OFF", encode_status="ON",
                                                                    device_time="2024-05-20T10:00:00")]
    info = await srv.platform.query_device_info(NVR)
    assert (info.device_name, info.firmware, info.channel) == ("NVR Lobby", "V4.2.1", 16)
    status, body = await api.get(f"/api/v1/devices/{NVR}/info")
    assert status == 200 and body["manufacturer"] == "Example" and body["channel"] == 16
    status, body = await api.get(f"/api/v1/devices/{NVR}/status")
    assert status == 200 and (body["online"], body["status"], body["encode"]) == ("ONLINE", "OK", "ON")
    assert [q.cmd_type for q in dev.received] == ["DeviceInfo", "DeviceInfo", "DeviceStatus"]


async def test_record_info_gathered_across_packets_by_time_range(env):
    srv, api, dev = env

    def answer(q):
        items = records(q, 7)
        # the device echoes the channel ID, sends three parts, one twice, the last first
        parts = [m.RecordInfoResponse(sn=q.sn, device_id=q.device_id, name="Camera 1", sum_num=7, items=items[i:i + 3])
                 for i in range(0, 7, 3)]
        return [parts[2], parts[0], parts[0], parts[1]]
    dev.answers["RecordInfo"] = answer
    result = await srv.platform.query_record_info(NVR, CAM, "2024-05-20T00:00:00", "2024-05-21T00:00:00")
    assert not result.partial and result.sum_num == 7 and len(result.items) == 7
    assert [r["start_time"][11:13] for r in result.items] == ["00", "01", "02", "03", "04", "05", "06"]
    q = dev.received[-1]
    assert (q.device_id, q.start_time, q.end_time, q.type) == (CAM, "2024-05-20T00:00:00", "2024-05-21T00:00:00", "all")
    status, body = await api.get(f"/api/v1/devices/{NVR}/channels/{CAM}/records",
                                 params={"start": "2024-05-20T00:00:00", "end": "2024-05-20T12:00:00"})
    assert status == 200 and len(body["items"]) == 7 and body["items"][0]["file_path"] == "/rec/0.mp4"
    assert dev.received[-1].end_time == "2024-05-20T12:00:00"
    # an empty answer
    dev.answers["RecordInfo"] = lambda q: [m.RecordInfoResponse(sn=q.sn, device_id=q.device_id, sum_num=0, items=[])]
    result = await srv.platform.query_record_info(NVR, CAM, 0, 3600)
    assert result.items == [] and not result.partial


async def test_presets_and_config_download(env):
    srv, api, dev = env
    dev.answers["PresetQuery"] = lambda q: [m.PresetQueryResponse(sn=q.sn, device_id=q.device_id, sum_num=2, items=[
        m.PresetItem(preset_id=2, preset_name="Car park"), m.PresetItem(preset_id=1, preset_name="Gate")])]
    dev.answers["ConfigDownload"] = lambda q: [m.ConfigDownloadResponse(
        sn=q.sn, device_id=NVR, result="OK",
        basic_param=m.BasicParam(name="NVR", expiration=3600, heart_beat_interval=60, heart_beat_count=3))]
    status, body = await api.get(f"/api/v1/devices/{NVR}/channels/{CAM}/presets")
    assert status == 200 and [(p["preset_id"], p["preset_name"]) for p in body["items"]] == [(1, "Gate"), (2, "Car park")]
    status, body = await api.get(f"/api/v1/devices/{NVR}/config", params={"types": "BasicParam/VideoParamOpt"})
    assert status == 200 and body["config"]["BasicParam"]["heart_beat_interval"] == 60
    assert "VideoParamOpt" not in body["config"]          # absent: not supported by this device
    assert dev.received[-1].config_type == "BasicParam/VideoParamOpt"


async def test_timeouts_refusals_unknown_and_offline_devices(env):
    srv, api, dev = env
    with pytest.raises(QueryTimeout):
        await srv.platform.query_device_status(NVR, timeout=0.3)
    status, body = await api.get(f"/api/v1/devices/{NVR}/status")
    assert status == 504 and "did not answer" in body["error"]["message"]
    dev.status = 403
    with pytest.raises(DeviceRefused):
        await srv.platform.query_device_info(NVR)
    status, body = await api.get(f"/api/v1/devices/{NVR}/info")
    assert status == 502 and "403" in body["error"]["message"]
    unknown = "34020000001180000099"
    with pytest.raises(NotFoundError):
        await srv.platform.query_device_info(unknown)
    for path in (f"/devices/{unknown}/info", f"/devices/{unknown}/channels", f"/devices/{unknown}/tree",
                 f"/devices/{unknown}/channels/{CAM}/presets"):
        status, body = await api.get("/api/v1" + path)
        assert status == 404 and body["error"]["status"] == 404, path
    await dev.sim.register(expires=0)        # offline now
    status, body = await api.get(f"/api/v1/devices/{NVR}/info")
    assert status == 404 and "offline" in body["error"]["message"]
    status, body = await api.call("POST", f"/api/v1/devices/{NVR}/catalog")
    assert status == 404


async def test_bad_query_parameters(env):
    srv, api, dev = env
    base = f"/api/v1/devices/{NVR}/channels/{CAM}/records"
    for params in ({"start": "2024-05-21T00:00:00", "end": "2024-05-20T00:00:00"},   # reversed
                   {"start": "yesterday", "end": "2024-05-20T00:00:00"},
                   {"end": "2024-05-20T00:00:00"},
                   {"start": "2020-01-01T00:00:00", "end": "2024-01-01T00:00:00"},    # too long
                   {"start": "2024-05-20T00:00:00", "end": "2024-05-21T00:00:00", "type": "bogus"}):
        status, body = await api.get(base, params=params)
        assert status == 400 and body["error"]["message"] == "invalid query parameters", params
    status, body = await api.get(f"/api/v1/devices/{NVR}/channels/not-an-id/records")
    assert status == 400
    status, body = await api.get(f"/api/v1/devices/{NVR}/config", params={"types": "Basic Param;drop"})
    assert status == 400
    status, body = await api.get(f"/api/v1/devices/{NVR}/channels", params={"limit": "0"})
    assert status == 400
    status, body = await api.get(f"/api/v1/devices/{NVR}/channels", params={"status": "MAYBE"})
    assert status == 400
    assert not any(q.cmd_type == "RecordInfo" for q in dev.received)
