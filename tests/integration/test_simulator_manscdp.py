"""The simulator's device management driven over loopback by a plain SipEndpoint acting as the
platform: queries and controls as MESSAGEs, SUBSCRIBE, alarms and catalog changes; every answer
read back with the MANSCDP codec."""

from __future__ import annotations

import asyncio

import pytest

from sip28181.device import DeviceSimulator
from sip28181.endpoint import SipEndpoint
from sip28181.manscdp import messages as m
from sip28181.manscdp.ptz import PtzAction, encode_ptz
from sip28181.sip.dialog import new_tag
from sip28181.sip.message import Request, Response
from sip28181.transport import Flow

from .conftest import wait_for

SERVER = "34020000002000000001"
DEVICE = "34020000001180000001"     # an NVR
MANSCDP = "Application/MANSCDP+xml"


class FakePlatform:
    """A SIP endpoint answering 200 to everything and keeping every MANSCDP body it receives."""

    def __init__(self) -> None:
        self.endpoint = SipEndpoint(self._on_request, user_agent="test-platform")
        self.received: list[tuple[Request, m.Message]] = []
        self.sn = 1000
        self.errors: list[Exception] = []

    async def start(self) -> int:
        return await self.endpoint.start("127.0.0.1", 0)

    def _on_request(self, request: Request, flow: Flow) -> None:
        if request.method in ("MESSAGE", "NOTIFY") and request.body:
            try:
                self.received.append((request, m.parse(request.body)))
            except Exception as exc:          # noqa: BLE001 - recorded and asserted on
                self.errors.append(exc)
        self.endpoint.respond(Response.for_request(request, 200, to_tag=new_tag()))

    def next_sn(self) -> int:
        self.sn += 1
        return self.sn

    def flow(self, sim: DeviceSimulator) -> Flow:
        return Flow(sim.transport_name, "127.0.0.1", sim.local_port)

    async def send(self, sim: DeviceSimulator, msg: m.Message, *, target: str | None = None,
                   body: bytes | None = None) -> Response:
        flow = self.flow(sim)
        uri = f"sip:{target or sim.device_id}@127.0.0.1:{sim.local_port}"
        request = self.endpoint.build_request(
            "MESSAGE", uri, from_uri=f"sip:{SERVER}@3402000000", to_uri=uri, flow=flow,
            body=body if body is not None else bytes(msg), content_type=MANSCDP)
        return await self.endpoint.request(request, flow, timeout=5)

    def answers(self, cls: type, sn: int | None = None, method: str = "MESSAGE") -> list[m.Message]:
        return [msg for req, msg in self.received
                if isinstance(msg, cls) and (sn is None or msg.sn == sn) and req.method == method]

    def requests(self, cls: type, sn: int | None = None) -> list[Request]:
        return [req for req, msg in self.received if isinstance(msg, cls) and (sn is None or msg.sn == sn)]


@pytest.fixture
async def platform():
    p = FakePlatform()
    await p.start()
    try:
        yield p
    finally:
        await p.endpoint.close()
    assert not p.errors, p.errors


def make_sim(platform: FakePlatform, transport: str = "udp", **kw) -> DeviceSimulator:
    return DeviceSimulator(kw.pop("device_id", DEVICE), server_id=SERVER, server_host="127.0.0.1",
                           server_port=platform.endpoint.port, transport=transport, **kw)


@pytest.fixture
async def sim(platform):
    device = make_sim(platform, channels=12, management={"groups": 2, "items_per_message": 4, "presets": 3})
    await device.start(register=False, keepalive=False)
    try:
        yield device
    finally:
        await device.stop(unregister=False)


async def gather_catalog(platform: FakePlatform, sn: int, timeout: float = 10.0) -> list[m.CatalogResponse]:
    def complete():
        packets = platform.answers(m.CatalogResponse, sn)
        ids = {i.device_id for p in packets for i in p.items}
        return packets if packets and len(ids) == packets[0].sum_num else None
    return await wait_for(complete, timeout=timeout)


@pytest.mark.parametrize("transport", ["udp", "tcp"])
async def test_catalog_answer_split_into_packets_with_a_tree(platform, transport):
    device = make_sim(platform, transport, channels=12, management={"groups": 2, "items_per_message": 4})
    await device.start(register=False, keepalive=False)
    try:
        sn = platform.next_sn()
        response = await platform.send(device, m.CatalogQuery(sn=sn, device_id=DEVICE))
        assert response.status == 200
        packets = await gather_catalog(platform, sn)
        assert len(packets) == 4 and all(p.sum_num == 15 and p.device_id == DEVICE for p in packets)
        assert [len(p.items) for p in packets] == [4, 4, 4, 3]
        items = {i.device_id: i for p in packets for i in p.items}
        assert len(items) == 15
        groups = [i for i in items.values() if i.device_id[10:13] == "215"]
        vorgs = [i for i in items.values() if i.device_id[10:13] == "216"]
        channels = [i for i in items.values() if i.device_id[10:13] == "131"]
        assert len(groups) == 1 and len(vorgs) == 2 and len(channels) == 12
        assert all(v.parent_id == groups[0].device_id and v.business_group_id == groups[0].device_id for v in vorgs)
        assert {c.parent_id for c in channels} == {v.device_id for v in vorgs}
        assert all(c.device_id.startswith(DEVICE[:10]) and len(c.device_id) == 20 for c in channels)
        assert channels[0].name == "通道1" and channels[0].online and channels[0].info.ptz_type == "1"
        # bodies in GB2312 by default, declared so
        raw = platform.requests(m.CatalogResponse, sn)[0].body
        assert raw.startswith(b'<?xml version="1.0" encoding="GB2312"?>') and "通道".encode("gb2312") in raw
    finally:
        await device.stop(unregister=False)


async def test_device_info_status_and_config(platform, sim):
    sn = platform.next_sn()
    await platform.send(sim, m.DeviceInfoQuery(sn=sn, device_id=DEVICE))
    (info,) = await wait_for(lambda: platform.answers(m.DeviceInfoResponse, sn))
    assert (info.result, info.channel, info.device_name, info.manufacturer) == ("OK", 12, sim.name, "sip28181")

    sn = platform.next_sn()
    await platform.send(sim, m.DeviceStatusQuery(sn=sn, device_id=DEVICE))
    (status,) = await wait_for(lambda: platform.answers(m.DeviceStatusResponse, sn))
    assert (status.result, status.online, status.status, status.is_online) == ("OK", "ONLINE", "OK", True)
    assert status.alarm_status[0].duty_status == "OFFDUTY" and len(status.device_time) == 19

    sn = platform.next_sn()
    config = m.DeviceConfig(sn=sn, device_id=DEVICE, basic_param=m.BasicParam(name="大门", heart_beat_interval=30,
                                                                            heart_beat_count=5))
    await platform.send(sim, config)
    (done,) = await wait_for(lambda: platform.answers(m.DeviceConfigResponse, sn))
    assert done.result == "OK" and sim.keepalive_interval == 30 and sim.name == "大门"

    sn = platform.next_sn()
    await platform.send(sim, m.ConfigDownloadQuery(sn=sn, device_id=DEVICE, config_type="BasicParam/VideoParamOpt"))
    (down,) = await wait_for(lambda: platform.answers(m.ConfigDownloadResponse, sn))
    assert (down.result, down.basic_param.name, down.basic_param.heart_beat_interval) == ("OK", "大门", 30)
    assert down.basic_param.heart_beat_count == 5 and down.video_param_opt.download_speed == "1/2/4"


async def test_record_info_over_a_time_range_in_packets(platform, sim):
    channel = sim.management.channel_ids[3]
    sn = platform.next_sn()
    query = m.RecordInfoQuery(sn=sn, device_id=channel, start_time="2024-05-20T08:00:00",
                              end_time="2024-05-20T11:15:00", type="all", secrecy=0)
    await platform.send(sim, query, target=channel)

    def complete():
        packets = platform.answers(m.RecordInfoResponse, sn)
        return packets if sum(len(p.items) for p in packets) == 7 else None
    packets = await wait_for(complete)
    assert len(packets) == 2 and all(p.sum_num == 7 and p.device_id == channel for p in packets)
    records = sorted((r for p in packets for r in p.items), key=lambda r: r.start_time)
    assert records[0].start_time == "2024-05-20T08:00:00" and records[-1].end_time == "2024-05-20T11:15:00"
    assert all(a.end_time == b.start_time for a, b in zip(records, records[1:]))
    assert all(r.device_id == channel and r.type == "time" and r.file_size > 0 for r in records)

    sn = platform.next_sn()               # an ID the device does not have: an empty answer
    await platform.send(sim, m.RecordInfoQuery(sn=sn, device_id="34020000001310999999", start_time="2024-05-20T08:00:00",
                                               end_time="2024-05-20T09:00:00"))
    (empty,) = await wait_for(lambda: platform.answers(m.RecordInfoResponse, sn))
    assert empty.sum_num == 0 and empty.items == []


async def test_ptz_and_controls(platform, sim):
    channel = sim.management.channel_ids[0]
    sn = platform.next_sn()
    await platform.send(sim, m.PresetQuery(sn=sn, device_id=channel), target=channel)
    (presets,) = await wait_for(lambda: platform.answers(m.PresetQueryResponse, sn))
    assert [(p.preset_id, p.preset_name) for p in presets.items] == [(1, "预置位1"), (2, "预置位2"), (3, "预置位3")]

    ptz_sn = platform.next_sn()
    await platform.send(sim, m.DeviceControl(sn=ptz_sn, device_id=channel, ptz_cmd=encode_ptz(PtzAction.UP_LEFT, 0x40)),
                        target=channel)
    await platform.send(sim, m.DeviceControl(sn=platform.next_sn(), device_id=channel,
                                             ptz_cmd=encode_ptz(PtzAction.PRESET_SET, preset=9),
                                             ptz_cmd_params=m.PtzCmdParams(preset_name="北门")), target=channel)
    await platform.send(sim, m.DeviceControl(sn=platform.next_sn(), device_id=channel, ptz_cmd="a50f01000000"
                                             "00b5"), target=channel)      # lower case: accepted
    await platform.send(sim, m.DeviceControl(sn=platform.next_sn(), device_id=channel, ptz_cmd="A50F0103800000B8"),
                        target=channel)                                       # left+right at once: refused
    await wait_for(lambda: len(sim.ptz_log) == 4)
    up_left, preset, stop, bad = sim.ptz_log
    assert (up_left.channel_id, up_left.command.action, up_left.command.pan_speed) == (channel, PtzAction.UP_LEFT, 0x40)
    assert (preset.command.action, preset.command.preset) == (PtzAction.PRESET_SET, 9)
    assert stop.command.action is PtzAction.STOP
    assert bad.command is None and "opposite" in bad.error

    record_sn = platform.next_sn()
    await platform.send(sim, m.DeviceControl(sn=record_sn, device_id=channel, record_cmd="Record"), target=channel)
    guard_sn = platform.next_sn()
    await platform.send(sim, m.DeviceControl(sn=guard_sn, device_id=DEVICE, guard_cmd="SetGuard"))
    (rec,) = await wait_for(lambda: platform.answers(m.DeviceControlResponse, record_sn))
    (guard,) = await wait_for(lambda: platform.answers(m.DeviceControlResponse, guard_sn))
    assert rec.result == guard.result == "OK"
    assert platform.answers(m.DeviceControlResponse, ptz_sn) == []     # PTZ has no business response

    sn = platform.next_sn()
    await platform.send(sim, m.PresetQuery(sn=sn, device_id=channel), target=channel)
    (presets,) = await wait_for(lambda: platform.answers(m.PresetQueryResponse, sn))
    assert (9, "北门") in [(p.preset_id, p.preset_name) for p in presets.items]

    sn = platform.next_sn()
    await platform.send(sim, m.DeviceStatusQuery(sn=sn, device_id=DEVICE))
    (status,) = await wait_for(lambda: platform.answers(m.DeviceStatusResponse, sn))
    assert status.alarm_status[0].duty_status == "ONDUTY" and status.record == "ON"


async def test_bad_bodies_get_4xx(platform, sim):
    bad = await platform.send(sim, None, body=b"<Query><CmdType>Catalog</CmdType><SN>x</SN></Query>")
    assert bad.status == 400 and "SN" in bad.reason
    hostile = await platform.send(sim, None, body=b'<!DOCTYPE x [<!ENTITY a "b">]><Query><CmdType>&a;</CmdType></Query>')
    assert hostile.status == 400
    unknown = await platform.send(sim, None, body=b"<Query><CmdType>Teleport</CmdType><SN>1</SN></Query>")
    assert unknown.status == 415


async def test_alarm_on_command_with_hj_type_and_image_url(platform, sim):
    channel = sim.management.channel_ids[1]
    sent = await sim.send_alarm(channel, method=5, alarm_type=100002, priority=2,
                                description="排放口颜色异常", image_urls=["http://192.0.2.12/evidence/1.jpg"])
    (alarm,) = await wait_for(lambda: platform.answers(m.AlarmNotify, sent.sn))
    assert (alarm.device_id, alarm.alarm_method, alarm.alarm_type, alarm.alarm_priority) == (channel, 5, 100002, 2)
    assert alarm.image_urls == ["http://192.0.2.12/evidence/1.jpg"] and alarm.alarm_description == "排放口颜色异常"
    assert len(alarm.alarm_time) == 19
    # the platform acknowledges with a Response Alarm of the same SN: the device records it
    await platform.send(sim, m.AlarmResponse(sn=sent.sn, device_id=channel, result="OK"))
    await wait_for(lambda: any(isinstance(x, m.AlarmResponse) and x.sn == sent.sn for x in sim.management.received))

    intrusion = await sim.send_alarm(channel, method=5, alarm_type=6, event_type=1)
    (got,) = await wait_for(lambda: platform.answers(m.AlarmNotify, intrusion.sn))
    assert (got.alarm_type, got.event_type) == (6, 1)


class Subscriber:
    """The platform side of one subscription dialog."""

    def __init__(self, platform: FakePlatform, sim: DeviceSimulator) -> None:
        self.platform, self.sim = platform, sim
        self.call_id = f"sub-{new_tag()}@127.0.0.1"
        self.tag = new_tag()
        self.cseq = 0
        self.remote_tag: str | None = None
        self.uri = f"sip:{sim.device_id}@127.0.0.1:{sim.local_port}"

    async def subscribe(self, body: bytes, expires: int, event: str) -> Response:
        self.cseq += 1
        flow = self.platform.flow(self.sim)
        request = self.platform.endpoint.build_request(
            "SUBSCRIBE", self.uri, from_uri=f"sip:{SERVER}@3402000000", to_uri=self.uri, flow=flow,
            call_id=self.call_id, from_tag=self.tag, cseq=self.cseq, body=body, content_type=MANSCDP,
            extra=[("Event", event), ("Expires", expires),
                   ("Contact", f"<sip:{SERVER}@127.0.0.1:{self.platform.endpoint.port}>")])
        if self.remote_tag:
            request.headers.set("To", f"<{self.uri}>;tag={self.remote_tag}")
        response = await self.platform.endpoint.request(request, flow, timeout=5)
        if response.status == 200:
            self.remote_tag = response.to.tag
        return response

    def notifies(self) -> list[tuple[Request, m.Message]]:
        return [(r, msg) for r, msg in self.platform.received if r.method == "NOTIFY" and r.call_id == self.call_id]


async def test_catalog_subscription_notifies_in_the_dialog(platform, sim):
    sub = Subscriber(platform, sim)
    query = m.CatalogQuery(sn=platform.next_sn(), device_id=DEVICE)
    response = await sub.subscribe(bytes(query), 60, "Catalog;id=4711")
    assert response.status == 200 and sub.remote_tag and response.headers.get("Expires") == "60"
    assert response.headers.get("Event") == "Catalog;id=4711"
    ack = m.parse(response.body)
    assert (ack.kind, ack.cmd_type, ack.sn, ack.find_extra("Result").text) == (m.Kind.RESPONSE, "Catalog", query.sn, "OK")

    channel = sim.management.channel_ids[2]
    (sent,) = await sim.notify_catalog("OFF", [channel])
    (req, notify), = await wait_for(lambda: sub.notifies())
    assert isinstance(notify, m.CatalogNotify) and notify.sn == sent.sn
    assert [(i.device_id, i.event) for i in notify.items] == [(channel, "OFF")]
    assert req.from_.tag == sub.remote_tag and req.to.tag == sub.tag and req.headers.get("Event") == "Catalog;id=4711"
    assert req.headers.get("Subscription-State").startswith("active;expires=")
    assert sim.management.catalog[channel].status == "OFF"

    new_id = sim.management.channel_id(500)
    await sim.notify_catalog("ADD", [new_id])
    await wait_for(lambda: len(sub.notifies()) == 2)
    added = sub.notifies()[1][1].items[0]
    assert (added.device_id, added.event, added.name) == (new_id, "ADD", sim.management.catalog[new_id].name)
    assert added.manufacturer == "sip28181"

    refresh = await sub.subscribe(bytes(query), 120, "Catalog;id=4711")      # in-dialog refresh
    assert refresh.status == 200 and refresh.to.tag == sub.remote_tag and refresh.headers.get("Expires") == "120"
    end = await sub.subscribe(bytes(query), 0, "Catalog;id=4711")           # unsubscribe
    assert end.status == 200
    (last_req, _), = await wait_for(lambda: sub.notifies()[2:])
    assert last_req.headers.get("Subscription-State").startswith("terminated")
    assert sim.management.subscriptions == {}
    # without a subscription, catalog changes travel as MESSAGE
    (msg_sent,) = await sim.notify_catalog("ON", [channel])
    await wait_for(lambda: platform.answers(m.CatalogNotify, msg_sent.sn, method="MESSAGE"))


async def test_alarm_subscription_and_expiry(platform, sim):
    sub = Subscriber(platform, sim)
    response = await sub.subscribe(bytes(m.AlarmQuery(sn=platform.next_sn(), device_id=DEVICE)), 1, "presence")
    assert response.status == 200
    sent = await sim.send_alarm(method=2, alarm_type=1)
    (req, alarm), = await wait_for(lambda: sub.notifies())
    assert isinstance(alarm, m.AlarmNotify) and alarm.sn == sent.sn and req.headers.get("Event") == "presence"
    assert platform.answers(m.AlarmNotify, sent.sn, method="MESSAGE") == []
    # Expires 1 s: the device ends the subscription itself
    (final, _), = await wait_for(lambda: sub.notifies()[1:], timeout=5)
    assert final.headers.get("Subscription-State") == "terminated;reason=timeout"


async def test_mobile_position_subscription_is_periodic(platform):
    device = make_sim(platform, device_id="34020000001320000077", channels=1, management={"mobile_form": "2022"})
    await device.start(register=False, keepalive=False)
    try:
        sub = Subscriber(platform, device)
        body = bytes(m.MobilePositionQuery(sn=platform.next_sn(), device_id=device.device_id, interval=1))
        assert (await sub.subscribe(body, 30, "MobilePosition")).status == 200
        notes = await wait_for(lambda: sub.notifies() if len(sub.notifies()) >= 2 else None, timeout=5)
        positions = [msg.positions()[0] for _, msg in notes[:2]]
        assert all(isinstance(msg, m.MobilePositionNotify) and msg.items for _, msg in notes[:2])
        assert all(119 < p.longitude < 121 and 29 < p.latitude < 31 for p in positions)
        assert positions[0].longitude != positions[1].longitude          # it moves
        assert all(r.headers.get("Subscription-State").startswith("active") for r, _ in notes[:2])
    finally:
        await device.stop(unregister=False)


async def test_subscribe_to_something_else_is_refused(platform, sim):
    sub = Subscriber(platform, sim)
    response = await sub.subscribe(bytes(m.DeviceInfoQuery(sn=1, device_id=DEVICE)), 60, "Catalog")
    assert response.status == 489
    broken = await Subscriber(platform, sim).subscribe(b"<Query>", 60, "Catalog")
    assert broken.status == 400


@pytest.mark.parametrize("options, packets_expected", [
    ({}, 5000),                                                       # defaults: 2 a packet, each after a 200
    ({"items_per_message": 10, "window": 16, "pacing": 0.0002}, 1000),   # a window, paced
], ids=["annex-m", "windowed"])
async def test_ten_thousand_channels_over_udp_arrive_complete(platform, options, packets_expected):
    device = make_sim(platform, channels=10_000, management=options)
    await device.start(register=False, keepalive=False)
    try:
        sn = platform.next_sn()
        assert (await platform.send(device, m.CatalogQuery(sn=sn, device_id=DEVICE))).status == 200
        packets = await gather_catalog(platform, sn, timeout=120)
        assert len(packets) == packets_expected and {p.sum_num for p in packets} == {10_000}
        ids = [i.device_id for p in packets for i in p.items]
        assert len(ids) == len(set(ids)) == 10_000
        assert set(ids) == set(device.management.channel_ids)
    finally:
        await device.stop(unregister=False)


async def test_cli_flags_reach_the_simulator(platform):
    import signal
    import socket
    import sys

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "sip28181.device", "--device-id", DEVICE, "--server-id", SERVER,
        "--server-port", str(platform.endpoint.port), "--local-port", str(port), "--channels", "5",
        "--groups", "1", "--items-per-message", "3", "--charset", "UTF-8", "--duration", "30",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    try:
        await wait_for(lambda: platform.answers(m.KeepaliveNotify), timeout=15)    # up and registered
        device = DeviceSimulator(DEVICE, local_port=port)                           # only for its address
        sn = platform.next_sn()
        await platform.send(device, m.CatalogQuery(sn=sn, device_id=DEVICE))
        packets = await gather_catalog(platform, sn)
        assert [len(p.items) for p in packets] == [3, 3, 1] and packets[0].sum_num == 7
        assert platform.requests(m.CatalogResponse, sn)[0].body.startswith(b'<?xml version="1.0" encoding="UTF-8"?>')
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGINT)
        out, _ = await asyncio.wait_for(proc.communicate(), 15)
    assert proc.returncode == 0, out.decode()
