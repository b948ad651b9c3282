"""REGISTER handling (PROTOCOL §3): digest, expiry bounds, unregister, NAT-aware contact.

Sans-IO: ``handle()`` takes the request, the flow it came on and the clocks, and returns the response
with the events it caused. The platform sends, publishes and persists.
"""

from __future__ import annotations

import datetime as _dt
import logging
from dataclasses import dataclass, field
from typing import Callable

from ..errors import RemoteProtocolError
from ..ids import is_gb_id
from ..sip.auth import DigestServer, FailureThrottle, Verdict
from ..sip.message import Request, Response
from ..transport import Flow
from .events import DeviceRegistered, DeviceUnregistered, RegistrationRefused
from .presence import Presence
from .registry import Registry

log = logging.getLogger("sip28181.registrar")


_date_second: list = [None, ""]      # (whole second, formatted up to the seconds): one per second


def gb_date(wall: float) -> str:
    """The GB time-sync Date format ``yyyy-MM-ddTHH:mm:ss.SSS`` in local time (PROTOCOL §3.4)."""
    second = int(wall)
    micro = round((wall - second) * 1_000_000)      # rounded as datetime.fromtimestamp() does
    if micro >= 1_000_000:
        second, micro = second + 1, micro - 1_000_000
    if _date_second[0] != second:
        _date_second[1] = _dt.datetime.fromtimestamp(second).strftime("%Y-%m-%dT%H:%M:%S.")
        _date_second[0] = second
    return f"{_date_second[1]}{micro // 1000:03d}"


@dataclass(slots=True)
class RegistrarSettings:
    realm: str
    password: str | None = "12345678"                       # default device password; None: per-device only
    passwords: dict[str, str] = field(default_factory=dict)  # per-device passwords
    expires_min: int = 60
    expires_max: int = 86400
    expires_default: int = 3600
    nonce_lifetime: float = 300.0
    qop: bool = True
    date_header: bool = True
    max_failures: int = 5
    failure_window: float = 60.0
    block_seconds: float = 300.0


@dataclass(slots=True)
class RegisterOutcome:
    response: Response
    events: list[object]
    result: str             # ok, unregistered, challenge, forbidden, throttled, bad-request


class Registrar:
    def __init__(self, settings: RegistrarSettings, registry: Registry, presence: Presence,
                 to_tag: Callable[[], str]) -> None:
        self.settings = settings
        self.registry = registry
        self.presence = presence
        self.digest = DigestServer(settings.realm, qop=settings.qop, nonce_lifetime=settings.nonce_lifetime)
        self.throttle = FailureThrottle(settings.max_failures, settings.failure_window, settings.block_seconds)
        self._to_tag = to_tag

    def password_for(self, device_id: str) -> str | None:
        return self.settings.passwords.get(device_id, self.settings.password)

    def handle(self, request: Request, flow: Flow, now: float, wall: float) -> RegisterOutcome:
        s = self.settings
        device_id = request.from_user or ""
        if not is_gb_id(device_id):
            return self._refuse(request, flow, wall, 400, "From user is not a 20-digit device ID", "bad-request", device_id)
        for key in (device_id, flow.host):
            if self.throttle.blocked_until(key, now) is not None:
                resp = self._reply(request, 403, "Too many failed authentications")
                resp.headers.add("Retry-After", int(s.block_seconds))
                return RegisterOutcome(resp, [RegistrationRefused(device_id, flow.host, flow.port, 403,
                                                                  "throttled", wall)], "throttled")
        expires = self._expires(request)
        if 0 < expires < s.expires_min:
            resp = self._reply(request, 423, "Interval Too Brief")
            resp.headers.add("Min-Expires", s.expires_min)
            return RegisterOutcome(resp, [], "bad-request")
        expires = min(expires, s.expires_max)

        result = self.digest.verify(request.headers.get("Authorization"), "REGISTER", device_id,
                                    self.password_for, now)
        if result.verdict is Verdict.CHALLENGE or result.verdict is Verdict.STALE:
            resp = self._reply(request, 401)
            resp.headers.add("WWW-Authenticate", self.digest.challenge(now, stale=result.verdict is Verdict.STALE))
            return RegisterOutcome(resp, [], "challenge")
        if result.verdict is Verdict.FORBIDDEN:
            events: list[object] = [RegistrationRefused(device_id, flow.host, flow.port, 403, result.reason, wall)]
            blocked = self.throttle.failure(device_id, now)
            blocked = self.throttle.failure(flow.host, now) or blocked
            log.warning("REGISTER refused: %s%s", result.reason, " (now throttled)" if blocked else "",
                        extra={"device_id": device_id, "call_id": request.call_id})
            reason = "Wrong password" if result.reason == "wrong password" else result.reason.capitalize()
            return RegisterOutcome(self._reply(request, 403, reason), events, "forbidden")

        self.throttle.success(device_id)
        self.throttle.success(flow.host)
        if expires == 0:
            return self._unregister(request, device_id, wall)
        return self._register(request, flow, device_id, expires, now, wall)

    def _register(self, request: Request, flow: Flow, device_id: str, expires: int, now: float,
                  wall: float) -> RegisterOutcome:
        state = self.registry.get_or_create(device_id, wall)
        refresh = state.registered and state.status == "online"
        # kept as sent, for display: requests to the device follow the observed flow, not this
        contacts = request.headers.get_all("Contact")
        contact = contacts[0] if contacts and contacts[0] != "*" else None
        changed = (state.flow != flow or state.contact != contact or state.expires != expires
                   or not state.registered)
        state.registered = True
        state.flow = flow
        state.contact = contact
        state.expires = expires
        state.expires_at = now + expires
        state.call_id = request.call_id
        state.user_agent = request.headers.get("User-Agent") or state.user_agent
        state.gb_version = request.headers.get("X-GB-Ver") or state.gb_version
        if not refresh:
            state.registered_at = wall
        if changed or not refresh:
            self.registry.mark(device_id)
        events: list[object] = [DeviceRegistered(device_id, flow.transport, flow.host, flow.port, expires, refresh, wall)]
        events += self.presence.went_online(state, now, wall, "register")
        resp = self._reply(request, 200)
        if contact:
            resp.headers.add("Contact", f"{contact};expires={expires}" if "expires=" not in contact else contact)
        resp.headers.add("Expires", expires)
        if self.settings.date_header:
            resp.headers.add("Date", gb_date(wall))
        if state.gb_version:
            resp.headers.add("X-GB-Ver", state.gb_version)
        return RegisterOutcome(resp, events, "ok")

    def _unregister(self, request: Request, device_id: str, wall: float) -> RegisterOutcome:
        state = self.registry.get(device_id)
        events: list[object] = [DeviceUnregistered(device_id, wall)]
        if state is not None:
            state.registered = False
            state.expires_at = None
            self.registry.mark(device_id)
            events += self.presence.went_offline(state, wall, "unregistered")
        resp = self._reply(request, 200)
        resp.headers.add("Expires", 0)
        if self.settings.date_header:
            resp.headers.add("Date", gb_date(wall))
        return RegisterOutcome(resp, events, "unregistered")

    def _expires(self, request: Request) -> int:
        """Expires header, else the Contact's ``expires`` parameter, else the default (§3.7)."""
        value = request.expires
        if value is not None:
            return value
        for contact in request.contacts:
            param = contact.params.get("expires")
            if param is not None:
                if not (param.isascii() and param.isdigit()):
                    raise RemoteProtocolError(f"bad Contact expires {param[:20]!r}")
                return int(param)
        return self.settings.expires_default

    def _reply(self, request: Request, status: int, reason: str | None = None) -> Response:
        return Response.for_request(request, status, reason, to_tag=self._to_tag())

    def _refuse(self, request: Request, flow: Flow, wall: float, status: int, reason: str, result: str,
                device_id: str) -> RegisterOutcome:
        return RegisterOutcome(self._reply(request, status, reason),
                               [RegistrationRefused(device_id, flow.host, flow.port, status, reason, wall)], result)
