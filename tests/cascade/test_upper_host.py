"""The upper's ``host``: an IP address is used as it is; a name is looked up once, off the event
loop, and requests go to the address it resolved to; a GB domain is refused as a host.

A city registering to a province, both real servers on loopback.
"""

from __future__ import annotations

import socket

import aiohttp
import pytest

from sip28181.errors import ConfigError
from sip28181.server import Server

from ..integration.conftest import Api, loop_errors, make_config, wait_for  # noqa: F401  (autouse: no leaked task errors)

CITY = "44010000002000000001"
PROVINCE = "44000000002000000001"


@pytest.mark.parametrize("transport", ["udp", "tcp"])
async def test_a_host_name_is_resolved_once_and_requests_go_to_its_address(tmp_path, monkeypatch, transport):
    lookups: list[str] = []
    real = socket.getaddrinfo

    def counting(host, *args, **kw):
        if host in ("localhost", "upper.invalid"):
            lookups.append(host)
        if host == "upper.invalid":
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return real(host, *args, **kw)
    monkeypatch.setattr(socket, "getaddrinfo", counting)

    province = Server(make_config(tmp_path / "p", sip_id=PROVINCE, password="prov-secret"))
    await province.start()
    try:
        city = Server(make_config(tmp_path / "c", sip_id=CITY, upper=({
            "sip_id": PROVINCE, "host": "localhost", "port": province.platform.sip_port,
            "transport": transport, "password": "prov-secret", "keepalive_interval": 1,
        },)))
        await city.start()
        try:
            link = city.platform.cascade.link(PROVINCE)
            await wait_for(lambda: link.online)
            assert link.address == "127.0.0.1"
            assert (await link.flow()).host == "127.0.0.1"       # never the name
            state = await wait_for(lambda: province.platform.registry.get(CITY))
            assert state.status == "online"
            await wait_for(lambda: link.last_keepalive_at is not None)
            keepalive = link.last_keepalive_at
            await wait_for(lambda: link.last_keepalive_at != keepalive)
            assert lookups == ["localhost"]                       # once, however many requests

            # a name that does not resolve: the link says so and retries, nothing blocks
            settings = link.settings.to_dict() | {"host": "upper.invalid", "retry_interval": 0.1, "retry_max": 0.2}
            link = await city.platform.cascade.update(settings)
            await wait_for(lambda: link.failures >= 2)
            assert "upper.invalid not resolved" in link.last_error
            assert not link.online and lookups.count("upper.invalid") >= 2
        finally:
            await city.stop()
    finally:
        await province.stop()


@pytest.mark.parametrize("host", ["4400000000", "44010000002000000001", "1.2.3", "bad host", "-x.example"])
def test_a_gb_domain_or_garbage_is_no_host(tmp_path, host):
    from sip28181.cascade.settings import parse_upper

    with pytest.raises(ConfigError, match="host must be an IP address or a DNS name"):
        parse_upper({"sip_id": PROVINCE, "host": host})
    assert parse_upper({"sip_id": PROVINCE, "host": "::1"}).host == "::1"


async def test_the_api_refuses_a_gb_domain_as_host(tmp_path):
    server = Server(make_config(tmp_path, sip_id=CITY))
    await server.start()
    try:
        async with aiohttp.ClientSession() as session:
            api = Api(session, f"http://127.0.0.1:{server.http_port}")
            status, body = await api.call("POST", "/api/v1/uppers", json={"sip_id": PROVINCE, "host": "4400000000"})
            assert status == 400, body
            assert "host" in str(body)
            assert server.platform.cascade.links == {}
    finally:
        await server.stop()
