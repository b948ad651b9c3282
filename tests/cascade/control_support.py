"""A device simulator under a city platform registered to a province platform, all on loopback."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import aiohttp

from sip28181.device.simulator import DeviceSimulator
from sip28181.server import Server

from ..integration.conftest import Api, make_config, wait_for

CITY = "44010000002000000001"
PROVINCE = "44000000002000000001"
DEVICE = "44010000001320000001"
UPPER_PASSWORD = "prov-secret"
DEVICE_PASSWORD = "dev-secret"


@dataclass
class Chain:
    province: Server
    city: Server
    device: DeviceSimulator
    province_api: Api
    city_api: Api

    @property
    def channels(self) -> list[str]:
        return self.device.management.channel_ids


@contextlib.asynccontextmanager
async def city_chain(tmp_path, *, upper: dict | None = None, city: dict | None = None, province: dict | None = None,
                     channels: int = 2, management: dict | None = None):
    """Province <- city <- simulated NVR: yields once the city's catalog has the device's channels
    and the city is registered with the province."""
    province_server = Server(make_config(tmp_path / "p", sip_id=PROVINCE, password=UPPER_PASSWORD,
                                         **(province or {})))
    await province_server.start()
    try:
        settings = {"sip_id": PROVINCE, "host": "127.0.0.1", "port": province_server.platform.sip_port,
                    "password": UPPER_PASSWORD, "keepalive_interval": 5, **(upper or {})}
        city_server = Server(make_config(tmp_path / "c", sip_id=CITY, password=DEVICE_PASSWORD,
                                         catalog_query_delay=0.0, upper=(settings,), **(city or {})))
        await city_server.start()
        try:
            device = DeviceSimulator(DEVICE, server_id=CITY, server_port=city_server.platform.sip_port,
                                     password=DEVICE_PASSWORD, channels=channels, management=management)
            await device.start()
            try:
                ids = device.management.channel_ids
                await wait_for(lambda: {c.channel_id for c in city_server.platform.management.catalog.channels(DEVICE)}
                               >= set(ids))
                await wait_for(lambda: city_server.platform.cascade.link(PROVINCE).online)
                registry = province_server.platform.registry
                await wait_for(lambda: (s := registry.get(CITY)) is not None and s.status == "online")
                async with aiohttp.ClientSession() as session:
                    yield Chain(province_server, city_server, device,
                                Api(session, f"http://127.0.0.1:{province_server.http_port}"),
                                Api(session, f"http://127.0.0.1:{city_server.http_port}"))
            finally:
                await device.stop()
        finally:
            await city_server.stop()
    finally:
        await province_server.stop()
