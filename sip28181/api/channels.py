"""REST routes for catalogs and live queries: channels, tree, catalog refresh, device info/status,
record search, presets, configuration download.

Live queries go to the device and wait for its answer: an unknown or offline device is 404, a
device that does not answer in time 504, a device that refuses 502 (all JSON errors).
"""

from __future__ import annotations

import datetime as _dt
from typing import Any, Literal

from aiohttp import web
from pydantic import BaseModel, Field, model_validator

from ..errors import NotFoundError
from ..store.base import ChannelRecord
from .devices import DEVICE_ID, PLATFORM, iso
from .routing import ApiRouter, Page, PageQuery, PathParam

CHANNEL_ID = PathParam(pattern=r"^\d{2,20}$", description="catalog node ID (20 digits; 2–8 for regions)")
KINDS = Literal["region", "business_group", "virtual_org", "system", "channel"]
DEVICE_ERRORS = {404: "device not found or offline", 502: "the device refused", 504: "the device did not answer"}


class ChannelOut(BaseModel):
    device_id: str = Field(description="the registered device (NVR, platform) that reported it")
    channel_id: str
    name: str | None = None
    kind: KINDS = Field(description="node kind from the ID (PROTOCOL §5.4.3)")
    status: Literal["ON", "OFF"]
    fault: Literal["VLOST", "DEFECT"] | None = Field(None, description="after a VLOST/DEFECT catalog event")
    parent_id: str | None = Field(None, description="ParentID as sent (2022: may be a/b/c)")
    parent_ids: list[str] = Field(default_factory=list, description="ParentID split into its values")
    business_group_id: str | None = None
    civil_code: str | None = None
    manufacturer: str | None = None
    model: str | None = None
    address: str | None = None
    parental: int | None = None
    longitude: float | None = None
    latitude: float | None = None
    fields: dict[str, Any] = Field(default_factory=dict,
                                   description="every other element of the catalog item, Info included")
    created_at: str | None = None
    updated_at: str | None = None

    @classmethod
    def of(cls, c: ChannelRecord) -> "ChannelOut":
        parents = [p for p in (c.parent_id or "").replace(",", "/").split("/") if p.strip()]
        return cls(device_id=c.device_id, channel_id=c.channel_id, name=c.name, kind=c.kind,  # type: ignore[arg-type]
                   status=c.status, fault=c.fault, parent_id=c.parent_id, parent_ids=parents,  # type: ignore[arg-type]
                   business_group_id=c.business_group_id, civil_code=c.civil_code, manufacturer=c.manufacturer,
                   model=c.model, address=c.address, parental=c.parental, longitude=c.longitude,
                   latitude=c.latitude, fields=c.fields, created_at=iso(c.created_at), updated_at=iso(c.updated_at))


class ChannelQuery(PageQuery):
    status: Literal["ON", "OFF"] | None = Field(None, description="only channels in this state")
    kind: KINDS | None = Field(None, description="only nodes of this kind")
    parent_id: str | None = Field(None, pattern=r"^\d{2,20}$", description="only direct children of this node")
    q: str | None = Field(None, min_length=1, max_length=64, description="substring of the name or ID")


class TreeNodeOut(BaseModel):
    id: str
    name: str | None = None
    kind: KINDS
    status: Literal["ON", "OFF"] | None = Field(None, description="channels only")
    children: list["TreeNodeOut"] = Field(default_factory=list)


class TreeOut(BaseModel):
    device_id: str
    nodes: int = Field(description="catalog entries in the tree")
    roots: list[TreeNodeOut]


class CatalogRefreshOut(BaseModel):
    device_id: str
    sum_num: int | None = Field(None, description="SumNum the device announced")
    received: int = Field(description="distinct items received")
    partial: bool = Field(description="the device stopped before SumNum: nothing was removed")
    added: int
    updated: int
    removed: int
    packets: int
    duplicates: int


class CatalogRefreshQuery(BaseModel):
    timeout: float | None = Field(None, gt=0, le=300, description="seconds to wait for the first packet")


class DeviceInfoOut(BaseModel):
    device_id: str
    result: str | None = None
    device_name: str | None = None
    device_type: str | None = None
    manufacturer: str | None = None
    model: str | None = None
    firmware: str | None = None
    channel: int | None = Field(None, description="number of video input channels")
    max_camera: int | None = None
    max_alarm: int | None = None


class AlarmStatusOut(BaseModel):
    device_id: str
    duty_status: str | None = None


class DeviceStatusOut(BaseModel):
    device_id: str
    result: str | None = None
    online: str | None = Field(None, description="ONLINE / OFFLINE")
    status: str | None = Field(None, description="OK / ERROR")
    reason: str | None = None
    encode: str | None = None
    record: str | None = None
    device_time: str | None = None
    alarm_status: list[AlarmStatusOut] = Field(default_factory=list)


class RecordQuery(BaseModel):
    start: _dt.datetime = Field(description="ISO 8601 (naive: server local time) or epoch seconds")
    end: _dt.datetime = Field(description="ISO 8601 (naive: server local time) or epoch seconds")
    type: Literal["all", "time", "alarm", "manual"] = Field("all", description="record type")
    timeout: float | None = Field(None, gt=0, le=300)

    @model_validator(mode="after")
    def _ordered(self) -> "RecordQuery":
        if _ts(self.end) <= _ts(self.start):
            raise ValueError("end must be after start")
        if _ts(self.end) - _ts(self.start) > 366 * 86400:
            raise ValueError("the range may span at most 366 days")
        return self


class RecordOut(BaseModel):
    device_id: str | None = None
    name: str | None = None
    file_path: str | None = None
    address: str | None = None
    start_time: str | None = None
    end_time: str | None = None
    secrecy: int | None = None
    type: str | None = None
    recorder_id: str | None = None
    file_size: int | None = None
    stream_number: int | None = None


class RecordsOut(BaseModel):
    device_id: str
    channel_id: str
    name: str | None = None
    sum_num: int | None = None
    partial: bool
    items: list[RecordOut]


class PresetOut(BaseModel):
    preset_id: int | None
    preset_name: str | None = None


class PresetsOut(BaseModel):
    device_id: str
    channel_id: str
    sum_num: int | None = None
    partial: bool
    items: list[PresetOut]


class ConfigQuery(BaseModel):
    types: str = Field("BasicParam", pattern=r"^[A-Za-z]{1,40}(/[A-Za-z]{1,40}){0,9}$",
                       description="ConfigType, several separated by '/' (BasicParam/VideoParamOpt)")


class ConfigOut(BaseModel):
    device_id: str
    result: str | None = None
    config: dict[str, Any] = Field(description="one member per configuration element the device returned")


def _ts(value: _dt.datetime) -> float:
    return value.timestamp() if value.tzinfo is not None else value.astimezone().timestamp()


def _device(request: web.Request, device_id: str):
    platform = request.app[PLATFORM]
    platform.device(device_id)
    return platform


def register_routes(api: ApiRouter) -> None:
    both = {"device_id": DEVICE_ID, "channel_id": CHANNEL_ID}

    @api.get("/devices/{device_id}/channels", response=Page[ChannelOut], query=ChannelQuery,
             path_params={"device_id": DEVICE_ID}, tags=["catalog"], errors={404: "device not found"})
    async def list_channels(request: web.Request, device_id: str, query: ChannelQuery) -> Page[ChannelOut]:
        """Channels of a device from its catalog, ordered by ID."""
        channels = request.app[PLATFORM].channels(device_id)
        if query.status is not None:
            channels = [c for c in channels if c.status == query.status]
        if query.kind is not None:
            channels = [c for c in channels if c.kind == query.kind]
        if query.parent_id is not None:
            pid = query.parent_id
            channels = [c for c in channels if c.parent_id and pid in c.parent_id.replace(",", "/").split("/")]
        if query.q is not None:
            needle = query.q.lower()
            channels = [c for c in channels if needle in c.channel_id or needle in (c.name or "").lower()]
        page = channels[query.offset:query.offset + query.limit]
        return Page[ChannelOut](items=[ChannelOut.of(c) for c in page], total=len(channels),
                                offset=query.offset, limit=query.limit)

    @api.get("/devices/{device_id}/channels/{channel_id}", response=ChannelOut, path_params=both,
             tags=["catalog"], errors={404: "device or channel not found"})
    async def get_channel(request: web.Request, device_id: str, channel_id: str) -> ChannelOut:
        """One catalog entry."""
        platform = _device(request, device_id)
        channel = platform.management.catalog.channel(device_id, channel_id)
        if channel is None:
            raise NotFoundError(f"channel {channel_id} not found")
        return ChannelOut.of(channel)

    @api.get("/devices/{device_id}/tree", response=TreeOut, path_params={"device_id": DEVICE_ID},
             tags=["catalog"], errors={404: "device not found"})
    async def channel_tree(request: web.Request, device_id: str) -> dict[str, Any]:
        """The catalog as a tree: regions, business groups, virtual organisations, channels.

        Parents come from ParentID (several in 2022), else BusinessGroupID, else CivilCode; a node
        with several parents appears under each."""
        platform = _device(request, device_id)
        catalog = platform.management.catalog
        roots = catalog.tree(device_id)
        return {"device_id": device_id, "nodes": len(catalog.channels(device_id)),
                "roots": [r.as_dict() for r in roots]}

    @api.post("/devices/{device_id}/catalog", response=CatalogRefreshOut, query=CatalogRefreshQuery,
              path_params={"device_id": DEVICE_ID}, tags=["catalog"], errors=DEVICE_ERRORS)
    async def refresh_catalog(request: web.Request, device_id: str, query: CatalogRefreshQuery) -> CatalogRefreshOut:
        """Query the catalog now and apply it (joins a query already running)."""
        result = await request.app[PLATFORM].query_catalog(device_id, timeout=query.timeout)
        return CatalogRefreshOut(device_id=result.device_id, sum_num=result.sum_num, received=result.received,
                                 partial=result.partial, added=result.added, updated=result.updated,
                                 removed=result.removed, packets=result.packets, duplicates=result.duplicates)

    @api.get("/devices/{device_id}/info", response=DeviceInfoOut, path_params={"device_id": DEVICE_ID},
             tags=["queries"], errors=DEVICE_ERRORS)
    async def device_info(request: web.Request, device_id: str) -> DeviceInfoOut:
        """DeviceInfo, asked of the device now."""
        r = await request.app[PLATFORM].query_device_info(device_id)
        return DeviceInfoOut(device_id=r.device_id or device_id, result=r.result, device_name=r.device_name,
                             device_type=r.device_type, manufacturer=r.manufacturer, model=r.model,
                             firmware=r.firmware, channel=r.channel, max_camera=r.max_camera, max_alarm=r.max_alarm)

    @api.get("/devices/{device_id}/status", response=DeviceStatusOut, path_params={"device_id": DEVICE_ID},
             tags=["queries"], errors=DEVICE_ERRORS)
    async def device_status(request: web.Request, device_id: str) -> DeviceStatusOut:
        """DeviceStatus, asked of the device now."""
        r = await request.app[PLATFORM].query_device_status(device_id)
        return DeviceStatusOut(device_id=r.device_id or device_id, result=r.result, online=r.online, status=r.status,
                               reason=r.reason, encode=r.encode_status, record=r.record, device_time=r.device_time,
                               alarm_status=[AlarmStatusOut(device_id=a.device_id, duty_status=a.duty_status)
                                             for a in r.alarm_status or ()])

    @api.get("/devices/{device_id}/channels/{channel_id}/records", response=RecordsOut, query=RecordQuery,
             path_params=both, tags=["queries"], errors=DEVICE_ERRORS)
    async def search_records(request: web.Request, device_id: str, channel_id: str, query: RecordQuery) -> RecordsOut:
        """Recordings of a channel in a time range (RecordInfo, gathered across packets)."""
        r = await request.app[PLATFORM].query_record_info(device_id, channel_id, _ts(query.start), _ts(query.end),
                                                          record_type=query.type, timeout=query.timeout)
        keys = RecordOut.model_fields
        return RecordsOut(device_id=device_id, channel_id=channel_id, name=r.name, sum_num=r.sum_num, partial=r.partial,
                          items=[RecordOut(**{k: v for k, v in i.items() if k in keys}) for i in r.items])

    @api.get("/devices/{device_id}/channels/{channel_id}/presets", response=PresetsOut, path_params=both,
             tags=["queries"], errors=DEVICE_ERRORS)
    async def list_presets(request: web.Request, device_id: str, channel_id: str) -> PresetsOut:
        """PTZ presets of a channel (PresetQuery)."""
        g = await request.app[PLATFORM].query_presets(device_id, channel_id)
        items = sorted(g.items, key=lambda p: (p.preset_id is None, p.preset_id or 0))
        return PresetsOut(device_id=device_id, channel_id=channel_id, sum_num=g.sum_num, partial=g.partial,
                          items=[PresetOut(preset_id=p.preset_id, preset_name=p.preset_name) for p in items])

    @api.get("/devices/{device_id}/config", response=ConfigOut, query=ConfigQuery,
             path_params={"device_id": DEVICE_ID}, tags=["queries"], errors=DEVICE_ERRORS)
    async def config_download(request: web.Request, device_id: str, query: ConfigQuery) -> ConfigOut:
        """Configuration of a device (ConfigDownload); a type the device does not return is absent."""
        from ..platform.catalog import _jsonable

        r = await request.app[PLATFORM].config_download(device_id, query.types)
        config: dict[str, Any] = {}
        for name, value in _config_elements(r):
            config[name] = _jsonable(value)
        return ConfigOut(device_id=r.device_id or device_id, result=r.result, config=config)


def _config_elements(response: Any) -> list[tuple[str, Any]]:
    """The configuration elements of a ConfigDownload answer, by their XML names."""
    import dataclasses

    out = []
    for f in dataclasses.fields(response):
        if f.name in ("sn", "device_id", "result", "extra"):
            continue
        value = getattr(response, f.name)
        if value is not None:
            out.append((_camel(f.name), value))
    for node in getattr(response, "extra", ()) or ():
        out.append((node.tag, node))
    return out


def _camel(name: str) -> str:
    special = {"basic_param": "BasicParam", "video_param_opt": "VideoParamOpt", "svac_encode_config": "SVACEncodeConfig",
               "svac_decode_config": "SVACDecodeConfig"}
    return special.get(name) or "".join(p.capitalize() for p in name.split("_"))
