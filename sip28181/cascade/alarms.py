"""Alarms forwarded up (PROTOCOL §11.3, §13.2).

Each alarm a device sends us goes, as received, to every online upper that shares the alarm's
channel: the same ``Notify Alarm`` with only ``DeviceID`` replaced by the ID the upper knows and
``SN`` by one of ours towards that upper. An alarm a device raises on its own ID (an NVR's disk
or tamper alarm, not a channel's) goes to each upper the device is shared with whole (``share``
all, or the device's ID listed), under the device's ID mapped as its channels are; an upper
shown only some of its channels does not get it. Everything else is kept verbatim, HJ fields included
(AlarmType 100001–100009, ``AlarmTypeParam``, every ``Info`` with its ``ImageURL`` and unknown
children, elements we have no field for). An upper holding an alarm subscription (SUBSCRIBE
with a ``Query Alarm`` body, served by :mod:`.subscriptions`) gets the alarms its query's filters
let through as NOTIFYs in that dialog; any other online upper gets a MESSAGE, answered SIP 200
and then ``Response Alarm`` with our SN, which is matched here.

Alarms to one upper go one after another's answer, from one queue per upper drained by one task:
an upper that stops answering holds up only its own alarms, and at most
:attr:`AlarmForwarder.max_queued` of them wait (the oldest is dropped first, counted and logged).
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import logging
from typing import TYPE_CHECKING, Any

from ..errors import Sip28181Error
from ..manscdp import messages as m

if TYPE_CHECKING:
    from ..manscdp.codec import Envelope
    from ..sip.message import Request
    from ..store.base import AlarmRecord
    from .link import UpperLink
    from .service import Cascade

log = logging.getLogger("sip28181.cascade")

__all__ = ["AlarmForwarder", "ForwardedAlarm", "alarm_matches"]


def _values(text: str | None) -> set[int] | None:
    """``1/2``-style values of a filter; None when it lets everything through (absent, 0)."""
    values = {int(v) for v in (text or "").replace(",", "/").split("/") if v.strip().isdigit()}
    return None if not values or 0 in values else values


def alarm_matches(query: Any, alarm: Any) -> bool:
    """Whether an alarm subscription's ``Query Alarm`` filters let ``alarm`` through (PROTOCOL
    §5.8.2: priority range, AlarmMethod and AlarmType lists; 0 or absent = all)."""
    if not isinstance(query, m.AlarmQuery):
        return True
    low, high = _values(query.start_alarm_priority), _values(query.end_alarm_priority)
    priority = alarm.alarm_priority
    if priority is not None and ((low and priority < min(low)) or (high and priority > max(high))):
        return False
    methods, types = _values(query.alarm_method), _values(query.alarm_type)
    if methods and alarm.alarm_method not in methods:
        return False
    return not (types and alarm.alarm_type not in types)


@dataclasses.dataclass(slots=True)
class ForwardedAlarm:
    """One alarm sent to one upper, until the upper's ``Response Alarm`` arrives."""

    upper_id: str
    sn: int
    device_id: str
    alarm_device_id: str
    upper_side_id: str
    via: str = "MESSAGE"
    """MESSAGE, or NOTIFY in an alarm subscription of the upper."""
    delivered: bool = False
    """The upper answered the MESSAGE with 200."""
    result: str | None = None
    """The ``Result`` of the upper's ``Response Alarm`` (None until it arrives)."""


class AlarmForwarder:
    """Sends our devices' alarms up and takes the uppers' acknowledgements."""

    def __init__(self, cascade: "Cascade", *, remember: int = 1000) -> None:
        self.cascade = cascade
        self.platform = cascade.platform
        #: The last alarms sent up, by (upper ID, SN), for their acknowledgements.
        self.sent: collections.OrderedDict[tuple[str, int], ForwardedAlarm] = collections.OrderedDict()
        self._remember = remember
        #: alarms waiting for one upper beyond which the oldest is dropped
        self.max_queued = 200
        self._queues: dict[str, collections.deque[tuple[m.AlarmNotify, ForwardedAlarm, Any]]] = {}
        self._senders: dict[str, asyncio.Task] = {}
        self.platform.management.alarms.listeners.append(self._on_alarm)
        cascade.message_handlers["Alarm"] = self._on_message
        cascade.subscriptions.register("Alarm")

    def _on_alarm(self, device_id: str, message: Any, record: "AlarmRecord") -> None:
        for link in self.cascade.online_links():
            alarm_device = record.alarm_device_id or device_id
            upper_side = self.cascade.upper_side_id(link, device_id, alarm_device)
            if upper_side is None and alarm_device == device_id:
                upper_side = self.cascade.northbound.shared(link).device_upper_id(device_id)
            if upper_side is None:
                continue
            subs = self.cascade.subscriptions.active(link, "Alarm")
            targets = [s for s in subs if alarm_matches(s.query, message)] if subs else [None]
            for sub in targets:
                up = dataclasses.replace(message, sn=link.next_sn(), device_id=upper_side)
                entry = ForwardedAlarm(link.upper_id, up.sn, device_id, alarm_device, upper_side,
                                       "MESSAGE" if sub is None else "NOTIFY")
                self.sent[(link.upper_id, up.sn)] = entry
                while len(self.sent) > self._remember:
                    self.sent.popitem(last=False)
                self._enqueue(link.upper_id, up, entry, sub)

    def _enqueue(self, upper_id: str, message: m.AlarmNotify, entry: ForwardedAlarm, sub: Any) -> None:
        queue = self._queues.setdefault(upper_id, collections.deque())
        if len(queue) >= self.max_queued:
            _, dropped, _ = queue.popleft()
            log.warning("alarm of %s to upper dropped: %d alarms waiting already", dropped.alarm_device_id,
                        len(queue), extra={"device_id": upper_id})
            self.platform._count("upper_alarms", "dropped")
        queue.append((message, entry, sub))
        if upper_id not in self._senders:
            self._senders[upper_id] = self.platform._spawn(self._drain(upper_id, queue), f"alarms to upper {upper_id}")

    async def _drain(self, upper_id: str, queue: collections.deque) -> None:
        """Send an upper its waiting alarms in order, each after the previous one's answer."""
        try:
            while queue:
                message, entry, sub = queue.popleft()
                link = self.cascade.links.get(upper_id)
                if link is None or not link.online:
                    log.warning("%d alarms to upper dropped: it is offline", len(queue) + 1,
                                extra={"device_id": upper_id})
                    for _ in range(len(queue) + 1):
                        self.platform._count("upper_alarms", "dropped")
                    queue.clear()
                    return
                await self._send(link, message, entry, sub)
        finally:
            if self._senders.get(upper_id) is asyncio.current_task():
                del self._senders[upper_id]
                if not queue and self._queues.get(upper_id) is queue:
                    del self._queues[upper_id]

    def waiting(self, upper_id: str) -> int:
        """Alarms waiting to go to an upper (not counting the one on its way)."""
        queue = self._queues.get(upper_id)
        return len(queue) if queue is not None else 0

    def stop(self) -> None:
        senders, self._senders = self._senders, {}
        for task in senders.values():
            task.cancel()
        self._queues.clear()

    async def _send(self, link: "UpperLink", message: m.AlarmNotify, entry: ForwardedAlarm, sub: Any) -> None:
        extra = {"device_id": link.upper_id}
        try:
            if sub is None:
                response = await link.send_manscdp(message.to_xml())
            else:
                response = await self.cascade.subscriptions.notify(sub, message)
                if response is None:        # the subscription ended meanwhile
                    return
        except (Sip28181Error, OSError) as exc:
            log.warning("alarm of %s not delivered to upper: %s", entry.alarm_device_id, exc, extra=extra)
            self.platform._count("upper_alarms", "failed")
            return
        entry.delivered = response.status == 200
        self.platform._count("upper_alarms", "sent" if entry.delivered else "refused")
        log.log(logging.INFO if entry.delivered else logging.WARNING,
                "alarm of %s sent up as %s (SN %d, %s): %d %s", entry.alarm_device_id, entry.upper_side_id, entry.sn,
                entry.via, response.status, response.reason, extra={**extra, "call_id": response.call_id})

    def _on_message(self, link: "UpperLink", envelope: "Envelope", request: "Request") -> None:
        message = m.from_envelope(envelope)
        if not isinstance(message, m.AlarmResponse):
            log.debug("ignored %s Alarm from upper", message.kind.value,
                      extra={"device_id": link.upper_id, "call_id": request.call_id})
            return
        entry = self.sent.get((link.upper_id, message.sn))
        if entry is None:
            log.debug("Response Alarm SN %d from upper matches no alarm sent", message.sn,
                      extra={"device_id": link.upper_id, "call_id": request.call_id})
            return
        entry.result = (message.result or "OK").strip().upper()
        log.debug("upper acknowledged alarm SN %d: %s", message.sn, entry.result,
                  extra={"device_id": link.upper_id, "call_id": request.call_id})
