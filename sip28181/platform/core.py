"""The platform: one object wiring the SIP endpoint to the services, the store and the events.

Handlers run in the event loop and answer at once (PROTOCOL §14.2); the store is written in batches
by one flusher task, never per message. One ``stop()`` path ends everything the platform started.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Any

from .. import __version__
from ..errors import ManscdpError, NotFoundError, RemoteProtocolError
from ..manscdp.codec import message_envelope
from ..sip.message import Request, Response
from ..store.base import DeviceRecord, PresenceEvent, write_in_order
from ..transport import Flow
from ..endpoint import SipEndpoint
from ..sip.dialog import new_tag
from ..tasks import TaskSet
from .bus import EventBus
from .events import DeviceOffline, DeviceOnline, DeviceRegistered, RegistrationRefused
from .management import DeviceManagement
from .presence import Presence
from .registrar import Registrar, RegistrarSettings
from .registry import DeviceState, Registry
from .sessions import Sessions

if TYPE_CHECKING:
    from ..config import Config
    from ..store.base import Store

log = logging.getLogger("sip28181.platform")

ALLOW = "REGISTER, MESSAGE, OPTIONS, ACK, BYE, CANCEL, INFO, NOTIFY, SUBSCRIBE, INVITE"


class Platform:
    """A GB/T 28181 SIP platform (the server side devices register to)."""

    def __init__(self, config: "Config", store: "Store | None" = None, metrics: Any = None) -> None:
        self.config = config
        self.sip_id = config.sip_id
        self.domain = config.domain
        self.store = store
        self.metrics = metrics
        self.events = EventBus()
        self.registry = Registry()
        self.presence = Presence(self.registry, config.keepalive_interval, config.keepalive_count)
        passwords = {dev_id: dev.password for dev_id, dev in config.devices.items() if dev.password}
        self.registrar = Registrar(RegistrarSettings(
            realm=config.domain, password=config.password, passwords=passwords,
            expires_min=config.register_expires_min, expires_max=config.register_expires_max,
            expires_default=config.register_expires_default, nonce_lifetime=config.nonce_lifetime,
            qop=config.auth_qop, date_header=config.date_header, max_failures=config.auth_max_failures,
            failure_window=config.auth_failure_window, block_seconds=config.auth_block_seconds,
        ), self.registry, self.presence, new_tag)
        self.endpoint = SipEndpoint(self._on_request, user_agent=f"sip28181/{__version__}",
                                    on_connection_lost=self._on_connection_lost,
                                    on_parse_error=self._on_parse_error)
        self._presence_events: list[Any] = []
        self._tasks = TaskSet(log)
        self._presence_timer: asyncio.TimerHandle | None = None
        self._flush_lock = asyncio.Lock()
        self._started = False
        self._loop: asyncio.AbstractEventLoop = None  # type: ignore[assignment]  # set by start()
        self._counters: dict[tuple[str, tuple[str, ...]], Any] = {}
        self._counts: dict[tuple[str, tuple[str, ...]], int] = {}
        self.message_handlers: dict[str, Any] = {}   # CmdType -> callable(envelope, request, state)
        #: SIP method -> callable(request, flow) for what services own (SUBSCRIBE, NOTIFY, INVITE,
        #: BYE, INFO, ...); the handler answers through ``self.endpoint.respond``.
        self.request_handlers: dict[str, Any] = {}
        self.endpoint.stateless = self._stateless
        self.events.on(self._on_event)
        self.sessions = Sessions(self)
        #: On-demand media streams (:class:`~sip28181.platform.streams.StreamManager`), set by the
        #: server once the media ports are open; None in a platform without media.
        self.streams: Any = None
        self._bind_gauges()
        #: catalog, queries, control, alarms, subscriptions, statistics (see :mod:`.management`)
        self.management = DeviceManagement(self)
        from ..cascade.service import Cascade
        #: our upper platforms (see :mod:`sip28181.cascade`)
        self.cascade = Cascade(self, config.upper)

    # -- lifecycle --------------------------------------------------------------------------------
    async def start(self) -> None:
        # kept: asyncio.get_running_loop() costs a getpid() system call on every use
        self._loop = asyncio.get_running_loop()
        if self.store is not None:
            await self.store.open()
            await self.store.set_all_offline(time.time(), "server restart")
            for record in await self.store.list_devices():
                self.registry.add(DeviceState(
                    record.device_id, name=record.name, status="offline", contact=record.contact,
                    expires=record.expires, registered_at=record.registered_at,
                    last_keepalive_at=record.last_keepalive_at, call_id=record.call_id,
                    user_agent=record.user_agent, gb_version=record.gb_version,
                    created_at=record.created_at, extra=dict(record.extra or {}),
                    flow=Flow(record.transport, record.remote_host, record.remote_port)
                    if record.transport and record.remote_host and record.remote_port else None,
                ))
        await self.management.start()
        cfg = self.config
        await self.endpoint.start(cfg.sip_host, cfg.sip_port, advertised_host=cfg.external_host,
                                  udp="udp" in cfg.sip_transports, tcp="tcp" in cfg.sip_transports)
        self._started = True
        self._spawn(self._flusher(), "store flusher")
        await self.cascade.start()
        log.info("SIP platform %s (domain %s) listening on %s:%d", self.sip_id, self.domain,
                 cfg.sip_host, self.endpoint.port)

    @property
    def sip_port(self) -> int:
        return self.endpoint.port

    async def stop(self) -> None:
        """Stop listening, flush the store, cancel what remains."""
        if not self._started:
            return
        self._started = False
        if self._presence_timer is not None:
            self._presence_timer.cancel()
        try:
            await self.cascade.stop()
            await self.sessions.close()
            await self.endpoint.close()
            await self._tasks.close()
            self.management.stop()
            await self.flush()
        finally:
            if self.store is not None:      # always: an open connection's thread keeps the process alive
                await self.store.close()

    def _spawn(self, coro, name: str) -> asyncio.Task:
        """A background task of the platform (services use it too): ended by :meth:`stop`."""
        return self._tasks.spawn(coro, name)

    # -- store ------------------------------------------------------------------------------------
    async def _flusher(self) -> None:
        interval = self.config.store_flush_interval
        while True:
            await asyncio.sleep(interval)
            try:
                await self.flush()
            except Exception:
                log.exception("store flush failed; will retry")

    async def flush(self) -> None:
        """Write changed devices and presence events to the store (one batch each)."""
        if self.store is None:
            self.registry.take_dirty()
            self._presence_events.clear()
            await self.management.flush()
            return

        async with self._flush_lock:
            dirty = self.registry.take_dirty()
            events, self._presence_events = self._presence_events, []
            steps = []
            if dirty:
                def remark() -> None:
                    for s in dirty:
                        self.registry.mark(s.device_id)
                steps.append((lambda: self.store.upsert_devices([self._record(s) for s in dirty]), remark))
            if events:
                def requeue_events() -> None:
                    self._presence_events[:0] = events
                steps.append((lambda: self.store.add_presence_events(
                    [PresenceEvent(e.device_id, s, e.at, e.reason) for e, s in events]), requeue_events))
            # a write that fails is retried at the next flush; see write_in_order for cancellation
            await write_in_order(steps)
            await self.management.flush()
            await self.cascade.forward.log.flush()

    @staticmethod
    def _record(s: DeviceState) -> DeviceRecord:
        return DeviceRecord(
            device_id=s.device_id, name=s.name, status=s.status, transport=s.transport,
            remote_host=s.flow.host if s.flow else None, remote_port=s.flow.port if s.flow else None,
            contact=s.contact, expires=s.expires, registered_at=s.registered_at,
            last_keepalive_at=s.last_keepalive_at, call_id=s.call_id, user_agent=s.user_agent,
            gb_version=s.gb_version, created_at=s.created_at, extra=dict(s.extra),
        )

    # -- events -----------------------------------------------------------------------------------
    def _on_event(self, event: object) -> None:
        if isinstance(event, DeviceOnline):
            self._presence_events.append((event, "online"))
            # a registration is logged once, by the registrar path; other ways online are news
            log.log(logging.DEBUG if event.reason == "register" else logging.INFO, "device online (%s)",
                    event.reason, extra={"device_id": event.device_id})
        elif isinstance(event, DeviceOffline):
            self._presence_events.append((event, "offline"))
            log.info("device offline (%s)", event.reason, extra={"device_id": event.device_id})
        if isinstance(event, (DeviceOnline, DeviceOffline)):
            self._count("presence_changes", "online" if isinstance(event, DeviceOnline) else "offline")

    def _publish(self, events: list[object]) -> None:
        for event in events:
            self.events.publish(event)
        if events:
            self._arm_presence()

    def _count(self, metric: str, *labels: str) -> None:
        """Count in a plain dictionary; :meth:`_fold_counts` moves the counts into Prometheus
        counters when metrics are scraped (an increment there takes a lock: microseconds)."""
        if self.metrics is None:
            return
        key = (metric, labels)
        counts = self._counts
        if key in counts:
            counts[key] += 1
        elif len(counts) < 10_000:                  # label values come from peers: bound them
            counts[key] = 1

    def _fold_counts(self) -> None:
        counts, self._counts = self._counts, {}
        if self.metrics is None:
            return
        for key, n in counts.items():
            child = self._counters.get(key)
            if child is None:
                metric, labels = key
                if len(self._counters) > 10_000:    # bounded like the counts
                    labels = tuple("other" for _ in labels)
                family = getattr(self.metrics, metric)
                child = self._counters[key] = family.labels(*labels) if labels else family
            child.inc(n)

    def _bind_gauges(self) -> None:
        """Device gauges are counted when scraped: O(devices) per scrape, nothing per event."""
        if self.metrics is not None:
            self.metrics.before_collect.append(self._fold_counts)
            self.metrics.devices_online.set_function(self.registry.online_count)
            self.metrics.devices_registered.set_function(
                lambda: sum(1 for s in self.registry if s.registered))

    def _arm_presence(self) -> None:
        deadline = self.presence.next_deadline()
        if deadline is None or not self._started:
            return
        loop = self._loop
        if self._presence_timer is not None:
            if self._presence_timer.when() <= deadline:
                return
            self._presence_timer.cancel()
        self._presence_timer = loop.call_at(deadline + 0.01, self._on_presence_timer)

    def _on_presence_timer(self) -> None:
        self._presence_timer = None
        events = self.presence.check(self._loop.time(), time.time())
        for event in events:
            self.events.publish(event)
        self._arm_presence()

    # -- SIP requests -----------------------------------------------------------------------------
    def _on_request(self, request: Request, flow: Flow) -> None:
        self._count("sip_messages", "in", request.method)
        if self.cascade.links and self.cascade.on_request(request, flow):
            return
        method = request.method
        handler = self.request_handlers.get(method)
        if handler is not None:
            handler(request, flow)
        elif method == "REGISTER":
            self._on_register(request, flow)
        elif method == "MESSAGE":
            self._on_message(request, flow)
        elif method == "OPTIONS":
            resp = Response.for_request(request, 200, to_tag=new_tag())
            resp.headers.add("Allow", ALLOW)
            self.endpoint.respond(resp)
        elif method in ("BYE", "INFO", "NOTIFY", "CANCEL"):
            self.endpoint.respond(Response.for_request(request, 481, to_tag=new_tag()))
        elif method == "ACK":
            return
        else:
            resp = Response.for_request(request, 405, to_tag=new_tag())
            resp.headers.add("Allow", ALLOW)
            self.endpoint.respond(resp)

    def _stateless(self, request: Request, flow: Flow) -> bool:
        """Requests answered without a transaction (RFC 3261 §8.2.7: idempotent ones only).

        A REGISTER without credentials is challenged (or refused): it changes nothing, and a
        retransmission just gets a fresh challenge. A keepalive only refreshes a timestamp, so a
        retransmitted one is simply answered again. These are most of a platform's traffic;
        everything else (alarms, answers to queries) goes through transactions, which absorb
        retransmissions so nothing is processed twice."""
        method = request.method
        if self.cascade.links and self.cascade.link_for(request) is not None:
            return False        # an upper's request: the cascade answers it in a transaction
        if method == "REGISTER":
            if "Authorization" in request.headers:
                return False
            self._count("sip_messages", "in", "REGISTER")
            self._on_register(request, flow, stateless=True)
            return True
        if method == "MESSAGE" and b"Keepalive" in request.body:
            handled = self._on_message(request, flow, stateless=True)
            if handled:
                self._count("sip_messages", "in", "MESSAGE")
            return handled
        return False

    def _on_register(self, request: Request, flow: Flow, stateless: bool = False) -> None:
        outcome = self.registrar.handle(request, flow, self._loop.time(), time.time())
        if stateless:
            self.endpoint.respond_stateless(outcome.response, flow)
        else:
            self.endpoint.respond(outcome.response)
        self._count("registrations", outcome.result)
        for event in outcome.events:
            if isinstance(event, DeviceRegistered) and not event.refresh:
                log.info("registered from %s:%d over %s, expires %d", event.host, event.port, event.transport,
                         event.expires, extra={"device_id": event.device_id, "call_id": request.call_id})
            elif isinstance(event, RegistrationRefused):
                log.info("registration refused: %d %s", event.status, event.reason,
                         extra={"device_id": event.device_id, "call_id": request.call_id})
        self._publish(outcome.events)

    def _on_message(self, request: Request, flow: Flow, stateless: bool = False) -> bool:
        """A MANSCDP MESSAGE. With ``stateless`` only a keepalive is handled (True returned);
        anything else is left for the transaction path (False)."""
        respond = (lambda r: self.endpoint.respond_stateless(r, flow)) if stateless else self.endpoint.respond
        try:
            envelope = message_envelope(request.content_type, request.body)
        except ManscdpError as exc:
            respond(Response.for_request(request, exc.status_hint, exc.reason, to_tag=new_tag()))
            return True
        keepalive = envelope.cmd_type == "Keepalive" and envelope.kind == "Notify"
        if stateless and not keepalive:
            return False
        state = self.registry.get(request.from_user or "") or self.registry.get(envelope.device_id)
        if state is None or not state.registered:
            respond(Response.for_request(request, 404, "Device not registered", to_tag=new_tag()))
            return True
        now, wall = self._loop.time(), time.time()
        if state.flow != flow and state.flow is not None and flow.transport == state.flow.transport:
            state.flow = flow           # NAT rebinding: answer where the device is now (§4)
            self.registry.mark(state.device_id)
        self.presence.heard(state, now)
        if keepalive:
            state.last_keepalive_at = wall
            self._count("keepalives")
            respond(Response.for_request(request, 200, to_tag=new_tag()))
            if state.status != "online":
                self._publish(self.presence.went_online(state, now, wall, "keepalive"))
            return True
        handler = self.message_handlers.get(envelope.cmd_type)
        respond(Response.for_request(request, 200, to_tag=new_tag()))
        if handler is not None:
            try:
                handler(envelope, request, state)
            except RemoteProtocolError as exc:
                log.warning("bad %s from device: %s", envelope.cmd_type, exc.reason,
                            extra={"device_id": state.device_id, "call_id": request.call_id})
        else:
            log.debug("unhandled MANSCDP %s %s", envelope.kind, envelope.cmd_type,
                      extra={"device_id": state.device_id, "call_id": request.call_id})
        return True

    def _on_connection_lost(self, flow: Flow) -> None:
        """2022 §9.1.1 f: a TCP device whose connection drops is offline."""
        if not self._started:
            return
        self.cascade.connection_lost(flow)
        wall = time.time()
        events: list[object] = []
        for state in self.registry:
            if state.flow is not None and state.flow.connection == flow.connection and state.status == "online":
                state.registered = False
                events += self.presence.went_offline(state, wall, "connection lost")
        self._publish(events)

    def _on_parse_error(self, flow: Flow, exc: RemoteProtocolError) -> None:
        self._count("sip_parse_errors", flow.transport.lower())

    # -- management -------------------------------------------------------------------------------
    def device(self, device_id: str) -> DeviceState:
        state = self.registry.get(device_id)
        if state is None:
            raise NotFoundError(f"device {device_id} not found")
        return state

    def devices(self) -> list[DeviceState]:
        return sorted(self.registry, key=lambda s: s.device_id)

    async def delete_device(self, device_id: str) -> None:
        """Forget a device: live state, registration and stored record."""
        state = self.registry.remove(device_id)
        if state is None:
            raise NotFoundError(f"device {device_id} not found")
        if state.status == "online":
            self.events.publish(DeviceOffline(device_id, time.time(), "deleted"))
        self.management.forget(device_id)
        if self.store is not None:
            async with self._flush_lock:    # a flush in progress must not write it back afterwards
                await self.store.delete_device(device_id)


    # -- device management (thin delegates; see :mod:`.management`) ----------------------------------
    async def query_catalog(self, device_id: str, *, timeout: float | None = None):
        """Query and apply the catalog of ``device_id`` (a :class:`~.catalog.CatalogResult`)."""
        return await self.management.catalog.query(device_id, timeout=timeout)

    def channels(self, device_id: str):
        """The channels of ``device_id`` known from its catalog (NotFoundError for an unknown device)."""
        self.device(device_id)
        return self.management.catalog.channels(device_id)

    async def query_device_info(self, device_id: str, **kw):
        return await self.management.device_info(device_id, **kw)

    async def query_device_status(self, device_id: str, **kw):
        return await self.management.device_status(device_id, **kw)

    async def query_record_info(self, device_id: str, channel_id: str, start, end, **kw):
        return await self.management.record_info(device_id, channel_id, start, end, **kw)

    async def query_presets(self, device_id: str, channel_id: str | None = None, **kw):
        return await self.management.presets(device_id, channel_id, **kw)

    async def config_download(self, device_id: str, config_types="BasicParam", **kw):
        return await self.management.config_download(device_id, config_types, **kw)

    async def ptz(self, device_id: str, channel_id: str | None, action, speed: int | None = None, **params):
        sent = self.management.control.ptz(device_id, channel_id, action, speed, **params)
        return await self.cascade.forward.local(device_id, channel_id, "ptz", dict(params, action=action, speed=speed),
                                                sent)

    async def device_control(self, device_id: str, command: str, channel_id: str | None = None, **params):
        """``command``: tele_boot, record, guard, reset_alarm, iframe, drag_zoom, home_position, config
        (the methods of :class:`~.control.Control`)."""
        sent = self.management.device_control(device_id, command, channel_id, **params)
        return await self.cascade.forward.local(device_id, channel_id, command, params, sent)
