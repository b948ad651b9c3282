"""SUBSCRIBE/NOTIFY towards devices (PROTOCOL §7): catalog, alarm and mobile-position subscriptions.

We are the subscriber (UAC of the dialog). A subscription is registered under its Call-ID and our
From tag *before* the SUBSCRIBE goes out, so a NOTIFY that overtakes the 200 OK is accepted (the
dialog's remote tag is then learnt from it). It is refreshed inside its dialog (same Call-ID and
tags, CSeq + 1) when 80 % of the granted time has passed, at the latest 30 s before expiry; a
refresh refused with 481 or not answered starts a new subscription. ``Subscription-State:
terminated`` ends it (and it is renewed when the device is still online), ``Expires: 0`` in the
dialog unsubscribes. Subscriptions of a device that goes offline are dropped without a word (it
cannot hear us); the platform subscribes again when it registers (``[catalog] subscribe``,
``[alarm] subscribe``, ``[alarm] position_subscribe``).

Event header: ``Catalog``, ``presence`` for alarms and positions (what WVP sends, PROTOCOL §7.1);
devices dispatch on the body's CmdType. NOTIFYs are answered 200 and their bodies handed to the
same dispatcher as MESSAGEs. A NOTIFY outside any subscription of ours from a registered device
is accepted as well (platforms that push catalog changes without a subscription); anything else
gets 481.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

from ..errors import ManscdpError, RemoteProtocolError, Sip28181Error
from ..sip.dialog import Dialog, new_call_id, new_tag
from ..sip.message import Request, Response
from .queries import DeviceRefused

if TYPE_CHECKING:
    from ..transport import Flow
    from .core import Platform
    from .queries import Queries

log = logging.getLogger("sip28181.subscriptions")

__all__ = ["KINDS", "Subscription", "Subscriptions"]

#: kind -> Event header value
KINDS = {"catalog": "Catalog", "alarm": "presence", "mobile_position": "presence"}
MIN_REFRESH = 5.0


@dataclass(eq=False)
class Subscription:
    device_id: str
    kind: str
    expires: int
    call_id: str
    local_tag: str
    event: str
    dialog: Dialog | None = None
    granted: int = 0
    state: str = "pending"          # pending, active, terminated
    notifies: int = 0
    task: asyncio.Task | None = field(default=None, repr=False)
    body: Callable[[], Any] | None = field(default=None, repr=False)


class Subscriptions:
    def __init__(self, platform: "Platform", queries: "Queries", dispatch: Callable[[str, Any, str], None]) -> None:
        self.platform = platform
        self.queries = queries
        self.dispatch = dispatch
        self._by_dialog: dict[tuple[str, str], Subscription] = {}
        self._by_device: dict[tuple[str, str], Subscription] = {}

    def get(self, device_id: str, kind: str) -> Subscription | None:
        return self._by_device.get((device_id, kind))

    def of(self, device_id: str) -> list[Subscription]:
        return [s for (d, _), s in self._by_device.items() if d == device_id]

    # -- bodies --------------------------------------------------------------------------------------
    def _body(self, device_id: str, kind: str) -> Any:
        from ..manscdp import messages as m

        sn = self.queries.next_sn()
        if kind == "catalog":
            return m.CatalogQuery(sn=sn, device_id=device_id)
        if kind == "alarm":
            return m.AlarmQuery(sn=sn, device_id=device_id, start_alarm_priority="0", end_alarm_priority="0",
                                alarm_method="0")
        interval = self.platform.config.position_interval
        return m.MobilePositionQuery(sn=sn, device_id=device_id, interval=interval)

    def _contact(self) -> str:
        ep = self.platform.endpoint
        return f"<sip:{self.platform.sip_id}@{ep.advertised_host}:{ep.port}>"

    # -- subscribe -----------------------------------------------------------------------------------
    async def subscribe(self, device_id: str, kind: str, expires: int | None = None) -> Subscription:
        """Subscribe (or return the live subscription of that kind); DeviceRefused on a SIP error."""
        if kind not in KINDS:
            raise ValueError(f"unknown subscription kind {kind!r}")
        existing = self._by_device.get((device_id, kind))
        if existing is not None and existing.state != "terminated":
            return existing
        cfg = self.platform.config
        if expires is None:
            expires = cfg.catalog_subscribe_expires if kind == "catalog" else cfg.alarm_subscribe_expires
        state = self.queries.reachable(device_id)
        flow = state.flow
        assert flow is not None
        sub = Subscription(device_id, kind, expires, new_call_id(self.platform.endpoint.advertised_host), new_tag(),
                           KINDS[kind])
        self._register(sub)
        platform = self.platform
        uri = f"sip:{device_id}@{flow.host}:{flow.port}"
        message = self._body(device_id, kind)
        request = platform.endpoint.build_request(
            "SUBSCRIBE", uri, from_uri=f"sip:{platform.sip_id}@{platform.domain}",
            to_uri=f"sip:{device_id}@{platform.domain}", flow=flow, call_id=sub.call_id, from_tag=sub.local_tag,
            body=self.queries.encode(state, message), content_type="Application/MANSCDP+xml",
            extra=[("Contact", self._contact()), ("Event", sub.event), ("Expires", expires)])
        log.info("SUBSCRIBE %s for %d s", kind, expires, extra={"device_id": device_id, "call_id": sub.call_id})
        try:
            response = await platform.endpoint.request(request, flow, timeout=self.queries.timeout)
        except BaseException:
            self._forget(sub)
            raise
        if response.status >= 300:
            self._forget(sub)
            raise DeviceRefused(f"device answered {response.status} {response.reason} to SUBSCRIBE {kind}",
                                response.status)
        self._establish(sub, request, response)
        sub.task = platform._spawn(self._refresher(sub), f"subscription {kind} {device_id}")
        return sub

    def _register(self, sub: Subscription) -> None:
        old = self._by_device.get((sub.device_id, sub.kind))
        if old is not None and old is not sub:
            self._forget(old)
        self._by_dialog[(sub.call_id, sub.local_tag)] = sub
        self._by_device[(sub.device_id, sub.kind)] = sub

    def _forget(self, sub: Subscription) -> None:
        sub.state = "terminated"
        if self._by_dialog.get((sub.call_id, sub.local_tag)) is sub:
            del self._by_dialog[(sub.call_id, sub.local_tag)]
        if self._by_device.get((sub.device_id, sub.kind)) is sub:
            del self._by_device[(sub.device_id, sub.kind)]
        task = sub.task
        if task is not None and task is not asyncio.current_task() and not task.done():
            task.cancel()

    def _establish(self, sub: Subscription, request: Request, response: Response) -> None:
        granted = response.expires
        sub.granted = granted if granted is not None and granted > 0 else sub.expires
        sub.state = "active"
        if sub.dialog is None:
            remote_tag = response.to.tag or ""
            contacts = response.contacts
            target = str(contacts[0].uri) if contacts and contacts[0].uri is not None else request.uri
            ep = self.platform.endpoint
            sub.dialog = Dialog(
                call_id=sub.call_id, local_tag=sub.local_tag, remote_tag=remote_tag,
                local_uri=f"<sip:{self.platform.sip_id}@{self.platform.domain}>",
                remote_uri=f"<sip:{sub.device_id}@{self.platform.domain}>", remote_target=target,
                route_set=list(reversed(response.headers.get_all("Record-Route"))), local_cseq=request.cseq.number,
                remote_cseq=None, invite_cseq=request.cseq.number, via_transport=request.via.transport,
                via_host=ep.advertised_host, via_port=ep.port, local_contact=self._contact(), role="uac")
        elif not sub.dialog.remote_tag and response.to.tag:
            sub.dialog.remote_tag = response.to.tag

    async def _refresher(self, sub: Subscription) -> None:
        while sub.state == "active":
            delay = max(MIN_REFRESH, min(sub.granted * 0.8, sub.granted - 30))
            await asyncio.sleep(delay)
            if sub.state != "active":
                return
            try:
                await self._send_in_dialog(sub, sub.expires)
            except (Sip28181Error, OSError) as exc:
                log.info("subscription refresh failed (%s): subscribing again", exc,
                         extra={"device_id": sub.device_id, "call_id": sub.call_id})
                self._forget(sub)
                await self._renew(sub)
                return

    async def _send_in_dialog(self, sub: Subscription, expires: int) -> Response:
        state = self.queries.reachable(sub.device_id)
        assert sub.dialog is not None and state.flow is not None
        message = self._body(sub.device_id, sub.kind)
        request = sub.dialog.create_request("SUBSCRIBE", self.queries.encode(state, message), "Application/MANSCDP+xml",
                                            headers=[("Event", sub.event), ("Expires", expires)])
        response = await self.platform.endpoint.request(request, state.flow, timeout=self.queries.timeout)
        if response.status >= 300:
            raise DeviceRefused(f"device answered {response.status} {response.reason} to SUBSCRIBE refresh",
                                response.status)
        if expires:
            self._establish(sub, request, response)
            log.debug("subscription %s refreshed for %d s", sub.kind, sub.granted,
                      extra={"device_id": sub.device_id, "call_id": sub.call_id})
        return response

    async def _renew(self, sub: Subscription) -> None:
        state = self.platform.registry.get(sub.device_id)
        if state is None or state.status != "online":
            return
        try:
            await self.subscribe(sub.device_id, sub.kind, sub.expires)
        except (Sip28181Error, OSError) as exc:
            log.warning("subscription %s could not be renewed: %s", sub.kind, exc, extra={"device_id": sub.device_id})

    async def unsubscribe(self, device_id: str, kind: str) -> bool:
        """End a subscription (``Expires: 0`` in its dialog); False when there was none."""
        sub = self._by_device.get((device_id, kind))
        if sub is None:
            return False
        self._forget(sub)
        if sub.dialog is not None:
            try:
                await self._send_in_dialog(sub, 0)
            except (Sip28181Error, OSError) as exc:
                log.info("unsubscribe not confirmed: %s", exc, extra={"device_id": device_id, "call_id": sub.call_id})
        return True

    def drop_device(self, device_id: str) -> None:
        for sub in self.of(device_id):
            self._forget(sub)

    def stop(self) -> None:
        for sub in list(self._by_device.values()):
            self._forget(sub)

    # -- NOTIFY --------------------------------------------------------------------------------------
    def on_notify(self, request: Request, flow: "Flow") -> None:
        """``platform.request_handlers["NOTIFY"]``: answer, then dispatch the body."""
        respond = self.platform.endpoint.respond
        try:
            to_tag = request.to.tag
            from_user = request.from_user
        except RemoteProtocolError as exc:
            respond(Response.for_request(request, 400, exc.reason, to_tag=new_tag()))
            return
        sub = self._by_dialog.get((request.call_id, to_tag or ""))
        state = self.platform.registry.get(sub.device_id if sub is not None else from_user or "")
        if state is None or not state.registered:
            respond(Response.for_request(request, 481, to_tag=to_tag or new_tag()))
            return
        try:
            message = self._parse(request)
        except ManscdpError as exc:
            respond(Response.for_request(request, exc.status_hint, exc.reason, to_tag=to_tag or new_tag()))
            return
        respond(Response.for_request(request, 200, to_tag=to_tag or new_tag()))
        self.platform.presence.heard(state, self.platform._loop.time())
        if sub is not None:
            sub.notifies += 1
            if sub.dialog is not None and not sub.dialog.remote_tag:
                sub.dialog.remote_tag = request.from_.tag or ""
            sub_state = (request.headers.get("Subscription-State") or "").split(";")[0].strip().lower()
            if sub_state == "terminated":
                log.info("device ended the %s subscription", sub.kind,
                         extra={"device_id": sub.device_id, "call_id": sub.call_id})
                self._forget(sub)
                self.platform._spawn(self._renew(sub), f"renew {sub.kind} {sub.device_id}")
        else:
            log.debug("NOTIFY outside a subscription accepted", extra={"device_id": state.device_id,
                                                                        "call_id": request.call_id})
        if message is not None:
            try:
                self.dispatch(state.device_id, message, "NOTIFY")
            except RemoteProtocolError as exc:
                log.warning("bad NOTIFY body: %s", exc.reason, extra={"device_id": state.device_id,
                                                                       "call_id": request.call_id})

    def _parse(self, request: Request) -> Any:
        if not request.body.strip():
            return None
        from ..manscdp import messages as m

        return m.parse(request.body)

