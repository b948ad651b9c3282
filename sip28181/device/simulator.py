"""A GB/T 28181 device simulator: registers with digest, refreshes, keeps alive, unregisters.

The same SIP core the platform uses, in the device's role. Tests drive it as a peer over real
sockets; users run it with ``python -m sip28181.device`` to try a platform.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Callable

from ..endpoint import SipEndpoint
from ..sip.dialog import new_call_id, new_tag
from ..errors import Sip28181Error, TransactionError
from ..manscdp.charset import encode_body
from ..sip.auth import DigestClient
from ..sip.message import Request, Response
from ..transport import Flow
from ..tasks import TaskSet
from .management import DeviceManagement

if TYPE_CHECKING:
    from .media import MediaOptions

log = logging.getLogger("sip28181.device")

#: What a request handler returns when it answers by itself, now or later (an INVITE answered
#: after a delay, a CANCEL that also ends its INVITE).
HANDLED = "handled"


class RegistrationError(Sip28181Error):
    """The platform refused the registration; ``status`` is its final answer."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(f"{status} {reason}")
        self.status = status
        self.reason = reason


class DeviceSimulator:
    def __init__(self, device_id: str, *, server_id: str = "34020000002000000001",
                 server_host: str = "127.0.0.1", server_port: int = 5060, domain: str | None = None,
                 password: str = "12345678", transport: str = "udp", local_host: str = "127.0.0.1",
                 local_port: int = 0, expires: int = 3600, keepalive_interval: float = 60.0,
                 keepalive_failures: int = 3, request_timeout: float = 5.0, name: str | None = None,
                 charset: str = "GB2312", user_agent: str = "sip28181-device", channels: int = 1,
                 management: dict | None = None, media: "MediaOptions | None" = None) -> None:
        self.device_id = device_id
        self.server_id = server_id
        self.server_host = server_host
        self.server_port = server_port
        self.domain = domain or server_id[:10]
        self.password = password
        self.transport_name = transport.upper()
        if self.transport_name not in ("UDP", "TCP"):
            raise ValueError("transport must be udp or tcp")
        self.local_host = local_host
        self.local_port = local_port
        self.expires = expires
        self.keepalive_interval = keepalive_interval
        self.keepalive_failures = keepalive_failures
        self.request_timeout = request_timeout
        self.name = name or f"Simulated camera {device_id[-6:]}"
        self.charset = charset
        self.endpoint = SipEndpoint(self._on_request, user_agent=user_agent)
        self.registered = False
        self.last_response: Response | None = None
        self.request_handlers: dict[str, Callable[[Request, Flow], Response | str | None]] = {}
        self._auth = DigestClient(device_id, password)
        self._call_id = ""
        self._from_tag = new_tag()
        self._cseq = 0
        self._sn = 0
        self._tasks = TaskSet(prefix=f"{device_id} ")
        self._flow: Flow | None = None
        self.keepalives_sent = 0
        #: MANSCDP behaviour (queries, controls, alarms, subscriptions); ``management`` holds its
        #: options (items_per_message, window, pacing, groups...).
        self.management = DeviceManagement(self, channels=channels, **(management or {}))
        self.request_handlers["MESSAGE"] = self.management.on_message
        self.request_handlers["SUBSCRIBE"] = self.management.on_subscribe
        from .media import DeviceMedia
        #: The media side: answers INVITE, streams PS over RTP (see :mod:`.media`).
        self.media = DeviceMedia(self, media)

    # -- lifecycle --------------------------------------------------------------------------------
    async def start(self, *, register: bool = True, keepalive: bool = True) -> None:
        await self.endpoint.start(self.local_host, self.local_port)
        self.local_port = self.endpoint.port
        if register:
            await self.register()
        if keepalive:
            self._spawn(self._keepalive_loop(), "keepalive")
        self._spawn(self._refresh_loop(), "refresh")

    async def stop(self, *, unregister: bool = True) -> None:
        await self._tasks.close()
        await self.media.close()
        if unregister and self.registered:
            try:
                await self.register(expires=0)
            except (Sip28181Error, OSError) as exc:
                log.warning("unregister failed: %s", exc, extra={"device_id": self.device_id})
        await self.endpoint.close()

    async def __aenter__(self) -> "DeviceSimulator":
        await self.start()
        return self

    async def __aexit__(self, *exc) -> None:
        await self.stop()

    def _spawn(self, coro, name: str) -> asyncio.Task:
        return self._tasks.spawn(coro, name)

    # -- signalling ---------------------------------------------------------------------------------
    async def server_flow(self) -> Flow:
        if self.transport_name == "UDP":
            return Flow("UDP", self.server_host, self.server_port)
        if self._flow is None or self._flow.connection not in self.endpoint.transport._connections:
            self._flow = await self.endpoint.transport.connect(self.server_host, self.server_port)
        return self._flow

    @property
    def server_uri(self) -> str:
        return f"sip:{self.server_id}@{self.domain}"

    @property
    def uri(self) -> str:
        return f"sip:{self.device_id}@{self.domain}"

    def _contact(self) -> str:
        transport = ";transport=tcp" if self.transport_name == "TCP" else ""
        return f"<sip:{self.device_id}@{self.endpoint.advertised_host}:{self.endpoint.port}{transport}>"

    async def register(self, expires: int | None = None) -> Response:
        """REGISTER (answering one digest challenge); raises :class:`RegistrationError` if refused."""
        expires = self.expires if expires is None else expires
        if not self._call_id:
            self._call_id = new_call_id(self.local_host)
        flow = await self.server_flow()
        response = await self._send_register(flow, expires, authorize=self._auth.ready)
        if response.status in (401, 407):
            header = response.headers.get("WWW-Authenticate") or response.headers.get("Proxy-Authenticate")
            if not header:
                raise RegistrationError(response.status, "challenge without WWW-Authenticate")
            self._auth.set_challenge(header)
            response = await self._send_register(flow, expires, authorize=True)
        self.last_response = response
        if response.status != 200:
            self.registered = False
            raise RegistrationError(response.status, response.reason)
        self.registered = expires > 0
        if expires == 0:
            self._call_id = ""
        log.info("%s with %s", "registered" if expires else "unregistered", self.server_uri,
                 extra={"device_id": self.device_id, "call_id": response.call_id})
        return response

    async def _send_register(self, flow: Flow, expires: int, authorize: bool) -> Response:
        self._cseq += 1
        extra: list[tuple[str, object]] = [("Contact", self._contact()), ("Expires", expires)]
        if authorize:
            extra.append(("Authorization", self._auth.authorization("REGISTER", self.server_uri)))
        request = self.endpoint.build_request(
            "REGISTER", self.server_uri, from_uri=self.uri, to_uri=self.uri, flow=flow, call_id=self._call_id,
            from_tag=self._from_tag, cseq=self._cseq, extra=extra)
        return await self.endpoint.request(request, flow, timeout=self.request_timeout)

    def next_sn(self) -> int:
        self._sn += 1
        return self._sn

    async def send_manscdp(self, xml: str) -> Response:
        """An out-of-dialog MESSAGE with a MANSCDP body to the platform."""
        flow = await self.server_flow()
        request = self.endpoint.build_request(
            "MESSAGE", self.server_uri, from_uri=self.uri, to_uri=self.server_uri, flow=flow, cseq=1,
            body=encode_body(xml, self.charset), content_type="Application/MANSCDP+xml")
        return await self.endpoint.request(request, flow, timeout=self.request_timeout)

    async def send_alarm(self, *args, **kwargs):
        """Raise an alarm (:meth:`DeviceManagement.send_alarm`)."""
        return await self.management.send_alarm(*args, **kwargs)

    async def notify_catalog(self, *args, **kwargs):
        """Announce a catalog change (:meth:`DeviceManagement.notify_catalog`)."""
        return await self.management.notify_catalog(*args, **kwargs)

    @property
    def ptz_log(self):
        """PTZ commands received, decoded (:attr:`DeviceManagement.ptz_log`)."""
        return self.management.ptz_log

    async def keepalive(self) -> Response:
        xml = (f"<Notify>\r\n<CmdType>Keepalive</CmdType>\r\n<SN>{self.next_sn()}</SN>\r\n"
               f"<DeviceID>{self.device_id}</DeviceID>\r\n<Status>OK</Status>\r\n</Notify>\r\n")
        response = await self.send_manscdp(xml)
        self.keepalives_sent += 1
        return response

    async def _keepalive_loop(self) -> None:
        failures = 0
        first = True
        while True:
            # the first keepalive follows the registration at once, as most devices do
            if not first:
                await asyncio.sleep(self.keepalive_interval)
            first = False
            if not self.registered:
                continue
            try:
                response = await self.keepalive()
                failures = 0 if response.status == 200 else failures + 1
            except (TransactionError, OSError):
                failures += 1
            if failures >= self.keepalive_failures or (failures and self.last_response is None):
                log.warning("keepalives failing, registering again", extra={"device_id": self.device_id})
                failures = 0
                await self._try_register()

    async def _refresh_loop(self) -> None:
        while True:
            # refresh before expiry, as devices do (RFC 3261 §10.2.4)
            await asyncio.sleep(max(1.0, self.expires * 0.8) if self.registered else 5.0)
            await self._try_register()

    async def _try_register(self) -> None:
        try:
            await self.register()
        except (Sip28181Error, OSError) as exc:
            log.warning("registration failed: %s", exc, extra={"device_id": self.device_id})

    def _on_request(self, request: Request, flow: Flow) -> None:
        handler = self.request_handlers.get(request.method)
        response = handler(request, flow) if handler is not None else None
        if response is HANDLED:
            return
        if response is None:
            response = Response.for_request(request, 200 if request.method in ("MESSAGE", "OPTIONS") else 501,
                                            to_tag=new_tag())
        self.endpoint.respond(response)


