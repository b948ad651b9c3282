"""What we tell an upper platform: catalog, device info and status, and catalog changes (PROTOCOL §11.2–11.3).

:class:`Northbound` keeps, per upper, the :class:`~.share.SharedCatalog` built from the devices
we know and their catalogs; the cascade's ``resolve``/``upper_side_id`` read their ID mapping from
it. Changes are noted per device and applied when the catalog is next needed, incrementally: a
channel status event or a device going on- or offline re-reads the status of that device's
channels, a device's catalog change (or registration, or removal) rebuilds that device's part
(:func:`~.share.update_status`, :func:`~.share.update_devices`). The whole catalog is rebuilt when
the upper's settings change and when the share module finds the change not isolatable.

Queries from the upper (answered 200 by the cascade first, then here):

* ``Catalog``: every node the upper may see (or the subtree of the group, organisation or region
  it names, 2022 Annex J), ``SumNum`` = all of them, in messages of ``catalog_group`` items, each
  sent after the previous one's 200 OK (2022 Annex M). An upper that leaves a part unanswered
  (transaction timeout) gets the rest by timed sending: each part after the previous one's
  answer or :attr:`Northbound.timed_interval` seconds, whichever comes first. An error status
  (or a transport failure) ends the answer.
* ``DeviceInfo``: our platform (name, manufacturer, model, firmware, number of shared channels).
* ``DeviceStatus``: our platform, or a shared channel (online as its status says); any other ID
  gets ``Result ERROR``.
* ``Keepalive``: the cascade answers 200; it is noted as a sign of life.

Catalog changes (device catalogs, channel status events, devices going on- or offline) are diffed
against what each online upper was last shown and sent as ``Notify Catalog`` with ADD, DEL,
UPDATE, ON, OFF items: in the dialog of each catalog subscription the upper holds, or, for an
upper that never subscribed, as a MESSAGE. One notifier task per upper sends them: changes that
arrive while it is busy wait and go up together next. What the upper was shown advances only when
it took every message (2xx); anything else and the same changes go again after :data:`RETRY`
seconds (while the upper stays online).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Any

from .. import __version__
from ..errors import Sip28181Error, TransactionError
from ..manscdp import messages as m
from ..platform.events import CatalogUpdated, ChannelStatusChanged, DeviceOffline, DeviceOnline, DeviceRegistered
from .share import LocalDevice, SharedCatalog, build_shared, diff, packets, update_devices, update_status
from .subscriptions import UpperSubscription, UpperSubscriptions

if TYPE_CHECKING:
    from ..manscdp.codec import Envelope
    from ..sip.message import Request
    from .link import UpperLink
    from .service import Cascade

log = logging.getLogger("sip28181.cascade")

__all__ = ["Northbound"]

#: changes arriving within this many seconds go up in one notification
SETTLE = 0.2
#: wait before sending again changes an upper did not take, seconds
RETRY = 5.0
#: after a catalog part went unanswered, the longest wait between the next parts, seconds
TIMED_INTERVAL = 0.2


class Northbound:
    """The shared catalog of every upper, the answers to its queries, and change notifications."""

    def __init__(self, cascade: "Cascade") -> None:
        self.cascade = cascade
        self.platform = cascade.platform
        self._cache: dict[str, _Cached] = {}
        self._shown: dict[str, SharedCatalog] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        #: per upper: set when there are changes to send; its notifier task
        self._wakes: dict[str, asyncio.Event] = {}
        self._notifiers: dict[str, asyncio.Task] = {}
        self.subscriptions = UpperSubscriptions(cascade)
        #: pace of catalog parts once an upper left one unanswered (seconds)
        self.timed_interval = TIMED_INTERVAL
        self.subscriptions.register("Catalog", self._on_catalog_subscribe)
        handlers = cascade.message_handlers
        handlers["Catalog"] = self._on_catalog
        handlers["DeviceInfo"] = self._on_device_info
        handlers["DeviceStatus"] = self._on_device_status
        handlers["Keepalive"] = self._on_keepalive
        self.platform.events.on(self._on_change, CatalogUpdated, ChannelStatusChanged, DeviceOnline,
                                DeviceOffline, DeviceRegistered)
        cascade.listeners.append(self._on_link)

    def stop(self) -> None:
        self.subscriptions.stop()
        notifiers, self._notifiers = self._notifiers, {}
        for task in notifiers.values():
            task.cancel()

    # -- the shared catalog -------------------------------------------------------------------------
    def _devices(self) -> list[LocalDevice]:
        catalog = self.platform.management.catalog
        return [LocalDevice(s.device_id, s.name, s.status == "online", catalog.channels(s.device_id),
                            s.extra.get("manufacturer"), s.extra.get("model"))
                for s in self.platform.registry]

    def _device(self, device_id: str) -> LocalDevice | None:
        s = self.platform.registry.get(device_id)
        if s is None:
            return None
        return LocalDevice(s.device_id, s.name, s.status == "online",
                           self.platform.management.catalog.channels(s.device_id),
                           s.extra.get("manufacturer"), s.extra.get("model"))

    def shared(self, link: "UpperLink") -> SharedCatalog:
        """What ``link``'s upper sees now: the cached catalog with the changes noted since applied."""
        cached = self._cache.get(link.upper_id)
        name = self._name()
        if (cached is not None and cached.settings is link.settings and cached.catalog.root_id == link.local_id
                and cached.name == name):
            if cached.status or cached.devices:
                try:
                    updated = self._apply(cached)
                except Exception:   # a bug must not leave the upper a stale catalog: rebuild
                    log.exception("incremental catalog update failed: rebuilding", extra={"device_id": link.upper_id})
                    updated = None
                if updated is not None:
                    cached.catalog = updated
                    return updated
            else:
                return cached.catalog
        s = link.settings
        built = build_shared(self._devices(), s, root_id=link.local_id, root_name=name,
                             manufacturer="sip28181", model="sip28181", address=name)
        for conflict in built.conflicts:
            log.error("catalog shared with upper: %s (left out)", conflict, extra={"device_id": link.upper_id})
        self._cache[link.upper_id] = _Cached(s, name, built)
        return built

    def _apply(self, cached: "_Cached") -> SharedCatalog | None:
        """The cached catalog with the noted changes; None when it must be rebuilt whole."""
        catalog = cached.catalog
        status, devices = cached.status, cached.devices
        cached.status, cached.devices = {}, set()
        for device_id, channels in status.items():
            if device_id in devices:
                continue
            device = self._device(device_id)
            updated = update_status(catalog, device, channels) if device is not None else None
            if updated is None:
                devices.add(device_id)
            else:
                catalog = updated
        if devices:
            updated = update_devices(catalog, {d: self._device(d) for d in sorted(devices)})
            if updated is None:
                log.debug("catalog change of %d devices not isolatable: rebuilding", len(devices),
                          extra={"device_id": catalog.upper_id})
                return None
            catalog = updated
        return catalog

    def _note(self, event: object) -> None:
        """Remember what ``event`` changed in every cached catalog."""
        device_id: str = getattr(event, "device_id")
        for cached in self._cache.values():
            if isinstance(event, ChannelStatusChanged):
                if device_id in cached.status:
                    channels = cached.status[device_id]
                    if channels is not None:
                        channels.add(event.channel_id)
                else:
                    cached.status[device_id] = {event.channel_id}
            elif isinstance(event, (DeviceOnline, DeviceOffline)) and event.reason != "deleted":
                cached.status[device_id] = None         # every channel of it
            else:
                cached.devices.add(device_id)

    def _name(self) -> str:
        """Our name towards every upper (``[sip] name``)."""
        return self.platform.config.platform_name

    def resolve(self, link: "UpperLink", upper_side_id: str) -> tuple[str, str] | None:
        return self.shared(link).resolve(upper_side_id)

    def upper_side_id(self, link: "UpperLink", device_id: str, channel_id: str) -> str | None:
        return self.shared(link).upper_side_id(device_id, channel_id)

    def _lock(self, link: "UpperLink") -> asyncio.Lock:
        lock = self._locks.get(link.upper_id)
        if lock is None:
            lock = self._locks[link.upper_id] = asyncio.Lock()
        return lock

    # -- queries from the upper ---------------------------------------------------------------------
    def _extra(self, link: "UpperLink", request: "Request") -> dict[str, Any]:
        return {"device_id": link.upper_id, "call_id": request.call_id}

    def _on_keepalive(self, link: "UpperLink", envelope: "Envelope", request: "Request") -> None:
        log.debug("keepalive from upper", extra=self._extra(link, request))

    def _on_catalog(self, link: "UpperLink", envelope: "Envelope", request: "Request") -> None:
        if envelope.kind != "Query":
            log.info("ignored %s Catalog from upper", envelope.kind, extra=self._extra(link, request))
            return
        shared = self.shared(link)
        target = envelope.device_id or link.local_id
        nodes = shared.subtree(target)
        if nodes is None:
            log.info("catalog query for %s, which this upper is not shown: empty answer", target,
                     extra=self._extra(link, request))
            nodes = []
        items = [n.item for n in nodes]
        sn = envelope.sn or 0
        messages = [m.CatalogResponse(sn=sn, device_id=target, sum_num=len(items), items=part)
                    for part in packets(items, link.settings.catalog_group)]
        log.info("catalog for upper: %d items in %d messages", len(items), len(messages),
                 extra=self._extra(link, request))
        whole = shared if target == link.local_id else None
        self.platform._spawn(self._answer_catalog(link, messages, whole), f"catalog to {link.upper_id}")

    async def _answer_catalog(self, link: "UpperLink", messages: list[m.Message], whole: SharedCatalog | None) -> None:
        """Send a catalog answer; once the upper took all of the whole catalog, it has been shown it."""
        sent = await self._send_all(link, messages, "catalog answer", timed_fallback=True)
        if whole is not None and sent == len(messages):
            self._shown[link.upper_id] = whole

    async def _send_all(self, link: "UpperLink", messages: list[m.Message], what: str, *,
                        timed_fallback: bool = False) -> int:
        """Send one after another's 200 OK (a failure ends the answer); returns how many the
        upper took. With ``timed_fallback`` a part left unanswered switches to timed sending."""
        async with self._lock(link):
            return await self._send_each(link, messages, what, timed_fallback=timed_fallback)

    async def _send_each(self, link: "UpperLink", messages: list[m.Message], what: str, *,
                         timed_fallback: bool = False) -> int:
        sent = 0
        for index, message in enumerate(messages):
            try:
                response = await link.send_manscdp(message.to_xml())
            except TransactionError as exc:
                log.warning("%s: message %d of %d not answered (%s)%s", what, index + 1, len(messages), exc,
                            ", the rest by timed sending" if timed_fallback else "",
                            extra={"device_id": link.upper_id})
                if timed_fallback:
                    sent += await self._send_timed(link, messages[index + 1:], what)
                break
            except (Sip28181Error, OSError) as exc:
                log.warning("%s: message %d of %d not sent (%s)", what, index + 1, len(messages), exc,
                            extra={"device_id": link.upper_id})
                break
            if response.status >= 300:
                log.warning("%s: upper answered %d %s", what, response.status, response.reason,
                            extra={"device_id": link.upper_id})
                break
            sent += 1
        self.platform._count("cascade_catalog_messages", what.replace(" ", "_"))
        return sent

    async def _send_timed(self, link: "UpperLink", messages: list[m.Message], what: str) -> int:
        """Timed sending (WVP's fallback): each part after the previous one's answer or
        :attr:`timed_interval`, whichever comes first; an error status or a failed send stops the
        rest. Returns how many parts the upper took (2xx), waiting for the late answers."""
        pending: list[asyncio.Task] = []
        stopped = False

        def failed(task: asyncio.Task) -> bool:
            if task.cancelled():
                return False
            exc = task.exception()
            if exc is not None:
                return not isinstance(exc, TransactionError)
            return task.result().status >= 300

        try:
            for index, message in enumerate(messages):
                if any(t.done() and failed(t) for t in pending):
                    stopped = True
                    break
                task = asyncio.ensure_future(link.send_manscdp(message.to_xml()))
                pending.append(task)
                if index + 1 < len(messages):
                    await asyncio.wait([task], timeout=self.timed_interval)
            await asyncio.gather(*pending, return_exceptions=True)
        finally:
            for task in pending:
                task.cancel()
        taken = sum(1 for t in pending if not t.cancelled() and t.exception() is None and t.result().status < 300)
        if stopped or any(failed(t) for t in pending):
            log.warning("%s: timed sending stopped by the upper's answer or a failed send (%d of %d parts taken)",
                        what, taken, len(messages), extra={"device_id": link.upper_id})
        else:
            log.info("%s: timed sending done, %d of %d parts taken", what, taken, len(messages),
                     extra={"device_id": link.upper_id})
        return taken

    def _on_device_info(self, link: "UpperLink", envelope: "Envelope", request: "Request") -> None:
        if envelope.kind != "Query":
            return
        shared = self.shared(link)
        target = envelope.device_id or link.local_id
        if target == link.local_id:
            answer: m.Message = m.DeviceInfoResponse(
                sn=envelope.sn or 0, device_id=target, device_name=self._name(), result="OK",
                device_type="Platform", manufacturer="sip28181", model="sip28181", firmware=__version__,
                max_camera=len(shared.channels), max_alarm=0, channel=len(shared.channels))
        else:
            node = shared.node(target)
            if node is not None and node.kind == "channel":
                answer = m.DeviceInfoResponse(
                    sn=envelope.sn or 0, device_id=target, device_name=node.item.name, result="OK",
                    manufacturer=node.item.manufacturer, model=node.item.model, channel=1)
            else:
                answer = m.DeviceInfoResponse(sn=envelope.sn or 0, device_id=target, result="ERROR",
                                              extra=[m.XmlNode("Reason", "unknown device")])
        self.platform._spawn(self._send_all(link, [answer], "device info"), f"device info to {link.upper_id}")

    def _on_device_status(self, link: "UpperLink", envelope: "Envelope", request: "Request") -> None:
        if envelope.kind != "Query":
            return
        target = envelope.device_id or link.local_id
        now = time.strftime("%Y-%m-%dT%H:%M:%S")
        sn = envelope.sn or 0
        node = self.shared(link).node(target)
        if target == link.local_id:
            answer = m.DeviceStatusResponse(sn=sn, device_id=target, result="OK", online="ONLINE", status="OK",
                                            encode_status="ON", record="OFF", device_time=now)
        elif node is not None and node.kind == "channel":
            online = node.status == "ON"
            answer = m.DeviceStatusResponse(sn=sn, device_id=target, result="OK",
                                            online="ONLINE" if online else "OFFLINE",
                                            status="OK" if online else "ERROR",
                                            reason=None if online else "offline",
                                            encode_status="ON" if online else "OFF", record="OFF", device_time=now)
        else:
            log.info("device status for %s, which this upper is not shown", target, extra=self._extra(link, request))
            answer = m.DeviceStatusResponse(sn=sn, device_id=target, result="ERROR", reason="unknown device")
        self.platform._spawn(self._send_all(link, [answer], "device status"), f"device status to {link.upper_id}")

    # -- subscriptions and changes ------------------------------------------------------------------
    def _on_catalog_subscribe(self, sub: UpperSubscription) -> None:
        """A new catalog subscription: from now on changes go in its dialog."""
        if sub.link.upper_id not in self._shown:
            self._shown[sub.link.upper_id] = self.shared(sub.link)

    def _on_link(self, link: "UpperLink", online: bool, reason: str) -> None:
        self._cache.pop(link.upper_id, None)
        if online:
            self._shown[link.upper_id] = self.shared(link)
        else:
            self._shown.pop(link.upper_id, None)

    def _on_change(self, event: object) -> None:
        if isinstance(event, DeviceRegistered) and event.refresh:
            return
        self._note(event)
        for upper_id in list(self._shown):
            self._kick(upper_id)

    def _kick(self, upper_id: str) -> None:
        """There are changes for this upper: its notifier sends them (started when not running)."""
        wake = self._wakes.get(upper_id)
        if wake is None:
            wake = self._wakes[upper_id] = asyncio.Event()
        wake.set()
        if upper_id not in self._notifiers:
            self._notifiers[upper_id] = self.platform._spawn(self._notifier(upper_id, wake),
                                                             f"catalog changes to upper {upper_id}")

    async def _notifier(self, upper_id: str, wake: asyncio.Event) -> None:
        """Send one upper its changes, one batch at a time, until none are left (or it is gone)."""
        try:
            while wake.is_set():
                wake.clear()
                await asyncio.sleep(SETTLE)             # changes close together go up together
                link = self.cascade.links.get(upper_id)
                if link is None or not link.online:
                    self._shown.pop(upper_id, None)
                    return
                if upper_id not in self._shown:
                    return
                if not await self._notify(link):
                    await asyncio.sleep(RETRY)
                    wake.set()
        finally:
            if self._notifiers.get(upper_id) is asyncio.current_task():
                del self._notifiers[upper_id]

    @staticmethod
    def _notifies(link: "UpperLink", events: list[m.CatalogItem]) -> list[m.Message]:
        sn = link.next_sn()
        return [m.CatalogNotify(sn=sn, device_id=link.local_id, sum_num=len(events), items=part)
                for part in packets(events, link.settings.catalog_group)]

    @staticmethod
    def _scope(sub: UpperSubscription, old: SharedCatalog | None, new: SharedCatalog,
               events: list[m.CatalogItem]) -> list[m.CatalogItem]:
        """The events a subscription to a subtree (a group, organisation or region ID) covers."""
        target = sub.query.device_id
        if not target or target == new.root_id:
            return events
        inside = {n.upper_id for n in new.subtree(target) or ()}
        if old is not None:
            inside |= {n.upper_id for n in old.subtree(target) or ()}
        return [e for e in events if e.device_id in inside]

    async def notify_changes(self, link: "UpperLink") -> int:
        """Send ``link``'s upper what changed since it was last shown the catalog; the number of
        catalog events sent (0 too when it did not take them: they go again next time)."""
        sent: list[int] = []
        await self._notify(link, sent)
        return sum(sent)

    async def _notify(self, link: "UpperLink", sent: list[int] | None = None) -> bool:
        """Send the changes; True when the upper took them all (it has then been shown them)."""
        upper_id = link.upper_id
        async with self._lock(link):
            old = self._shown.get(upper_id)
            new = self.shared(link)
            events = diff(old, new)
            ok = True
            if events:
                log.info("catalog changes to upper: %s", ", ".join(f"{i.event} {i.device_id}" for i in events[:20]),
                         extra={"device_id": upper_id})
                subs = self.subscriptions.active(link, "Catalog")
                if not subs:
                    messages = self._notifies(link, events)
                    ok = await self._send_each(link, messages, "catalog notify") == len(messages)
                for sub in subs:
                    scoped = self._scope(sub, old, new, events)
                    if scoped:
                        ok = await self._notify_sub(link, sub, scoped) and ok
            if not ok:
                return False
            if self._shown.get(upper_id) is old and (old is not None or upper_id in self._shown):
                self._shown[upper_id] = new
            if sent is not None:
                sent.append(len(events))
            return True

    async def _notify_sub(self, link: "UpperLink", sub: UpperSubscription, events: list[m.CatalogItem]) -> bool:
        """The events in the subscription's dialog; False when the upper did not take them (a
        subscription ended meanwhile, or one it forgot with 481, needs nothing more)."""
        self.platform._count("cascade_catalog_messages", "catalog_notify")
        for part in self._notifies(link, events):
            try:
                response = await self.subscriptions.notify(sub, part)
            except (Sip28181Error, OSError) as exc:
                log.warning("catalog NOTIFY not answered: %s", exc,
                            extra={"device_id": link.upper_id, "call_id": sub.call_id})
                return False
            if response is None or sub.terminated:
                return True
            if response.status >= 300:
                log.warning("catalog NOTIFY: upper answered %d %s", response.status, response.reason,
                            extra={"device_id": link.upper_id, "call_id": sub.call_id})
                return False
        return True


class _Cached:
    """One upper's shared catalog, and the changes noted since it was built (applied when needed)."""

    __slots__ = ("settings", "name", "catalog", "status", "devices")

    def __init__(self, settings: Any, name: str, catalog: SharedCatalog) -> None:
        self.settings = settings
        self.name = name
        self.catalog = catalog
        #: device ID -> channel IDs whose status changed (None: all of them, its presence changed)
        self.status: dict[str, set[str] | None] = {}
        #: devices whose catalog changed (or that registered or were removed)
        self.devices: set[str] = set()
