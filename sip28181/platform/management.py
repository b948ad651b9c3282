"""Device management wired into the platform: MANSCDP dispatch, queries, catalog, control, alarms,
subscriptions and statistics.

``DeviceManagement(platform)`` registers the MANSCDP CmdTypes it serves in
``platform.message_handlers`` and the NOTIFY method in ``platform.request_handlers``; MESSAGE and
NOTIFY bodies go through one dispatcher (:meth:`DeviceManagement.dispatch`): Responses to the
open queries (or, unsolicited, to the catalog), Notify Catalog/Alarm/MobilePosition to their
services. After a (non-refresh) registration it asks DeviceInfo and the catalog and subscribes as
configured (PROTOCOL §3.5).
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as _dt
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..errors import LocalProtocolError, Sip28181Error
from .alarms import Alarms
from .catalog import Catalog, _jsonable
from .control import Control
from .events import DeviceOffline, DeviceRegistered
from .queries import DeviceRefused, Gather, Gathered, Queries
from .stats import Statistics
from .subscriptions import Subscriptions

if TYPE_CHECKING:
    from ..manscdp.codec import Envelope
    from ..sip.message import Request
    from .core import Platform
    from .registry import DeviceState

log = logging.getLogger("sip28181.manscdp")

__all__ = ["DeviceManagement", "RecordSearch", "format_time"]

HANDLED = ("Catalog", "DeviceInfo", "DeviceStatus", "RecordInfo", "PresetQuery", "ConfigDownload",
           "DeviceControl", "DeviceConfig", "Alarm", "MobilePosition", "HomePositionQuery", "CruiseTrackListQuery",
           "CruiseTrackQuery", "PTZPosition", "SDCardStatus")


def format_time(value: float | _dt.datetime | str) -> str:
    """A MANSCDP time: local ``yyyy-MM-ddTHH:mm:ss`` (PROTOCOL §5.1) from epoch seconds or a datetime."""
    if isinstance(value, str):
        return value
    if isinstance(value, (int, float)):
        value = _dt.datetime.fromtimestamp(value)
    elif value.tzinfo is not None:
        value = value.astimezone().replace(tzinfo=None)
    return value.strftime("%Y-%m-%dT%H:%M:%S")


@dataclass(frozen=True, slots=True)
class RecordSearch:
    """The outcome of a RecordInfo query."""

    device_id: str
    channel_id: str
    name: str | None
    sum_num: int | None
    partial: bool
    items: list[dict[str, Any]]


def _record_key(item: Any) -> tuple:
    return (item.device_id, item.start_time, item.end_time, item.file_path, item.type, item.stream_number)


class DeviceManagement:
    def __init__(self, platform: "Platform") -> None:
        self.platform = platform
        cfg = platform.config
        self.queries = Queries(platform, cfg.query_timeout)
        self.catalog = Catalog(platform, self.queries)
        self.alarms = Alarms(platform, self.queries)
        self.control = Control(platform, self.queries)
        self.subscriptions = Subscriptions(platform, self.queries, self.dispatch)
        self.stats = Statistics(platform)
        for cmd_type in HANDLED:
            platform.message_handlers[cmd_type] = self._on_message
        platform.request_handlers["NOTIFY"] = self.subscriptions.on_notify
        platform.events.on(self._on_registered, DeviceRegistered)
        platform.events.on(self._on_offline, DeviceOffline)

    # -- lifecycle ----------------------------------------------------------------------------------
    async def start(self) -> None:
        await self.catalog.load()

    def stop(self) -> None:
        self.subscriptions.stop()
        self.stats.on_stop()

    async def flush(self) -> None:
        try:
            await self.catalog.flush()
        finally:
            await self.alarms.flush()

    def forget(self, device_id: str) -> None:
        self.catalog.forget(device_id)
        self.subscriptions.drop_device(device_id)

    # -- dispatch ------------------------------------------------------------------------------------
    def _on_message(self, envelope: "Envelope", request: "Request", state: "DeviceState") -> None:
        from ..manscdp import messages as m

        message = m.from_envelope(envelope)
        self.dispatch(state.device_id, message, "MESSAGE")

    def dispatch(self, device_id: str, message: Any, via: str) -> None:
        """One MANSCDP body from a registered device (``via`` MESSAGE or NOTIFY)."""
        kind = getattr(message.kind, "value", message.kind)
        cmd_type = message.cmd_type
        if kind == "Response":
            if self.queries.on_response(device_id, message):
                return
            if cmd_type == "Catalog":
                self.catalog.on_unsolicited(device_id, message)
            else:
                log.debug("unsolicited %s Response SN %s", cmd_type, message.sn, extra={"device_id": device_id})
        elif kind == "Notify":
            if cmd_type == "Catalog":
                self.catalog.on_notify(device_id, message)
            elif cmd_type == "Alarm":
                self.alarms.on_alarm(device_id, message, acknowledge=via == "MESSAGE")
            elif cmd_type == "MobilePosition":
                self.alarms.on_position(device_id, message)
            else:
                log.debug("unhandled Notify %s", cmd_type, extra={"device_id": device_id})
        else:
            log.debug("unhandled %s %s from a device", kind, cmd_type, extra={"device_id": device_id})

    # -- registration --------------------------------------------------------------------------------
    def _on_registered(self, event: object) -> None:
        assert isinstance(event, DeviceRegistered)
        if event.refresh or not self.platform._started:
            return
        cfg = self.platform.config
        if cfg.catalog_query_on_register or cfg.catalog_subscribe or cfg.alarm_subscribe or cfg.position_subscribe:
            self.platform._spawn(self._after_register(event.device_id), f"after register {event.device_id}")

    async def _after_register(self, device_id: str) -> None:
        cfg = self.platform.config
        await asyncio.sleep(cfg.catalog_query_delay)
        if cfg.catalog_query_on_register:
            for step, call in (("DeviceInfo", self.device_info), ("catalog", self.catalog.query)):
                try:
                    await call(device_id)
                except (Sip28181Error, OSError) as exc:
                    log.warning("%s query after registration failed: %s", step, exc, extra={"device_id": device_id})
        for kind, wanted in (("catalog", cfg.catalog_subscribe), ("alarm", cfg.alarm_subscribe),
                             ("mobile_position", cfg.position_subscribe)):
            if wanted:
                try:
                    await self.subscriptions.subscribe(device_id, kind)
                except (Sip28181Error, OSError) as exc:
                    log.warning("%s subscription failed: %s", kind, exc, extra={"device_id": device_id})

    def _on_offline(self, event: object) -> None:
        assert isinstance(event, DeviceOffline)
        self.subscriptions.drop_device(event.device_id)

    # -- queries -------------------------------------------------------------------------------------
    async def device_info(self, device_id: str, *, timeout: float | None = None) -> Any:
        """DeviceInfo; the device's name (when it had none) and model data are kept."""
        from ..manscdp import messages as m

        response = await self.queries.request(device_id, m.DeviceInfoQuery(sn=self.queries.next_sn(),
                                                                            device_id=device_id), timeout=timeout)
        state = self.platform.registry.get(device_id)
        if state is not None and (response.result or "OK").upper() == "OK":
            changed = False
            if response.device_name and not state.name:
                state.name = response.device_name
                changed = True
            for key in ("manufacturer", "model", "firmware", "channel"):
                value = getattr(response, key, None)
                if value is not None and state.extra.get(key) != value:
                    state.extra[key] = value
                    changed = True
            if changed:
                self.platform.registry.mark(device_id)
        return response

    async def device_status(self, device_id: str, *, timeout: float | None = None) -> Any:
        from ..manscdp import messages as m

        return await self.queries.request(device_id, m.DeviceStatusQuery(sn=self.queries.next_sn(),
                                                                          device_id=device_id), timeout=timeout)

    async def record_info(self, device_id: str, channel_id: str, start: Any, end: Any, *, record_type: str = "all",
                          secrecy: int | None = 0, file_path: str | None = None, recorder_id: str | None = None,
                          stream_number: int | None = None, timeout: float | None = None) -> RecordSearch:
        """RecordInfo for one channel between ``start`` and ``end`` (epoch seconds, datetimes, or
        MANSCDP time strings); gathered across packets. ``Type`` defaults to ``all``: Dahua
        answers nothing without it (PROTOCOL §14.13)."""
        from ..manscdp import messages as m

        start_s, end_s = format_time(start), format_time(end)
        if start_s >= end_s:
            raise LocalProtocolError("the record search must end after it starts")
        query = m.RecordInfoQuery(sn=self.queries.next_sn(), device_id=channel_id, start_time=start_s, end_time=end_s,
                                  type=record_type, secrecy=secrecy, file_path=file_path, recorder_id=recorder_id,
                                  stream_number=stream_number)
        gathered: Gathered = await self.queries.request(device_id, query, gather=Gather(key=_record_key),
                                                        timeout=timeout)
        items = sorted((_jsonable(dataclasses.replace(i, extra=[])) for i in gathered.items),
                       key=lambda d: (d.get("start_time") or "", d.get("device_id") or ""))
        first = gathered.first
        return RecordSearch(device_id, channel_id, getattr(first, "name", None), gathered.sum_num, gathered.partial,
                            items)

    async def presets(self, device_id: str, channel_id: str | None = None, *, timeout: float | None = None) -> Gathered:
        from ..manscdp import messages as m

        query = m.PresetQuery(sn=self.queries.next_sn(), device_id=channel_id or device_id)
        return await self.queries.request(device_id, query, gather=Gather(key=lambda p: p.preset_id), timeout=timeout)

    async def config_download(self, device_id: str, config_types: str | list[str] = "BasicParam", *,
                              timeout: float | None = None) -> Any:
        from ..manscdp import messages as m

        types = config_types if isinstance(config_types, str) else "/".join(config_types)
        response = await self.queries.request(device_id, m.ConfigDownloadQuery(
            sn=self.queries.next_sn(), device_id=device_id, config_type=types), timeout=timeout)
        if (getattr(response, "result", None) or "OK").upper() != "OK":
            raise DeviceRefused(f"device answered {response.result} to ConfigDownload {types}")
        return response

    # -- control -------------------------------------------------------------------------------------
    async def device_control(self, device_id: str, command: str, channel_id: str | None = None,
                             **params: Any) -> str | None:
        """One control by name: ``tele_boot``, ``record`` (start=bool), ``guard`` (arm=bool),
        ``reset_alarm``, ``iframe``, ``drag_zoom`` (zoom_in=bool + the box), ``home_position``,
        ``config`` (BasicParam fields). Returns the device's Result when the command has one."""
        c = self.control
        if command == "tele_boot":
            await c.tele_boot(device_id)
            return None
        if command == "record":
            return await c.record(device_id, channel_id, **params)
        if command == "guard":
            return await c.guard(device_id, channel_id, **params)
        if command == "reset_alarm":
            return await c.reset_alarm(device_id, channel_id, **params)
        if command == "iframe":
            await c.iframe(device_id, channel_id)
            return None
        if command == "drag_zoom":
            await c.drag_zoom(device_id, channel_id, **params)
            return None
        if command == "home_position":
            return await c.home_position(device_id, channel_id, **params)
        if command == "config":
            return await c.config(device_id, **params)
        raise LocalProtocolError(f"unknown device control {command!r}")
