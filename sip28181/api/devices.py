"""REST routes for health and the device registry (``/api/v1/health``, ``/api/v1/devices``)."""

from __future__ import annotations

import datetime as _dt
import time
from typing import Literal

from aiohttp import web
from pydantic import BaseModel, Field

from .. import __version__
from ..platform import DeviceState, Platform
from .routing import ApiRouter, Page, PageQuery, PathParam

PLATFORM: web.AppKey[Platform] = web.AppKey("platform", Platform)
STARTED: web.AppKey[float] = web.AppKey("started", float)

DEVICE_ID = PathParam(pattern=r"^\d{20}$", description="20-digit GB/T 28181 device ID")


def iso(ts: float | None) -> str | None:
    """Epoch seconds → ISO 8601 with the server's UTC offset (None stays None)."""
    if ts is None:
        return None
    return _dt.datetime.fromtimestamp(ts).astimezone().isoformat(timespec="milliseconds")


class Health(BaseModel):
    status: Literal["ok"] = "ok"
    version: str
    sip_id: str
    domain: str
    sip_port: int
    uptime_seconds: float
    devices: int
    devices_online: int


class DeviceOut(BaseModel):
    device_id: str = Field(description="20-digit device ID")
    name: str | None = Field(None, description="name from DeviceInfo/catalog, when known")
    status: Literal["online", "offline"]
    registered: bool = Field(description="whether a registration is in force")
    transport: Literal["UDP", "TCP"] | None = Field(None, description="transport of the registration")
    remote_address: str | None = Field(None, description="observed source host:port (NAT-aware)")
    contact: str | None = None
    expires: int | None = Field(None, description="granted registration length in seconds")
    registered_at: str | None = Field(None, description="time of the first REGISTER of this registration (ISO 8601)")
    last_keepalive_at: str | None = Field(None, description="time of the last keepalive (ISO 8601)")
    user_agent: str | None = None
    gb_version: str | None = Field(None, description="X-GB-Ver of the device (2.0 = 2016, 3.0 = 2022)")

    @classmethod
    def of(cls, s: DeviceState) -> "DeviceOut":
        return cls(
            device_id=s.device_id, name=s.name, status=s.status, registered=s.registered,  # type: ignore[arg-type]
            transport=s.transport, remote_address=f"{s.flow.host}:{s.flow.port}" if s.flow else None,  # type: ignore[arg-type]
            contact=s.contact, expires=s.expires, registered_at=iso(s.registered_at),
            last_keepalive_at=iso(s.last_keepalive_at), user_agent=s.user_agent, gb_version=s.gb_version,
        )


class DeviceListQuery(PageQuery):
    status: Literal["online", "offline"] | None = Field(None, description="only devices in this state")


class Deleted(BaseModel):
    device_id: str
    deleted: bool = True


def register_routes(api: ApiRouter) -> None:
    @api.get("/health", response=Health, tags=["server"], public=True)
    async def health(request: web.Request) -> Health:
        """Liveness and a summary of the platform."""
        platform = request.app[PLATFORM]
        return Health(version=__version__, sip_id=platform.sip_id, domain=platform.domain,
                      sip_port=platform.sip_port, uptime_seconds=round(time.monotonic() - request.app[STARTED], 3),
                      devices=len(platform.registry), devices_online=platform.registry.online_count())

    @api.get("/devices", response=Page[DeviceOut], query=DeviceListQuery, tags=["devices"])
    async def list_devices(request: web.Request, query: DeviceListQuery) -> Page[DeviceOut]:
        """List registered devices, ordered by device ID."""
        devices = request.app[PLATFORM].devices()
        if query.status is not None:
            devices = [d for d in devices if d.status == query.status]
        page = devices[query.offset:query.offset + query.limit]
        return Page[DeviceOut](items=[DeviceOut.of(d) for d in page], total=len(devices),
                               offset=query.offset, limit=query.limit)

    @api.get("/devices/{device_id}", response=DeviceOut, path_params={"device_id": DEVICE_ID},
             tags=["devices"], errors={404: "device not found"})
    async def get_device(request: web.Request, device_id: str) -> DeviceOut:
        """One device."""
        return DeviceOut.of(request.app[PLATFORM].device(device_id))

    @api.delete("/devices/{device_id}", response=Deleted, path_params={"device_id": DEVICE_ID},
                tags=["devices"], errors={404: "device not found"})
    async def delete_device(request: web.Request, device_id: str) -> Deleted:
        """Forget a device: its registration, live state and stored record."""
        await request.app[PLATFORM].delete_device(device_id)
        return Deleted(device_id=device_id)
