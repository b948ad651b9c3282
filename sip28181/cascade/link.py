"""One upper platform as seen from below: registration, refresh, keepalive, recovery (PROTOCOL §11.1).

The link registers with digest (401 and 407), refreshes before expiry, sends keepalives and declares
the upper dead after ``keepalive_timeout_count`` failed keepalives, a failed refresh or a 404 (the
upper forgot us). A dead or unreachable upper is registered again with exponential backoff from
``retry_interval`` to ``retry_max``. Requests to the upper leave from the platform's own SIP
endpoint, so the upper's requests come back to the port it knows us by.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import time
from typing import TYPE_CHECKING

from ..errors import Sip28181Error, TransactionError
from ..manscdp.charset import encode_body
from ..sip.auth import DigestClient
from ..sip.dialog import new_call_id, new_tag
from ..sip.message import Request, Response
from ..transport import Flow
from .settings import UpperSettings

if TYPE_CHECKING:
    from .service import Cascade

log = logging.getLogger("sip28181.cascade")

MANSCDP_TYPE = "Application/MANSCDP+xml"


class LinkState(str, enum.Enum):
    DISABLED = "disabled"       # enabled = false in its settings
    REGISTERING = "registering"
    ONLINE = "online"           # registered, keepalives answered
    RETRYING = "retrying"       # waiting to register again after a failure
    STOPPED = "stopped"


class UpperError(Sip28181Error):
    """The upper refused us or could not be reached; ``status`` is its answer (0: none)."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(f"{status} {reason}" if status else reason)
        self.status = status
        self.reason = reason


class UpperLink:
    """Our registration with one upper, and the way requests to it are sent."""

    def __init__(self, cascade: "Cascade", settings: UpperSettings) -> None:
        self.cascade = cascade
        self.settings = settings
        platform = cascade.platform
        self.local_id = settings.local_id or platform.sip_id
        self.local_domain = settings.local_domain or platform.domain
        self.state = LinkState.DISABLED if not settings.enabled else LinkState.STOPPED
        self.registered_at: float | None = None
        self.last_keepalive_at: float | None = None
        self.last_error: str | None = None
        self.failures = 0
        self._auth = DigestClient(settings.username or self.local_id, settings.password or "")
        self._call_id = ""
        self._from_tag = new_tag()
        self._cseq = 0
        self._flow: Flow | None = None
        self._task: asyncio.Task | None = None

    # -- identity ---------------------------------------------------------------------------------
    @property
    def upper_id(self) -> str:
        return self.settings.sip_id

    @property
    def upper_uri(self) -> str:
        return f"sip:{self.settings.sip_id}@{self.settings.domain}"

    @property
    def local_uri(self) -> str:
        return f"sip:{self.local_id}@{self.local_domain}"

    @property
    def online(self) -> bool:
        return self.state is LinkState.ONLINE

    @property
    def _extra(self) -> dict[str, str]:
        return {"device_id": self.upper_id, "call_id": self._call_id}

    # -- lifecycle --------------------------------------------------------------------------------
    def start(self) -> None:
        if not self.settings.enabled or self._task is not None:
            return
        self._task = self.cascade.platform._spawn(self._run(), f"upper {self.upper_id}")

    async def stop(self, *, unregister: bool = True) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        if unregister and self.state is LinkState.ONLINE:
            try:
                await self.register(expires=0)
            except (Sip28181Error, OSError) as exc:
                log.info("unregister from upper failed: %s", exc, extra=self._extra)
        self.state = LinkState.DISABLED if not self.settings.enabled else LinkState.STOPPED

    async def _run(self) -> None:
        s = self.settings
        backoff = s.retry_interval
        while True:
            try:
                await self.register()
            except (Sip28181Error, OSError) as exc:
                self._down(str(exc))
                self.state = LinkState.RETRYING
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, s.retry_max)
                continue
            backoff = s.retry_interval
            await self._keep()

    async def _keep(self) -> None:
        """Keepalives and refreshes until the upper is found dead."""
        s = self.settings
        loop = asyncio.get_running_loop()
        refresh_at = loop.time() + max(1.0, s.register_interval * 0.8)
        failures = 0
        while True:
            try:
                response = await self.keepalive()
                failures = 0 if response.status == 200 else failures + 1
                if response.status == 404:
                    self._down("upper answered 404 to a keepalive")
                    return
            except (TransactionError, OSError):
                failures += 1
            if failures >= s.keepalive_timeout_count:
                self._down(f"{failures} keepalives without answer")
                return
            wait = min(s.keepalive_interval, max(0.0, refresh_at - loop.time()))
            await asyncio.sleep(wait)
            if loop.time() >= refresh_at:
                try:
                    await self.register()
                except (Sip28181Error, OSError) as exc:
                    self._down(f"refresh failed: {exc}")
                    return
                refresh_at = loop.time() + max(1.0, s.register_interval * 0.8)

    def _down(self, reason: str) -> None:
        self.last_error = reason
        self.failures += 1
        was_online = self.state is LinkState.ONLINE
        self.state = LinkState.RETRYING
        self._call_id = ""
        if was_online:
            log.warning("upper lost: %s", reason, extra=self._extra)
            self.cascade.link_changed(self, online=False, reason=reason)
        else:
            log.info("registration with upper failed: %s", reason, extra=self._extra)

    # -- signalling -------------------------------------------------------------------------------
    async def flow(self) -> Flow:
        """Where requests to the upper go (a TCP connection is opened or reused)."""
        s = self.settings
        endpoint = self.cascade.platform.endpoint
        if s.transport == "udp":
            return Flow("UDP", s.host, s.port)
        if self._flow is None or self._flow.connection not in endpoint.transport._connections:
            self._flow = await endpoint.transport.connect(s.host, s.port)
        return self._flow

    def _contact(self) -> str:
        endpoint = self.cascade.platform.endpoint
        transport = ";transport=tcp" if self.settings.transport == "tcp" else ""
        return f"<sip:{self.local_id}@{endpoint.advertised_host}:{endpoint.port}{transport}>"

    async def register(self, expires: int | None = None) -> Response:
        """REGISTER (answering a digest challenge); :class:`UpperError` if refused."""
        expires = self.settings.register_interval if expires is None else expires
        if expires:
            self.state = LinkState.REGISTERING if self.state is not LinkState.ONLINE else self.state
        if not self._call_id:
            self._call_id = new_call_id(self.cascade.platform.endpoint.advertised_host)
        flow = await self.flow()
        response = await self._send_register(flow, expires, authorize=self._auth.ready)
        if response.status in (401, 407):
            header = response.headers.get("WWW-Authenticate") or response.headers.get("Proxy-Authenticate")
            if not header:
                raise UpperError(response.status, "challenge without WWW-Authenticate")
            self._auth.set_challenge(header)
            response = await self._send_register(flow, expires, authorize=True)
        if response.status != 200:
            raise UpperError(response.status, response.reason)
        if expires == 0:
            self._call_id = ""
            return response
        was_online = self.state is LinkState.ONLINE
        self.state = LinkState.ONLINE
        self.registered_at = time.time()
        self.last_error = None
        if not was_online:
            log.info("registered with upper %s:%d", self.settings.host, self.settings.port, extra=self._extra)
            self.cascade.link_changed(self, online=True, reason="registered")
        return response

    async def _send_register(self, flow: Flow, expires: int, authorize: bool) -> Response:
        self._cseq += 1
        extra: list[tuple[str, object]] = [("Contact", self._contact()), ("Expires", expires)]
        if authorize:
            header = "Proxy-Authorization" if self._auth_proxy else "Authorization"
            extra.append((header, self._auth.authorization("REGISTER", self.upper_uri)))
        request = self.cascade.platform.endpoint.build_request(
            "REGISTER", self.upper_uri, from_uri=self.local_uri, to_uri=self.local_uri, flow=flow,
            call_id=self._call_id, from_tag=self._from_tag, cseq=self._cseq, extra=extra)
        response = await self.cascade.platform.endpoint.request(request, flow, timeout=self._timeout)
        if response.status in (401, 407):
            self._auth_proxy = response.status == 407
        return response

    _auth_proxy = False
    _timeout = 5.0
    _sn = 0

    def next_sn(self) -> int:
        self._sn += 1
        return self._sn

    async def keepalive(self) -> Response:
        xml = (f"<Notify>\r\n<CmdType>Keepalive</CmdType>\r\n<SN>{self.next_sn()}</SN>\r\n"
               f"<DeviceID>{self.local_id}</DeviceID>\r\n<Status>OK</Status>\r\n</Notify>\r\n")
        response = await self.send_manscdp(xml)
        if response.status == 200:
            self.last_keepalive_at = time.time()
        return response

    def build_request(self, method: str, flow: Flow, *, body: bytes = b"",
                      content_type: str | None = None, uri: str | None = None,
                      extra: list[tuple[str, object]] | None = None) -> Request:
        """An out-of-dialog request from us to the upper."""
        return self.cascade.platform.endpoint.build_request(
            method, uri or self.upper_uri, from_uri=self.local_uri, to_uri=self.upper_uri, flow=flow,
            cseq=1, body=body, content_type=content_type, extra=extra or ())

    async def send_manscdp(self, xml: str | bytes, *, timeout: float | None = None) -> Response:
        """An out-of-dialog MESSAGE with a MANSCDP body to the upper (``str`` is encoded in the
        upper's charset)."""
        body = encode_body(xml, self.settings.charset) if isinstance(xml, str) else xml
        flow = await self.flow()
        request = self.build_request("MESSAGE", flow, body=body, content_type=MANSCDP_TYPE)
        return await self.cascade.platform.endpoint.request(request, flow, timeout=timeout or self._timeout)

    def status(self) -> dict[str, object]:
        """What the API shows of this link."""
        s = self.settings
        return {
            "sip_id": s.sip_id, "name": s.name, "domain": s.domain, "host": s.host, "port": s.port,
            "transport": s.transport, "local_id": self.local_id, "enabled": s.enabled,
            "state": self.state.value, "online": self.online, "registered_at": self.registered_at,
            "last_keepalive_at": self.last_keepalive_at, "last_error": self.last_error,
            "failures": self.failures,
        }
