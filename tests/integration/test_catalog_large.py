"""A 10,000-channel catalog over UDP in many packets, paced on each 200 OK as NVRs do."""

from __future__ import annotations

from sip28181.server import Server
from sip28181.store import SqliteStore

from .conftest import wait_for
from .scripted_device import NVR, ScriptedDevice, catalog_items, catalog_packets, channel_id


async def test_ten_thousand_channels_over_udp(config_factory):
    config = config_factory(catalog_query_on_register=False, catalog_timeout=10.0, catalog_idle_timeout=5.0)
    srv = Server(config)
    await srv.start()
    try:
        async with ScriptedDevice(srv, transport="udp") as dev:
            items = catalog_items(10_000)
            dev.answers["Catalog"] = lambda q: catalog_packets(q.sn, NVR, items, per_packet=4)
            result = await srv.platform.query_catalog(NVR, timeout=10.0)
            assert (result.sum_num, result.received, result.partial, result.packets) == (10_000, 10_000, False, 2_500)
            await wait_for(lambda: len(dev.sent) == 2_500)     # the last 200 may follow the completion
            assert all(r.status == 200 for r in dev.sent)
            channels = srv.platform.channels(NVR)
            assert [c.channel_id for c in channels] == [channel_id(i) for i in range(10_000)]
            tree = srv.platform.management.catalog.tree(NVR)
            assert len(tree) == 10_000      # all under the NVR itself: roots of the device's tree
            await srv.platform.flush()
            assert len(await srv.platform.store.list_channels(NVR)) == 10_000
    finally:
        await srv.stop()
    async with SqliteStore(config.db_path) as store:
        assert len(await store.list_channels(NVR)) == 10_000
