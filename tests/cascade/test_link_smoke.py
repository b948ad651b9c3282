"""A city platform registers to a province platform and keeps alive (both real servers)."""

from __future__ import annotations

import pytest

from sip28181.server import Server

from ..integration.conftest import make_config, wait_for

CITY = "44010000002000000001"
PROVINCE = "44000000002000000001"


@pytest.mark.parametrize("transport", ["udp", "tcp"])
async def test_city_registers_with_province(tmp_path, transport):
    province = Server(make_config(tmp_path / "p", sip_id=PROVINCE, password="prov-secret"))
    await province.start()
    try:
        city = Server(make_config(tmp_path / "c", sip_id=CITY, upper=({
            "sip_id": PROVINCE, "host": "127.0.0.1", "port": province.platform.sip_port,
            "transport": transport, "password": "prov-secret", "keepalive_interval": 1,
        },)))
        await city.start()
        try:
            link = city.platform.cascade.link(PROVINCE)
            await wait_for(lambda: link.online)
            state = await wait_for(lambda: province.platform.registry.get(CITY))
            assert state.registered and state.status == "online"
            assert state.transport.lower() == transport
            await wait_for(lambda: link.last_keepalive_at is not None)
        finally:
            await city.stop()
        await wait_for(lambda: not province.platform.registry.get(CITY).registered)
    finally:
        await province.stop()
