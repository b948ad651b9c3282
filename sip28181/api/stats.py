"""REST routes for statistics: online rate (HJ 9.3), access rate (9.4) and device lists.

Definitions are those of :mod:`sip28181.platform.stats` (online time from the presence history,
which the platform keeps by keepalive supervision).
"""

from __future__ import annotations

import datetime as _dt
from typing import Literal

from aiohttp import web
from pydantic import BaseModel, Field, model_validator

from ..platform.stats import DEVICE_LISTS
from .channels import _ts
from .devices import PLATFORM, iso
from .routing import ApiRouter, Page, PageQuery, PathParam

ListName = Literal[DEVICE_LISTS]  # type: ignore[valid-type]


class PeriodQuery(BaseModel):
    start: _dt.datetime = Field(description="period start (ISO 8601, naive = server local time, or epoch seconds)")
    end: _dt.datetime = Field(description="period end, exclusive")

    @model_validator(mode="after")
    def _ordered(self) -> "PeriodQuery":
        if _ts(self.end) <= _ts(self.start):
            raise ValueError("end must be after start")
        if _ts(self.end) - _ts(self.start) > 400 * 86400:
            raise ValueError("the period may span at most 400 days")
        return self


class OnlineRateQuery(PeriodQuery):
    device_id: str | None = Field(None, pattern=r"^\d{20}$", description="one device (default: every device)")


class OnlineRateOut(BaseModel):
    device_id: str
    start: str
    end: str
    online_seconds: float = Field(description="T: time online in the period")
    expected_seconds: float = Field(description="M: time the device should have been online (known, not future)")
    rate: float | None = Field(description="D = T / M (0..1); null when M is 0")


class OnlineRatesOut(BaseModel):
    items: list[OnlineRateOut]
    average: float | None = Field(description="mean of the devices' rates")


class AccessRateOut(BaseModel):
    start: str
    end: str
    accessed: int = Field(description="S: devices whose keepalives or media reached the platform")
    expected: int = Field(description="Z: devices that should be connected")
    rate: float | None = Field(description="A = S / Z (0..1)")
    missing: list[str] = Field(description="expected devices not heard from in the period")


class ListedDevice(BaseModel):
    device_id: str
    name: str | None = None
    status: Literal["online", "offline"] | None = None
    last_keepalive_at: str | None = None


def register_routes(api: ApiRouter) -> None:
    @api.get("/stats/online-rate", response=OnlineRatesOut, query=OnlineRateQuery, tags=["statistics"],
             errors={404: "device not found"})
    async def online_rate(request: web.Request, query: OnlineRateQuery) -> OnlineRatesOut:
        """Online rate D = T / M per device over a period (HJ draft 9.3)."""
        stats = request.app[PLATFORM].management.stats
        start, end = _ts(query.start), _ts(query.end)
        rates = [await stats.online_rate(query.device_id, start, end)] if query.device_id else \
            await stats.online_rates(start, end)
        items = [OnlineRateOut(device_id=r.device_id, start=iso(r.start) or "", end=iso(r.end) or "",
                               online_seconds=round(r.online_seconds, 3), expected_seconds=round(r.expected_seconds, 3),
                               rate=r.rate) for r in rates]
        known = [r.rate for r in rates if r.rate is not None]
        return OnlineRatesOut(items=items, average=sum(known) / len(known) if known else None)

    @api.get("/stats/access-rate", response=AccessRateOut, query=PeriodQuery, tags=["statistics"])
    async def access_rate(request: web.Request, query: PeriodQuery) -> AccessRateOut:
        """Access rate A = S / Z over a period (HJ draft 9.4)."""
        r = await request.app[PLATFORM].management.stats.access_rate(_ts(query.start), _ts(query.end))
        accessed = set(r.accessed)
        return AccessRateOut(start=iso(r.start) or "", end=iso(r.end) or "", accessed=len(r.accessed),
                             expected=len(r.expected), rate=r.rate,
                             missing=[d for d in r.expected if d not in accessed])

    @api.get("/stats/devices/{list_name}", response=Page[ListedDevice], query=PageQuery,
             path_params={"list_name": PathParam(pattern="^(" + "|".join(DEVICE_LISTS) + ")$",
                                                 description="one of: " + ", ".join(DEVICE_LISTS))},
             tags=["statistics"])
    async def device_list(request: web.Request, list_name: str, query: PageQuery) -> Page[ListedDevice]:
        """Devices of one statistics list: ever online, new online/offline today, offline over 3 days,
        offline now but online within 3 days, online but never streamed."""
        platform = request.app[PLATFORM]
        ids = (await platform.management.stats.device_lists())[list_name]
        out = []
        for device_id in ids[query.offset:query.offset + query.limit]:
            s = platform.registry.get(device_id)
            out.append(ListedDevice(device_id=device_id, name=s.name if s else None,
                                    status=s.status if s else None,  # type: ignore[arg-type]
                                    last_keepalive_at=iso(s.last_keepalive_at) if s else None))
        return Page[ListedDevice](items=out, total=len(ids), offset=query.offset, limit=query.limit)
