"""A device's alarms reach the province through the city, every field intact (HJ included)."""

from __future__ import annotations

import dataclasses

from sip28181.cascade.alarms import alarm_matches
from sip28181.manscdp import messages as m
from sip28181.platform.events import AlarmReceived
from sip28181.store.base import AlarmFilter

from ..integration.conftest import loop_errors, wait_for  # noqa: F401  (autouse: no leaked task errors)
from .control_support import CITY, DEVICE, PROVINCE, city_chain


def _comparable(record) -> dict:
    """An alarm record without what legitimately differs between levels."""
    return {k: v for k, v in dataclasses.asdict(record).items() if k not in ("id", "device_id", "at", "sn")}


async def test_hj_alarm_with_image_reaches_the_province_unchanged(tmp_path):
    async with city_chain(tmp_path) as chain:
        at_province: list[AlarmReceived] = []
        at_city: list[AlarmReceived] = []
        chain.province.platform.events.on(at_province.append, AlarmReceived)
        chain.city.platform.events.on(at_city.append, AlarmReceived)
        ch = chain.channels[0]
        url = "http://192.0.2.12/evidence/44010000001320000001/20240520093012.jpg"
        await chain.device.send_alarm(ch, method=5, alarm_type=100002, priority=2, image_urls=[url],
                                      description="排放颜色异常 outlet 2", time="2024-05-20T09:30:12",
                                      longitude=113.3612, latitude=23.1247)
        await wait_for(lambda: at_province)
        up, down = at_province[0].alarm, at_city[0].alarm
        assert at_province[0].device_id == CITY and up.device_id == CITY
        assert up.alarm_device_id == ch
        assert (up.method, up.alarm_type, up.priority, up.image_urls, up.description, up.alarm_time) == (
            5, 100002, 2, [url], "排放颜色异常 outlet 2", "2024-05-20T09:30:12")
        assert _comparable(up) == _comparable(down)
        # stored at the province with every field
        await chain.province.platform.flush()
        stored = await chain.province.platform.store.search_alarms(AlarmFilter(device_id=ch))
        assert len(stored) == 1 and stored[0].image_urls == [url] and stored[0].alarm_type == 100002
        # the province's Response Alarm reached the city and matched what it sent
        sent = chain.city.platform.cascade.alarms.sent
        entry = await wait_for(lambda: next((e for e in sent.values() if e.result), None))
        assert (entry.upper_id, entry.upper_side_id, entry.result, entry.delivered) == (PROVINCE, ch, "OK", True)
        status, text = await chain.city_api.get("/metrics")
        assert status == 200 and 'sip28181_upper_alarms_total{result="sent"} 1.0' in text
        # the city acknowledged the device too (its own Response Alarm, the device's SN)
        await wait_for(lambda: any(msg.cmd_type == "Alarm" for msg in chain.device.management.received))


async def test_alarm_fields_nobody_knows_are_kept(tmp_path):
    """Unknown Info children, an AlarmTypeParam and an element without a field travel verbatim."""
    async with city_chain(tmp_path) as chain:
        at_province: list[AlarmReceived] = []
        chain.province.platform.events.on(at_province.append, AlarmReceived)
        ch = chain.channels[1]
        xml = (f"<Notify>\r\n<CmdType>Alarm</CmdType>\r\n<SN>77</SN>\r\n<DeviceID>{ch}</DeviceID>\r\n"
               "<AlarmPriority>1</AlarmPriority>\r\n<AlarmMethod>5</AlarmMethod>\r\n"
               "<AlarmTime>2024-05-20T10:00:00</AlarmTime>\r\n"
               "<Info>\r\n<AlarmType>6</AlarmType>\r\n<AlarmTypeParam><EventType>2</EventType></AlarmTypeParam>\r\n"
               "<Zone>outfall-2</Zone>\r\n</Info>\r\n"
               "<Info>\r\n<ImageURL>http://192.0.2.12/a.jpg</ImageURL>\r\n</Info>\r\n"
               "<Info>\r\n<ImageURL>http://192.0.2.12/b.jpg</ImageURL>\r\n</Info>\r\n"
               "<Vendor>kept</Vendor>\r\n</Notify>\r\n")
        response = await chain.device.send_manscdp(xml)
        assert response.status == 200
        await wait_for(lambda: at_province)
        up = at_province[0].alarm
        assert up.alarm_device_id == ch and up.alarm_type == 6 and up.event_type == 2
        assert up.image_urls == ["http://192.0.2.12/a.jpg", "http://192.0.2.12/b.jpg"]
        assert up.infos[0]["Zone"] == "outfall-2"
        assert up.extra == {"Vendor": "kept"}
        assert DEVICE not in {a.alarm_device_id for a in (e.alarm for e in at_province)}


async def test_alarms_go_by_notify_to_an_upper_that_subscribed(tmp_path):
    async with city_chain(tmp_path, province={"alarm_subscribe": True}) as chain:
        cascade = chain.city.platform.cascade
        link = cascade.link(PROVINCE)
        sub = (await wait_for(lambda: cascade.subscriptions.active(link, "Alarm")))[0]
        at_province: list[AlarmReceived] = []
        chain.province.platform.events.on(at_province.append, AlarmReceived)
        ch = chain.channels[0]
        await chain.device.send_alarm(ch, method=5, alarm_type=100003, image_urls=["http://192.0.2.9/n.jpg"])
        await wait_for(lambda: at_province)
        assert at_province[0].alarm.image_urls == ["http://192.0.2.9/n.jpg"]
        assert at_province[0].alarm.alarm_type == 100003 and at_province[0].alarm.alarm_device_id == ch
        entry = next(iter(cascade.alarms.sent.values()))
        assert (entry.via, entry.delivered) == ("NOTIFY", True)
        assert sub.notifies == 1


def test_alarm_subscription_filters():
    alarm = m.AlarmNotify(sn=1, device_id="44010000001320000001", alarm_priority=2, alarm_method=5,
                          alarm_type=100002)
    assert alarm_matches(m.AlarmQuery(), alarm)
    assert alarm_matches(m.AlarmQuery(start_alarm_priority="0", end_alarm_priority="0", alarm_method="0"), alarm)
    assert alarm_matches(m.AlarmQuery(start_alarm_priority="1", end_alarm_priority="2", alarm_method="2/5"), alarm)
    assert not alarm_matches(m.AlarmQuery(start_alarm_priority="3", end_alarm_priority="4"), alarm)
    assert not alarm_matches(m.AlarmQuery(alarm_method="2"), alarm)
    assert alarm_matches(m.AlarmQuery(alarm_type="100002"), alarm)
    assert not alarm_matches(m.AlarmQuery(alarm_type="6"), alarm)
    assert alarm_matches(m.CatalogQuery(), alarm)
