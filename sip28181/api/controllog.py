"""REST route for the control log (``GET /api/v1/control-log``): who steered what, and how it ended."""

from __future__ import annotations

import datetime as _dt

from aiohttp import web
from pydantic import BaseModel, Field, model_validator

from ..cascade.controllog import ControlLogRecord
from .channels import _ts
from .devices import PLATFORM, iso
from .routing import ApiRouter, PageQuery


class ControlLogOut(BaseModel):
    at: str = Field(description="when the control was sent or refused (ISO 8601)")
    source: str = Field(description="'local' (this platform's API or library) or the upper's SIP ID")
    device_id: str = Field(description="the device the control went to (our ID)")
    channel_id: str | None = Field(None, description="the channel it went to (our ID); none for the device itself")
    command: str = Field(description="the element sent: PTZCmd, RecordCmd, GuardCmd, DeviceConfig...")
    detail: str = Field(description="what was sent, and why it was refused or failed")
    result: str = Field(description="ok, refused (local priority, not allowed, not shared) or failed")

    @classmethod
    def of(cls, r: ControlLogRecord) -> "ControlLogOut":
        return cls(at=iso(r.at) or "", source=r.source, device_id=r.device_id, channel_id=r.channel_id,
                   command=r.command, detail=r.detail, result=r.result)


class ControlLogQuery(PageQuery):
    device_id: str | None = Field(None, pattern=r"^\d{20}$", description="only controls of this device or channel")
    source: str | None = Field(None, pattern=r"^(local|\d{20})$", description="'local' or the upper's SIP ID")
    start: _dt.datetime | None = Field(None, description="at or after (ISO 8601 or epoch seconds)")
    end: _dt.datetime | None = Field(None, description="before (ISO 8601 or epoch seconds)")

    @model_validator(mode="after")
    def _ordered(self) -> "ControlLogQuery":
        if self.start is not None and self.end is not None and _ts(self.end) <= _ts(self.start):
            raise ValueError("end must be after start")
        return self


def register_routes(api: ApiRouter) -> None:
    @api.get("/control-log", response=list[ControlLogOut], query=ControlLogQuery, tags=["control"])
    async def control_log(request: web.Request, query: ControlLogQuery) -> list[ControlLogOut]:
        """PTZ and device controls, local and from upper platforms, newest first (kept for
        ``[cascade] control_log_days``, 90 by default)."""
        records = await request.app[PLATFORM].cascade.forward.log.search(
            device_id=query.device_id, source=query.source, start=_ts(query.start) if query.start else None,
            end=_ts(query.end) if query.end else None, limit=query.limit, offset=query.offset)
        return [ControlLogOut.of(r) for r in records]
