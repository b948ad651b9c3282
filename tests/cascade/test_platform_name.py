"""Our platform's name (``[sip] name``) is what an upper sees: in the catalog and in DeviceInfo."""

from __future__ import annotations

from ..integration.conftest import loop_errors, wait_for  # noqa: F401  (autouse: no leaked task errors)
from .chain import Level, chain

NAME = "广州市视频监控联网平台"


async def test_upper_sees_the_configured_platform_name(tmp_path):
    levels = [Level("city", config={"platform_name": NAME}), Level("province")]
    async with chain(tmp_path, levels=levels) as c:
        await c.ready()
        await c.catalog_up()
        city, province = c["city"], c["province"]
        # the city's own node in the catalog the province holds (type 200, GB2312 on the wire)
        node = await wait_for(lambda: province.platform.management.catalog.channel(city.sip_id, city.sip_id))
        assert node.name == NAME
        # DeviceInfo answered with the name, not the upper's own display name nor the ID
        info = await province.platform.query_device_info(city.sip_id, timeout=5)
        assert info.result == "OK" and info.device_name == NAME and info.device_type == "Platform"
        # the province's API shows the city under that name
        status, body = await province.api.get(f"/api/v1/devices/{city.sip_id}")
        assert status == 200 and body["name"] == NAME, body


async def test_default_platform_name(tmp_path):
    async with chain(tmp_path, levels=["city", "province"], device=False) as c:
        await c.ready()
        city, province = c["city"], c["province"]
        info = await province.platform.query_device_info(city.sip_id, timeout=5)
        assert info.device_name == "sip28181"
