"""Registration lifecycle of a city platform with its province, both real servers on loopback:
refresh, restarts on either side, a city that dies, a wrong password, an unreachable upper."""

from __future__ import annotations

import contextlib
import socket

import aiohttp
import pytest

from sip28181.cascade.link import LinkState, backoff_delay
from sip28181.server import Server

from ..integration.conftest import TOKEN, Api, make_config, wait_for

CITY = "44010000002000000001"
PROVINCE = "44000000002000000001"
SECRET = "prov-secret"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def province_config(tmp_path, port: int = 0, **kw):
    return make_config(tmp_path / "p", sip_id=PROVINCE, password=SECRET, sip_port=port,
                       keepalive_interval=1, keepalive_count=2, **kw)


def city_config(tmp_path, port: int, transport: str = "udp", **upper):
    settings = {"sip_id": PROVINCE, "host": "127.0.0.1", "port": port, "transport": transport,
                "password": SECRET, "keepalive_interval": 1, "keepalive_timeout_count": 2,
                "retry_interval": 0.2, "retry_max": 1.0, **upper}
    return make_config(tmp_path / "c", sip_id=CITY, upper=(settings,))


@contextlib.asynccontextmanager
async def running(config):
    server = Server(config)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


async def metric(server: Server, name: str) -> float:
    async with aiohttp.ClientSession() as session:
        status, text = await Api(session, f"http://127.0.0.1:{server.http_port}").get("/metrics")
    assert status == 200
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{") and line.split(" ")[0] == name:
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_backoff_doubles_up_to_the_limit_with_jitter():
    assert [backoff_delay(n, 1.0, 10.0) for n in range(1, 7)] == [1.0, 2.0, 4.0, 8.0, 10.0, 10.0]
    assert backoff_delay(1, 60.0, 600.0, 0.0) == pytest.approx(54.0)
    assert backoff_delay(1, 60.0, 600.0, 0.999999) == pytest.approx(66.0, abs=1e-3)
    assert backoff_delay(20, 60.0, 600.0, 1.0) <= 660.0


async def test_refresh_stays_in_the_same_call_id(tmp_path):
    async with running(province_config(tmp_path)) as province:
        async with running(city_config(tmp_path, province.platform.sip_port)) as city:
            link = city.platform.cascade.link(PROVINCE)
            await wait_for(lambda: link.online)
            state = await wait_for(lambda: province.platform.registry.get(CITY))
            call_id, first = state.call_id, link.registered_at
            assert call_id == link.call_id
            await link.register_now()                   # what the API's register does
            assert link.online and link.registered_at > first
            assert province.platform.registry.get(CITY).call_id == call_id
            assert await metric(city, 'sip28181_upper_registrations_total{result="refreshed"}') >= 1
            assert await metric(city, 'sip28181_upper_registrations_total{result="ok"}') == 1
            assert await metric(city, "sip28181_uppers_online") == 1


@pytest.mark.parametrize("transport", ["udp", "tcp"])
async def test_province_restart_city_registers_again(tmp_path, transport):
    port = free_port()
    province = Server(province_config(tmp_path, port))
    await province.start()
    async with running(city_config(tmp_path, port, transport)) as city:
        link = city.platform.cascade.link(PROVINCE)
        try:
            await wait_for(lambda: link.online)
            first_call_id = link.call_id
        finally:
            await province.stop()
        # UDP: keepalives go unanswered; TCP: the connection drops.
        await wait_for(lambda: not link.online, timeout=10)
        assert link.last_error and ("keepalive" in link.last_error or "TCP connection" in link.last_error)
        assert link.state in (LinkState.RETRYING, LinkState.REGISTERING)
        async with running(province_config(tmp_path, port)) as province:
            await wait_for(lambda: link.online, timeout=10)
            state = await wait_for(lambda: (s := province.platform.registry.get(CITY)) and s.registered and s)
            assert state.status == "online" and state.transport.lower() == transport
            assert link.call_id != first_call_id            # a new registration, not a refresh
            assert link.last_error is None
            assert await metric(city, "sip28181_uppers_online") == 1


async def test_city_restart_province_sees_it_offline_then_online(tmp_path):
    async with running(province_config(tmp_path)) as province:
        registry = province.platform.registry
        config = city_config(tmp_path, province.platform.sip_port)
        async with running(config) as city:
            await wait_for(lambda: city.platform.cascade.link(PROVINCE).online)
            await wait_for(lambda: registry.get(CITY) and registry.get(CITY).status == "online")
        # a clean stop unregisters at once
        assert not registry.get(CITY).registered
        await wait_for(lambda: registry.get(CITY).status == "offline")
        async with running(config) as city:
            await wait_for(lambda: city.platform.cascade.link(PROVINCE).online)
            await wait_for(lambda: registry.get(CITY).registered and registry.get(CITY).status == "online")


async def test_city_that_dies_goes_offline_by_keepalive_timeout(tmp_path):
    async with running(province_config(tmp_path)) as province:
        registry = province.platform.registry
        config = city_config(tmp_path, province.platform.sip_port)
        async with running(config) as city:
            link = city.platform.cascade.link(PROVINCE)
            await wait_for(lambda: link.online)
            await wait_for(lambda: registry.get(CITY) and registry.get(CITY).status == "online")
            await link.stop(unregister=False)           # dies: no REGISTER Expires 0
            assert registry.get(CITY).registered        # the province was not told
            await wait_for(lambda: registry.get(CITY).status == "offline", timeout=10)
        async with running(config) as city:
            await wait_for(lambda: city.platform.cascade.link(PROVINCE).online)
            await wait_for(lambda: registry.get(CITY).status == "online")


async def test_upper_that_forgets_us_answers_404_and_we_register_again(tmp_path):
    async with running(province_config(tmp_path)) as province:
        async with running(city_config(tmp_path, province.platform.sip_port)) as city:
            link = city.platform.cascade.link(PROVINCE)
            await wait_for(lambda: link.online)
            seen: list[tuple[bool, str]] = []
            city.platform.cascade.listeners.append(lambda _link, online, reason: seen.append((online, reason)))
            await province.platform.delete_device(CITY)
            await wait_for(lambda: (s := province.platform.registry.get(CITY)) and s.registered, timeout=10)
            await wait_for(lambda: link.online)
            assert seen[0][0] is False and "404" in seen[0][1]
            assert seen[-1] == (True, "registered")


async def test_wrong_password_backs_off_and_keeps_the_error(tmp_path):
    async with running(province_config(tmp_path)) as province:
        async with running(city_config(tmp_path, province.platform.sip_port, password="wrong")) as city:
            link = city.platform.cascade.link(PROVINCE)
            await wait_for(lambda: link.failures >= 3, timeout=10)
            assert link.state in (LinkState.RETRYING, LinkState.REGISTERING)
            assert not link.online and link.last_error.startswith("403")
            assert link.last_error_at is not None
            await wait_for(lambda: link.next_attempt_at is not None)
            assert not (province.platform.registry.get(CITY) or None) or \
                not province.platform.registry.get(CITY).registered
            assert await metric(city, 'sip28181_upper_registrations_total{result="forbidden"}') >= 3
            assert await metric(city, "sip28181_uppers_online") == 0


@pytest.mark.parametrize("transport", ["udp", "tcp"])
async def test_unreachable_upper_is_retried(tmp_path, transport):
    port = free_port()                                  # nobody listens there
    async with running(city_config(tmp_path, port, transport)) as city:
        link = city.platform.cascade.link(PROVINCE)
        link.request_timeout = 0.3
        await wait_for(lambda: link.failures >= 2, timeout=10)
        assert link.state in (LinkState.RETRYING, LinkState.REGISTERING) and link.last_error
        result = "timeout" if transport == "udp" else "unreachable"
        assert await metric(city, f'sip28181_upper_registrations_total{{result="{result}"}}') >= 2
        # the province appears on that port: the city gets there by itself
        async with running(province_config(tmp_path, port)) as province:
            await wait_for(lambda: link.online, timeout=10)
            assert province.platform.registry.get(CITY).registered
            assert link.failures == 0


async def test_the_granted_expires_sets_the_refresh(tmp_path):
    # the province grants at most 120 s although the city asks for an hour
    async with running(province_config(tmp_path, register_expires_max=120, register_expires_default=120)) as province:
        async with running(city_config(tmp_path, province.platform.sip_port, register_interval=3600)) as city:
            link = city.platform.cascade.link(PROVINCE)
            await wait_for(lambda: link.online)
            assert link.expires == 120 and link._refresh_after() == pytest.approx(96.0)
            assert province.platform.registry.get(CITY).expires == 120



async def test_the_refresh_happens_before_the_granted_expiry(tmp_path):
    # the province grants 3 s although the city asks for an hour: the city refreshes by itself
    config = province_config(tmp_path, register_expires_min=1, register_expires_max=3, register_expires_default=3)
    async with running(config) as province:
        async with running(city_config(tmp_path, province.platform.sip_port, register_interval=3600)) as city:
            link = city.platform.cascade.link(PROVINCE)
            await wait_for(lambda: link.online)
            assert link.expires == 3
            call_id, first = link.call_id, link.registered_at
            seen = province.platform.registry.get(CITY).expires_at
            # the province received the refresh, nobody asked for it
            await wait_for(lambda: link.registered_at > first
                           and province.platform.registry.get(CITY).expires_at > seen, timeout=10)
            assert link.call_id == call_id and link.online
            assert province.platform.registry.get(CITY).call_id == call_id
            assert await metric(city, 'sip28181_upper_registrations_total{result="refreshed"}') >= 1
            # refreshed again and again: the province never saw the registration lapse
            second = link.registered_at
            await wait_for(lambda: link.registered_at > second, timeout=10)
            assert province.platform.registry.get(CITY).status == "online"
