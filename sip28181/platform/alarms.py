"""Alarms and mobile positions from devices: stored, published, acknowledged.

An alarm arrives as ``Notify Alarm`` in a MESSAGE (the core has answered 200 already) or in a
NOTIFY of an alarm subscription. Every field is kept (PROTOCOL §5.8, HJ draft Appendix C): the
standard types of AlarmMethod 2, 5 and 6, the HJ types of AlarmMethod 5 (100001–100004 and the
reserved 100007–100009 are accepted like any other value), ``AlarmTypeParam``/``EventType``, and
``Info/ImageURL`` whether it sits in the first ``Info`` or in a later one. Alarm types are integers
(HJ types exceed 255); unknown types are stored as sent.

For a MESSAGE the device also gets its business acknowledgement, ``Response Alarm`` with
``Result OK`` (``[alarm] respond``), sent as a MESSAGE of its own after the SIP 200. Each alarm is
published as :class:`~.events.AlarmReceived` on ``platform.events`` (library subscribers, and the
HTTP event stream) and queued for the store, which gets the queue in one batch at each flush.
Mobile positions (``Notify MobilePosition`` by MESSAGE or NOTIFY, single or ``DeviceList`` form)
are handled the same way, without an acknowledgement (the standard has none).
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any, Callable

from ..errors import LocalProtocolError, Sip28181Error
from ..store.base import AlarmFilter, AlarmRecord, MobilePositionRecord, write_in_order
from .catalog import _jsonable
from .events import AlarmReceived, MobilePositionReceived

if TYPE_CHECKING:
    from ..manscdp import messages as m
    from ..store.base import Store
    from .core import Platform
    from .queries import Queries

log = logging.getLogger("sip28181.alarms")

__all__ = ["Alarms", "alarm_record", "position_records"]


def _info_dict(info: Any) -> dict[str, Any]:
    """One ``Info`` element as ``{XML element name: value}`` (what the device sent)."""
    out: dict[str, Any] = {}
    alarm_type = getattr(info, "alarm_type", None)
    if alarm_type is not None:
        out["AlarmType"] = alarm_type
    param = getattr(info, "alarm_type_param", None)
    if param is not None:
        value: dict[str, Any] = {}
        if getattr(param, "event_type", None) is not None:
            value["EventType"] = param.event_type
        if getattr(param, "text", None):
            value["text"] = param.text
        for node in getattr(param, "extra", ()) or ():
            value[node.tag] = node.text
        out["AlarmTypeParam"] = value
    image = getattr(info, "image_url", None)
    if image:
        out["ImageURL"] = image
    for node in getattr(info, "extra", ()) or ():
        out[node.tag] = node.text if not node.children else _jsonable(node)
    return out


def alarm_record(device_id: str, message: Any, at: float) -> AlarmRecord:
    """An ``AlarmNotify`` as a record (every field kept)."""
    infos = [_info_dict(i) for i in getattr(message, "infos", ()) or ()]
    param = getattr(message, "alarm_type_param", None)
    param_dict: dict[str, Any] = {}
    if param is not None:
        param_dict = next((i["AlarmTypeParam"] for i in infos if "AlarmTypeParam" in i), None) or {}
    extra = {node.tag: (node.text if not node.children else _jsonable(node))
             for node in getattr(message, "extra", ()) or ()}
    return AlarmRecord(
        device_id=device_id, alarm_device_id=message.device_id or device_id, at=at, sn=message.sn or None,
        priority=message.alarm_priority, method=message.alarm_method, alarm_type=message.alarm_type,
        alarm_time=message.alarm_time, description=message.alarm_description, longitude=message.longitude,
        latitude=message.latitude, event_type=message.event_type, alarm_type_param=param_dict,
        image_urls=list(message.image_urls or ()), infos=infos, extra=extra)


def position_records(device_id: str, message: m.MobilePositionNotify, at: float) -> list[MobilePositionRecord]:
    """A ``MobilePositionNotify`` (single, or a 2022 ``DeviceList``) as records."""
    out = []
    for item in message.positions():
        target = item.device_id or message.device_id or device_id
        out.append(MobilePositionRecord(
            device_id=device_id, target_id=target, at=at,
            time=item.capture_time or message.time,
            longitude=item.longitude, latitude=item.latitude, speed=item.speed, direction=item.direction,
            altitude=item.altitude))
    return out


class Alarms:
    def __init__(self, platform: "Platform", queries: "Queries") -> None:
        self.platform = platform
        self.queries = queries
        self.respond: bool = platform.config.alarm_respond
        self._alarms: list[AlarmRecord] = []
        self._positions: list[MobilePositionRecord] = []
        #: Called with (device_id, the AlarmNotify as received, its record) for each alarm (the
        #: cascade forwards the message itself, unchanged but for the IDs).
        self.listeners: list[Callable[[str, Any, AlarmRecord], None]] = []

    def on_alarm(self, device_id: str, message: Any, *, acknowledge: bool) -> AlarmRecord:
        now = time.time()
        record = alarm_record(device_id, message, now)
        self._alarms.append(record)
        log.info("alarm from %s: method %s type %s priority %s%s", record.alarm_device_id, record.method,
                 record.alarm_type, record.priority, f", {len(record.image_urls)} image(s)" if record.image_urls else "",
                 extra={"device_id": device_id})
        self.platform._count("alarms", str(record.method or 0))
        self.platform.events.publish(AlarmReceived(device_id, record, now))
        for listener in self.listeners:
            listener(device_id, message, record)
        if acknowledge and self.respond:
            self.platform._spawn(self._acknowledge(device_id, message), f"alarm response {device_id}")
        return record

    async def _acknowledge(self, device_id: str, message: Any) -> None:
        from ..manscdp import messages as m

        state = self.platform.registry.get(device_id)
        if state is None or state.flow is None:
            return
        response = m.AlarmResponse(sn=message.sn, device_id=message.device_id or device_id, result="OK")
        try:
            await self.queries.send(state, self.queries.encode(state, response), what=f"Alarm response SN {message.sn}")
        except (Sip28181Error, OSError) as exc:
            log.info("alarm response not delivered: %s", exc, extra={"device_id": device_id})

    def on_position(self, device_id: str, message: Any) -> list[MobilePositionRecord]:
        now = time.time()
        records = position_records(device_id, message, now)
        self._positions += records
        for record in records:
            self.platform.events.publish(MobilePositionReceived(device_id, record, now))
        return records

    async def flush(self) -> None:
        store = self.platform.store
        alarms, self._alarms = self._alarms, []
        positions, self._positions = self._positions, []
        if store is None:
            return
        steps = []
        if alarms:
            def requeue_alarms() -> None:
                self._alarms[:0] = alarms
            steps.append((lambda: store.add_alarms(alarms), requeue_alarms))
        if positions:
            def requeue_positions() -> None:
                self._positions[:0] = positions
            steps.append((lambda: store.add_mobile_positions(positions), requeue_positions))
        await write_in_order(steps)     # nothing lost, nothing written twice

    async def search(self, where: AlarmFilter, *, offset: int = 0, limit: int = 100) -> tuple[list[AlarmRecord], int]:
        """Stored alarms (newest first) and the number matching; pending ones are flushed first."""
        store = self._store()
        await self.platform.flush()
        return (await store.search_alarms(where, offset=offset, limit=limit),
                await store.count_alarms(where))

    async def positions(self, target_id: str | None, since: float | None, until: float | None,
                        limit: int = 1000) -> list[MobilePositionRecord]:
        store = self._store()
        await self.platform.flush()
        return await store.mobile_positions(target_id, since, until, limit)

    def _store(self) -> "Store":
        if self.platform.store is None:
            raise LocalProtocolError("alarm history needs a store")
        return self.platform.store

