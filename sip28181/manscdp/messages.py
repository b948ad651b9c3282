"""Typed MANSCDP messages (GB/T 28181-2016 and -2022 fields), sans-IO.

``parse(body)`` turns the bytes of a MESSAGE/NOTIFY/SUBSCRIBE body into one of the dataclasses
below; ``bytes(message)`` or ``message.encode(charset)`` turns it back. Every class declares its
elements once (:func:`_el` and friends), and one generic reader and one generic writer serve them
all, so a field added here is both parsed and sent.

Reading is lenient the way devices require (PROTOCOL §5.1, §14): element names match
case-insensitively (``Alarmstatus``/``AlarmStatus``, ``info``), surrounding whitespace is ignored,
a missing ``SN`` reads as 0, ``SumNum`` may be missing (None), ``Num`` attributes are ignored in
favour of the children actually present, ``IFrameCmd`` is read as ``IFameCmd``, an ``AlarmType`` at
the root is read as if it were in ``Info``. Nothing a device sent is lost: an element this module
does not know, a second copy of a known one, or a number that does not parse is kept in ``extra``
as an :class:`XmlNode` and written back after the known fields. Times stay strings, as sent.

Field names are the snake_case of the element (``ParentID`` → ``parent_id``); writing uses the
standard's spelling and order.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar, Iterator

from lxml import etree

from ..errors import ManscdpError
from .charset import clean_text, encode_body
from .codec import Envelope, parse_xml

__all__ = [
    "Kind", "XmlNode", "Message", "UnknownMessage", "parse", "from_element", "from_envelope",
    "KeepaliveNotify", "CatalogQuery", "CatalogResponse", "CatalogNotify", "CatalogItem", "CatalogInfo",
    "DeviceInfoQuery", "DeviceInfoResponse", "DeviceStatusQuery", "DeviceStatusResponse", "AlarmStatusItem",
    "RecordInfoQuery", "RecordInfoResponse", "RecordItem",
    "AlarmNotify", "AlarmInfo", "AlarmTypeParam", "AlarmQuery", "AlarmResponse",
    "MobilePositionNotify", "MobilePositionItem", "MobilePositionQuery",
    "DeviceControl", "DragZoom", "HomePosition", "ControlInfo", "AlarmCmdInfo", "PtzCmdParams", "PtzPreciseCtrl",
    "DeviceControlResponse", "DeviceConfig", "DeviceConfigResponse", "BasicParam", "VideoParamOpt",
    "AlarmReport", "SnapShotConfig", "VideoAlarmRecord", "ConfigDownloadQuery", "ConfigDownloadResponse",
    "PresetQuery", "PresetQueryResponse", "PresetItem", "BroadcastNotify", "BroadcastResponse",
    "MediaStatusNotify", "HomePositionQuery", "PtzPositionQuery", "SdCardStatusQuery",
    "CruiseTrackListQuery", "CruiseTrackQuery", "ONLINE_STATUSES",
]


class Kind(str, enum.Enum):
    """The root element of a MANSCDP body."""

    QUERY = "Query"
    CONTROL = "Control"
    NOTIFY = "Notify"
    RESPONSE = "Response"


_KINDS = {k.value.lower(): k for k in Kind}

#: Catalog ``Status`` values that mean online (Hikvision NVRs send ONLINE/OFFLINE, some send OK).
ONLINE_STATUSES = frozenset({"ON", "ONLINE", "OK"})

# -- unknown elements ----------------------------------------------------------------------------


@dataclass(slots=True)
class XmlNode:
    """An element kept as it came (tag, stripped text, attributes, children): re-emitted on write."""

    tag: str
    text: str | None = None
    attrib: dict[str, str] = field(default_factory=dict)
    children: list["XmlNode"] = field(default_factory=list)

    @classmethod
    def from_element(cls, elem: etree._Element) -> "XmlNode":
        children = [cls.from_element(c) for c in elem if isinstance(c.tag, str)]
        text = elem.text
        if text is not None:
            text = text.strip() or None
        return cls(_local(elem.tag), text, {_local(k): v for k, v in elem.attrib.items()}, children)

    def find(self, name: str) -> "XmlNode | None":
        """First child named ``name`` (case-insensitive)."""
        low = name.lower()
        return next((c for c in self.children if c.tag.lower() == low), None)

    def findtext(self, name: str, default: str | None = None) -> str | None:
        child = self.find(name)
        return default if child is None or child.text is None else child.text

    def to_xml(self) -> str:
        attrs = "".join(f' {k}="{_esc_attr(v)}"' for k, v in self.attrib.items())
        inner = [_esc(self.text)] if self.text else []
        if self.children:
            inner = ["\r\n".join([*inner, *(c.to_xml() for c in self.children)])]
            return f"<{self.tag}{attrs}>\r\n{inner[0]}\r\n</{self.tag}>"
        return f"<{self.tag}{attrs}>{inner[0] if inner else ''}</{self.tag}>"


def _local(tag: Any) -> str:
    tag = str(tag)
    return tag.rsplit("}", 1)[-1] if tag.startswith("{") else tag


# CR is written as a character reference: a parser turns a literal CR (and CRLF) into LF.
_ESC = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;", "\r": "&#13;"})
_ESC_ATTR = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "\r": "&#13;",
                           "\n": "&#10;", "\t": "&#9;"})


def _esc(text: str) -> str:
    return clean_text(text).translate(_ESC)


def _esc_attr(text: str) -> str:
    return clean_text(text).translate(_ESC_ATTR)


# -- field specifications --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Spec:
    tag: str
    kind: str                          # str, int, float, node, list, multi, raw
    cls: type | None = None
    item: str = "Item"
    aliases: tuple[str, ...] = ()
    always: bool = False               # write an empty list as <Tag Num="0"></Tag>


def _el(tag: str, *aliases: str, kind: str = "str", default: Any = None) -> Any:
    return field(default=default, metadata={"xml": _Spec(tag, kind, aliases=aliases)})


def _int(tag: str, *aliases: str) -> Any:
    return _el(tag, *aliases, kind="int")


def _float(tag: str, *aliases: str) -> Any:
    return _el(tag, *aliases, kind="float")


def _node(tag: str, cls: type, *aliases: str) -> Any:
    return field(default=None, metadata={"xml": _Spec(tag, "node", cls, aliases=aliases)})


def _raw(tag: str, *aliases: str) -> Any:
    return field(default=None, metadata={"xml": _Spec(tag, "raw", aliases=aliases)})


def _list(tag: str, cls: type, item: str = "Item", *aliases: str, always: bool = False) -> Any:
    return field(default_factory=list,
                 metadata={"xml": _Spec(tag, "list", cls, item=item, aliases=aliases, always=always)})


def _multi(tag: str, cls: type) -> Any:
    return field(default_factory=list, metadata={"xml": _Spec(tag, "multi", cls)})


_INT = re.compile(r"[+-]?\d{1,18}\Z")
_TABLES: dict[type, tuple[list[tuple[str, _Spec]], dict[str, tuple[str, _Spec]]]] = {}


def _table(cls: type) -> tuple[list[tuple[str, _Spec]], dict[str, tuple[str, _Spec]]]:
    """The (field, spec) list of a class in writing order, and the lower-case tag lookup."""
    table = _TABLES.get(cls)
    if table is None:
        ordered = [(f.name, f.metadata["xml"]) for f in fields(cls) if "xml" in f.metadata]
        lookup: dict[str, tuple[str, _Spec]] = {}
        for name, spec in ordered:
            for tag in (spec.tag, *spec.aliases):
                lookup.setdefault(tag.lower(), (name, spec))
        table = _TABLES[cls] = (ordered, lookup)
    return table


def _text(elem: etree._Element) -> str:
    return (elem.text or "").strip()


_BAD = object()


def _convert(spec: _Spec, elem: etree._Element) -> Any:
    kind = spec.kind
    if kind == "raw":
        return XmlNode.from_element(elem)
    if kind == "node":
        return _read(spec.cls, elem)
    if kind == "list":
        return [_read(spec.cls, c) for c in elem
                if isinstance(c.tag, str) and _local(c.tag).lower() == spec.item.lower()]
    if len(elem):                      # a text field that holds elements: keep it verbatim
        return _BAD
    text = _text(elem)
    if kind == "str":
        return text
    if kind == "int":
        return int(text) if _INT.match(text) else _BAD
    if kind == "float":
        try:
            value = float(text) if text and len(text) <= 40 else _BAD
        except ValueError:
            return _BAD
        return value if value == value and value not in (float("inf"), float("-inf")) else _BAD
    raise AssertionError(kind)


def _read(cls: type, elem: etree._Element, skip: frozenset[str] = frozenset()) -> Any:
    """An instance of ``cls`` from the children of ``elem`` (unknown ones go to ``extra``)."""
    _, lookup = _table(cls)
    values: dict[str, Any] = {}
    extra: list[XmlNode] = []
    for child in elem:
        tag = child.tag
        if not isinstance(tag, str):
            continue
        low = _local(tag).lower()
        if low in skip:
            continue
        entry = lookup.get(low)
        if entry is not None:
            name, spec = entry
            if spec.kind == "multi":
                values.setdefault(name, []).append(_read(spec.cls, child))
                continue
            if name not in values:
                value = _convert(spec, child)
                if value is not _BAD:
                    values[name] = value
                    continue
        extra.append(XmlNode.from_element(child))
    return cls._build(values, extra, elem)


def _write(obj: Any, out: list[str]) -> None:
    ordered, _ = _table(type(obj))
    for name, spec in ordered:
        value = getattr(obj, name)
        if value is None:
            continue
        tag = spec.tag
        kind = spec.kind
        if kind in ("str", "int"):
            out.append(f"<{tag}>{_esc(str(value))}</{tag}>")
        elif kind == "float":
            out.append(f"<{tag}>{_fmt_float(value)}</{tag}>")
        elif kind == "node":
            text = getattr(value, "text", None)
            out.append(f"<{tag}>{_esc(text)}" if text else f"<{tag}>")
            _write(value, out)
            out.append(f"</{tag}>")
        elif kind == "raw":
            out.append(value.to_xml() if isinstance(value, XmlNode) else f"<{tag}>{_esc(str(value))}</{tag}>")
        elif kind == "multi":
            for item in value:
                out.append(f"<{tag}>")
                _write(item, out)
                out.append(f"</{tag}>")
        elif kind == "list":
            if not value and not spec.always:
                continue
            out.append(f'<{tag} Num="{len(value)}">')
            for item in value:
                out.append(f"<{spec.item}>")
                _write(item, out)
                out.append(f"</{spec.item}>")
            out.append(f"</{tag}>")
    for node in getattr(obj, "extra", ()):
        out.append(node.to_xml())


def _fmt_float(value: float) -> str:
    value = float(value)
    if value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return repr(value)


# -- nested structures -------------------------------------------------------------------------------


@dataclass(slots=True)
class _Part:
    """Base of nested structures: unknown children are kept in ``extra``."""

    extra: list[XmlNode] = field(default_factory=list, kw_only=True)

    @classmethod
    def _build(cls, values: dict[str, Any], extra: list[XmlNode], elem: etree._Element) -> Any:
        return cls(**values, extra=extra)


@dataclass(slots=True)
class CatalogInfo(_Part):
    """``Item/Info`` of a catalog entry (2016 and 2022 fields; multi-valued ones stay strings)."""

    ptz_type: str | None = _el("PTZType")
    position_type: str | None = _el("PositionType")
    photoelectric_imaging_type: str | None = _el("PhotoelectricImagingType")
    capture_position_type: str | None = _el("CapturePositionType")
    room_type: str | None = _el("RoomType")
    use_type: str | None = _el("UseType")
    supply_light_type: str | None = _el("SupplyLightType")
    direction_type: str | None = _el("DirectionType")
    resolution: str | None = _el("Resolution")
    stream_number_list: str | None = _el("StreamNumberList")
    business_group_id: str | None = _el("BusinessGroupID")
    download_speed: str | None = _el("DownloadSpeed")
    svc_space_support_mode: str | None = _el("SVCSpaceSupportMode")
    svc_time_support_mode: str | None = _el("SVCTimeSupportMode")
    ssvc_ratio_support_list: str | None = _el("SSVCRatioSupportList")
    mobile_device_type: str | None = _el("MobileDeviceType")
    horizontal_field_angle: str | None = _el("HorizontalFieldAngle")
    vertical_field_angle: str | None = _el("VerticalFieldAngle")
    max_view_distance: str | None = _el("MaxViewDistance")
    grassroots_code: str | None = _el("GrassrootsCode")
    point_type: str | None = _el("PointType")
    point_common_name: str | None = _el("PointCommonName")
    mac: str | None = _el("MAC")
    function_type: str | None = _el("FunctionType")
    encode_type: str | None = _el("EncodeType")
    install_time: str | None = _el("InstallTime")
    management_unit: str | None = _el("ManagementUnit")
    contact_info: str | None = _el("ContactInfo")
    record_save_days: str | None = _el("RecordSaveDays")
    industrial_classification: str | None = _el("IndustrialClassification")


@dataclass(slots=True)
class CatalogItem(_Part):
    """One ``DeviceList/Item`` of a catalog answer or notification (2016 and 2022 fields)."""

    device_id: str = _el("DeviceID", default="")
    event: str | None = _el("Event")
    name: str | None = _el("Name")
    manufacturer: str | None = _el("Manufacturer")
    model: str | None = _el("Model")
    owner: str | None = _el("Owner")
    civil_code: str | None = _el("CivilCode")
    block: str | None = _el("Block")
    address: str | None = _el("Address")
    parental: int | None = _int("Parental")
    parent_id: str | None = _el("ParentID")
    business_group_id: str | None = _el("BusinessGroupID")
    safety_way: int | None = _int("SafetyWay")
    register_way: int | None = _int("RegisterWay")
    cert_num: str | None = _el("CertNum")
    certifiable: int | None = _int("Certifiable")
    err_code: int | None = _int("ErrCode")
    end_time: str | None = _el("EndTime")
    security_level_code: str | None = _el("SecurityLevelCode")
    secrecy: int | None = _int("Secrecy")
    ip_address: str | None = _el("IPAddress")
    port: int | None = _int("Port")
    password: str | None = _el("Password")
    status: str | None = _el("Status")
    longitude: float | None = _float("Longitude")
    latitude: float | None = _float("Latitude")
    info: CatalogInfo | None = _node("Info", CatalogInfo)

    @property
    def online(self) -> bool:
        """``Status`` read leniently: ON/ONLINE/OK or missing → online (PROTOCOL §5.4.3)."""
        return self.status is None or self.status.strip().upper() in ONLINE_STATUSES

    @property
    def group_id(self) -> str | None:
        """The business group: item level (2022) or ``Info`` (2016)."""
        if self.business_group_id:
            return self.business_group_id
        return self.info.business_group_id if self.info is not None else None

    @property
    def parent_ids(self) -> list[str]:
        """``ParentID`` split on ``/`` (2022 allows several parents)."""
        return [p for p in (self.parent_id or "").split("/") if p.strip()]


@dataclass(slots=True)
class AlarmStatusItem(_Part):
    device_id: str = _el("DeviceID", default="")
    duty_status: str | None = _el("DutyStatus")


@dataclass(slots=True)
class RecordItem(_Part):
    """One ``RecordList/Item`` of a record search answer."""

    device_id: str = _el("DeviceID", default="")
    name: str | None = _el("Name")
    file_path: str | None = _el("FilePath")
    address: str | None = _el("Address")
    start_time: str | None = _el("StartTime")
    end_time: str | None = _el("EndTime")
    secrecy: int | None = _int("Secrecy")
    type: str | None = _el("Type")
    recorder_id: str | None = _el("RecorderID")
    file_size: int | None = _int("FileSize")
    record_location: str | None = _el("RecordLocation")
    stream_number: int | None = _int("StreamNumber")


@dataclass(slots=True)
class AlarmTypeParam(_Part):
    event_type: int | None = _int("EventType")
    text: str | None = None            # plain text, when a device sends the parameter as a string

    @classmethod
    def _build(cls, values: dict[str, Any], extra: list[XmlNode], elem: etree._Element) -> Any:
        text = _text(elem) or None
        return cls(**values, text=text, extra=extra)


@dataclass(slots=True)
class AlarmInfo(_Part):
    """One ``Info`` of an alarm notification: type, parameter, image URL (HJ Appendix C)."""

    alarm_type: int | None = _int("AlarmType")
    alarm_type_param: AlarmTypeParam | None = _node("AlarmTypeParam", AlarmTypeParam)
    image_url: str | None = _el("ImageURL")


@dataclass(slots=True)
class MobilePositionItem(_Part):
    """One ``DeviceList/Item`` of a 2022 mobile position notification."""

    device_id: str = _el("DeviceID", default="")
    capture_time: str | None = _el("CaptureTime")
    longitude: float | None = _float("Longitude")
    latitude: float | None = _float("Latitude")
    speed: float | None = _float("Speed")
    direction: float | None = _float("Direction")
    altitude: float | None = _float("Altitude")
    height: float | None = _float("Height")


@dataclass(slots=True)
class DragZoom(_Part):
    """``DragZoomIn``/``DragZoomOut``: the play window and the box drawn in it (pixels)."""

    length: int | None = _int("Length")
    width: int | None = _int("Width")
    mid_point_x: int | None = _int("MidPointX")
    mid_point_y: int | None = _int("MidPointY")
    length_x: int | None = _int("LengthX")
    length_y: int | None = _int("LengthY")


@dataclass(slots=True)
class HomePosition(_Part):
    enabled: int | None = _int("Enabled")
    reset_time: int | None = _int("ResetTime")
    preset_index: int | None = _int("PresetIndex")


@dataclass(slots=True)
class ControlInfo(_Part):
    """``Info`` of a DeviceControl: ``ControlPriority`` of a PTZCmd, or which alarms an
    ``AlarmCmd`` resets (``AlarmMethod``/``AlarmType``, ``1/2`` combinations allowed)."""

    control_priority: int | None = _int("ControlPriority")
    alarm_method: str | None = _el("AlarmMethod")
    alarm_type: str | None = _el("AlarmType")


AlarmCmdInfo = ControlInfo


@dataclass(slots=True)
class PtzCmdParams(_Part):
    """2022 ``PTZCmdParams``: names for presets and cruise tracks set by a PTZCmd."""

    preset_name: str | None = _el("PresetName")
    cruise_track_name: str | None = _el("CruiseTrackName")


@dataclass(slots=True)
class PtzPreciseCtrl(_Part):
    pan: float | None = _float("Pan")
    tilt: float | None = _float("Tilt")
    zoom: float | None = _float("Zoom")


@dataclass(slots=True)
class BasicParam(_Part):
    name: str | None = _el("Name")
    expiration: int | None = _int("Expiration")
    heart_beat_interval: int | None = _int("HeartBeatInterval")
    heart_beat_count: int | None = _int("HeartBeatCount")
    position_capability: int | None = _int("PositionCapability")
    longitude: float | None = _float("Longitude")
    latitude: float | None = _float("Latitude")


@dataclass(slots=True)
class VideoParamOpt(_Part):
    download_speed: str | None = _el("DownloadSpeed")
    resolution: str | None = _el("Resolution")


@dataclass(slots=True)
class AlarmReport(_Part):
    motion_detection: int | None = _int("MotionDetection")
    field_detection: int | None = _int("FieldDetection")


@dataclass(slots=True)
class SnapShotConfig(_Part):
    snap_num: int | None = _int("SnapNum")
    interval: int | None = _int("Interval")
    upload_url: str | None = _el("UploadURL")
    session_id: str | None = _el("SessionID")


@dataclass(slots=True)
class VideoAlarmRecord(_Part):
    record_enable: int | None = _int("RecordEnable")
    stream_number: int | None = _int("StreamNumber")
    record_time: int | None = _int("RecordTime")
    pre_record_time: int | None = _int("PreRecordTime")


@dataclass(slots=True)
class PresetItem(_Part):
    preset_id: int | None = _int("PresetID")
    preset_name: str | None = _el("PresetName")


# -- messages -------------------------------------------------------------------------------------------

_REGISTRY: dict[tuple[Kind, str], type["Message"]] = {}
_ENVELOPE = frozenset({"cmdtype", "sn", "deviceid"})


@dataclass
class Message:
    """Base of every MANSCDP body: ``KIND`` and ``CMD_TYPE`` name the root and ``CmdType``."""

    KIND: ClassVar[Kind]
    CMD_TYPE: ClassVar[str]

    sn: int = 0                        # 0 when the body carried no SN
    device_id: str = ""
    extra: list[XmlNode] = field(default_factory=list, kw_only=True)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "CMD_TYPE" in cls.__dict__ and "KIND" in cls.__dict__:
            _REGISTRY[(cls.KIND, cls.CMD_TYPE.lower())] = cls

    @property
    def kind(self) -> Kind:
        return self.KIND

    @property
    def cmd_type(self) -> str:
        return self.CMD_TYPE

    @classmethod
    def _build(cls, values: dict[str, Any], extra: list[XmlNode], elem: etree._Element) -> Any:
        return cls(**values, extra=extra)

    @classmethod
    def _from_root(cls, root: etree._Element, sn: int, device_id: str) -> "Message":
        msg = _read(cls, root, _ENVELOPE)
        msg.sn = sn
        msg.device_id = device_id
        return msg

    def to_xml(self) -> str:
        """The body without its XML declaration (CRLF between elements, as devices send)."""
        out = [f"<{self.kind.value}>", f"<CmdType>{_esc(self.cmd_type)}</CmdType>", f"<SN>{int(self.sn)}</SN>"]
        if self.device_id:
            out.append(f"<DeviceID>{_esc(self.device_id)}</DeviceID>")
        _write(self, out)
        out.append(f"</{self.kind.value}>")
        return "\r\n".join(out) + "\r\n"

    def encode(self, charset: str = "GB2312") -> bytes:
        """The body with a declaration matching its bytes (GB2312, GBK, GB18030 or UTF-8); text
        GB2312 cannot hold is sent as GB18030 (see :mod:`sip28181.manscdp.charset`)."""
        return encode_body(self.to_xml(), charset)

    def __bytes__(self) -> bytes:
        return self.encode()

    def find_extra(self, name: str) -> XmlNode | None:
        """The first kept unknown element named ``name`` (case-insensitive)."""
        low = name.lower()
        return next((n for n in self.extra if n.tag.lower() == low), None)


@dataclass
class UnknownMessage(Message):
    """A body whose root/CmdType pair this module has no class for: kept whole in ``extra``."""

    KIND: ClassVar[Kind] = Kind.NOTIFY
    unknown_kind: Kind = Kind.NOTIFY
    unknown_cmd_type: str = ""

    @property
    def kind(self) -> Kind:
        return self.unknown_kind

    @property
    def cmd_type(self) -> str:
        return self.unknown_cmd_type


# Keepalive ------------------------------------------------------------------------------------------


@dataclass
class KeepaliveNotify(Message):
    KIND: ClassVar[Kind] = Kind.NOTIFY
    CMD_TYPE: ClassVar[str] = "Keepalive"
    status: str | None = _el("Status")
    info: XmlNode | None = _raw("Info")          # 2016: faulty devices as Info/DeviceID


# Catalog --------------------------------------------------------------------------------------------


@dataclass
class CatalogQuery(Message):
    """Catalog query (also the body of a catalog SUBSCRIBE)."""

    KIND: ClassVar[Kind] = Kind.QUERY
    CMD_TYPE: ClassVar[str] = "Catalog"
    start_time: str | None = _el("StartTime")
    end_time: str | None = _el("EndTime")


@dataclass
class CatalogResponse(Message):
    """One packet of a catalog answer: ``sum_num`` is the whole answer's size (None if absent),
    ``items`` this packet's entries."""

    KIND: ClassVar[Kind] = Kind.RESPONSE
    CMD_TYPE: ClassVar[str] = "Catalog"
    sum_num: int | None = _int("SumNum")
    items: list[CatalogItem] = _list("DeviceList", CatalogItem, always=True)

    def to_xml(self) -> str:
        return _with_sum(self, Message.to_xml)


@dataclass
class CatalogNotify(Message):
    """Catalog change notification: each item carries its ``event`` (ON, OFF, VLOST, DEFECT, ADD,
    DEL, UPDATE)."""

    KIND: ClassVar[Kind] = Kind.NOTIFY
    CMD_TYPE: ClassVar[str] = "Catalog"
    sum_num: int | None = _int("SumNum")
    items: list[CatalogItem] = _list("DeviceList", CatalogItem, always=True)

    def to_xml(self) -> str:
        return _with_sum(self, Message.to_xml)


def _with_sum(msg: Any, to_xml: Any) -> str:
    """Write ``SumNum`` as the item count when the caller left it None."""
    if msg.sum_num is not None:
        return to_xml(msg)
    msg.sum_num = len(msg.items)
    try:
        return to_xml(msg)
    finally:
        msg.sum_num = None


# DeviceInfo / DeviceStatus -----------------------------------------------------------------------------


@dataclass
class DeviceInfoQuery(Message):
    KIND: ClassVar[Kind] = Kind.QUERY
    CMD_TYPE: ClassVar[str] = "DeviceInfo"


@dataclass
class DeviceInfoResponse(Message):
    KIND: ClassVar[Kind] = Kind.RESPONSE
    CMD_TYPE: ClassVar[str] = "DeviceInfo"
    device_name: str | None = _el("DeviceName")
    result: str | None = _el("Result")
    device_type: str | None = _el("DeviceType")
    manufacturer: str | None = _el("Manufacturer")
    model: str | None = _el("Model")
    firmware: str | None = _el("Firmware")
    max_camera: int | None = _int("MaxCamera")
    max_alarm: int | None = _int("MaxAlarm")
    channel: int | None = _int("Channel")
    info: XmlNode | None = _raw("Info")


@dataclass
class DeviceStatusQuery(Message):
    KIND: ClassVar[Kind] = Kind.QUERY
    CMD_TYPE: ClassVar[str] = "DeviceStatus"


@dataclass
class DeviceStatusResponse(Message):
    KIND: ClassVar[Kind] = Kind.RESPONSE
    CMD_TYPE: ClassVar[str] = "DeviceStatus"
    result: str | None = _el("Result")
    online: str | None = _el("Online")
    status: str | None = _el("Status")
    reason: str | None = _el("Reason")
    encode_status: str | None = _el("Encode")
    record: str | None = _el("Record")
    device_time: str | None = _el("DeviceTime")
    alarm_status: list[AlarmStatusItem] = _list("Alarmstatus", AlarmStatusItem)
    info: XmlNode | None = _raw("Info")

    @property
    def is_online(self) -> bool:
        return (self.online or "").strip().upper() in ONLINE_STATUSES


# RecordInfo ----------------------------------------------------------------------------------------------


@dataclass
class RecordInfoQuery(Message):
    """Record search; ``type`` is time/alarm/manual/all (Dahua NVRs require it: send ``all``)."""

    KIND: ClassVar[Kind] = Kind.QUERY
    CMD_TYPE: ClassVar[str] = "RecordInfo"
    start_time: str | None = _el("StartTime")
    end_time: str | None = _el("EndTime")
    file_path: str | None = _el("FilePath")
    address: str | None = _el("Address")
    secrecy: int | None = _int("Secrecy")
    type: str | None = _el("Type")
    recorder_id: str | None = _el("RecorderID")
    indistinct_query: int | None = _int("IndistinctQuery")
    stream_number: int | None = _int("StreamNumber")
    alarm_method: str | None = _el("AlarmMethod")
    alarm_type: str | None = _el("AlarmType")


@dataclass
class RecordInfoResponse(Message):
    KIND: ClassVar[Kind] = Kind.RESPONSE
    CMD_TYPE: ClassVar[str] = "RecordInfo"
    name: str | None = _el("Name")
    sum_num: int | None = _int("SumNum")
    items: list[RecordItem] = _list("RecordList", RecordItem, always=True)

    def to_xml(self) -> str:
        return _with_sum(self, Message.to_xml)


# Alarm -----------------------------------------------------------------------------------------------------


@dataclass
class AlarmNotify(Message):
    """An alarm (standard and HJ Appendix C).

    ``infos`` holds every ``Info`` element in order; ``alarm_type``, ``alarm_type_param``,
    ``event_type`` and ``image_urls`` are read from them (the first ``AlarmType`` /
    ``AlarmTypeParam`` found, every ``ImageURL``). Built without ``infos``, those fields make
    them: one ``Info`` with the type and parameter, then one ``Info`` per image URL.
    """

    KIND: ClassVar[Kind] = Kind.NOTIFY
    CMD_TYPE: ClassVar[str] = "Alarm"
    alarm_priority: int | None = _int("AlarmPriority")
    alarm_method: int | None = _int("AlarmMethod")
    alarm_time: str | None = _el("AlarmTime")
    alarm_description: str | None = _el("AlarmDescription")
    longitude: float | None = _float("Longitude")
    latitude: float | None = _float("Latitude")
    infos: list[AlarmInfo] = _multi("Info", AlarmInfo)
    alarm_type: int | None = None
    alarm_type_param: AlarmTypeParam | None = None
    event_type: int | None = None
    image_urls: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.infos:
            if self.event_type is not None and self.alarm_type_param is None:
                self.alarm_type_param = AlarmTypeParam(event_type=self.event_type)
            if self.alarm_type is not None or self.alarm_type_param is not None:
                self.infos.append(AlarmInfo(alarm_type=self.alarm_type, alarm_type_param=self.alarm_type_param))
            self.infos.extend(AlarmInfo(image_url=url) for url in self.image_urls)
        else:
            self._derive()

    def _derive(self) -> None:
        for info in self.infos:
            if self.alarm_type is None and info.alarm_type is not None:
                self.alarm_type = info.alarm_type
            if self.alarm_type_param is None and info.alarm_type_param is not None:
                self.alarm_type_param = info.alarm_type_param
        if self.event_type is None and self.alarm_type_param is not None:
            self.event_type = self.alarm_type_param.event_type
        if not self.image_urls:
            self.image_urls = [i.image_url for i in self.infos if i.image_url]

    @classmethod
    def _build(cls, values: dict[str, Any], extra: list[XmlNode], elem: etree._Element) -> Any:
        infos: list[AlarmInfo] = values.pop("infos", [])
        # Devices put AlarmType/AlarmTypeParam/ImageURL at the root too (WVP reads both places):
        # read them as if they were in the first Info, so they are written back where they belong.
        first = infos[0] if infos else None
        free = first is None or (first.alarm_type is None and first.alarm_type_param is None)
        moved_type: int | None = None
        moved_param: AlarmTypeParam | None = None
        urls: list[str] = []
        kept: list[XmlNode] = []
        for node in extra:
            low = node.tag.lower()
            if (free and low == "alarmtype" and moved_type is None and not node.children
                    and node.text and _INT.match(node.text)):
                moved_type = int(node.text)
            elif free and low == "alarmtypeparam" and moved_param is None:
                moved_param = _param_from_node(node)
            elif low == "imageurl" and node.text and not node.children:
                urls.append(node.text)
            else:
                kept.append(node)
        if moved_type is not None or moved_param is not None:
            if first is None:
                first = AlarmInfo()
                infos.insert(0, first)
            first.alarm_type = moved_type
            first.alarm_type_param = moved_param
        infos.extend(AlarmInfo(image_url=url) for url in urls)
        return cls(**values, infos=infos, extra=kept)


def _param_from_node(node: XmlNode) -> AlarmTypeParam:
    event = node.findtext("EventType")
    others = [c for c in node.children if c.tag.lower() != "eventtype"]
    if event is not None and _INT.match(event):
        return AlarmTypeParam(event_type=int(event), text=node.text, extra=others)
    return AlarmTypeParam(text=node.text, extra=list(node.children))


@dataclass
class AlarmResponse(Message):
    """Acknowledgement of an alarm notification (same SN), or the answer to an alarm query."""

    KIND: ClassVar[Kind] = Kind.RESPONSE
    CMD_TYPE: ClassVar[str] = "Alarm"
    result: str | None = _el("Result")


@dataclass
class AlarmQuery(Message):
    """Alarm query, also the body of an alarm SUBSCRIBE; every filter optional, ``1/2`` allowed."""

    KIND: ClassVar[Kind] = Kind.QUERY
    CMD_TYPE: ClassVar[str] = "Alarm"
    start_alarm_priority: str | None = _el("StartAlarmPriority")
    end_alarm_priority: str | None = _el("EndAlarmPriority")
    alarm_method: str | None = _el("AlarmMethod")
    alarm_type: str | None = _el("AlarmType")
    start_alarm_time: str | None = _el("StartAlarmTime")
    end_alarm_time: str | None = _el("EndAlarmTime")


# MobilePosition --------------------------------------------------------------------------------------------


@dataclass
class MobilePositionNotify(Message):
    """Position report: 2016 flat form (root fields) or 2022 list form (``items``; then ``time``
    is when the notification was sent and each item has its ``capture_time``)."""

    KIND: ClassVar[Kind] = Kind.NOTIFY
    CMD_TYPE: ClassVar[str] = "MobilePosition"
    time: str | None = _el("Time")
    longitude: float | None = _float("Longitude")
    latitude: float | None = _float("Latitude")
    speed: float | None = _float("Speed")
    direction: float | None = _float("Direction")
    altitude: float | None = _float("Altitude")
    sum_num: int | None = _int("SumNum")
    items: list[MobilePositionItem] = _list("DeviceList", MobilePositionItem)

    def positions(self) -> list[MobilePositionItem]:
        """The reported positions in one shape: the items when a list is present (never the root
        coordinates then), else the flat root fields as one item."""
        if self.items:
            return list(self.items)
        if self.longitude is None and self.latitude is None:
            return []
        return [MobilePositionItem(device_id=self.device_id, capture_time=self.time, longitude=self.longitude,
                                   latitude=self.latitude, speed=self.speed, direction=self.direction,
                                   altitude=self.altitude)]


@dataclass
class MobilePositionQuery(Message):
    """Mobile position subscription/query body; ``interval`` is the report period in seconds."""

    KIND: ClassVar[Kind] = Kind.QUERY
    CMD_TYPE: ClassVar[str] = "MobilePosition"
    interval: int | None = _int("Interval")


# DeviceControl ---------------------------------------------------------------------------------------------


@dataclass
class DeviceControl(Message):
    """``Control DeviceControl``: set the one command field you need.

    ``iframe_cmd`` is written as ``IFameCmd`` (the 2016 schema's spelling) unless ``iframe_tag``
    says ``IFrameCmd`` (2022); both are read, and the spelling received is kept.
    """

    KIND: ClassVar[Kind] = Kind.CONTROL
    CMD_TYPE: ClassVar[str] = "DeviceControl"
    ptz_cmd: str | None = _el("PTZCmd")
    tele_boot: str | None = _el("TeleBoot")
    record_cmd: str | None = _el("RecordCmd")
    guard_cmd: str | None = _el("GuardCmd")
    alarm_cmd: str | None = _el("AlarmCmd")
    iframe_cmd: str | None = _el("IFameCmd", "IFrameCmd")
    drag_zoom_in: DragZoom | None = _node("DragZoomIn", DragZoom)
    drag_zoom_out: DragZoom | None = _node("DragZoomOut", DragZoom)
    home_position: HomePosition | None = _node("HomePosition", HomePosition)
    ptz_precise_ctrl: PtzPreciseCtrl | None = _node("PTZPreciseCtrl", PtzPreciseCtrl)
    ptz_cmd_params: PtzCmdParams | None = _node("PTZCmdParams", PtzCmdParams)
    stream_number: int | None = _int("StreamNumber")
    format_sd_card: str | None = _el("FormatSDCard")
    target_track: XmlNode | None = _raw("TargetTrack")
    device_upgrade: XmlNode | None = _raw("DeviceUpgrade")
    info: ControlInfo | None = _node("Info", ControlInfo)
    iframe_tag: str = field(default="IFameCmd", compare=False)

    @classmethod
    def _build(cls, values: dict[str, Any], extra: list[XmlNode], elem: etree._Element) -> Any:
        msg = cls(**values, extra=extra)
        if msg.iframe_cmd is not None:
            for child in elem:
                if isinstance(child.tag, str) and _local(child.tag).lower() == "iframecmd":
                    msg.iframe_tag = "IFrameCmd"
                    break
        return msg

    def to_xml(self) -> str:
        text = Message.to_xml(self)
        if self.iframe_tag == "IFrameCmd" and self.iframe_cmd is not None:
            text = text.replace("<IFameCmd>", "<IFrameCmd>", 1).replace("</IFameCmd>", "</IFrameCmd>", 1)
        return text


@dataclass
class DeviceControlResponse(Message):
    KIND: ClassVar[Kind] = Kind.RESPONSE
    CMD_TYPE: ClassVar[str] = "DeviceControl"
    result: str | None = _el("Result")


# DeviceConfig / ConfigDownload ----------------------------------------------------------------------------


@dataclass
class DeviceConfig(Message):
    """``Control DeviceConfig`` (send it to the device ID: Dahua requires it, Uniview may reboot on a
    channel ID). Complex 2016/2022 configurations are kept as :class:`XmlNode` trees."""

    KIND: ClassVar[Kind] = Kind.CONTROL
    CMD_TYPE: ClassVar[str] = "DeviceConfig"
    basic_param: BasicParam | None = _node("BasicParam", BasicParam)
    svac_encode_config: XmlNode | None = _raw("SVACEncodeConfig")
    svac_decode_config: XmlNode | None = _raw("SVACDecodeConfig")
    video_param_attribute: XmlNode | None = _raw("VideoParamAttribute")
    video_record_plan: XmlNode | None = _raw("VideoRecordPlan")
    video_alarm_record: VideoAlarmRecord | None = _node("VideoAlarmRecord", VideoAlarmRecord)
    picture_mask: XmlNode | None = _raw("PictureMask")
    frame_mirror: str | None = _el("FrameMirror")
    alarm_report: AlarmReport | None = _node("AlarmReport", AlarmReport)
    osd_config: XmlNode | None = _raw("OSDConfig")
    snap_shot_config: SnapShotConfig | None = _node("SnapShotConfig", SnapShotConfig)


@dataclass
class DeviceConfigResponse(Message):
    KIND: ClassVar[Kind] = Kind.RESPONSE
    CMD_TYPE: ClassVar[str] = "DeviceConfig"
    result: str | None = _el("Result")


@dataclass
class ConfigDownloadQuery(Message):
    """``config_type`` may name several types separated by ``/`` (``BasicParam/VideoParamOpt``)."""

    KIND: ClassVar[Kind] = Kind.QUERY
    CMD_TYPE: ClassVar[str] = "ConfigDownload"
    config_type: str | None = _el("ConfigType")


@dataclass
class ConfigDownloadResponse(Message):
    """One element per requested type; a type the device does not support is simply absent."""

    KIND: ClassVar[Kind] = Kind.RESPONSE
    CMD_TYPE: ClassVar[str] = "ConfigDownload"
    result: str | None = _el("Result")
    basic_param: BasicParam | None = _node("BasicParam", BasicParam)
    video_param_opt: VideoParamOpt | None = _node("VideoParamOpt", VideoParamOpt)
    svac_encode_config: XmlNode | None = _raw("SVACEncodeConfig")
    svac_decode_config: XmlNode | None = _raw("SVACDecodeConfig")
    video_param_attribute: XmlNode | None = _raw("VideoParamAttribute")
    video_record_plan: XmlNode | None = _raw("VideoRecordPlan")
    video_alarm_record: VideoAlarmRecord | None = _node("VideoAlarmRecord", VideoAlarmRecord)
    picture_mask: XmlNode | None = _raw("PictureMask")
    frame_mirror: str | None = _el("FrameMirror")
    alarm_report: AlarmReport | None = _node("AlarmReport", AlarmReport)
    osd_config: XmlNode | None = _raw("OSDConfig")
    snap_shot_config: SnapShotConfig | None = _node("SnapShotConfig", SnapShotConfig)


# PresetQuery ---------------------------------------------------------------------------------------------------


@dataclass
class PresetQuery(Message):
    KIND: ClassVar[Kind] = Kind.QUERY
    CMD_TYPE: ClassVar[str] = "PresetQuery"


@dataclass
class PresetQueryResponse(Message):
    KIND: ClassVar[Kind] = Kind.RESPONSE
    CMD_TYPE: ClassVar[str] = "PresetQuery"
    sum_num: int | None = _int("SumNum")
    items: list[PresetItem] = _list("PresetList", PresetItem, always=True)

    def to_xml(self) -> str:
        return _with_sum(self, Message.to_xml)


# Broadcast / MediaStatus ----------------------------------------------------------------------------------------


@dataclass
class BroadcastNotify(Message):
    """Voice broadcast notification: no ``DeviceID``, a source and a target instead."""

    KIND: ClassVar[Kind] = Kind.NOTIFY
    CMD_TYPE: ClassVar[str] = "Broadcast"
    source_id: str | None = _el("SourceID")
    target_id: str | None = _el("TargetID")


@dataclass
class BroadcastResponse(Message):
    KIND: ClassVar[Kind] = Kind.RESPONSE
    CMD_TYPE: ClassVar[str] = "Broadcast"
    result: str | None = _el("Result")


@dataclass
class MediaStatusNotify(Message):
    """In-dialog notification of a playback/download session; ``notify_type`` "121" = end of file."""

    KIND: ClassVar[Kind] = Kind.NOTIFY
    CMD_TYPE: ClassVar[str] = "MediaStatus"
    notify_type: str | None = _el("NotifyType")

    @property
    def end_of_file(self) -> bool:
        return (self.notify_type or "").strip() == "121"


# 2022 queries (requests only; their answers are read as UnknownMessage) --------------------------------------------


@dataclass
class HomePositionQuery(Message):
    KIND: ClassVar[Kind] = Kind.QUERY
    CMD_TYPE: ClassVar[str] = "HomePositionQuery"


@dataclass
class CruiseTrackListQuery(Message):
    KIND: ClassVar[Kind] = Kind.QUERY
    CMD_TYPE: ClassVar[str] = "CruiseTrackListQuery"


@dataclass
class CruiseTrackQuery(Message):
    KIND: ClassVar[Kind] = Kind.QUERY
    CMD_TYPE: ClassVar[str] = "CruiseTrackQuery"
    number: int | None = _int("Number")


@dataclass
class PtzPositionQuery(Message):
    KIND: ClassVar[Kind] = Kind.QUERY
    CMD_TYPE: ClassVar[str] = "PTZPosition"


@dataclass
class SdCardStatusQuery(Message):
    KIND: ClassVar[Kind] = Kind.QUERY
    CMD_TYPE: ClassVar[str] = "SDCardStatus"


# -- entry points ------------------------------------------------------------------------------------------------------


def parse(body: bytes | str) -> Message:
    """A MANSCDP body → its typed message; :class:`ManscdpError` (status_hint 400, or 413 for an
    oversized body) when it is not one."""
    if isinstance(body, str):
        body = body.encode("utf-8")
    return from_element(parse_xml(body))


def from_envelope(envelope: Envelope) -> Message:
    """The typed message of an envelope already decoded by :func:`~.codec.parse_envelope`."""
    return from_element(envelope.root)


def from_element(root: etree._Element) -> Message:
    """The typed message of a parsed body's root element."""
    kind = _KINDS.get(_local(root.tag).lower())
    if kind is None:
        raise ManscdpError(f"unknown MANSCDP root element {_local(root.tag)[:40]!r}")
    cmd = sn_text = device_id = None
    for child in root:
        if not isinstance(child.tag, str):
            continue
        low = _local(child.tag).lower()
        if low == "cmdtype" and cmd is None:
            cmd = _text(child)
        elif low == "sn" and sn_text is None:
            sn_text = _text(child)
        elif low == "deviceid" and device_id is None:
            device_id = _text(child)
    if not cmd:
        raise ManscdpError("missing CmdType")
    sn = 0
    if sn_text:
        if not (sn_text.isascii() and sn_text.isdigit()) or len(sn_text) > 18:
            raise ManscdpError(f"bad SN {sn_text[:20]!r}")
        sn = int(sn_text)
    cls = _REGISTRY.get((kind, cmd.lower()))
    if cls is None:
        msg = _read(UnknownMessage, root, _ENVELOPE)
        msg.unknown_kind = kind
        msg.unknown_cmd_type = cmd
        msg.sn = sn
        msg.device_id = device_id or ""
        return msg
    return cls._from_root(root, sn, device_id or "")


def message_classes() -> Iterator[type[Message]]:
    """Every registered message class (for tests and documentation)."""
    return iter(_REGISTRY.values())
