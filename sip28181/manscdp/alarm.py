"""Alarm methods and types: GB/T 28181 (2016, 2022 additions) and the HJ eco-environment extension.

The tables are the data; :func:`alarm_type_name` looks a pair up. ``AlarmMethod`` 2 (device),
5 (video) and 6 (device fault) carry an ``AlarmType``; the HJ draft (Appendix C, table C.1)
extends method 5 with types 100001–100009, and gives method 5 a shorter table of its own
(1 motion, 2 intrusion, ...) that differs from the standard's (1 manual, 2 motion, ...): pass
``profile="hj"`` to read types 1–6 the HJ way. Unknown pairs are not errors (devices invent
types): the lookup returns None and the value is kept as sent.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

__all__ = ["AlarmMethod", "AlarmTypeName", "ALARM_TYPES", "HJ_VIDEO_TYPES", "HJ_TYPES", "EVENT_TYPES",
           "PRIORITIES", "alarm_type_name", "is_hj_type", "method_name", "method_name_zh"]


class AlarmMethod(enum.IntEnum):
    """``AlarmMethod`` values (0 = all, in queries)."""

    TELEPHONE = 1
    DEVICE = 2
    SMS = 3
    GPS = 4
    VIDEO = 5
    DEVICE_FAULT = 6
    OTHER = 7


_METHOD_ZH = {1: "电话报警", 2: "设备报警", 3: "短信报警", 4: "GPS报警", 5: "视频报警", 6: "设备故障报警", 7: "其他报警"}


@dataclass(frozen=True, slots=True)
class AlarmTypeName:
    code: str          # stable identifier for APIs and filters
    name: str          # English
    name_zh: str       # the standard's wording


#: (AlarmMethod, AlarmType) → name, GB/T 28181-2016 (+ 2022 image occlusion).
ALARM_TYPES: dict[tuple[int, int], AlarmTypeName] = {
    (2, 1): AlarmTypeName("video_loss", "video loss", "视频丢失报警"),
    (2, 2): AlarmTypeName("tamper", "device tamper", "设备防拆报警"),
    (2, 3): AlarmTypeName("disk_full", "storage disk full", "存储设备磁盘满报警"),
    (2, 4): AlarmTypeName("high_temperature", "device high temperature", "设备高温报警"),
    (2, 5): AlarmTypeName("low_temperature", "device low temperature", "设备低温报警"),
    (5, 1): AlarmTypeName("manual_video", "manual video alarm", "人工视频报警"),
    (5, 2): AlarmTypeName("motion", "motion detection", "运动目标检测报警"),
    (5, 3): AlarmTypeName("left_object", "left object detection", "遗留物检测报警"),
    (5, 4): AlarmTypeName("object_removal", "object removal detection", "物体移除检测报警"),
    (5, 5): AlarmTypeName("tripwire", "tripwire detection", "绊线检测报警"),
    (5, 6): AlarmTypeName("intrusion", "intrusion detection", "入侵检测报警"),
    (5, 7): AlarmTypeName("retrograde", "retrograde detection", "逆行检测报警"),
    (5, 8): AlarmTypeName("loitering", "loitering detection", "徘徊检测报警"),
    (5, 9): AlarmTypeName("flow_count", "flow counting", "流量统计报警"),
    (5, 10): AlarmTypeName("density", "density detection", "密度检测报警"),
    (5, 11): AlarmTypeName("video_anomaly", "video anomaly detection", "视频异常检测报警"),
    (5, 12): AlarmTypeName("fast_movement", "fast movement detection", "快速移动报警"),
    (5, 13): AlarmTypeName("occlusion", "image occlusion detection", "图像遮挡报警"),
    (6, 1): AlarmTypeName("disk_fault", "storage disk fault", "存储设备磁盘故障报警"),
    (6, 2): AlarmTypeName("fan_fault", "storage fan fault", "存储设备风扇故障报警"),
}

#: Method 5 types 1–6 as the HJ draft's Appendix C defines them.
HJ_VIDEO_TYPES: dict[int, AlarmTypeName] = {
    1: AlarmTypeName("motion", "motion detection", "移动检测报警"),
    2: AlarmTypeName("intrusion", "intrusion detection", "入侵检测报警"),
    3: AlarmTypeName("occlusion", "occlusion detection", "遮挡检测报警"),
    4: AlarmTypeName("object", "object detection", "物品检测报警"),
    5: AlarmTypeName("anomaly", "abnormal behaviour detection", "异常检测报警"),
    6: AlarmTypeName("other", "other detection", "其他检测报警"),
}

#: HJ extension (table C.1): AlarmMethod 5, alarm source a video channel. 100005/100006 are not in
#: the draft; 100007–100009 are reserved "to be defined" and accepted as such.
HJ_TYPES: dict[int, AlarmTypeName] = {
    100001: AlarmTypeName("hj_indicator_tampering", "suspected human tampering with monitoring indicators",
                          "疑似人为改变指标异常"),
    100002: AlarmTypeName("hj_discharge_colour", "abnormal colour of wastewater/waste-gas discharge",
                          "废水废气排放颜色异常"),
    100003: AlarmTypeName("hj_discharge_state", "abnormal wastewater/waste-gas discharge state",
                          "废水废气排放状态异常"),
    100004: AlarmTypeName("hj_equipment", "abnormal running of production/treatment equipment",
                          "产污治污设备仪器运行异常"),
    100007: AlarmTypeName("hj_reserved_100007", "HJ reserved type 100007", "待定义"),
    100008: AlarmTypeName("hj_reserved_100008", "HJ reserved type 100008", "待定义"),
    100009: AlarmTypeName("hj_reserved_100009", "HJ reserved type 100009", "待定义"),
}

#: ``AlarmTypeParam/EventType`` of an intrusion alarm.
EVENT_TYPES: dict[int, AlarmTypeName] = {
    1: AlarmTypeName("enter", "entering the area", "进入区域"),
    2: AlarmTypeName("leave", "leaving the area", "离开区域"),
}

#: ``AlarmPriority``: 1–4 = level-1…level-4 alarm (0 = all, in queries).
PRIORITIES: dict[int, str] = {1: "level 1 (一级警情)", 2: "level 2 (二级警情)", 3: "level 3 (三级警情)",
                              4: "level 4 (四级警情)"}


def method_name(method: int | None) -> str | None:
    """English name of an ``AlarmMethod`` value, or None when unknown."""
    try:
        return AlarmMethod(int(method)).name.lower() if method is not None else None
    except ValueError:
        return None


def is_hj_type(alarm_type: int | None) -> bool:
    """Whether ``alarm_type`` is in the HJ extension's range (100001–100009)."""
    return alarm_type is not None and 100001 <= alarm_type <= 100009


def alarm_type_name(method: int | None, alarm_type: int | None, *, profile: str = "gb") -> AlarmTypeName | None:
    """The name of an (AlarmMethod, AlarmType) pair; None for pairs no table defines.

    HJ types are named under method 5 whatever the profile (they cannot collide with standard
    types); ``profile="hj"`` reads method 5 types 1–6 with the HJ draft's table.
    """
    if alarm_type is None or method is None:
        return None
    if method == 5:
        if alarm_type in HJ_TYPES:
            return HJ_TYPES[alarm_type]
        if profile == "hj" and alarm_type in HJ_VIDEO_TYPES:
            return HJ_VIDEO_TYPES[alarm_type]
    return ALARM_TYPES.get((method, alarm_type))


def method_name_zh(method: int | None) -> str | None:
    return _METHOD_ZH.get(method) if method is not None else None
