"""423 Interval Too Brief from an upper: a scripted registrar on real sockets against a real city.

The city asks again at once with the upper's Min-Expires (and keeps asking for that much), within
a bounded number of tries; a 423 it cannot satisfy is a failed registration like any refusal.
"""

from __future__ import annotations

import contextlib
import time

import aiohttp
import pytest

from sip28181.cascade.link import MAX_EXPIRES, MAX_INTERVAL_RETRIES, LinkState
from sip28181.endpoint import SipEndpoint
from sip28181.server import Server
from sip28181.sip.auth import DigestServer, Verdict
from sip28181.sip.dialog import new_tag
from sip28181.sip.message import Request, Response
from sip28181.transport import Flow

from ..integration.conftest import Api, make_config, wait_for

CITY = "44010000002000000001"
UPPER = "44000000002000000001"
SECRET = "prov-secret"


class IntervalUpper:
    """A registrar that wants registrations of at least ``min_expires`` seconds.

    ``min_header`` says what its 423 carries: an int (the Min-Expires value), a callable of the
    Expires asked (an upper that always wants more), or None (no Min-Expires at all)."""

    def __init__(self, min_expires: int, *, min_header=None, password: str | None = None) -> None:
        self.endpoint = SipEndpoint(self._on_request, user_agent="interval-upper")
        self.min_expires = min_expires
        self.min_header = min_expires if min_header is None else min_header
        self.password = password
        self.digest = DigestServer("4400000000")
        self.registers: list[Request] = []
        self.answers: list[int] = []

    def _on_request(self, request: Request, flow: Flow) -> None:
        if request.method != "REGISTER":
            self.endpoint.respond(Response.for_request(request, 200, to_tag=new_tag()))
            return
        self.registers.append(request)
        response = self._answer(request)
        self.answers.append(response.status)
        self.endpoint.respond(response)

    def _answer(self, request: Request) -> Response:
        if self.password is not None:
            result = self.digest.verify(request.headers.get("Authorization"), "REGISTER", CITY,
                                        lambda _user: self.password, time.monotonic())
            if result.verdict is not Verdict.OK:
                response = Response.for_request(request, 401, to_tag=new_tag())
                response.headers.add("WWW-Authenticate", self.digest.challenge(time.monotonic()))
                return response
        expires = request.expires
        if expires and expires < self.min_expires:
            response = Response.for_request(request, 423, "Interval Too Brief", to_tag=new_tag())
            header = self.min_header(expires) if callable(self.min_header) else self.min_header
            if header is not False:
                response.headers.add("Min-Expires", header)
            return response
        response = Response.for_request(request, 200, to_tag=new_tag())
        response.headers.add("Expires", expires if expires is not None else 3600)
        return response

    def asked(self) -> list[int | None]:
        return [r.expires for r in self.registers]


@contextlib.asynccontextmanager
async def city_with(tmp_path, upper: IntervalUpper, **upper_kw):
    await upper.endpoint.start("127.0.0.1", 0, tcp=False)
    settings = {"sip_id": UPPER, "host": "127.0.0.1", "port": upper.endpoint.port, "keepalive_interval": 30,
                "register_interval": 3600, "retry_interval": 60, "retry_max": 60, **upper_kw}
    city = Server(make_config(tmp_path, sip_id=CITY, upper=(settings,)))
    await city.start()
    try:
        yield city, city.platform.cascade.link(UPPER)
    finally:
        await city.stop()
        await upper.endpoint.close()


@pytest.mark.parametrize("password", [None, SECRET])
async def test_423_is_retried_at_once_with_min_expires(tmp_path, password):
    upper = IntervalUpper(7200, password=password)
    async with city_with(tmp_path, upper, password=password) as (city, link):
        await wait_for(lambda: link.online, timeout=10)
        assert link.expires == 7200 and link.min_expires == 7200
        assert link.failures == 0 and link.last_error is None
        assert 423 in upper.answers and upper.answers[-1] == 200
        assert upper.asked()[upper.answers.index(423)] == 3600
        assert upper.asked()[-1] == 7200
        # one registration: the same Call-ID throughout, CSeq growing
        assert len({r.call_id for r in upper.registers}) == 1
        cseqs = [r.cseq.number for r in upper.registers]
        assert cseqs == sorted(set(cseqs))
        if password is not None:
            assert upper.registers[-1].headers.get("Authorization")

        async with aiohttp.ClientSession() as session:
            status, body = await Api(session, f"http://127.0.0.1:{city.http_port}").get(f"/api/v1/uppers/{UPPER}")
        assert status == 200 and (body["min_expires"], body["expires"], body["state"]) == (7200, 7200, "online")
        # a refresh asks for the Min-Expires straight away: no second 423
        before = len(upper.registers)
        await link.register_now()
        assert link.online and upper.answers[before:] == [200] and upper.asked()[before:] == [7200]


@pytest.mark.parametrize("min_header, why", [
    (False, "without a usable Min-Expires"),                    # no Min-Expires header
    ("soon", "without a usable Min-Expires"),                   # not a number
    (1800, "unusable after asking 3600"),                       # not more than we asked
    (MAX_EXPIRES + 1, f"Min-Expires {MAX_EXPIRES + 1} unusable"),
])
async def test_unusable_423_is_a_failed_registration(tmp_path, min_header, why):
    upper = IntervalUpper(7200, min_header=min_header)
    async with city_with(tmp_path, upper) as (city, link):
        await wait_for(lambda: link.state is LinkState.RETRYING, timeout=10)
        assert not link.online and link.failures == 1
        assert link.last_error.startswith("423") and why in link.last_error
        assert upper.answers == [423] and link.min_expires is None


async def test_423_retries_are_bounded(tmp_path):
    # an upper that wants more each time it is asked
    upper = IntervalUpper(10**9, min_header=lambda asked: asked + 1)
    async with city_with(tmp_path, upper) as (city, link):
        await wait_for(lambda: link.state is LinkState.RETRYING, timeout=10)
        assert upper.answers == [423] * (1 + MAX_INTERVAL_RETRIES)
        assert upper.asked() == [3600 + n for n in range(1 + MAX_INTERVAL_RETRIES)]
        assert link.last_error.startswith("423") and not link.online
