"""The 2022 queries (PROTOCOL §5.13) from the province reach the device under the city with the
IDs translated, and the device's answer comes back whatever it holds.

Simulator -> city -> province, every hop over real loopback sockets.
"""

from __future__ import annotations

from sip28181.manscdp import messages as m

from ..integration.conftest import loop_errors, wait_for  # noqa: F401  (autouse: no leaked task errors)
from .control_support import CITY, city_chain


def _text(node: m.XmlNode | None, tag: str) -> str | None:
    child = next((c for c in (node.children if node else []) if c.tag == tag), None)
    return child.text if child is not None else None


async def test_the_2022_queries_are_forwarded_with_ids_translated(tmp_path):
    async with city_chain(tmp_path, upper={"ids": "map", "id_prefix": "4488"}) as chain:
        ch = chain.channels[1]
        up = "4488" + ch[4:]
        province = chain.province.platform
        sim = chain.device.management
        # set a home position down the chain, then ask for it
        assert await province.device_control(CITY, "home_position", up, enabled=True, reset_time=30,
                                             preset_index=3) == "OK"
        queries = province.management.queries
        sn = queries.next_sn()
        answer = await queries.request(CITY, m.HomePositionQuery(sn=sn, device_id=up))
        assert answer.kind is m.Kind.RESPONSE and answer.cmd_type == "HomePositionQuery"
        assert answer.sn == sn and answer.device_id == up
        assert answer.find_extra("Result").text == "OK"
        home = answer.find_extra("HomePosition")
        assert (_text(home, "Enabled"), _text(home, "ResetTime"), _text(home, "PresetIndex")) == ("1", "30", "3")
        # the device was asked with its own channel ID and our SN
        asked = [q for q in sim.received if isinstance(q, m.HomePositionQuery)]
        assert len(asked) == 1 and asked[0].device_id == ch and asked[0].sn != sn

        # a query the device refuses (the simulator has no SDCardStatus): Result ERROR, not silence
        sn = queries.next_sn()
        answer = await queries.request(CITY, m.SdCardStatusQuery(sn=sn, device_id=up))
        assert (answer.cmd_type, answer.sn, answer.device_id) == ("SDCardStatus", sn, up)
        assert answer.find_extra("Result").text == "ERROR"
        await wait_for(lambda: any(isinstance(q, m.SdCardStatusQuery) and q.device_id == ch for q in sim.received))

        # an ID the province was never shown: answered ERROR without asking the device
        before = len(sim.received)
        for query in (m.PtzPositionQuery(sn=queries.next_sn(), device_id=ch),
                      m.CruiseTrackQuery(sn=queries.next_sn(), device_id="44880000001329999999", number=1),
                      m.CruiseTrackListQuery(sn=queries.next_sn(), device_id=CITY)):
            answer = await queries.request(CITY, query)
            assert (answer.cmd_type, answer.sn, answer.device_id) == (query.cmd_type, query.sn, query.device_id)
            assert answer.find_extra("Result").text == "ERROR"
        assert len(sim.received) == before
