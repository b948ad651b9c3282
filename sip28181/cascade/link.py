"""One upper platform as seen from below: registration, refresh, keepalive, recovery (PROTOCOL §11.1).

The link registers with digest (401 and 407) and refreshes in the same Call-ID before expiry
(``register_interval``), with a keepalive MESSAGE every ``keepalive_interval``. It declares the
upper dead after ``keepalive_timeout_count`` keepalives in a row without a 200, a failed refresh,
a 404 to a keepalive (the upper restarted and forgot us) or the loss of the TCP connection to it.
A dead upper is registered again at once, in a new Call-ID; failed registrations are retried after
``retry_interval``, doubling up to ``retry_max``, with ±10 % jitter so that many lowers cut off
together do not come back in step. Requests to the upper leave from the platform's own SIP
endpoint, so the upper's requests come back to the port it knows us by.
"""

from __future__ import annotations

import asyncio
import enum
import ipaddress
import logging
import random
import socket
import time
from typing import TYPE_CHECKING

from ..errors import Sip28181Error, TransactionError
from ..manscdp.charset import encode_body
from ..manscdp.codec import CONTENT_TYPE as MANSCDP_TYPE
from ..sip.auth import DigestClient
from ..sip.dialog import new_call_id, new_tag
from ..sip.message import Request, Response
from ..transport import Flow
from .settings import UpperSettings

if TYPE_CHECKING:
    from .service import Cascade

__all__ = ["LinkState", "UPPER_REGISTRATION_RESULTS", "UpperError", "UpperLink", "backoff_delay"]

log = logging.getLogger("sip28181.cascade")


#: Values of the ``result`` label of ``sip28181_upper_registrations_total``.
UPPER_REGISTRATION_RESULTS = ("ok", "refreshed", "unregistered", "auth_failed", "forbidden",
                              "not_found", "rejected", "timeout", "unreachable")


#: At most this many REGISTERs again after ``423 Interval Too Brief`` (each with the Min-Expires).
MAX_INTERVAL_RETRIES = 2
#: The longest registration we accept to ask for when an upper's Min-Expires demands it, seconds.
MAX_EXPIRES = 604800


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


def backoff_delay(failures: int, first: float, most: float, rand: float = 0.5) -> float:
    """Wait before registration attempt number ``failures + 1`` after ``failures`` failures.

    ``first`` doubles with each failure up to ``most``; ``rand`` in [0, 1) spreads it by ±10 %.
    """
    base = min(most, first * 2.0 ** max(0, failures - 1))
    return base * (0.9 + 0.2 * rand)


def _result_of(exc: BaseException) -> str:
    """The metrics label of a failed registration."""
    if isinstance(exc, UpperError):
        if exc.status in (401, 407):
            return "auth_failed"
        if exc.status == 403:
            return "forbidden"
        if exc.status == 404:
            return "not_found"
        return "rejected" if exc.status else "unreachable"
    if isinstance(exc, TransactionError):
        return "timeout"
    return "unreachable"


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _granted(response: Response, asked: int) -> int:
    """The ``Expires`` of a 200 to our REGISTER (header, else the Contact's parameter), else ``asked``."""
    value = response.headers.get("Expires")
    if value is None:
        contact = response.headers.get("Contact") or ""
        _, _, rest = contact.lower().partition("expires=")
        value = rest.split(";", 1)[0].split(",", 1)[0].strip() or None
    try:
        granted = int(str(value).strip()) if value is not None else asked
    except ValueError:
        return asked
    return granted if 0 < granted <= asked else asked


class UpperLink:
    """Our registration with one upper, and the way requests to it are sent."""

    #: Seconds to wait for the upper's answer to a REGISTER or MESSAGE.
    request_timeout = 5.0

    def __init__(self, cascade: "Cascade", settings: UpperSettings, *, source: str = "config") -> None:
        self.cascade = cascade
        self.settings = settings
        #: ``"config"`` (TOML / Config) or ``"api"`` (saved in the store).
        self.source = source
        platform = cascade.platform
        self.local_id = settings.local_id or platform.sip_id
        self.local_domain = settings.local_domain or platform.domain
        self.state = LinkState.DISABLED if not settings.enabled else LinkState.STOPPED
        self.registered_at: float | None = None
        """Wall time of the last successful REGISTER (first one or refresh)."""
        self.online_since: float | None = None
        self.last_keepalive_at: float | None = None
        self.last_error: str | None = None
        self.last_error_at: float | None = None
        self.failures = 0
        """Failed registrations since the last success (drives the backoff)."""
        self.expires: int | None = None
        #: the upper's ``Min-Expires`` from a 423, asked for from then on
        self.min_expires: int | None = None
        """Registration length the upper granted (its ``Expires``), seconds."""
        self.next_attempt_at: float | None = None
        """Wall time of the next registration attempt while ``retrying``."""
        self._auth = DigestClient(settings.username or self.local_id, settings.password or "")
        self._auth_proxy = False
        self._call_id = ""
        self._from_tag = new_tag()
        self._cseq = 0
        self._sn = 0
        self._flow: Flow | None = None
        #: the IP address requests go to: ``host`` itself when it is one, else what it resolved to
        self.address: str | None = settings.host if _is_ip(settings.host) else None
        #: look ``host`` up again before the next request (``address`` stays the last answer meanwhile)
        self._stale = False
        self._task: asyncio.Task | None = None
        self._wake: asyncio.Event | None = None
        self._lost = False          # the TCP connection to the upper dropped
        self._refresh_now = False   # register again now (API)
        self._attempt_waiters: list[asyncio.Future[None]] = []

    def __repr__(self) -> str:
        return f"<UpperLink {self.upper_id} {self.state.value}>"

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
    def call_id(self) -> str:
        """Call-ID of the current registration (empty when not registered)."""
        return self._call_id

    @property
    def _extra(self) -> dict[str, str]:
        return {"device_id": self.upper_id, "call_id": self._call_id}

    # -- lifecycle --------------------------------------------------------------------------------
    def start(self) -> None:
        if not self.settings.enabled or self._task is not None:
            return
        self._wake = asyncio.Event()
        self._task = self.cascade.platform._spawn(self._run(), f"upper {self.upper_id}")

    async def stop(self, *, unregister: bool = True, close: bool = True) -> None:
        """End the link; ``unregister`` sends REGISTER Expires 0 when it is online; ``close``
        closes our TCP connection to the upper unless a call of the upper still uses it (a
        replacement link to the same address reuses it instead)."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        was_online = self.state is LinkState.ONLINE
        if unregister and was_online:
            try:
                await self.register(expires=0)
            except (Sip28181Error, OSError) as exc:
                log.info("unregister from upper failed: %s", exc, extra=self._extra)
        self.state = LinkState.DISABLED if not self.settings.enabled else LinkState.STOPPED
        self.next_attempt_at = None
        if close and self._flow is not None:
            flow, self._flow = self._flow, None
            if not any(c.flow.connection == flow.connection for c in self.cascade.media.list(self.upper_id)):
                self.cascade.platform.endpoint.transport.close_flow(flow)
        if was_online:
            self.cascade.link_changed(self, online=False, reason="stopped")
        self._release_waiters()

    async def register_now(self) -> None:
        """Register again without waiting (a refresh in the same Call-ID when online, else a new
        attempt ending the backoff wait); returns once that attempt is over, whatever its result."""
        if self._task is None or self._wake is None:
            raise UpperError(0, f"upper {self.upper_id} is {self.state.value}: not registering")
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._attempt_waiters.append(waiter)
        self._refresh_now = True
        self._wake.set()
        await waiter

    def connection_lost(self, flow: Flow) -> None:
        """The TCP connection ``flow`` was closed: if it was ours, the upper is dead to us."""
        if self._flow is None or flow.connection != self._flow.connection:
            return
        self._flow = None
        if self._task is not None and self._wake is not None and self.state is LinkState.ONLINE:
            self._lost = True
            self._wake.set()

    def _release_waiters(self) -> None:
        waiters, self._attempt_waiters = self._attempt_waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    async def _wait(self, delay: float) -> bool:
        """Sleep ``delay`` seconds or until woken (:meth:`register_now`, connection loss);
        True when woken."""
        assert self._wake is not None
        if not self._wake.is_set():
            try:
                async with asyncio.timeout(max(0.0, delay)):
                    await self._wake.wait()
            except TimeoutError:
                return False
        self._wake.clear()
        return True

    async def _run(self) -> None:
        s = self.settings
        delay = 0.0
        while True:
            if delay > 0:
                self.state = LinkState.RETRYING
                self.next_attempt_at = time.time() + delay
                log.info("registering with upper again in %.1f s", delay, extra=self._extra)
                await self._wait(delay)
            self.next_attempt_at = None
            self._lost = self._refresh_now = False
            try:
                await self.register()
            except (Sip28181Error, OSError) as exc:
                self._failed(exc)
                delay = backoff_delay(self.failures, s.retry_interval, s.retry_max, random.random())
                continue
            finally:
                self._release_waiters()
            self.failures = 0
            reason = await self._keep()
            lasted = time.time() - (self.online_since or time.time())
            self._down(reason)
            # Back at once after a long healthy spell; an upper that drops us right after
            # accepting us is retried with backoff instead of in a tight loop.
            if lasted >= s.retry_interval:
                delay = 0.0
            else:
                self.failures += 1
                delay = backoff_delay(self.failures, s.retry_interval, s.retry_max, random.random())

    def _refresh_after(self) -> float:
        """Refresh at 80 % of what the upper granted (it may grant less than we asked)."""
        return max(1.0, (self.expires or self.settings.register_interval) * 0.8)

    async def _keep(self) -> str:
        """Keepalives and refreshes until the upper is found dead; returns why."""
        s = self.settings
        loop = asyncio.get_running_loop()
        refresh_at = loop.time() + self._refresh_after()
        next_keepalive = loop.time() + s.keepalive_interval     # the REGISTER just proved it alive
        failures = 0
        while True:
            if self._lost:
                return "TCP connection to the upper lost"
            now = loop.time()
            if self._refresh_now or now >= refresh_at:
                self._refresh_now = False
                try:
                    await self.register()
                except (Sip28181Error, OSError) as exc:
                    self._count_failure(exc)
                    return f"refresh failed: {exc}"
                finally:
                    self._release_waiters()
                refresh_at = loop.time() + self._refresh_after()
                continue
            if now >= next_keepalive:
                next_keepalive = now + s.keepalive_interval
                try:
                    response = await self.keepalive()
                except (TransactionError, OSError) as exc:
                    failures += 1
                    log.info("keepalive %d/%d to upper failed: %s", failures, s.keepalive_timeout_count,
                             exc, extra=self._extra)
                else:
                    if response.status == 404:
                        return "upper answered 404 to a keepalive (it no longer knows us)"
                    if response.status == 200:
                        failures = 0
                    else:
                        failures += 1
                        log.info("keepalive %d/%d to upper answered %d %s", failures,
                                 s.keepalive_timeout_count, response.status, response.reason,
                                 extra=self._extra)
                if failures >= s.keepalive_timeout_count:
                    return f"{failures} keepalives in a row without a 200"
                continue
            await self._wait(min(next_keepalive, refresh_at) - loop.time())

    def _count_failure(self, exc: BaseException) -> None:
        self.cascade.platform._count("upper_registrations", _result_of(exc))

    def _failed(self, exc: BaseException) -> None:
        """A registration attempt failed: keep why, count it, wait longer next time."""
        self._count_failure(exc)
        self.failures += 1
        self.last_error = str(exc) or type(exc).__name__
        self.last_error_at = time.time()
        self.state = LinkState.RETRYING
        self._call_id = ""
        if not _is_ip(self.settings.host):
            self._stale = True      # the name may point elsewhere by the next attempt
        log.warning("registration with upper %s:%d failed (%d in a row): %s", self.settings.host,
                    self.settings.port, self.failures, self.last_error, extra=self._extra)

    def _down(self, reason: str) -> None:
        """The upper was online and is found dead."""
        self.last_error = reason
        self.last_error_at = time.time()
        was_online = self.state is LinkState.ONLINE
        self.state = LinkState.RETRYING
        log.warning("upper lost: %s", reason, extra=self._extra)
        self._call_id = ""          # the next registration is a new one
        self.online_since = None
        if was_online:
            self.cascade.link_changed(self, online=False, reason=reason)

    # -- signalling -------------------------------------------------------------------------------
    async def resolve(self) -> str:
        """The upper's IP address. A ``host`` that is a name is looked up once, without blocking
        the loop (a name in a flow would cost a blocking lookup per datagram), and again only
        after a failed registration; :class:`UpperError` when it does not resolve. The last
        address is kept until a new lookup answers: the upper's requests are checked against it."""
        if self.address is not None and not self._stale:
            return self.address
        s = self.settings
        kind = socket.SOCK_DGRAM if s.transport == "udp" else socket.SOCK_STREAM
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(s.host, s.port, type=kind)
        except (socket.gaierror, UnicodeError) as exc:
            raise UpperError(0, f"host {s.host} not resolved: {exc}") from None
        family = self._family()
        usable = [info for info in infos if family is None or info[0] == family]
        if not usable:
            raise UpperError(0, f"host {s.host} has no address our SIP socket can reach")
        self.address = str(usable[0][4][0])
        self._stale = False
        log.info("upper host %s is %s", s.host, self.address, extra=self._extra)
        return self.address

    def _family(self) -> int | None:
        """The address family of our SIP listener (None: any)."""
        host = self.cascade.platform.config.sip_host
        if not _is_ip(host):
            return None
        return socket.AF_INET6 if ipaddress.ip_address(host).version == 6 else socket.AF_INET

    async def flow(self) -> Flow:
        """Where requests to the upper go (a TCP connection is opened or reused)."""
        s = self.settings
        endpoint = self.cascade.platform.endpoint
        address = await self.resolve()
        if s.transport == "udp":
            return Flow("UDP", address, s.port)
        if self._flow is None or self._flow.connection not in endpoint.transport._connections:
            self._flow = await endpoint.transport.connect(address, s.port)
        return self._flow

    def _contact(self) -> str:
        endpoint = self.cascade.platform.endpoint
        transport = ";transport=tcp" if self.settings.transport == "tcp" else ""
        return f"<sip:{self.local_id}@{endpoint.advertised_host}:{endpoint.port}{transport}>"

    async def register(self, expires: int | None = None) -> Response:
        """REGISTER (answering a digest challenge); :class:`UpperError` if refused.

        A refresh keeps the Call-ID of the registration (CSeq grows); after a failure or an
        unregistration the next REGISTER starts a new one."""
        expires = self.settings.register_interval if expires is None else expires
        refresh = self.state is LinkState.ONLINE and bool(self._call_id)
        if expires and not refresh:
            self.state = LinkState.REGISTERING
        if not self._call_id:
            self._call_id = new_call_id(self.cascade.platform.endpoint.advertised_host)
        flow = await self.flow()
        if expires and self.min_expires:
            expires = max(expires, self.min_expires)
        response = await self._register_once(flow, expires)
        for _ in range(MAX_INTERVAL_RETRIES):
            if response.status != 423 or not expires:
                break
            # 423 Interval Too Brief: ask again at once for what the upper accepts (RFC 3261 §10.2.8)
            expires = self._min_expires_of(response, expires)
            response = await self._register_once(flow, expires)
        if response.status != 200:
            raise UpperError(response.status, response.reason)
        if expires == 0:
            self._call_id = ""
            self.cascade.platform._count("upper_registrations", "unregistered")
            log.info("unregistered from upper", extra=self._extra)
            return response
        self.expires = _granted(response, expires)
        self.state = LinkState.ONLINE
        self.registered_at = time.time()
        self.last_error = None
        self.failures = 0
        self.cascade.platform._count("upper_registrations", "refreshed" if refresh else "ok")
        if refresh:
            log.debug("registration with upper refreshed", extra=self._extra)
        else:
            self.online_since = self.registered_at
            log.info("registered with upper %s:%d over %s", self.settings.host, self.settings.port,
                     self.settings.transport.upper(), extra=self._extra)
            self.cascade.link_changed(self, online=True, reason="registered")
        return response

    async def _register_once(self, flow: Flow, expires: int) -> Response:
        """One REGISTER, and its digest challenge answered once."""
        response = await self._send_register(flow, expires, authorize=self._auth.ready)
        if response.status in (401, 407):
            # First contact, or our nonce went stale: answer this challenge once.
            self._challenge(response)
            response = await self._send_register(flow, expires, authorize=True)
            if response.status in (401, 407):
                raise UpperError(response.status, f"{response.reason} (credentials refused)")
        return response

    def _min_expires_of(self, response: Response, asked: int) -> int:
        """The ``Min-Expires`` of a 423, remembered for later REGISTERs; :class:`UpperError` when
        it is missing, not above what we asked or beyond :data:`MAX_EXPIRES`."""
        value = (response.headers.get("Min-Expires") or "").strip()
        if not value.isdigit():
            raise UpperError(423, f"{response.reason} without a usable Min-Expires ({value[:20]!r})")
        least = int(value)
        if least <= asked or least > MAX_EXPIRES:
            raise UpperError(423, f"{response.reason}: Min-Expires {least} unusable after asking {asked}")
        log.info("upper wants registrations of at least %d s (asked %d)", least, asked, extra=self._extra)
        self.min_expires = least
        return least

    def _challenge(self, response: Response) -> None:
        header = response.headers.get("WWW-Authenticate") or response.headers.get("Proxy-Authenticate")
        if not header:
            raise UpperError(response.status, "challenge without WWW-Authenticate")
        if not self.settings.password:
            raise UpperError(response.status, "the upper asks for a password and none is set")
        try:
            self._auth.set_challenge(header)
        except ValueError:
            raise UpperError(response.status, f"unusable challenge {header[:80]!r}") from None

    async def _send_register(self, flow: Flow, expires: int, authorize: bool) -> Response:
        self._cseq += 1
        extra: list[tuple[str, object]] = [("Contact", self._contact()), ("Expires", expires)]
        if authorize:
            header = "Proxy-Authorization" if self._auth_proxy else "Authorization"
            extra.append((header, self._auth.authorization("REGISTER", self.upper_uri)))
        request = self.cascade.platform.endpoint.build_request(
            "REGISTER", self.upper_uri, from_uri=self.local_uri, to_uri=self.local_uri, flow=flow,
            call_id=self._call_id, from_tag=self._from_tag, cseq=self._cseq, extra=extra)
        response = await self.cascade.platform.endpoint.request(request, flow, timeout=self.request_timeout)
        if response.status in (401, 407):
            self._auth_proxy = response.status == 407
        return response

    def next_sn(self) -> int:
        self._sn += 1
        return self._sn

    async def keepalive(self) -> Response:
        """One ``Notify Keepalive``; unanswered by the time the next is due counts as lost."""
        xml = (f"<Notify>\r\n<CmdType>Keepalive</CmdType>\r\n<SN>{self.next_sn()}</SN>\r\n"
               f"<DeviceID>{self.local_id}</DeviceID>\r\n<Status>OK</Status>\r\n</Notify>\r\n")
        timeout = min(self.request_timeout, max(0.5, float(self.settings.keepalive_interval)))
        response = await self.send_manscdp(xml, timeout=timeout)
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
        return await self.cascade.platform.endpoint.request(request, flow, timeout=timeout or self.request_timeout)

    def status(self) -> dict[str, object]:
        """What the API shows of this link (never the password)."""
        s = self.settings
        return {
            "sip_id": s.sip_id, "name": s.name, "domain": s.domain, "host": s.host, "port": s.port,
            "transport": s.transport, "local_id": self.local_id, "enabled": s.enabled,
            "source": self.source, "state": self.state.value, "online": self.online,
            "expires": self.expires, "min_expires": self.min_expires, "registered_at": self.registered_at, "online_since": self.online_since,
            "last_keepalive_at": self.last_keepalive_at, "last_error": self.last_error,
            "last_error_at": self.last_error_at, "failures": self.failures,
            "next_attempt_at": self.next_attempt_at,
        }
