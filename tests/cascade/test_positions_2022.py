"""Mobile positions to an upper of the 2022 edition go in the list form it expects (PROTOCOL §12.2):
``SumNum``/``DeviceList``/``Item`` with the channel's ID and ``CaptureTime``, sent by our platform.

City with a scripted upper and a simulated NVR, over real loopback sockets.
"""

from __future__ import annotations

from sip28181.manscdp import messages as m

from ..integration.conftest import loop_errors, wait_for  # noqa: F401  (autouse: no leaked task errors)
from .test_catalog_upper import city_with_upper, query
from .test_positions_up import report


async def test_a_2022_upper_gets_positions_in_the_list_form(tmp_path):
    async with city_with_upper(tmp_path, tree="2022") as (upper, city, sim):
        channel = sim.management.channel_ids[0]
        subscribe = upper.request(city, "SUBSCRIBE", query(m.MobilePositionQuery, city.platform.sip_id, 42,
                                                           interval=1),
                                  extra=[("Event", "presence"), ("Expires", 600)])
        assert (await upper.send(city, subscribe)).status == 200
        await sim.send_manscdp(report(sim, target=channel, lon=116.397, lat=39.909).to_xml())
        notify = (await wait_for(lambda: [r for r in upper.received if r.method == "NOTIFY"]))[0]
        body = m.parse(notify.body)
        assert isinstance(body, m.MobilePositionNotify)
        assert body.device_id == city.platform.sip_id           # sent by the city
        assert body.longitude is None and body.latitude is None  # nothing at the root
        assert body.sum_num == 1 and len(body.items) == 1
        item = body.items[0]
        assert (item.device_id, item.capture_time) == (channel, "2026-05-20T08:00:01")
        assert (item.longitude, item.latitude, item.speed, item.direction, item.altitude) == (
            116.397, 39.909, 12.5, 270.0, 30.0)
        assert body.time and body.time != item.capture_time     # when it was sent, not the fix
        assert b"<CaptureTime>2026-05-20T08:00:01</CaptureTime>" in notify.body
