"""The province's queries and controls reach the device under the city, and the answers come back.

Simulator -> city -> province, every hop over real loopback sockets.
"""

from __future__ import annotations

import datetime as dt

import aiohttp
import pytest

from sip28181.device.simulator import DeviceSimulator
from sip28181.errors import Sip28181Error
from sip28181.server import Server

from sip28181.manscdp import messages as m
from sip28181.manscdp.ptz import PtzAction
from sip28181.platform.events import AlarmReceived
from sip28181.platform.queries import DeviceRefused

from ..integration.conftest import Api, loop_errors, make_config, wait_for  # noqa: F401  (autouse: no leaked task errors)
from .control_support import CITY, DEVICE, DEVICE_PASSWORD, PROVINCE, city_chain


def _day() -> tuple[dt.datetime, dt.datetime]:
    start = dt.datetime(2024, 5, 20, 8, 0, 0)
    return start, start + dt.timedelta(hours=3)


async def test_ptz_and_record_control_reach_the_device(tmp_path):
    async with city_chain(tmp_path) as chain:
        ch = chain.channels[1]
        cmd = await chain.province.platform.ptz(CITY, ch, "left", 100)
        sim = chain.device.management
        entry = await wait_for(lambda: next((e for e in sim.ptz_log if e.channel_id == ch), None))
        assert entry.raw == cmd                         # PTZCmd verbatim
        assert entry.command.action is PtzAction.LEFT
        # a command with a business Response: the device's Result comes back to the province
        assert await chain.province.platform.device_control(CITY, "record", ch, start=True) == "OK"
        assert sim.recording[ch] is True
        log = chain.city.platform.cascade.forward.log
        entries = await log.search(source=PROVINCE)
        assert [(e.command, e.result, e.device_id, e.channel_id) for e in reversed(entries)] == [
            ("PTZCmd", "ok", DEVICE, ch), ("RecordCmd", "ok", DEVICE, ch)]
        assert cmd in entries[-1].detail
        # the province logged its own controls as local ones, against the city
        status, body = await chain.province_api.get("/api/v1/control-log", params={"source": "local"})
        assert status == 200
        assert [(e["command"], e["result"], e["device_id"], e["channel_id"]) for e in body] == [
            ("RecordCmd", "ok", CITY, ch), ("PTZCmd", "ok", CITY, ch)]


async def test_local_control_holds_the_channel_against_the_upper(tmp_path):
    async with city_chain(tmp_path) as chain:
        held, free = chain.channels
        status, body = await chain.city_api.call("POST", f"/api/v1/devices/{DEVICE}/channels/{held}/ptz",
                                                 json={"action": "up", "speed": 50})
        assert status == 200, body
        sim = chain.device.management
        await wait_for(lambda: len(sim.ptz_log) == 1)
        await chain.province.platform.ptz(CITY, held, "down", 50)
        city_log = chain.city.platform.cascade.forward.log
        async def refused_entries():
            return [e for e in await city_log.search() if e.result == "refused"]
        refused = await wait_for(refused_entries)
        assert refused[0].command == "PTZCmd" and refused[0].channel_id == held
        assert "local control holds" in refused[0].detail
        with pytest.raises(DeviceRefused):            # Result ERROR relayed for an answered command
            await chain.province.platform.device_control(CITY, "guard", held, arm=True)
        assert sim.guard == "OFFDUTY"
        # the other channel is not held
        await chain.province.platform.ptz(CITY, free, "zoom_in", 5)
        await wait_for(lambda: any(e.channel_id == free for e in sim.ptz_log))
        assert [e.channel_id for e in sim.ptz_log] == [held, free]
        # the control log, over the city's API
        status, body = await chain.city_api.get("/api/v1/control-log", params={"device_id": held})
        assert status == 200
        assert [(e["source"], e["command"], e["result"]) for e in body] == [
            (PROVINCE, "GuardCmd", "refused"), (PROVINCE, "PTZCmd", "refused"),
            ("local", "PTZCmd", "ok")]
        status, body = await chain.city_api.get("/api/v1/control-log", params={"source": PROVINCE,
                                                                               "limit": 1})
        assert status == 200 and len(body) == 1 and body[0]["channel_id"] == free
        status, text = await chain.city_api.get("/metrics")
        assert status == 200
        assert 'sip28181_controls_total{result="refused",source="upper"} 2.0' in text
        assert 'sip28181_controls_total{result="ok",source="local"} 1.0' in text
        assert 'sip28181_upper_requests_total{cmd_type="DeviceControl"} 3.0' in text


async def test_hold_zero_and_control_not_allowed(tmp_path):
    async with city_chain(tmp_path, upper={"allow_control": False},
                          city={"cascade_local_control_hold": 0.0}) as chain:
        ch = chain.channels[0]
        with pytest.raises(DeviceRefused):
            await chain.province.platform.device_control(CITY, "record", ch, start=True)
        await chain.province.platform.ptz(CITY, ch, "right", 10)
        log = chain.city.platform.cascade.forward.log
        async def two():
            return len(entries := await log.search()) == 2 and entries
        entries = await wait_for(two)
        assert {e.result for e in entries} == {"refused"}
        assert all("not allowed" in e.detail for e in entries)
        assert chain.device.management.ptz_log == [] and ch not in chain.device.management.recording
        assert chain.city.platform.cascade.forward.arbiter.held(DEVICE, ch, 1e12) is None


async def test_record_info_is_forwarded_and_relayed_in_parts(tmp_path):
    async with city_chain(tmp_path, upper={"catalog_group": 2},
                          management={"record_segment": 1800, "records_per_message": 1}) as chain:
        ch = chain.channels[0]
        start, end = _day()
        result = await chain.province.platform.query_record_info(CITY, ch, start, end)
        expected = chain.device.management.records(m.RecordInfoQuery(
            device_id=ch, start_time=start.strftime("%Y-%m-%dT%H:%M:%S"),
            end_time=end.strftime("%Y-%m-%dT%H:%M:%S"), type="all"))
        assert len(expected) == 6
        assert result.sum_num == 6 and not result.partial
        assert [(i["device_id"], i["start_time"], i["end_time"], i["file_path"], i["file_size"]) for i in result.items] \
            == [(ch, e.start_time, e.end_time, e.file_path, e.file_size) for e in expected]
        # a channel the city does not have: an empty answer, at once
        empty = await chain.province.platform.query_record_info(CITY, "44010000001320999999", start, end, timeout=5)
        assert empty.sum_num == 0 and empty.items == []


async def test_presets_and_config_download(tmp_path):
    async with city_chain(tmp_path) as chain:
        ch = chain.channels[0]
        await chain.province.platform.ptz(CITY, ch, "preset_set", preset=7)
        await wait_for(lambda: chain.device.management.presets.get(ch))
        presets = await chain.province.platform.query_presets(CITY, ch)
        expected = sorted(chain.device.management.presets[ch].items())
        assert (7, "预置位7") in expected and len(expected) > 1
        assert [(p.preset_id, p.preset_name) for p in presets.items] == expected
        queries = chain.province.platform.management.queries
        # ConfigDownload of a channel goes to the device; of the city itself, the city answers
        answer = await queries.request(CITY, m.ConfigDownloadQuery(sn=queries.next_sn(), device_id=ch,
                                                                   config_type="BasicParam"))
        assert answer.result == "OK" and answer.device_id == ch
        assert answer.basic_param.name == chain.device.name
        own = await chain.province.platform.config_download(CITY)
        assert own.basic_param.expiration == 3600 and own.basic_param.heart_beat_interval == 5
        unknown = await queries.request(CITY, m.ConfigDownloadQuery(sn=queries.next_sn(),
                                                                     device_id="44010000001320999999",
                                                                     config_type="BasicParam"))
        assert unknown.result == "ERROR"
        # DeviceConfig naming a channel goes to that channel (not to the NVR it sits behind), Result relayed
        answer = await queries.request(CITY, m.DeviceConfig(sn=queries.next_sn(), device_id=ch,
                                                            basic_param=m.BasicParam(name="Outfall 2")))
        assert answer.result == "OK" and answer.device_id == ch
        config = chain.device.management.controls[-1]
        assert isinstance(config, m.DeviceConfig) and config.device_id == ch
        assert chain.device.name == "Outfall 2"


async def test_bad_requests_from_the_upper(tmp_path):
    async with city_chain(tmp_path) as chain:
        link = chain.province.platform
        state = link.registry.get(CITY)
        queries = link.management.queries
        # malformed XML: 400, and the city keeps serving
        for body in (b"not xml", b"<Query><SN>1</SN><DeviceID>1</DeviceID></Query>"):
            response = await queries.send(state, body)
            assert response.status == 400
        # an answered control on an unknown channel: Result ERROR, nothing reaches the device
        with pytest.raises(DeviceRefused):
            await link.device_control(CITY, "home_position", "44010000001320999999", enabled=True)
        # a control naming the city itself is refused too
        with pytest.raises(DeviceRefused):
            await link.device_control(CITY, "guard", None, arm=True)
        assert chain.device.management.controls == []
        status, body = await chain.city_api.get("/api/v1/control-log", params={"device_id": "123"})
        assert status == 400
        status, body = await chain.city_api.get("/api/v1/control-log", params={"source": "nobody"})
        assert status == 400
        status, body = await chain.city_api.get("/api/v1/control-log",
                                                params={"start": "2024-05-02T00:00:00", "end": "2024-05-01T00:00:00"})
        assert status == 400
        status, body = await chain.city_api.get("/api/v1/control-log", params={"source": PROVINCE})
        assert status == 200 and {e["result"] for e in body} == {"refused"} and len(body) == 2


async def test_mapped_ids_are_translated_both_ways(tmp_path):
    """With ``ids = "map"`` the province only knows upper-side IDs: controls and queries name them,
    the device gets its own, and answers and alarms come back in the province's scheme."""
    async with city_chain(tmp_path, upper={"ids": "map", "id_prefix": "4488"}) as chain:
        ch = chain.channels[0]
        up = "4488" + ch[4:]
        link = chain.city.platform.cascade.link(PROVINCE)
        assert chain.city.platform.cascade.upper_side_id(link, DEVICE, ch) == up
        await chain.province.platform.ptz(CITY, up, "up", 20)
        entry = await wait_for(lambda: next(iter(chain.device.management.ptz_log), None))
        assert entry.channel_id == ch
        start, end = _day()
        records = await chain.province.platform.query_record_info(CITY, up, start, end)
        assert records.sum_num == 6 and {i["device_id"] for i in records.items} == {up}
        # the local ID is not what the province may name
        empty = await chain.province.platform.query_record_info(CITY, ch, start, end)
        assert empty.sum_num == 0
        with pytest.raises(DeviceRefused):
            await chain.province.platform.device_control(CITY, "record", ch, start=True)
        assert await chain.province.platform.device_control(CITY, "record", up, start=True) == "OK"
        assert chain.device.management.recording == {ch: True}
        entries = await chain.city.platform.cascade.forward.log.search(source=PROVINCE)
        assert [(e.command, e.device_id, e.channel_id, e.result) for e in reversed(entries)] == [
            ("PTZCmd", DEVICE, ch, "ok"), ("RecordCmd", ch, None, "refused"), ("RecordCmd", DEVICE, ch, "ok")]
        received: list[AlarmReceived] = []
        chain.province.platform.events.on(received.append, AlarmReceived)
        await chain.device.send_alarm(ch, method=5, alarm_type=100001, image_urls=["http://192.0.2.1/x.jpg"])
        await wait_for(lambda: received)
        assert received[0].alarm.alarm_device_id == up
        assert received[0].alarm.image_urls == ["http://192.0.2.1/x.jpg"]


async def test_the_control_log_survives_a_restart(tmp_path):
    config = make_config(tmp_path, password=DEVICE_PASSWORD)
    server = Server(config)
    await server.start()
    try:
        async with DeviceSimulator(DEVICE, server_id=config.sip_id, server_port=server.platform.sip_port,
                                   password=DEVICE_PASSWORD) as device:
            await wait_for(lambda: (s := server.platform.registry.get(DEVICE)) is not None and s.status == "online")
            ch = device.management.channel_ids[0]
            await server.platform.ptz(DEVICE, ch, "zoom_out", 3)
            with pytest.raises(Sip28181Error):
                await server.platform.ptz("44010000001320999999", None, "stop")
    finally:
        await server.stop()
    server = Server(config)
    await server.start()
    try:
        async with aiohttp.ClientSession() as session:
            api = Api(session, f"http://127.0.0.1:{server.http_port}")
            status, body = await api.get("/api/v1/control-log")
            assert status == 200
            assert [(e["source"], e["device_id"], e["channel_id"], e["command"], e["result"]) for e in body] == [
                ("local", "44010000001320999999", None, "PTZCmd", "failed"), ("local", DEVICE, ch, "PTZCmd", "ok")]
            assert "not found" in body[0]["detail"]
            status, body = await api.get("/api/v1/control-log", params={"device_id": ch, "start": "2000-01-01T00:00:00"})
            assert status == 200 and len(body) == 1
    finally:
        await server.stop()
