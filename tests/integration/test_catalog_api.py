"""The catalog through the HTTP API: channel pages and filters, one channel, the tree (2022 form),
refresh; and nothing lost when a store flush fails."""

from __future__ import annotations

import pytest

from sip28181.manscdp import messages as m

from .scripted_device import NVR, catalog_items, catalog_packets, channel_id, scripted_server

BG = "34020000002150000001"
VO1 = "34020000002160000001"
VO2 = "34020000002160000002"


def tree_items() -> list[m.CatalogItem]:
    """2022 form: region → business group → VO (BusinessGroupID only) → VO → channels (two parents)."""
    cams = catalog_items(3, parent_id=f"{NVR}/{VO2}")
    cams[2].status = "OFF"
    return [m.CatalogItem(device_id="340200", name="Region"),
            m.CatalogItem(device_id=BG, name="Monitoring", civil_code="340200", parent_id="34020000002000000001"),
            m.CatalogItem(device_id=VO1, name="Plant A", civil_code="340200", business_group_id=BG),
            m.CatalogItem(device_id=VO2, name="Outfalls", civil_code="340200", parent_id=VO1, business_group_id=BG),
            *cams]


@pytest.fixture
async def env(config_factory):
    config = config_factory(catalog_query_on_register=False, catalog_timeout=2.0, catalog_idle_timeout=0.5)
    async with scripted_server(config) as (srv, api, dev):
        dev.answers["Catalog"] = lambda q: catalog_packets(q.sn, NVR, tree_items(), per_packet=2)
        yield srv, api, dev


async def test_refresh_list_filter_and_tree(env):
    srv, api, dev = env
    status, body = await api.call("POST", f"/api/v1/devices/{NVR}/catalog")
    assert status == 200 and (body["received"], body["partial"], body["added"], body["packets"]) == (7, False, 7, 4)
    status, body = await api.get(f"/api/v1/devices/{NVR}/channels")
    assert status == 200 and body["total"] == 7
    kinds = {c["channel_id"]: c["kind"] for c in body["items"]}
    assert (kinds["340200"], kinds[BG], kinds[VO1], kinds[channel_id(0)]) == ("region", "business_group",
                                                                              "virtual_org", "channel")
    status, body = await api.get(f"/api/v1/devices/{NVR}/channels", params={"kind": "channel", "limit": 2, "offset": 1})
    assert body["total"] == 3 and [c["channel_id"] for c in body["items"]] == [channel_id(1), channel_id(2)]
    status, body = await api.get(f"/api/v1/devices/{NVR}/channels", params={"status": "OFF"})
    assert [c["channel_id"] for c in body["items"]] == [channel_id(2)]
    status, body = await api.get(f"/api/v1/devices/{NVR}/channels", params={"parent_id": VO2})
    assert body["total"] == 3 and body["items"][0]["parent_ids"] == [NVR, VO2]
    status, body = await api.get(f"/api/v1/devices/{NVR}/channels", params={"q": "plant"})
    assert [c["channel_id"] for c in body["items"]] == [VO1]
    status, body = await api.get(f"/api/v1/devices/{NVR}/channels/{channel_id(1)}")
    assert status == 200 and body["name"] == "Camera 1" and body["manufacturer"] == "Example"
    assert body["civil_code"] == "340200" and body["status"] == "ON"
    status, body = await api.get(f"/api/v1/devices/{NVR}/channels/{channel_id(99)}")
    assert status == 404
    status, tree = await api.get(f"/api/v1/devices/{NVR}/tree")
    assert status == 200 and tree["nodes"] == 7
    [region] = tree["roots"]
    assert region["id"] == "340200" and region["kind"] == "region"
    [bg] = region["children"]
    [vo1] = bg["children"]
    [vo2] = vo1["children"]
    assert (bg["id"], vo1["id"], vo2["id"]) == (BG, VO1, VO2)
    assert [c["id"] for c in vo2["children"]] == [channel_id(i) for i in range(3)]
    assert vo2["children"][2]["status"] == "OFF"


async def test_flush_failure_loses_nothing(env):
    srv, api, dev = env
    platform = srv.platform
    store = platform.store
    real = store.upsert_channels
    calls = []

    async def failing(records):
        calls.append(len(records))
        raise OSError("disk full")
    store.upsert_channels = failing
    try:
        await platform.query_catalog(NVR)
        with pytest.raises(OSError):
            await platform.flush()
        assert calls == [7]
    finally:
        store.upsert_channels = real
    await platform.flush()
    assert len(await store.list_channels(NVR)) == 7
    # alarms too
    real_alarms = store.add_alarms

    async def failing_alarms(records):
        raise OSError("disk full")
    store.add_alarms = failing_alarms
    await dev.sim.send_manscdp(f"<Notify><CmdType>Alarm</CmdType><SN>5</SN><DeviceID>{NVR}</DeviceID>"
                               "<AlarmPriority>1</AlarmPriority><AlarmMethod>2</AlarmMethod></Notify>")
    with pytest.raises(OSError):
        await platform.flush()
    store.add_alarms = real_alarms
    status, body = await api.get("/api/v1/alarms")
    assert status == 200 and body["total"] == 1


async def test_channels_of_a_device_without_catalog(env):
    srv, api, dev = env
    status, body = await api.get(f"/api/v1/devices/{NVR}/channels")
    assert status == 200 and body == {"items": [], "total": 0, "offset": 0, "limit": 100}
    status, body = await api.get(f"/api/v1/devices/{NVR}/tree")
    assert status == 200 and body["roots"] == []
