"""Alarms an NVR raises on its own device ID (not a channel's) reach an upper that shares the
device whole, under the device's ID mapped as its channels are."""

from __future__ import annotations

import pytest

from sip28181.platform.events import AlarmReceived
from sip28181.store.base import AlarmFilter

from ..integration.conftest import loop_errors, wait_for  # noqa: F401  (autouse: no leaked task errors)
from .control_support import CITY, DEVICE, PROVINCE, city_chain


@pytest.mark.parametrize("upper, expected", [
    ({"ids": "map", "id_prefix": "4488"}, "4488" + DEVICE[4:]),
    ({"share": [DEVICE]}, DEVICE),
], ids=["all-mapped", "device-listed"])
async def test_device_alarm_reaches_the_province(tmp_path, upper, expected):
    async with city_chain(tmp_path, upper=upper) as chain:
        at_province: list[AlarmReceived] = []
        chain.province.platform.events.on(at_province.append, AlarmReceived)
        # an NVR alarm (method 2 device alarm, type 2: tamper) on the NVR's own ID
        await chain.device.send_alarm(None, method=2, alarm_type=2, priority=1, description="disk full",
                                      time="2026-05-20T09:30:12")
        await wait_for(lambda: at_province)
        up = at_province[0].alarm
        assert at_province[0].device_id == CITY and up.alarm_device_id == expected
        assert (up.method, up.alarm_type, up.priority, up.description, up.alarm_time) == (
            2, 2, 1, "disk full", "2026-05-20T09:30:12")
        await chain.province.platform.flush()
        stored = await chain.province.platform.store.search_alarms(AlarmFilter(device_id=expected))
        assert len(stored) == 1 and stored[0].description == "disk full"
        entry = await wait_for(lambda: next((e for e in chain.city.platform.cascade.alarms.sent.values()
                                             if e.result), None))
        assert (entry.upper_id, entry.alarm_device_id, entry.upper_side_id) == (PROVINCE, DEVICE, expected)
        assert entry.delivered and entry.result == "OK"
        # the mapped ID names no channel: the city resolves it to nothing (no control through it)
        link = chain.city.platform.cascade.link(PROVINCE)
        assert chain.city.platform.cascade.resolve(link, expected) is None


async def test_device_alarm_not_sent_when_only_a_channel_is_shared(tmp_path):
    channel = "44010000001310000001"                  # the simulator's first channel
    async with city_chain(tmp_path, upper={"share": [channel]}) as chain:
        assert chain.channels[0] == channel
        at_province: list[AlarmReceived] = []
        chain.province.platform.events.on(at_province.append, AlarmReceived)
        await chain.device.send_alarm(None, method=2, alarm_type=2, description="own ID")
        # alarms to one upper go in order: once the channel's is there, the device's would be too
        await chain.device.send_alarm(channel, method=5, alarm_type=100001, description="channel")
        await wait_for(lambda: any(e.alarm.description == "channel" for e in at_province))
        assert [e.alarm.alarm_device_id for e in at_province] == [channel]
