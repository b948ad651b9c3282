"""A one-shot ``Query MobilePosition`` MESSAGE from the province (no subscription) is answered by
the city from the last known positions of the channels it shares, one Notify per channel."""

from __future__ import annotations

from sip28181.manscdp import messages as m

from ..integration.conftest import loop_errors, wait_for  # noqa: F401  (autouse: no leaked task errors)
from .control_support import CITY, DEVICE, PROVINCE, city_chain
from .test_positions_up import MAPPED, collect, mapped, report


async def ask(province, target: str, sn: int) -> None:
    """The province sends the city ``Query MobilePosition`` for ``target`` by MESSAGE."""
    queries = province.platform.management.queries
    state = province.platform.registry.get(CITY)
    response = await queries.send(state, queries.encode(state, m.MobilePositionQuery(sn=sn, device_id=target)))
    assert response.status == 200


async def test_query_is_answered_from_last_known_positions(tmp_path):
    async with city_chain(tmp_path, upper=MAPPED, channels=3) as chain:
        city, province, sim = chain.city, chain.province, chain.device
        positions = city.platform.cascade.positions
        first, second, third = chain.channels
        # the NVR reports its own position, then the second channel one of its own (newer)
        await sim.send_manscdp(report(sim, lon=120.5, lat=30.25).to_xml())
        await wait_for(lambda: (DEVICE, DEVICE) in positions.latest)
        await sim.send_manscdp(report(sim, target=second, lon=121.75, lat=31.5).to_xml())
        await wait_for(lambda: (DEVICE, second) in positions.latest)
        assert not city.platform.cascade.subscriptions.active(PROVINCE, "MobilePosition")
        seen = collect(province)

        await ask(province, CITY, 901)
        want = {mapped(c) for c in chain.channels}
        await wait_for(lambda: {r.target_id for r in seen} >= want, timeout=10)
        got = {r.target_id: r for r in seen}
        assert len(seen) == 3 and set(got) == want                     # one per channel, mapped IDs only
        assert (got[mapped(first)].longitude, got[mapped(first)].latitude) == (120.5, 30.25)
        assert (got[mapped(third)].longitude, got[mapped(third)].speed) == (120.5, 12.5)
        assert (got[mapped(second)].longitude, got[mapped(second)].latitude) == (121.75, 31.5)
        assert got[mapped(second)].time == "2026-05-20T08:00:01"

        # one channel named: its position alone
        seen.clear()
        await ask(province, mapped(third), 902)
        await wait_for(lambda: seen, timeout=10)
        assert [(r.target_id, r.longitude) for r in seen] == [(mapped(third), 120.5)]
        # the positions are stored at the province under the mapped channel ID
        status, body = await chain.province_api.get(f"/api/v1/devices/{CITY}/positions?channel_id={mapped(third)}")
        assert status == 200 and body and body[0]["longitude"] == 120.5, body


async def test_query_without_known_positions_or_for_unknown_ids(tmp_path):
    async with city_chain(tmp_path, upper={"tree": "2022"}, channels=2) as chain:
        city, province, sim = chain.city, chain.province, chain.device
        positions = city.platform.cascade.positions
        first, second = chain.channels
        seen = collect(province)
        await ask(province, CITY, 1)                                     # nothing known yet: nothing sent
        await ask(province, "44010000001329999999", 2)                   # not shown to the province
        await sim.send_manscdp(report(sim, target=first, lon=113.25, lat=23.125).to_xml())
        await wait_for(lambda: (DEVICE, first) in positions.latest)
        assert seen == []
        # a 2022 upper gets the list form; only the channel with a position is in the answer
        await ask(province, CITY, 3)
        await wait_for(lambda: seen, timeout=10)
        assert [(r.target_id, r.longitude, r.latitude) for r in seen] == [(first, 113.25, 23.125)]
        assert second not in {r.target_id for r in seen}
