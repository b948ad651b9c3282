"""REST routes for control: PTZ, device control commands, DeviceConfig, subscriptions.

Bodies are validated (422 with the field errors). Commands with a business Response return the
device's ``result``; the others return once the device accepted the MESSAGE (SIP 200).
"""

from __future__ import annotations

from typing import Annotated, Literal, Union

from aiohttp import web
from pydantic import BaseModel, Field

from ..manscdp.ptz import PtzAction
from ..platform.subscriptions import KINDS
from .channels import CHANNEL_ID, DEVICE_ERRORS
from .devices import DEVICE_ID, PLATFORM
from .routing import ApiRouter, PathParam

ChannelField = Field(None, pattern=r"^\d{20}$", description="target channel (default: the device)")


class PtzBody(BaseModel):
    action: PtzAction = Field(description="what to do; moves continue until 'stop'")
    speed: int | None = Field(None, ge=0, le=4095, description="pan/tilt/focus/iris 0–255 (zoom scaled to 0–15); "
                                                                 "cruise/scan speed 1–4095")
    preset: int | None = Field(None, ge=0, le=255, description="preset number for preset and cruise commands")
    group: int = Field(1, ge=0, le=255, description="cruise or scan group")
    dwell: int | None = Field(None, ge=1, le=4095, description="cruise dwell time, seconds")
    switch: int = Field(1, ge=0, le=255, description="auxiliary switch (1 = wiper)")


class PtzOut(BaseModel):
    device_id: str
    channel_id: str
    action: PtzAction
    ptz_cmd: str = Field(description="the 16-hex PTZCmd sent")


class TeleBoot(BaseModel):
    command: Literal["tele_boot"]


class RecordCmd(BaseModel):
    command: Literal["record"]
    channel_id: str | None = ChannelField
    start: bool = Field(description="true: Record, false: StopRecord")
    stream_number: int | None = Field(None, ge=0, le=9)


class GuardCmd(BaseModel):
    command: Literal["guard"]
    channel_id: str | None = ChannelField
    arm: bool = Field(description="true: SetGuard, false: ResetGuard")


class AlarmReset(BaseModel):
    command: Literal["reset_alarm"]
    channel_id: str | None = ChannelField
    alarm_method: str | None = Field(None, pattern=r"^\d{1,2}$")
    alarm_type: str | None = Field(None, pattern=r"^\d{1,9}$")


class IFrame(BaseModel):
    command: Literal["iframe"]
    channel_id: str | None = ChannelField


class DragZoom(BaseModel):
    command: Literal["drag_zoom"]
    channel_id: str | None = ChannelField
    zoom_in: bool
    length: int = Field(ge=1, le=100_000, description="play window length, pixels")
    width: int = Field(ge=1, le=100_000, description="play window width, pixels")
    mid_point_x: int = Field(ge=0, le=100_000)
    mid_point_y: int = Field(ge=0, le=100_000)
    length_x: int = Field(ge=0, le=100_000)
    length_y: int = Field(ge=0, le=100_000)


class HomePositionCmd(BaseModel):
    command: Literal["home_position"]
    channel_id: str | None = ChannelField
    enabled: bool
    reset_time: int | None = Field(None, ge=0, le=86400, description="seconds")
    preset_index: int | None = Field(None, ge=0, le=255)


ControlBody = Annotated[Union[TeleBoot, RecordCmd, GuardCmd, AlarmReset, IFrame, DragZoom, HomePositionCmd],
                        Field(discriminator="command")]


class ControlOut(BaseModel):
    device_id: str
    command: str
    result: str | None = Field(description="the device's Result, for commands that have one")


class ConfigBody(BaseModel):
    name: str | None = Field(None, min_length=1, max_length=64)
    expiration: int | None = Field(None, ge=30, le=86400 * 7, description="registration validity, seconds")
    heart_beat_interval: int | None = Field(None, ge=5, le=3600, description="keepalive interval, seconds")
    heart_beat_count: int | None = Field(None, ge=1, le=100, description="missed keepalives before offline")


class SubscribeBody(BaseModel):
    kind: Literal[tuple(KINDS)]  # type: ignore[valid-type]
    expires: int | None = Field(None, ge=30, le=86400, description="seconds (default from the configuration)")


class SubscriptionOut(BaseModel):
    device_id: str
    kind: str
    state: str
    expires: int = Field(description="seconds granted by the device")
    call_id: str
    notifies: int = Field(description="NOTIFYs received in this subscription")


def _sub_out(s) -> SubscriptionOut:
    return SubscriptionOut(device_id=s.device_id, kind=s.kind, state=s.state, expires=s.granted or s.expires,
                           call_id=s.call_id, notifies=s.notifies)


def register_routes(api: ApiRouter) -> None:
    device = {"device_id": DEVICE_ID}

    @api.post("/devices/{device_id}/channels/{channel_id}/ptz", response=PtzOut, body=PtzBody,
              path_params={"device_id": DEVICE_ID, "channel_id": CHANNEL_ID}, tags=["control"], errors=DEVICE_ERRORS)
    async def ptz(request: web.Request, device_id: str, channel_id: str, body: PtzBody) -> PtzOut:
        """Pan, tilt, zoom, focus, iris, presets, cruise, scan, auxiliary switches (PTZCmd)."""
        cmd = await request.app[PLATFORM].ptz(device_id, channel_id, body.action, body.speed, preset=body.preset,
                                              group=body.group, dwell=body.dwell, switch=body.switch)
        return PtzOut(device_id=device_id, channel_id=channel_id, action=body.action, ptz_cmd=cmd)

    @api.post("/devices/{device_id}/control", response=ControlOut, body=ControlBody, path_params=device,
              tags=["control"], errors=DEVICE_ERRORS)
    async def device_control(request: web.Request, device_id: str, body: ControlBody) -> ControlOut:
        """DeviceControl: TeleBoot, RecordCmd, GuardCmd, AlarmCmd (reset), IFameCmd, DragZoom, HomePosition."""
        params = body.model_dump(exclude={"command", "channel_id"})
        channel_id = getattr(body, "channel_id", None)
        result = await request.app[PLATFORM].device_control(device_id, body.command, channel_id, **params)
        return ControlOut(device_id=device_id, command=body.command, result=result)

    @api.post("/devices/{device_id}/config", response=ControlOut, body=ConfigBody, path_params=device,
              tags=["control"], errors=DEVICE_ERRORS)
    async def device_config(request: web.Request, device_id: str, body: ConfigBody) -> ControlOut:
        """DeviceConfig BasicParam (name, registration validity, keepalive interval and count)."""
        result = await request.app[PLATFORM].device_control(device_id, "config", None,
                                                            **body.model_dump(exclude_none=True))
        return ControlOut(device_id=device_id, command="config", result=result)

    @api.get("/devices/{device_id}/subscriptions", response=list[SubscriptionOut], path_params=device,
             tags=["subscriptions"], errors={404: "device not found"})
    async def list_subscriptions(request: web.Request, device_id: str) -> list[SubscriptionOut]:
        """Subscriptions the platform holds with a device."""
        platform = request.app[PLATFORM]
        platform.device(device_id)
        return [_sub_out(s) for s in platform.management.subscriptions.of(device_id)]

    @api.post("/devices/{device_id}/subscriptions", response=SubscriptionOut, body=SubscribeBody, path_params=device,
              tags=["subscriptions"], errors=DEVICE_ERRORS)
    async def subscribe(request: web.Request, device_id: str, body: SubscribeBody) -> SubscriptionOut:
        """SUBSCRIBE to catalog changes, alarms or mobile positions (refreshed until deleted)."""
        sub = await request.app[PLATFORM].management.subscriptions.subscribe(device_id, body.kind, body.expires)
        return _sub_out(sub)

    @api.delete("/devices/{device_id}/subscriptions/{kind}", response=SubscriptionOut,
                path_params={"device_id": DEVICE_ID, "kind": PathParam(pattern="^(" + "|".join(KINDS) + ")$")},
                tags=["subscriptions"], errors={404: "no such subscription"})
    async def unsubscribe(request: web.Request, device_id: str, kind: str) -> SubscriptionOut:
        """End a subscription (SUBSCRIBE with Expires: 0 in its dialog)."""
        subs = request.app[PLATFORM].management.subscriptions
        sub = subs.get(device_id, kind)
        if sub is None:
            from ..errors import NotFoundError
            raise NotFoundError(f"no {kind} subscription with {device_id}")
        await subs.unsubscribe(device_id, kind)
        return _sub_out(sub)
