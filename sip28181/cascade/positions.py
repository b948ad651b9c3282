"""Mobile positions sent up to the uppers that subscribed to them (PROTOCOL §11.3, §5.9).

An upper subscribes with a SUBSCRIBE whose body is ``Query MobilePosition`` with an ``Interval``
(seconds; 5 when absent); :mod:`.subscriptions` keeps the dialog. Each position a device reports
(event :class:`~sip28181.platform.events.MobilePositionReceived`) goes to every such upper that
shares the position's channel, as ``Notify MobilePosition`` in the subscription's dialog, in the
form of the upper's edition (``tree``): 2016 flat, ``DeviceID`` the ID the upper knows; 2022 list
(PROTOCOL §12.2), ``DeviceID`` our platform, one ``DeviceList/Item`` with the ID the upper knows
and the position's ``CaptureTime``, ``Time`` when it was sent. A position reported for a device
that is not itself shared (an NVR or vehicle reporting its own ID) stands for each of its shared
channels: the cameras are where the device is.

A one-shot ``Query MobilePosition`` by MESSAGE (no subscription) is answered from the last known
positions: one ``Notify MobilePosition`` MESSAGE per shared channel with a known position (its own,
or else its device's), with the query's SN, for our platform ID or the subtree of the group,
organisation or channel the query names; channels without a known position are left out.

Per subscription and channel at most one NOTIFY goes per ``Interval``: a position arriving sooner
waits, and only the newest waiting one is sent when the interval is up (the upper asked for a
period, not for every fix). A new subscription gets the last known position of each channel it
can see at once.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, Hashable, TypeVar

from ..errors import Sip28181Error
from ..manscdp import messages as m
from ..platform.events import MobilePositionReceived
from ..platform.management import format_time

if TYPE_CHECKING:
    from ..manscdp.codec import Envelope
    from ..sip.message import Request
    from ..store.base import MobilePositionRecord
    from .link import UpperLink
    from .service import Cascade
    from .subscriptions import UpperSubscription

log = logging.getLogger("sip28181.cascade")

__all__ = ["DEFAULT_INTERVAL", "PositionForwarder", "Throttle"]

#: report period when the upper's query has no (or a nonsensical) Interval, seconds
DEFAULT_INTERVAL = 5.0
#: never faster than this, whatever the upper asks for, seconds
MIN_INTERVAL = 0.05
#: last known positions kept (reported IDs come from devices: bound them)
MAX_LATEST = 10_000

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


@dataclass(slots=True)
class Throttle(Generic[K, V]):
    """Sans-IO rate limit: at most one value per key per ``interval``, the newest one winning.

    :meth:`offer` says whether a value may go now; when not, it is kept (replacing any older one
    for the key) until :meth:`due` hands it out once its key's interval has passed.
    """

    interval: float
    _last: dict[K, float] = field(default_factory=dict)
    _pending: dict[K, V] = field(default_factory=dict)

    def offer(self, key: K, value: V, now: float) -> bool:
        last = self._last.get(key)
        if last is None or now - last >= self.interval:
            self._last[key] = now
            self._pending.pop(key, None)
            return True
        self._pending[key] = value
        return False

    def next_due(self) -> float | None:
        """When the earliest waiting value may go (None when nothing waits)."""
        if not self._pending:
            return None
        return min(self._last[k] + self.interval for k in self._pending)

    def due(self, now: float) -> list[tuple[K, V]]:
        """The waiting values whose interval has passed, marked sent."""
        out = []
        for key in [k for k in self._pending if now - self._last[k] >= self.interval]:
            out.append((key, self._pending.pop(key)))
            self._last[key] = now
        return out

    @property
    def waiting(self) -> int:
        return len(self._pending)


def interval_of(query: Any) -> float:
    """The report period a subscription's ``Query MobilePosition`` asks for, seconds."""
    value = getattr(query, "interval", None)
    if not isinstance(value, int) or value <= 0:
        return DEFAULT_INTERVAL
    return max(MIN_INTERVAL, float(value))


def position_notify(record: "MobilePositionRecord", upper_side_id: str, sn: int, *, edition: str = "2016",
                    sender_id: str = "", now: float | None = None) -> m.MobilePositionNotify:
    """A stored position as the ``Notify MobilePosition`` an upper gets: the 2016 flat form, or
    for a 2022 upper the list form sent by ``sender_id`` (our ID) at ``now`` (epoch seconds)."""
    if edition == "2022":
        item = m.MobilePositionItem(device_id=upper_side_id, capture_time=record.time, longitude=record.longitude,
                                    latitude=record.latitude, speed=record.speed, direction=record.direction,
                                    altitude=record.altitude)
        return m.MobilePositionNotify(sn=sn, device_id=sender_id,
                                      time=format_time(time.time() if now is None else now), sum_num=1, items=[item])
    return m.MobilePositionNotify(sn=sn, device_id=upper_side_id, time=record.time, longitude=record.longitude,
                                  latitude=record.latitude, speed=record.speed, direction=record.direction,
                                  altitude=record.altitude)


@dataclass(eq=False, slots=True)
class _Feed:
    """One MobilePosition subscription's throttle and its wake-up timer."""

    sub: "UpperSubscription"
    throttle: Throttle[str, "MobilePositionRecord"]
    timer: asyncio.TimerHandle | None = None
    #: positions released by the throttle, not yet sent (one per channel, the newest)
    pending: "collections.OrderedDict[str, MobilePositionRecord]" = field(default_factory=collections.OrderedDict)
    #: sends ``pending`` one NOTIFY after another's answer
    sender: asyncio.Task | None = None


class PositionForwarder:
    """Honours MobilePosition subscriptions of uppers and sends our devices' positions up."""

    def __init__(self, cascade: "Cascade") -> None:
        self.cascade = cascade
        self.platform = cascade.platform
        #: the newest position of each (device ID, reported ID), least recently reported first
        self.latest: collections.OrderedDict[tuple[str, str], "MobilePositionRecord"] = collections.OrderedDict()
        self._feeds: dict[int, _Feed] = {}
        cascade.subscriptions.register("MobilePosition", self._on_subscribe)
        cascade.message_handlers["MobilePosition"] = self._on_message
        self.platform.events.on(self._on_event, MobilePositionReceived)

    # -- mapping ----------------------------------------------------------------------------------
    def targets(self, link: "UpperLink", device_id: str, target_id: str) -> list[str]:
        """The IDs ``link``'s upper knows a reported position by (none when not shared with it)."""
        upper = self.cascade.upper_side_id(link, device_id, target_id)
        if upper is not None:
            return [upper]
        if target_id != device_id:
            return []
        shared = self.cascade.northbound.shared(link)
        return [n.upper_id for n in shared.channels if n.device_id == device_id]

    # -- positions in -------------------------------------------------------------------------------
    def _on_event(self, event: object) -> None:
        assert isinstance(event, MobilePositionReceived)
        record: MobilePositionRecord = event.position  # type: ignore[assignment]
        key = (record.device_id, record.target_id)
        self.latest[key] = record
        self.latest.move_to_end(key)
        while len(self.latest) > MAX_LATEST:
            self.latest.popitem(last=False)
        for feed in self._live_feeds():
            for upper_side in self.targets(feed.sub.link, record.device_id, record.target_id):
                self._offer(feed, upper_side, record)

    def _live_feeds(self) -> list[_Feed]:
        for key, feed in list(self._feeds.items()):
            if feed.sub.terminated:
                self._close(key, feed)
        return [f for f in self._feeds.values() if f.sub.link.online]

    def _close(self, key: int, feed: _Feed) -> None:
        if feed.timer is not None:
            feed.timer.cancel()
            feed.timer = None
        if feed.sender is not None:
            feed.sender.cancel()
            feed.sender = None
        feed.pending.clear()
        self._feeds.pop(key, None)

    def _on_subscribe(self, sub: "UpperSubscription") -> None:
        feed = _Feed(sub, Throttle(interval_of(sub.query)))
        self._feeds[id(sub)] = feed
        log.info("positions to upper every %.1f s", feed.throttle.interval,
                 extra={"device_id": sub.link.upper_id, "call_id": sub.call_id})
        for (device_id, target_id), record in list(self.latest.items()):
            for upper_side in self.targets(sub.link, device_id, target_id):
                self._offer(feed, upper_side, record)

    # -- one-shot queries ---------------------------------------------------------------------------
    def last_known(self, device_id: str, channel_id: str) -> "MobilePositionRecord | None":
        """A channel's newest position: its own, or its device's (the cameras are where it is)."""
        own = self.latest.get((device_id, channel_id))
        device = self.latest.get((device_id, device_id))
        if own is None or (device is not None and device.at > own.at):
            return device
        return own

    def answer(self, link: "UpperLink", target: str, sn: int) -> list[m.MobilePositionNotify]:
        """What a ``Query MobilePosition`` for ``target`` (an upper-side ID) gets: one notify per
        shared channel under it with a known position."""
        nodes = self.cascade.northbound.shared(link).subtree(target) or []
        out = []
        for node in nodes:
            if node.kind != "channel":
                continue
            record = self.last_known(node.device_id, node.local_id)
            if record is not None:
                out.append(position_notify(record, node.upper_id, sn, edition=link.settings.tree,
                                           sender_id=link.local_id))
        return out

    def _on_message(self, link: "UpperLink", envelope: "Envelope", request: "Request") -> None:
        extra = {"device_id": link.upper_id, "call_id": request.call_id}
        if envelope.kind != "Query":
            log.debug("ignored %s MobilePosition from upper", envelope.kind, extra=extra)
            return
        target = envelope.device_id or link.local_id
        answers = self.answer(link, target, envelope.sn or 0)
        log.info("mobile position query for %s: %d known positions", target, len(answers), extra=extra)
        if answers:
            self.platform._spawn(self._send_answers(link, answers), f"positions to {link.upper_id}")

    async def _send_answers(self, link: "UpperLink", answers: list[m.MobilePositionNotify]) -> None:
        """One after another's answer; a failure ends the rest."""
        for message in answers:
            try:
                response = await link.send_manscdp(message.to_xml())
            except (Sip28181Error, OSError) as exc:
                log.warning("position answer not delivered to upper: %s", exc, extra={"device_id": link.upper_id})
                self.platform._count("upper_positions", "failed")
                return
            ok = response.status == 200
            self.platform._count("upper_positions", "sent" if ok else "refused")
            if response.status >= 300:
                log.warning("position answer: upper answered %d %s", response.status, response.reason,
                            extra={"device_id": link.upper_id, "call_id": response.call_id})
                return

    # -- positions out ------------------------------------------------------------------------------
    def _offer(self, feed: _Feed, upper_side: str, record: "MobilePositionRecord") -> None:
        loop = asyncio.get_running_loop()
        if feed.throttle.offer(upper_side, record, loop.time()):
            self._send(feed, upper_side, record)
        elif feed.timer is None:
            self._arm(feed)

    def _arm(self, feed: _Feed) -> None:
        due = feed.throttle.next_due()
        if due is not None and not feed.sub.terminated:
            feed.timer = asyncio.get_running_loop().call_at(due, self._wake, feed)

    def _wake(self, feed: _Feed) -> None:
        feed.timer = None
        if feed.sub.terminated:
            self._close(id(feed.sub), feed)
            return
        for upper_side, record in feed.throttle.due(asyncio.get_running_loop().time()):
            self._send(feed, upper_side, record)
        self._arm(feed)

    def _send(self, feed: _Feed, upper_side: str, record: "MobilePositionRecord") -> None:
        """Queue a position for the feed's one sender: NOTIFYs go in order, each after the
        previous one's answer, so a slow upper holds one request and at most one waiting
        position per channel, never a pile of tasks."""
        feed.pending.pop(upper_side, None)
        feed.pending[upper_side] = record
        if feed.sender is None or feed.sender.done():
            feed.sender = self.platform._spawn(self._drain(feed), f"positions to upper {feed.sub.link.upper_id}")

    async def _drain(self, feed: _Feed) -> None:
        while feed.pending and not feed.sub.terminated:
            upper_side, record = feed.pending.popitem(last=False)
            link = feed.sub.link
            message = position_notify(record, upper_side, link.next_sn(), edition=link.settings.tree,
                                      sender_id=link.local_id)
            await self._notify(feed.sub, message)
        feed.pending.clear()

    async def _notify(self, sub: "UpperSubscription", message: m.MobilePositionNotify) -> None:
        extra = {"device_id": sub.link.upper_id, "call_id": sub.call_id}
        about = message.items[0].device_id if message.items else message.device_id
        try:
            response = await self.cascade.subscriptions.notify(sub, message)
        except (Sip28181Error, OSError) as exc:
            log.warning("position of %s not delivered to upper: %s", about, exc, extra=extra)
            self.platform._count("upper_positions", "failed")
            return
        if response is None:        # the subscription ended meanwhile
            return
        ok = response.status == 200
        self.platform._count("upper_positions", "sent" if ok else "refused")
        log.log(logging.DEBUG if ok else logging.WARNING, "position of %s sent up: %d %s", about,
                response.status, response.reason, extra=extra)

    def stop(self) -> None:
        for key, feed in list(self._feeds.items()):
            self._close(key, feed)
