"""REST routes for upper platforms (cascade): list, create, change, delete, register again; and
what each upper has of us: the catalog it is shown, its media calls and its subscriptions.

Bodies are the keys of a TOML ``[[upper]]`` table (:class:`~sip28181.cascade.settings.UpperSettings`)
as JSON and are checked by the same code as the configuration file, so a bad value answers 400
with a message naming the key. Changes are saved in the store before they take effect and are
loaded again at the next start. The password is accepted, never returned.
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any, Literal

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema

from ..cascade.link import UpperLink
from ..cascade.uppers import UpperExists, create_upper, delete_upper, replace_upper
from .devices import PLATFORM, iso
from .errors import HttpError
from .routing import ApiRouter, Page, PageQuery, PathParam

UPPER_ID = PathParam(pattern=r"^\d{20}$", description="20-digit SIP ID of the upper platform")


class UpperIn(BaseModel):
    """An upper platform's settings (the TOML ``[[upper]]`` keys). Documentation of the body:
    values are checked by the configuration's own rules (400 naming the key)."""

    model_config = ConfigDict(extra="forbid")

    sip_id: str = Field(pattern=r"^\d{20}$", description="the upper's SIP ID (taken from the path on PUT)")
    host: str = Field(description="address of the upper's SIP service")
    domain: str | None = Field(None, description="the upper's SIP domain (default: first 10 digits of sip_id)")
    port: int = Field(5060, ge=1, le=65535)
    transport: Literal["udp", "tcp"] = "udp"
    password: str | None = Field(None, description="digest password; on PUT, leaving it out keeps the current one")
    username: str | None = Field(None, description="digest username (default: our local ID)")
    local_id: str | None = Field(None, description="the ID we present to this upper (default: our SIP ID)")
    local_domain: str | None = None
    name: str = ""
    enabled: bool = True
    register_interval: int = Field(3600, ge=60, le=604800, description="Expires asked for, seconds")
    keepalive_interval: int = Field(60, ge=1, le=86400)
    keepalive_timeout_count: int = Field(3, ge=1, le=100, description="keepalives without a 200 before the upper is dead")
    retry_interval: float = Field(60.0, description="first wait before registering again after a failure, seconds")
    retry_max: float = Field(600.0, description="longest wait between registration attempts, seconds")
    share: Literal["all"] | list[str] = Field("all", description='"all" or the device/channel IDs shared')
    ids: Literal["keep", "map"] = "keep"
    id_prefix: str | None = None
    id_map: dict[str, str] = Field(default_factory=dict)
    tree: Literal["2016", "2022"] = "2016"
    charset: Literal["GB2312", "GB18030", "UTF-8"] = "GB2312"
    catalog_group: int = Field(4, ge=1, le=100)
    civil_code: str | None = None
    platform_node: bool = True
    allow_control: bool = True
    media_host: str | None = None
    check_source: bool = Field(True, description="take the upper's requests only from host (off: NAT, several addresses)")


#: Validated by :func:`~sip28181.cascade.settings.parse_upper`, documented as :class:`UpperIn`.
UpperBody = Annotated[dict[str, Any], WithJsonSchema(UpperIn.model_json_schema(mode="validation"))]


class UpperOut(BaseModel):
    sip_id: str
    name: str
    domain: str
    host: str
    port: int
    transport: Literal["udp", "tcp"]
    local_id: str = Field(description="the ID we present to this upper")
    enabled: bool
    source: Literal["config", "api"] = Field(description="where the settings come from")
    state: Literal["disabled", "registering", "online", "retrying", "stopped"]
    online: bool
    expires: int | None = Field(None, description="registration length the upper granted, seconds")
    min_expires: int | None = Field(None, description="least registration length the upper demanded (423), seconds")
    registered_at: str | None = Field(None, description="last successful REGISTER, first or refresh (ISO 8601)")
    online_since: str | None = None
    last_keepalive_at: str | None = None
    last_error: str | None = Field(None, description="why the last registration failed or the upper was found dead")
    last_error_at: str | None = None
    failures: int = Field(description="failed registrations since the last success")
    next_attempt_at: str | None = Field(None, description="when the next registration attempt is due, while retrying")
    has_password: bool
    settings: dict[str, Any] = Field(description="every setting but the password")

    @classmethod
    def of(cls, link: UpperLink) -> "UpperOut":
        status = link.status()
        for key in ("registered_at", "online_since", "last_keepalive_at", "last_error_at", "next_attempt_at"):
            status[key] = iso(status[key])  # type: ignore[arg-type]
        settings = link.settings.to_dict()
        has_password = bool(settings.pop("password", None))
        return cls(**status, has_password=has_password, settings=settings)  # type: ignore[arg-type]


class UpperDeleted(BaseModel):
    sip_id: str
    deleted: bool = True


SHARED_KINDS = Literal["system", "region", "business_group", "virtual_org", "channel"]


class SharedQuery(PageQuery):
    kind: SHARED_KINDS | None = Field(None, description="only nodes of this kind")


class SharedItemOut(BaseModel):
    """One catalog entry as the upper sees it (IDs are the upper's unless named local)."""

    id: str = Field(description="the ID the upper knows it by")
    kind: SHARED_KINDS
    name: str | None = None
    status: str = Field(description="ON or OFF as last told to the upper")
    fault: str | None = Field(None, description="VLOST or DEFECT when the channel's last catalog event said so")
    parents: list[str] = Field(description="upper-side parent IDs (empty for the root)")
    parent_id: str | None = None
    business_group_id: str | None = None
    civil_code: str | None = None
    manufacturer: str | None = None
    model: str | None = None
    address: str | None = None
    parental: int | None = None
    longitude: float | None = None
    latitude: float | None = None
    device_id: str = Field(description="the local device it comes from (our SIP ID for the root)")
    local_id: str = Field(description="its local ID")

    @classmethod
    def of(cls, node: Any) -> "SharedItemOut":
        item = node.item
        return cls(id=node.upper_id, kind=node.kind, name=item.name, status=node.status, fault=node.fault,
                   parents=list(node.parents), parent_id=item.parent_id, business_group_id=item.group_id,
                   civil_code=item.civil_code, manufacturer=item.manufacturer, model=item.model,
                   address=item.address, parental=item.parental, longitude=item.longitude,
                   latitude=item.latitude, device_id=node.device_id, local_id=node.local_id)


class UpperCallOut(BaseModel):
    """A media session the upper opened with us (INVITE for a shared channel)."""

    call_id: str
    upper_id: str
    channel_id: str = Field(description="the channel ID the upper asked for")
    device_id: str = Field(description="the local device serving it")
    local_channel_id: str
    kind: Literal["Play", "Playback", "Download"]
    transport: Literal["udp", "tcp-active", "tcp-passive"]
    ssrc: str
    state: Literal["answering", "answered", "sending", "closed"]
    destination: str = Field(description="where the PS/RTP goes (host:port from the upper's SDP)")
    media: dict[str, Any] | None = Field(None, description="PS/RTP output counters once sending")


class UpperSubscriptionOut(BaseModel):
    """A subscription the upper holds with us (SUBSCRIBE Catalog, Alarm or MobilePosition)."""

    call_id: str
    cmd_type: str = Field(description="the subscription body's CmdType")
    event: str = Field(description="the Event header as the upper sent it")
    expires_in: int = Field(description="seconds until it ends unless refreshed")
    notifies: int = Field(description="NOTIFYs sent in it so far")
    interval: int | None = Field(None, description="report period asked for (MobilePosition), seconds")


def register_routes(api: ApiRouter) -> None:
    tags = ["cascade"]

    @api.get("/uppers", response=list[UpperOut], tags=tags)
    async def list_uppers(request: web.Request) -> list[UpperOut]:
        """Upper platforms we register to, with their registration state, ordered by SIP ID."""
        cascade = request.app[PLATFORM].cascade
        return [UpperOut.of(cascade.links[k]) for k in sorted(cascade.links)]

    @api.post("/uppers", body=UpperBody, response=UpperOut, status=201, tags=tags,
              errors={400: "a setting is missing or invalid (the message names it)",
                      409: "an upper with this SIP ID exists"})
    async def create_upper_route(request: web.Request, body: dict[str, Any]) -> UpperOut:
        """Add an upper platform; it is saved and registration starts at once when enabled."""
        try:
            link = await create_upper(request.app[PLATFORM].cascade, body)
        except UpperExists as exc:
            raise HttpError(409, str(exc)) from None
        return UpperOut.of(link)

    @api.get("/uppers/{sip_id}", response=UpperOut, path_params={"sip_id": UPPER_ID}, tags=tags,
             errors={404: "no such upper"})
    async def get_upper(request: web.Request, sip_id: str) -> UpperOut:
        """One upper platform and its registration state (the password is never shown)."""
        return UpperOut.of(request.app[PLATFORM].cascade.link(sip_id))

    @api.put("/uppers/{sip_id}", body=UpperBody, response=UpperOut, path_params={"sip_id": UPPER_ID},
             tags=tags, errors={400: "a setting is missing or invalid (the message names it)",
                                404: "no such upper"})
    async def replace_upper_route(request: web.Request, sip_id: str, body: dict[str, Any]) -> UpperOut:
        """Replace an upper's settings: saved, then the link unregisters and registers again.

        Leaving ``password`` out keeps the current password."""
        return UpperOut.of(await replace_upper(request.app[PLATFORM].cascade, sip_id, body))

    @api.delete("/uppers/{sip_id}", response=UpperDeleted, path_params={"sip_id": UPPER_ID}, tags=tags,
                errors={404: "no such upper"})
    async def delete_upper_route(request: web.Request, sip_id: str) -> UpperDeleted:
        """Unregister from an upper and forget it (also after a restart)."""
        await delete_upper(request.app[PLATFORM].cascade, sip_id)
        return UpperDeleted(sip_id=sip_id)

    @api.post("/uppers/{sip_id}/register", response=UpperOut, path_params={"sip_id": UPPER_ID},
              tags=tags, errors={404: "no such upper", 409: "the upper is disabled",
                                 504: "the attempt did not finish in time"})
    async def register_upper(request: web.Request, sip_id: str) -> UpperOut:
        """Register with an upper now: a refresh when online, else an attempt that ends the
        backoff wait. Answers once the attempt is over, with its outcome in ``state``/``last_error``."""
        link = request.app[PLATFORM].cascade.link(sip_id)
        if not link.settings.enabled:
            raise HttpError(409, f"upper {sip_id} is disabled")
        try:
            async with asyncio.timeout(3 * link.request_timeout):
                await link.register_now()
        except TimeoutError:
            raise HttpError(504, "the registration attempt did not finish in time") from None
        return UpperOut.of(link)

    @api.get("/uppers/{sip_id}/catalog", response=Page[SharedItemOut], query=SharedQuery,
             path_params={"sip_id": UPPER_ID}, tags=tags, errors={404: "no such upper"})
    async def upper_catalog(request: web.Request, sip_id: str, query: SharedQuery) -> Page[SharedItemOut]:
        """The catalog this upper is shown (platform node, regions, groups, organisations, channels),
        with the IDs it knows them by, in the order it gets them."""
        cascade = request.app[PLATFORM].cascade
        nodes = cascade.northbound.shared(cascade.link(sip_id)).nodes
        if query.kind is not None:
            nodes = [n for n in nodes if n.kind == query.kind]
        page = nodes[query.offset:query.offset + query.limit]
        return Page[SharedItemOut](items=[SharedItemOut.of(n) for n in page], total=len(nodes),
                                   offset=query.offset, limit=query.limit)

    @api.get("/uppers/{sip_id}/calls", response=list[UpperCallOut], path_params={"sip_id": UPPER_ID},
             tags=tags, errors={404: "no such upper"})
    async def upper_calls(request: web.Request, sip_id: str) -> list[UpperCallOut]:
        """The media sessions this upper has open with us (play, playback, download)."""
        cascade = request.app[PLATFORM].cascade
        cascade.link(sip_id)
        return [UpperCallOut(**c.status()) for c in cascade.media.list(sip_id)]

    @api.get("/uppers/{sip_id}/subscriptions", response=list[UpperSubscriptionOut],
             path_params={"sip_id": UPPER_ID}, tags=tags, errors={404: "no such upper"})
    async def upper_subscriptions(request: web.Request, sip_id: str) -> list[UpperSubscriptionOut]:
        """The subscriptions this upper holds with us (catalog, alarms, mobile positions)."""
        cascade = request.app[PLATFORM].cascade
        cascade.link(sip_id)
        subs = sorted((s for s in cascade.subscriptions.all() if s.link.upper_id == sip_id and not s.terminated),
                      key=lambda s: (s.cmd_type, s.call_id))
        return [UpperSubscriptionOut(call_id=s.call_id, cmd_type=s.cmd_type, event=s.event,
                                     expires_in=s.remaining(), notifies=s.notifies,
                                     interval=getattr(s.query, "interval", None)) for s in subs]
