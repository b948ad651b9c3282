"""Subscriptions an upper platform holds with us: the notifier side of SUBSCRIBE/NOTIFY (PROTOCOL §7).

An upper subscribes to our catalog (and to alarms or mobile positions) with a SUBSCRIBE whose body
is the matching Query; like device firmware we dispatch on the body's CmdType, not the Event
header. Each CmdType a service can notify is registered with :meth:`UpperSubscriptions.register`;
anything else is refused with 489 Bad Event.

A new subscription is answered 200 with a To tag, our Contact, the granted ``Expires`` and the
Event echoed, plus a ``Response`` body with ``Result OK`` (as WVP sends). It then lives in that
dialog: a SUBSCRIBE inside it refreshes the expiry, ``Expires: 0`` ends it, and when it runs out
it is ended too; an ended subscription gets a last NOTIFY with ``Subscription-State:
terminated``. NOTIFYs carry ``Subscription-State: active;expires=<remaining>`` and the Event as
the upper sent it (``Catalog;id=…`` included). An upper that answers a NOTIFY with 481 has
forgotten the dialog: the subscription is dropped.

An upper holds one subscription per CmdType and target (the query's ``DeviceID``): a new
SUBSCRIBE outside the dialog supersedes the older one, which is ended (``terminated;
reason=rejected``: the upper already has the new one and need not subscribe again). Past
:attr:`UpperSubscriptions.max_per_upper` live subscriptions a new one is refused with 403.
Subscriptions belong to the upper, not to one :class:`~.link.UpperLink`: new settings rebind them
to the new link (:meth:`UpperSubscriptions.rebind`); an upper removed gets them ended.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

from ..errors import ManscdpError, RemoteProtocolError, Sip28181Error
from ..manscdp import messages as m
from ..manscdp.charset import encode_body
from ..manscdp.codec import CONTENT_TYPE as MANSCDP_TYPE
from ..sip.dialog import Dialog, new_tag
from ..sip.message import Request, Response

if TYPE_CHECKING:
    from ..transport import Flow
    from .link import UpperLink
    from .service import Cascade

log = logging.getLogger("sip28181.cascade")

__all__ = ["UpperSubscription", "UpperSubscriptions"]

DEFAULT_EXPIRES = 3600
MAX_EXPIRES = 86400


@dataclass(eq=False)
class UpperSubscription:
    """One subscription of an upper: its dialog, what it asked for, and until when."""

    link: "UpperLink"
    cmd_type: str
    """The body's CmdType as registered (``Catalog``, ``Alarm``, ``MobilePosition``)."""
    event: str
    """The Event header as the upper sent it (echoed in every NOTIFY)."""
    query: m.Message
    dialog: Dialog
    expires_at: float
    """Loop time at which it ends unless refreshed."""
    notifies: int = 0
    terminated: bool = False
    _timer: asyncio.TimerHandle | None = field(default=None, repr=False)

    @property
    def call_id(self) -> str:
        return self.dialog.call_id

    def remaining(self) -> int:
        return max(0, int(self.expires_at - asyncio.get_running_loop().time()))


#: called with the new subscription once its 200 is sent (e.g. to push a first NOTIFY)
OnSubscribe = Callable[[UpperSubscription], Any]


class UpperSubscriptions:
    """Every upper's subscriptions, by dialog; services notify through :meth:`notify`."""

    #: live subscriptions one upper may hold (distinct CmdType and target each)
    max_per_upper = 64

    def __init__(self, cascade: "Cascade") -> None:
        self.cascade = cascade
        self._kinds: dict[str, tuple[str, OnSubscribe | None]] = {}
        self._subs: dict[tuple[str, str], UpperSubscription] = {}
        cascade.request_handlers["SUBSCRIBE"] = self.on_subscribe

    def register(self, cmd_type: str, on_subscribe: OnSubscribe | None = None) -> None:
        """Accept SUBSCRIBEs whose body has this CmdType."""
        self._kinds[cmd_type.lower()] = (cmd_type, on_subscribe)

    def active(self, link: "UpperLink | str", cmd_type: str) -> list[UpperSubscription]:
        """The live subscriptions of an upper (a link or its ID) for one CmdType."""
        upper = link if isinstance(link, str) else link.upper_id
        low = cmd_type.lower()
        return [s for s in self._subs.values()
                if not s.terminated and s.link.upper_id == upper and s.cmd_type.lower() == low]

    def all(self) -> list[UpperSubscription]:
        return list(self._subs.values())

    # -- requests from the upper ------------------------------------------------------------------
    def on_subscribe(self, link: "UpperLink", request: Request, flow: "Flow") -> None:
        respond = self.cascade.platform.endpoint.respond
        try:
            response = self._handle(link, request, flow)
        except RemoteProtocolError as exc:
            response = Response.for_request(request, exc.status_hint, exc.reason, to_tag=new_tag())
        respond(response)

    def _handle(self, link: "UpperLink", request: Request, flow: "Flow") -> Response:
        expires = request.expires
        to_tag = request.to.tag
        if to_tag:
            sub = self._subs.get((request.call_id, to_tag))
            if sub is None or sub.terminated or sub.link.upper_id != link.upper_id:
                return Response.for_request(request, 481, "Subscription does not exist")
            sub.dialog.receive_request(request)
            return self._refresh(sub, request, DEFAULT_EXPIRES if expires is None else expires)
        if request.from_.tag is None:
            raise RemoteProtocolError("SUBSCRIBE without a From tag")
        if not request.body.strip():
            raise RemoteProtocolError("SUBSCRIBE without a MANSCDP body")
        try:
            query = m.parse(request.body)
        except ManscdpError as exc:
            raise RemoteProtocolError(exc.reason, exc.status_hint) from None
        kind = self._kinds.get(query.cmd_type.lower()) if query.kind is m.Kind.QUERY else None
        if kind is None:
            return Response.for_request(request, 489, f"Cannot subscribe to {query.kind.value} {query.cmd_type}",
                                        to_tag=new_tag())
        cmd_type, on_subscribe = kind
        expires = min(DEFAULT_EXPIRES if expires is None else expires, MAX_EXPIRES)
        older = self._same(link.upper_id, cmd_type, query.device_id) if expires else []
        if expires and not older and len([s for s in self._subs.values()
                                          if s.link.upper_id == link.upper_id]) >= self.max_per_upper:
            log.warning("%s subscription refused: the upper holds %d already", cmd_type, self.max_per_upper,
                        extra={"device_id": link.upper_id, "call_id": request.call_id})
            return Response.for_request(request, 403, "Too many subscriptions", to_tag=new_tag())
        endpoint = self.cascade.platform.endpoint
        tag = new_tag()
        response = Response.for_request(request, 200, to_tag=tag)
        contact = (f"<sip:{link.local_id}@{endpoint.advertised_host}:{endpoint.port}"
                   f"{';transport=tcp' if flow.transport == 'TCP' else ''}>")
        event = request.headers.get("Event") or cmd_type
        response.headers.add("Contact", contact)
        response.headers.add("Expires", expires)
        response.headers.add("Event", event)
        ack = m.UnknownMessage(sn=query.sn, device_id=link.local_id, unknown_kind=m.Kind.RESPONSE,
                               unknown_cmd_type=cmd_type, extra=[m.XmlNode("Result", "OK")])
        response.body = encode_body(ack.to_xml(), link.settings.charset)
        response.headers.add("Content-Type", MANSCDP_TYPE)
        contacts = request.contacts
        target = str(contacts[0].uri) if contacts and contacts[0].uri is not None else str(request.from_.uri)
        dialog = Dialog(
            call_id=request.call_id, local_tag=tag, remote_tag=request.from_.tag,
            local_uri=str(request.to).split(";tag=")[0], remote_uri=str(request.from_).split(";tag=")[0],
            remote_target=target, route_set=list(request.headers.get_all("Record-Route")), local_cseq=0,
            remote_cseq=request.cseq.number, invite_cseq=0, via_transport=flow.transport,
            via_host=endpoint.advertised_host, via_port=endpoint.port, local_contact=contact, role="uas")
        loop = asyncio.get_running_loop()
        sub = UpperSubscription(link, cmd_type, event, query, dialog, loop.time() + expires)
        log.info("%s subscription from upper for %d s", cmd_type, expires,
                 extra={"device_id": link.upper_id, "call_id": request.call_id})
        for old in older:
            log.info("%s subscription superseded by a new one", old.cmd_type,
                     extra={"device_id": link.upper_id, "call_id": old.call_id})
            self._forget(old)
            self._spawn(self._final(old, "rejected"), old)
        if expires == 0:        # a fetch: the current state, terminated (RFC 6665 §4.4.3)
            sub.terminated = True
            self._spawn(self._fetched(sub), sub)
            return response
        self._subs[(request.call_id, tag)] = sub
        self._arm(sub)
        if on_subscribe is not None:
            loop.call_soon(self._started, sub, on_subscribe)
        return response

    def _same(self, upper_id: str, cmd_type: str, target: str | None) -> list[UpperSubscription]:
        """The upper's live subscriptions for one CmdType and target."""
        return [s for s in self._subs.values() if s.link.upper_id == upper_id and s.cmd_type == cmd_type
                and (s.query.device_id or "") == (target or "")]

    def _started(self, sub: UpperSubscription, on_subscribe: OnSubscribe) -> None:
        try:
            on_subscribe(sub)
        except Exception:
            log.exception("subscription start failed", extra={"device_id": sub.link.upper_id, "call_id": sub.call_id})

    def _refresh(self, sub: UpperSubscription, request: Request, expires: int) -> Response:
        expires = min(expires, MAX_EXPIRES)
        response = sub.dialog.response_for(request, 200)
        response.headers.add("Expires", expires)
        response.headers.add("Event", sub.event)
        if expires == 0:
            log.info("%s subscription ended by the upper", sub.cmd_type,
                     extra={"device_id": sub.link.upper_id, "call_id": sub.call_id})
            self._forget(sub)
            self._spawn(self._final(sub, None), sub)
            return response
        sub.expires_at = asyncio.get_running_loop().time() + expires
        self._arm(sub)
        log.debug("%s subscription refreshed for %d s", sub.cmd_type, expires,
                  extra={"device_id": sub.link.upper_id, "call_id": sub.call_id})
        return response

    # -- lifetime ---------------------------------------------------------------------------------
    def _arm(self, sub: UpperSubscription) -> None:
        if sub._timer is not None:
            sub._timer.cancel()
        sub._timer = asyncio.get_running_loop().call_at(sub.expires_at, self._expired, sub)

    def _expired(self, sub: UpperSubscription) -> None:
        sub._timer = None
        if sub.terminated:
            return
        log.info("%s subscription expired", sub.cmd_type, extra={"device_id": sub.link.upper_id, "call_id": sub.call_id})
        self._forget(sub)
        self._spawn(self._final(sub, "timeout"), sub)

    def _forget(self, sub: UpperSubscription) -> None:
        sub.terminated = True
        if sub._timer is not None:
            sub._timer.cancel()
            sub._timer = None
        self._subs.pop((sub.dialog.call_id, sub.dialog.local_tag), None)

    def _spawn(self, coro: Any, sub: UpperSubscription) -> None:
        self.cascade.platform._spawn(coro, f"{sub.cmd_type} subscription {sub.link.upper_id}")

    async def terminate(self, sub: UpperSubscription, reason: str | None = "noresource") -> None:
        """End a subscription from our side (last NOTIFY, terminated)."""
        if sub.terminated:
            return
        self._forget(sub)
        await self._final(sub, reason)

    def _state(self, sub: UpperSubscription) -> list[m.Message]:
        """The current state a fetch is sent: for a catalog, the shared catalog (or the asked
        subtree) in ``catalog_group`` items per NOTIFY; nothing for other kinds."""
        if sub.cmd_type != "Catalog":
            return []
        from .share import packets
        link = sub.link
        target = sub.query.device_id or link.local_id
        items = [n.item for n in self.cascade.northbound.shared(link).subtree(target) or ()]
        sn = link.next_sn()
        return [m.CatalogNotify(sn=sn, device_id=target, sum_num=len(items), items=part)
                for part in packets(items, link.settings.catalog_group)]

    async def _fetched(self, sub: UpperSubscription) -> None:
        """Answer a fetch: the state in NOTIFYs, the last one ``terminated;reason=timeout``."""
        parts = self._state(sub)
        if not parts:
            await self._final(sub, "timeout")
            return
        for n, part in enumerate(parts, 1):
            state = "terminated;reason=timeout" if n == len(parts) else "active;expires=0"
            try:
                response = await self._send(sub, part, state)
            except (Sip28181Error, OSError) as exc:
                log.info("fetch NOTIFY not answered: %s", exc, extra={"device_id": sub.link.upper_id, "call_id": sub.call_id})
                return
            if response.status >= 300:
                return

    async def _final(self, sub: UpperSubscription, reason: str | None) -> None:
        state = "terminated" + (f";reason={reason}" if reason else "")
        body: m.Message
        if sub.cmd_type == "Catalog":
            body = m.CatalogNotify(sn=sub.link.next_sn(), device_id=sub.link.local_id, sum_num=0)
        else:
            body = m.UnknownMessage(sn=sub.link.next_sn(), device_id=sub.link.local_id, unknown_kind=m.Kind.NOTIFY,
                                    unknown_cmd_type=sub.cmd_type)
        try:
            await self._send(sub, body, state)
        except (Sip28181Error, OSError) as exc:
            log.info("final NOTIFY not answered: %s", exc, extra={"device_id": sub.link.upper_id, "call_id": sub.call_id})

    def stop(self) -> None:
        """Forget every subscription without a word (the platform is stopping)."""
        for sub in list(self._subs.values()):
            self._forget(sub)

    def drop(self, link: "UpperLink | str") -> None:
        """Forget an upper's subscriptions without a word."""
        upper = link if isinstance(link, str) else link.upper_id
        for sub in [s for s in self._subs.values() if s.link.upper_id == upper]:
            self._forget(sub)

    def rebind(self, link: "UpperLink") -> None:
        """The upper's subscriptions go on through ``link`` (its new settings)."""
        for sub in self._subs.values():
            if sub.link.upper_id == link.upper_id:
                sub.link = link

    async def end(self, upper_id: str, reason: str = "rejected") -> None:
        """End every subscription of an upper, each with its last NOTIFY (sent together)."""
        subs = [s for s in self._subs.values() if s.link.upper_id == upper_id]
        await asyncio.gather(*(self.terminate(s, reason) for s in subs))

    # -- notifying --------------------------------------------------------------------------------
    async def notify(self, sub: UpperSubscription, message: m.Message | str) -> Response | None:
        """A NOTIFY in the subscription's dialog; None when it has ended meanwhile. A 481 ends it."""
        if sub.terminated:
            return None
        response = await self._send(sub, message, f"active;expires={sub.remaining()}")
        if response.status == 481:
            log.info("upper forgot the %s subscription", sub.cmd_type,
                     extra={"device_id": sub.link.upper_id, "call_id": sub.call_id})
            self._forget(sub)
        return response

    async def _send(self, sub: UpperSubscription, message: m.Message | str, state: str) -> Response:
        xml = message if isinstance(message, str) else message.to_xml()
        body = encode_body(xml, sub.link.settings.charset)
        request = sub.dialog.create_request("NOTIFY", body, MANSCDP_TYPE,
                                            headers=[("Event", sub.event), ("Subscription-State", state)])
        sub.notifies += 1
        flow = await sub.link.flow()
        return await self.cascade.platform.endpoint.request(request, flow, timeout=sub.link.request_timeout)
