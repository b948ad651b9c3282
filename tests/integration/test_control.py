"""Control over loopback: PTZ, TeleBoot, RecordCmd, GuardCmd, AlarmCmd, IFameCmd, DragZoom,
HomePosition, DeviceConfig; via the library and the API, with the device's Result awaited."""

from __future__ import annotations

import logging

import pytest

from sip28181.manscdp import messages as m
from sip28181.manscdp.ptz import PtzAction, decode_ptz
from sip28181.platform.queries import DeviceRefused

from .scripted_device import NVR, channel_id, scripted_server

CAM = channel_id(1)


@pytest.fixture
async def env(config_factory):
    async with scripted_server(config_factory(catalog_query_on_register=False, query_timeout=2.0)) as (srv, api, dev):
        dev.answers["DeviceControl"] = lambda q: [m.DeviceControlResponse(sn=q.sn, device_id=q.device_id, result="OK")] \
            if (q.record_cmd or q.guard_cmd or q.alarm_cmd or q.home_position) else []
        dev.answers["DeviceConfig"] = lambda q: [m.DeviceConfigResponse(sn=q.sn, device_id=q.device_id, result="OK")]
        yield srv, api, dev


async def test_ptz_library_and_api(env, caplog):
    srv, api, dev = env
    with caplog.at_level(logging.INFO, "sip28181.manscdp"):
        cmd = await srv.platform.ptz(NVR, CAM, PtzAction.RIGHT, 0x80)
    assert cmd == "A50F010180000036"                        # PROTOCOL §6.3 worked example
    sent = dev.received[-1]
    assert sent.device_id == CAM and sent.ptz_cmd == cmd and decode_ptz(sent.ptz_cmd).action is PtzAction.RIGHT
    record = next(r for r in caplog.records if "PTZ right" in r.getMessage())
    assert record.device_id == NVR and record.call_id == dev.requests[-1].call_id
    status, body = await api.call("POST", f"/api/v1/devices/{NVR}/channels/{CAM}/ptz",
                                  json={"action": "preset_call", "preset": 5})
    assert status == 200 and body["ptz_cmd"] == "A50F01820005003C"
    assert dev.received[-1].ptz_cmd == "A50F01820005003C"
    status, body = await api.call("POST", f"/api/v1/devices/{NVR}/channels/{CAM}/ptz", json={"action": "stop"})
    assert status == 200 and body["ptz_cmd"] == "A50F0100000000B5"


async def test_controls_with_and_without_results(env):
    srv, api, dev = env
    assert await srv.platform.device_control(NVR, "record", CAM, start=True) == "OK"
    assert dev.received[-1].record_cmd == "Record"
    assert await srv.platform.device_control(NVR, "guard", None, arm=False) == "OK"
    assert (dev.received[-1].guard_cmd, dev.received[-1].device_id) == ("ResetGuard", NVR)
    assert await srv.platform.device_control(NVR, "reset_alarm", CAM, alarm_method="5", alarm_type="100002") == "OK"
    sent = dev.received[-1]
    assert sent.alarm_cmd == "ResetAlarm" and sent.info.alarm_type == "100002"
    assert await srv.platform.device_control(NVR, "home_position", CAM, enabled=True, reset_time=30, preset_index=2) == "OK"
    assert dev.received[-1].home_position.preset_index == 2
    assert await srv.platform.device_control(NVR, "tele_boot") is None
    assert dev.received[-1].tele_boot == "Boot"
    assert await srv.platform.device_control(NVR, "iframe", CAM) is None
    assert dev.received[-1].iframe_cmd == "Send" and b"<IFameCmd>" in dev.requests[-1].body
    await srv.platform.device_control(NVR, "drag_zoom", CAM, zoom_in=True, length=1920, width=1080, mid_point_x=960,
                                      mid_point_y=540, length_x=200, length_y=100)
    assert dev.received[-1].drag_zoom_in.length_x == 200
    assert await srv.platform.device_control(NVR, "config", None, heart_beat_interval=30) == "OK"
    assert dev.received[-1].basic_param.heart_beat_interval == 30 and dev.received[-1].device_id == NVR


async def test_device_answering_error_is_refused(env):
    srv, api, dev = env
    dev.answers["DeviceControl"] = lambda q: [m.DeviceControlResponse(sn=q.sn, device_id=q.device_id, result="ERROR")]
    with pytest.raises(DeviceRefused):
        await srv.platform.device_control(NVR, "record", CAM, start=False)
    status, body = await api.call("POST", f"/api/v1/devices/{NVR}/control",
                                  json={"command": "guard", "arm": True})
    assert status == 502 and "ERROR" in body["error"]["message"]


async def test_control_api(env):
    srv, api, dev = env
    status, body = await api.call("POST", f"/api/v1/devices/{NVR}/control",
                                  json={"command": "record", "channel_id": CAM, "start": True})
    assert status == 200 and body == {"device_id": NVR, "command": "record", "result": "OK"}
    status, body = await api.call("POST", f"/api/v1/devices/{NVR}/control", json={"command": "iframe", "channel_id": CAM})
    assert status == 200 and body["result"] is None
    status, body = await api.call("POST", f"/api/v1/devices/{NVR}/config", json={"name": "Lobby", "heart_beat_count": 3})
    assert status == 200 and body["result"] == "OK"
    assert (dev.received[-1].basic_param.name, dev.received[-1].basic_param.heart_beat_count) == ("Lobby", 3)


async def test_bad_control_bodies(env):
    srv, api, dev = env
    before = len(dev.received)
    base = f"/api/v1/devices/{NVR}"
    for path, body in ((f"/channels/{CAM}/ptz", {"action": "somersault"}),
                       (f"/channels/{CAM}/ptz", {"action": "right", "speed": -1}),
                       (f"/channels/{CAM}/ptz", {"action": "preset_call", "preset": 999}),
                       ("/control", {"command": "self_destruct"}),
                       ("/control", {"command": "record"}),
                       ("/control", {"command": "drag_zoom", "zoom_in": True}),
                       ("/control", {"command": "guard", "arm": True, "channel_id": "12"}),
                       ("/config", {"heart_beat_interval": 1})):
        status, answer = await api.call("POST", base + path, json=body)
        assert status == 422 and answer["error"]["message"] == "invalid request body", (path, body)
    status, answer = await api.call("POST", base + f"/channels/{CAM}/ptz", data=b"{not json")
    assert status == 400
    status, answer = await api.call("POST", base + "/config", json={})
    assert status == 400 and "at least one" in answer["error"]["message"]
    # preset commands need a preset: refused before anything is sent
    status, answer = await api.call("POST", base + f"/channels/{CAM}/ptz", json={"action": "preset_set"})
    assert status == 400
    assert len(dev.received) == before
    status, answer = await api.call("POST", f"/api/v1/devices/34020000001180000099/channels/{CAM}/ptz",
                                    json={"action": "stop"})
    assert status == 404
