"""REST routes for stored alarms and mobile positions (``/api/v1/alarms``, ``.../positions``)."""

from __future__ import annotations

import datetime as _dt
from typing import Any

from aiohttp import web
from pydantic import BaseModel, Field, model_validator

from ..store.base import AlarmFilter, AlarmRecord, MobilePositionRecord
from .channels import _ts
from .devices import DEVICE_ID, PLATFORM, iso
from .routing import ApiRouter, Page, PageQuery


class AlarmOut(BaseModel):
    id: int | None = None
    sn: int | None = Field(None, description="SN of the notification")
    device_id: str = Field(description="the registered device that sent it")
    alarm_device_id: str = Field(description="DeviceID of the alarm (the channel, or the device)")
    received_at: str = Field(description="when the platform received it (ISO 8601)")
    alarm_time: str | None = Field(None, description="AlarmTime as sent (device local time)")
    priority: int | None = None
    method: int | None = Field(None, description="AlarmMethod: 1 phone, 2 device, 3 SMS, 4 GPS, 5 video, 6 fault, 7 other")
    alarm_type: int | None = Field(None, description="AlarmType (HJ extension: 100001–100009)")
    alarm_type_name: str | None = Field(None, description="the type's name, when known")
    event_type: int | None = Field(None, description="AlarmTypeParam/EventType: 1 enter, 2 leave")
    description: str | None = None
    longitude: float | None = None
    latitude: float | None = None
    image_urls: list[str] = Field(default_factory=list, description="every Info/ImageURL, in order")
    alarm_type_param: dict[str, Any] = Field(default_factory=dict)
    infos: list[dict[str, Any]] = Field(default_factory=list, description="every Info element as sent")
    extra: dict[str, Any] = Field(default_factory=dict, description="elements without a field of their own")

    @classmethod
    def of(cls, a: AlarmRecord) -> "AlarmOut":
        return cls(id=a.id, sn=a.sn, device_id=a.device_id, alarm_device_id=a.alarm_device_id, received_at=iso(a.at) or "",
                   alarm_time=a.alarm_time, priority=a.priority, method=a.method, alarm_type=a.alarm_type,
                   alarm_type_name=type_name(a.method, a.alarm_type), event_type=a.event_type,
                   description=a.description, longitude=a.longitude, latitude=a.latitude, image_urls=a.image_urls,
                   alarm_type_param=a.alarm_type_param, infos=a.infos, extra=a.extra)


def type_name(method: int | None, alarm_type: int | None) -> str | None:
    if method is None or alarm_type is None:
        return None
    try:
        from ..manscdp.alarm import alarm_type_name
    except ImportError:
        return None
    name = alarm_type_name(method, alarm_type)
    return getattr(name, "code", None) if name is not None else None


class AlarmQuery(PageQuery):
    start: _dt.datetime | None = Field(None, description="received at or after (ISO 8601 or epoch seconds)")
    end: _dt.datetime | None = Field(None, description="received before (ISO 8601 or epoch seconds)")
    device_id: str | None = Field(None, pattern=r"^\d{20}$", description="sending device or alarm DeviceID")
    alarm_type: int | None = Field(None, ge=0, le=999_999_999)
    method: int | None = Field(None, ge=1, le=7, description="AlarmMethod")
    priority: int | None = Field(None, ge=1, le=4, description="AlarmPriority")

    @model_validator(mode="after")
    def _ordered(self) -> "AlarmQuery":
        if self.start is not None and self.end is not None and _ts(self.end) <= _ts(self.start):
            raise ValueError("end must be after start")
        return self

    def where(self) -> AlarmFilter:
        return AlarmFilter(since=_ts(self.start) if self.start else None, until=_ts(self.end) if self.end else None,
                           device_id=self.device_id, alarm_type=self.alarm_type, method=self.method,
                           priority=self.priority)


class PositionOut(BaseModel):
    device_id: str
    target_id: str = Field(description="DeviceID of the report (the mobile channel or device)")
    received_at: str
    time: str | None = Field(None, description="Time as sent")
    longitude: float | None = None
    latitude: float | None = None
    speed: float | None = None
    direction: float | None = None
    altitude: float | None = None

    @classmethod
    def of(cls, p: MobilePositionRecord) -> "PositionOut":
        return cls(device_id=p.device_id, target_id=p.target_id, received_at=iso(p.at) or "", time=p.time,
                   longitude=p.longitude, latitude=p.latitude, speed=p.speed, direction=p.direction,
                   altitude=p.altitude)


class PositionQuery(BaseModel):
    start: _dt.datetime | None = None
    end: _dt.datetime | None = None
    channel_id: str | None = Field(None, pattern=r"^\d{20}$", description="only reports of this channel or device ID")
    limit: int = Field(1000, ge=1, le=10_000)

    @model_validator(mode="after")
    def _ordered(self) -> "PositionQuery":
        if self.start is not None and self.end is not None and _ts(self.end) <= _ts(self.start):
            raise ValueError("end must be after start")
        return self


def register_routes(api: ApiRouter) -> None:
    @api.get("/alarms", response=Page[AlarmOut], query=AlarmQuery, tags=["alarms"])
    async def search_alarms(request: web.Request, query: AlarmQuery) -> Page[AlarmOut]:
        """Stored alarms, newest first, by time range, device, type, method and priority."""
        items, total = await request.app[PLATFORM].management.alarms.search(query.where(), offset=query.offset,
                                                                            limit=query.limit)
        return Page[AlarmOut](items=[AlarmOut.of(a) for a in items], total=total, offset=query.offset,
                              limit=query.limit)

    @api.get("/devices/{device_id}/positions", response=list[PositionOut], query=PositionQuery,
             path_params={"device_id": DEVICE_ID}, tags=["alarms"], errors={404: "device not found"})
    async def list_positions(request: web.Request, device_id: str, query: PositionQuery) -> list[PositionOut]:
        """Mobile positions reported by a device (or one of its channels), oldest first."""
        platform = request.app[PLATFORM]
        platform.device(device_id)
        records = await platform.management.alarms.positions(
            query.channel_id, _ts(query.start) if query.start else None,
            _ts(query.end) if query.end else None, query.limit)
        return [PositionOut.of(p) for p in records if p.device_id == device_id]
