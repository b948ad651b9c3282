"""The cascade service: our links to upper platforms and the routing of what they send us.

A request whose From user is the SIP ID of a configured upper belongs to that upper (PROTOCOL
§11): it is answered by the handler registered for its method in :attr:`Cascade.request_handlers`
(catalog and queries, control, subscriptions, media sessions), never by the device-facing path.

Only when it comes from the upper's configured ``host``, though (unless its ``check_source`` is
off): anyone can write an upper's ID in From, and what an upper may ask for includes PTZ. A
REGISTER is never the upper's business as our upper: an upper that is also our lower (peer
interconnect) registers through the registrar like any device, and once registered its keepalives,
notifications and answers to our queries go the device's way too.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import time
from typing import TYPE_CHECKING, Any, Callable, Iterable

from ..errors import ManscdpError, NotFoundError, RemoteProtocolError
from ..manscdp.codec import Envelope, message_envelope, parse_envelope
from ..sip.dialog import new_tag
from ..sip.message import Request, Response
from ..transport import Flow
from .link import LinkState, UpperLink
from .settings import UpperSettings, parse_upper

if TYPE_CHECKING:
    from ..platform.core import Platform

log = logging.getLogger("sip28181.cascade")

#: handler(link, request, flow): answers through ``platform.endpoint.respond``.
UpperHandler = Callable[[UpperLink, Request, Flow], None]
#: handler(link, envelope, request): a MANSCDP MESSAGE from an upper, already answered 200.
UpperMessageHandler = Callable[[UpperLink, Envelope, Request], None]


def _ip(host: str) -> str | None:
    """``host`` as a normalised IP address (IPv4-mapped IPv6 as IPv4); None for a name."""
    try:
        addr = ipaddress.ip_address(host.strip("[]").split("%")[0])
    except ValueError:
        return None
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    return str(addr)


class Cascade:
    """All uppers of one platform (none is fine: then it routes nothing)."""

    def __init__(self, platform: "Platform", uppers: Iterable[UpperSettings] = ()) -> None:
        self.platform = platform
        self.links: dict[str, UpperLink] = {}
        #: SIP method -> handler for requests from an upper (the handler must respond).
        self.request_handlers: dict[str, UpperHandler] = {}
        #: CmdType -> handler for MANSCDP MESSAGEs from an upper (answered 200 before the call).
        self.message_handlers: dict[str, UpperMessageHandler] = {}
        self.request_handlers["MESSAGE"] = self._on_message
        #: Called with (link, online, reason) when a link comes up or goes down.
        self.listeners: list[Callable[[UpperLink, bool, str], Any]] = []
        self._started = False
        #: longest wait for the uppers to take our unregistration at shutdown, seconds (together)
        self.stop_timeout = 8.0
        from .invite import UpperMedia
        #: INVITE/BYE/CANCEL/INFO from uppers: video of shared channels sent up as PS/RTP
        self.media = UpperMedia(self)
        for settings in uppers:
            settings = parse_upper(settings)
            if settings.sip_id in self.links:
                raise ValueError(f"upper {settings.sip_id} configured twice")
            self.links[settings.sip_id] = UpperLink(self, settings)
        from .northbound import Northbound
        #: what uppers see: shared catalog, ID mapping, answers, subscriptions, change notifications
        self.northbound = Northbound(self)
        #: server-side subscriptions of uppers, by CmdType (see :mod:`.subscriptions`)
        self.subscriptions = self.northbound.subscriptions
        from .alarms import AlarmForwarder
        from .forward import Forwarder
        #: the upper's queries and controls sent down; local priority and the control log
        self.forward = Forwarder(self)
        #: our devices' alarms sent up
        self.alarms = AlarmForwarder(self)
        from .positions import PositionForwarder
        #: our devices' mobile positions, to the uppers that subscribed to them
        self.positions = PositionForwarder(self)
        if platform.metrics is not None:
            platform.metrics.uppers_online.set_function(lambda: len(self.online_links()))

    # -- lifecycle --------------------------------------------------------------------------------
    async def start(self) -> None:
        from .uppers import load_saved
        await load_saved(self)      # uppers managed through the API override the config's
        self._started = True
        for link in self.links.values():
            link.start()

    async def stop(self) -> None:
        """Unregister from every upper at once, all within :attr:`stop_timeout`."""
        self._started = False
        await self.media.close()
        self.northbound.stop()
        self.alarms.stop()
        self.positions.stop()
        links = list(self.links.values())
        stops = {asyncio.ensure_future(link.stop()): link for link in links}
        if not stops:
            return
        _, late = await asyncio.wait(stops, timeout=self.stop_timeout)
        for task in late:
            task.cancel()
        await asyncio.gather(*stops, return_exceptions=True)
        for task in late:
            link = stops[task]
            log.warning("upper did not take our unregistration in time", extra={"device_id": link.upper_id})
            await link.stop(unregister=False)

    # -- links ------------------------------------------------------------------------------------
    def link(self, upper_id: str) -> UpperLink:
        link = self.links.get(upper_id)
        if link is None:
            raise NotFoundError(f"upper platform {upper_id} not found")
        return link

    def online_links(self) -> list[UpperLink]:
        return [link for link in self.links.values() if link.state is LinkState.ONLINE]

    async def add(self, settings: UpperSettings) -> UpperLink:
        """Add an upper at run time (it registers at once when enabled)."""
        settings = parse_upper(settings)
        if settings.sip_id in self.links:
            raise ValueError(f"upper {settings.sip_id} already exists")
        link = self.links[settings.sip_id] = UpperLink(self, settings)
        if self._started:
            link.start()
        return link

    async def update(self, settings: UpperSettings) -> UpperLink:
        """Replace an upper's settings: its link is unregistered and started again. The upper's
        subscriptions live on with the new link (a disabled upper's are ended)."""
        settings = parse_upper(settings)
        old = self.link(settings.sip_id)
        if not settings.enabled:
            await self.subscriptions.end(old.upper_id)
        keeps = self.media.keeps_calls(old.settings, settings)
        if not keeps:       # ended here: a link that was not online says nothing when it stops
            await self.media.end_calls(old.upper_id, "upper offline")
        await old.stop(unregister=not keeps, close=not keeps)   # its video goes on, on its connection
        link = self.links[settings.sip_id] = UpperLink(self, settings)
        self.subscriptions.rebind(link)
        if self._started:
            link.start()
        return link

    async def remove(self, upper_id: str) -> None:
        """Forget an upper: its subscriptions end (a last NOTIFY each), then it is unregistered."""
        link = self.link(upper_id)
        await self.subscriptions.end(upper_id)
        await self.media.end_calls(upper_id, "upper removed")
        await link.stop()
        if self.links.get(upper_id) is link:
            del self.links[upper_id]

    def link_changed(self, link: UpperLink, *, online: bool, reason: str) -> None:
        from ..platform.events import UpperOffline, UpperOnline
        event = UpperOnline(link.upper_id, time.time()) if online else \
            UpperOffline(link.upper_id, time.time(), reason)
        self.platform.events.publish(event)
        for listener in list(self.listeners):
            try:
                listener(link, online, reason)
            except Exception:
                log.exception("upper listener failed", extra={"device_id": link.upper_id})

    def connection_lost(self, flow: Flow) -> None:
        """A TCP connection closed: the link that used it registers again."""
        for link in self.links.values():
            link.connection_lost(flow)

    # -- requests from uppers ---------------------------------------------------------------------
    def link_for(self, request: Request) -> UpperLink | None:
        """The upper a request comes from (by its From user), if any. A REGISTER never is: an
        upper registering to us is our lower as well, a device to the registrar; and once it is
        registered, what it sends as our lower goes to the device path (:meth:`_as_lower`)."""
        if not self.links or request.method == "REGISTER":
            return None
        link = self.links.get(request.from_user or "")
        if link is not None and self._as_lower(link, request):
            return None
        return link

    def _as_lower(self, link: UpperLink, request: Request) -> bool:
        """Whether a request from a peer (an upper registered to us as well) is its part as our
        lower: its NOTIFYs (our subscriptions) and MANSCDP Notify (keepalives, alarms) and
        Response (answers to our queries), except a Response Alarm acknowledging an alarm we sent
        it. Its queries, controls, subscriptions and calls are the upper's."""
        state = self.platform.registry.get(link.upper_id)
        if state is None or not state.registered:
            return False
        if request.method == "NOTIFY":
            return True
        if request.method != "MESSAGE":
            return False
        try:
            envelope = parse_envelope(request.body)
        except ManscdpError:
            return False
        if envelope.kind == "Notify":
            return True
        if envelope.kind == "Response":
            return not (envelope.cmd_type == "Alarm" and (link.upper_id, envelope.sn) in self.alarms.sent)
        return False

    def from_upper(self, link: UpperLink, flow: Flow) -> bool:
        """Whether a request under ``link``'s ID came from the upper's address."""
        if not link.settings.check_source:
            return True
        source = _ip(flow.host)
        return source is not None and source in (_ip(link.settings.host), _ip(link.address or ""))

    def on_request(self, request: Request, flow: Flow) -> bool:
        """Answer a request if it comes from an upper; False leaves it to the device-facing path."""
        link = self.link_for(request)
        if link is None:
            return False
        if not self.from_upper(link, flow):
            log.warning("%s under the upper's ID from %s:%s, not its host %s: refused", request.method,
                        flow.host, flow.port, link.settings.host,
                        extra={"device_id": link.upper_id, "call_id": request.call_id})
            if request.method != "ACK":
                self.platform.endpoint.respond(Response.for_request(
                    request, 403, "Not from the upper platform's address", to_tag=new_tag()))
            return True
        if not link.settings.enabled and not self._ends_a_call(request):
            if request.method != "ACK":
                self.platform.endpoint.respond(Response.for_request(request, 403, "upper disabled", to_tag=new_tag()))
            return True
        handler = self.request_handlers.get(request.method)
        if handler is not None:
            handler(link, request, flow)
        elif request.method == "ACK":
            pass
        elif request.method == "OPTIONS":
            self.platform.endpoint.respond(Response.for_request(request, 200, to_tag=new_tag()))
        else:
            self.platform.endpoint.respond(Response.for_request(
                request, 501 if request.method not in ("BYE", "INFO", "CANCEL") else 481,
                to_tag=new_tag()))
        return True

    def _ends_a_call(self, request: Request) -> bool:
        """An ACK, or a BYE or CANCEL of one of the upper's calls: still taken from a disabled upper."""
        return request.method == "ACK" or (request.method in ("BYE", "CANCEL") and request.call_id in self.media.calls)

    def _on_message(self, link: UpperLink, request: Request, flow: Flow) -> None:
        respond = self.platform.endpoint.respond
        try:
            envelope = message_envelope(request.content_type, request.body)
        except ManscdpError as exc:
            respond(Response.for_request(request, exc.status_hint, exc.reason, to_tag=new_tag()))
            return
        handler = self.message_handlers.get(envelope.cmd_type)
        if handler is None and envelope.cmd_type != "Keepalive":
            log.info("unhandled %s %s from upper", envelope.kind, envelope.cmd_type,
                     extra={"device_id": link.upper_id, "call_id": request.call_id})
        respond(Response.for_request(request, 200, to_tag=new_tag()))
        if handler is not None:
            try:
                handler(link, envelope, request)
            except RemoteProtocolError as exc:
                log.warning("bad %s from upper: %s", envelope.cmd_type, exc.reason,
                            extra={"device_id": link.upper_id, "call_id": request.call_id})

    # -- what an upper sees (the shared catalog's ID mapping, :mod:`.share`) ---------------------------
    def resolve(self, link: UpperLink, upper_side_id: str) -> tuple[str, str] | None:
        """The local (device ID, channel ID) an upper names by ``upper_side_id``, if shared."""
        return self.northbound.resolve(link, upper_side_id)

    def upper_side_id(self, link: UpperLink, device_id: str, channel_id: str) -> str | None:
        """The ID the upper knows a local channel by; None when it is not shared with it."""
        return self.northbound.upper_side_id(link, device_id, channel_id)
