"""Alarm tables: standard methods 2/5/6, the HJ extension 100001–100009, and lookups."""

from __future__ import annotations

from sip28181.manscdp import alarm
from sip28181.manscdp import messages as m


def test_standard_tables():
    assert alarm.alarm_type_name(2, 1).code == "video_loss"
    assert alarm.alarm_type_name(2, 5).name_zh == "设备低温报警"
    assert alarm.alarm_type_name(5, 6).code == "intrusion"
    assert alarm.alarm_type_name(5, 13).code == "occlusion"          # 2022
    assert alarm.alarm_type_name(6, 2).code == "fan_fault"
    assert [t for (meth, t) in alarm.ALARM_TYPES if meth == 5] == list(range(1, 14))
    assert alarm.alarm_type_name(1, 1) is None and alarm.alarm_type_name(5, 99) is None
    assert alarm.alarm_type_name(None, 1) is None and alarm.alarm_type_name(5, None) is None


def test_hj_types():
    assert sorted(alarm.HJ_TYPES) == [100001, 100002, 100003, 100004, 100007, 100008, 100009]
    assert alarm.alarm_type_name(5, 100001).name_zh == "疑似人为改变指标异常"
    assert alarm.alarm_type_name(5, 100004).code == "hj_equipment"
    assert alarm.alarm_type_name(5, 100008, profile="hj").name_zh == "待定义"
    assert alarm.is_hj_type(100009) and alarm.is_hj_type(100005) and not alarm.is_hj_type(6)
    assert alarm.alarm_type_name(2, 100001) is None                  # HJ types are video alarms


def test_hj_profile_reads_method_5_with_the_drafts_table():
    assert alarm.alarm_type_name(5, 2).code == "motion"
    assert alarm.alarm_type_name(5, 2, profile="hj").code == "intrusion"
    assert alarm.alarm_type_name(5, 7, profile="hj").code == "retrograde"   # beyond the HJ table: standard


def test_methods_and_events():
    assert alarm.AlarmMethod(5) is alarm.AlarmMethod.VIDEO and alarm.method_name(6) == "device_fault"
    assert alarm.method_name(9) is None and alarm.method_name_zh(2) == "设备报警"
    assert alarm.EVENT_TYPES[1].code == "enter" and alarm.EVENT_TYPES[2].code == "leave"


def test_every_hj_type_parses_from_a_notification():
    for code in [*alarm.HJ_TYPES, 100005, 100006]:
        body = (f"<Notify><CmdType>Alarm</CmdType><SN>1</SN><DeviceID>11010700531188000001</DeviceID>"
                f"<AlarmMethod>5</AlarmMethod><AlarmTime>2024-05-20T09:30:12</AlarmTime>"
                f"<Info><AlarmType>{code}</AlarmType></Info></Notify>")
        msg = m.parse(body.encode("gb2312"))
        assert msg.alarm_type == code and alarm.is_hj_type(msg.alarm_type)
