"""Catalogs over loopback: after registration, on demand, multi-packet quirks, removal, store."""

from __future__ import annotations

import pytest

from sip28181.errors import NotFoundError
from sip28181.manscdp import messages as m
from sip28181.platform.queries import QueryTimeout
from sip28181.server import Server
from sip28181.store import SqliteStore

from .conftest import wait_for
from .scripted_device import NVR, ScriptedDevice, catalog_items, catalog_packets, channel_id


@pytest.fixture
def fast(config_factory):
    def make(**kw):
        values = dict(catalog_query_on_register=False, query_timeout=3.0, catalog_timeout=3.0,
                      catalog_idle_timeout=0.5, catalog_query_delay=0.0)
        values.update(kw)
        return config_factory(**values)
    return make


@pytest.fixture
async def mserver(fast):
    srv = Server(fast())
    await srv.start()
    try:
        yield srv
    finally:
        await srv.stop()


async def test_catalog_queried_after_registration(fast):
    srv = Server(fast(catalog_query_on_register=True))
    await srv.start()
    try:
        async with ScriptedDevice(srv) as dev:
            items = catalog_items(10)
            dev.answers["Catalog"] = lambda q: catalog_packets(q.sn, NVR, items, per_packet=3)
            dev.answers["DeviceInfo"] = lambda q: [m.DeviceInfoResponse(
                sn=q.sn, device_id=NVR, device_name="NVR Lobby", result="OK", manufacturer="Example",
                model="NVR-16", firmware="V4.2.1", channel=10)]
            channels = await wait_for(lambda: len(srv.platform.channels(NVR)) == 10 and srv.platform.channels(NVR))
            assert [c.channel_id for c in channels] == [channel_id(i) for i in range(10)]
            assert channels[3].name == "Camera 3" and channels[3].parent_id == NVR and channels[3].status == "ON"
            state = srv.platform.device(NVR)
            assert state.name == "NVR Lobby" and state.extra["firmware"] == "V4.2.1"
            queries = [q.cmd_type for q in dev.received]
            assert queries.index("DeviceInfo") < queries.index("Catalog")
    finally:
        await srv.stop()


async def test_catalog_on_demand_and_channels_persist_across_restart(fast):
    config = fast()
    srv = Server(config)
    await srv.start()
    try:
        async with ScriptedDevice(srv) as dev:
            items = catalog_items(7, longitude=113.36, latitude=23.12, info=m.CatalogInfo(ptz_type="1"))
            dev.answers["Catalog"] = lambda q: catalog_packets(q.sn, NVR, items, per_packet=2)
            result = await srv.platform.query_catalog(NVR)
            assert (result.sum_num, result.received, result.partial, result.added, result.packets) == (7, 7, False, 7, 4)
            again = await srv.platform.query_catalog(NVR)
            assert (again.added, again.updated, again.removed) == (0, 0, 0)
    finally:
        await srv.stop()
    async with SqliteStore(config.db_path) as store:
        stored = await store.list_channels(NVR)
    assert len(stored) == 7 and stored[0].longitude == 113.36 and stored[0].fields["info"] == {"ptz_type": "1"}
    srv = Server(config)
    await srv.start()
    try:
        assert [c.channel_id for c in srv.platform.channels(NVR)] == [channel_id(i) for i in range(7)]
    finally:
        await srv.stop()


async def test_duplicates_out_of_order_and_early_packets(mserver):
    async with ScriptedDevice(mserver) as dev:
        items = catalog_items(12)

        def answer(q):
            packets = catalog_packets(q.sn, NVR, items, per_packet=3)
            # last part first, a part twice, the first part last
            return [packets[3], packets[1], packets[1], packets[2], packets[0]]
        dev.answers["Catalog"] = answer
        dev.early = True
        result = await mserver.platform.query_catalog(NVR)
        assert (result.received, result.partial, result.duplicates, result.packets) == (12, False, 3, 5)
        assert len(mserver.platform.channels(NVR)) == 12


async def test_other_sn_and_no_sn_are_accepted(mserver):
    async with ScriptedDevice(mserver) as dev:
        items = catalog_items(6)

        def answer(q):
            packets = catalog_packets(q.sn + 1000, NVR, items, per_packet=3)
            packets[1].sn = 0       # SN element absent
            return packets
        dev.answers["Catalog"] = answer
        result = await mserver.platform.query_catalog(NVR)
        assert result.received == 6 and not result.partial


async def test_timeout_keeps_what_arrived_and_removes_nothing(mserver):
    async with ScriptedDevice(mserver) as dev:
        dev.answers["Catalog"] = lambda q: catalog_packets(q.sn, NVR, catalog_items(8))
        assert (await mserver.platform.query_catalog(NVR)).received == 8
        # now a device announcing 10 but sending only 3 items
        dev.answers["Catalog"] = lambda q: catalog_packets(q.sn, NVR, catalog_items(3), sum_num=10)
        result = await mserver.platform.query_catalog(NVR)
        assert (result.sum_num, result.received, result.partial, result.removed) == (10, 3, True, 0)
        assert len(mserver.platform.channels(NVR)) == 8


async def test_complete_catalog_removes_missing_channels(mserver):
    async with ScriptedDevice(mserver) as dev:
        dev.answers["Catalog"] = lambda q: catalog_packets(q.sn, NVR, catalog_items(8))
        await mserver.platform.query_catalog(NVR)
        kept = catalog_items(5, start=3)
        kept[0].name = "Renamed"
        dev.answers["Catalog"] = lambda q: catalog_packets(q.sn, NVR, kept)
        result = await mserver.platform.query_catalog(NVR)
        assert (result.added, result.updated, result.removed) == (0, 1, 3)
        assert [c.channel_id for c in mserver.platform.channels(NVR)] == [channel_id(i) for i in range(3, 8)]
        # an empty catalog (SumNum 0, no DeviceList) empties the list
        dev.answers["Catalog"] = lambda q: [f"<Response><CmdType>Catalog</CmdType><SN>{q.sn}</SN>"
                                            f"<DeviceID>{NVR}</DeviceID><SumNum>0</SumNum></Response>"]
        result = await mserver.platform.query_catalog(NVR)
        assert result.removed == 5 and mserver.platform.channels(NVR) == []
    await mserver.platform.flush()
    assert await mserver.platform.store.list_channels(NVR) == []


async def test_no_answer_is_a_timeout_and_unknown_device_not_found(mserver):
    with pytest.raises(NotFoundError):
        await mserver.platform.query_catalog("34020000001180000099")
    async with ScriptedDevice(mserver) as dev:
        with pytest.raises(QueryTimeout):
            await mserver.platform.query_catalog(NVR, timeout=0.5)
        assert dev.received and dev.received[-1].cmd_type == "Catalog"


async def test_late_packets_after_partial_are_merged(mserver):
    async with ScriptedDevice(mserver) as dev:
        items = catalog_items(6)
        dev.answers["Catalog"] = lambda q: catalog_packets(q.sn, NVR, items[:3], sum_num=6)
        result = await mserver.platform.query_catalog(NVR)
        assert result.partial and result.received == 3
        # the rest arrives after the query ended
        await dev.send(catalog_packets(result_sn := dev.received[-1].sn, NVR, items[3:], sum_num=6))
        assert result_sn
        await wait_for(lambda: len(mserver.platform.channels(NVR)) == 6)


async def test_concurrent_queries_share_one_catalog_query(mserver):
    import asyncio

    async with ScriptedDevice(mserver) as dev:
        dev.answers["Catalog"] = lambda q: catalog_packets(q.sn, NVR, catalog_items(4))
        a, b = await asyncio.gather(mserver.platform.query_catalog(NVR), mserver.platform.query_catalog(NVR))
        assert a == b and [q.cmd_type for q in dev.received].count("Catalog") == 1
