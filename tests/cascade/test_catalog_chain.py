"""Simulator → city → province over real sockets: what the province sees of the city's catalog.

The city shares its camera with the province; the province (as the upper) lists the city's
channels and tree through its HTTP API, in the 2016 and the 2022 form, with IDs kept or mapped,
and follows catalog changes (by NOTIFY in its subscription, or by MESSAGE without one).
"""

from __future__ import annotations

import contextlib

import aiohttp
import pytest

from sip28181.device import DeviceSimulator
from sip28181.manscdp import messages as m
from sip28181.server import Server

from ..integration.conftest import Api, make_config, wait_for

CITY = "44010000002000000001"
PROVINCE = "44000000002000000001"
CAMERA = "44010600001180000001"
CAMERA2 = "44010600001180000009"


@contextlib.asynccontextmanager
async def chain(tmp_path, *, province_kw=None, sim_kw=None, **upper_kw):
    province = Server(make_config(tmp_path / "p", sip_id=PROVINCE, password="prov-secret", catalog_query_delay=0.0,
                                  **(province_kw or {})))
    await province.start()
    city = sim = None
    try:
        upper = {"sip_id": PROVINCE, "host": "127.0.0.1", "port": province.platform.sip_port,
                 "password": "prov-secret", "keepalive_interval": 1, **upper_kw}
        city = Server(make_config(tmp_path / "c", sip_id=CITY, password="city-secret", catalog_query_delay=0.0,
                                  upper=(upper,)))
        await city.start()
        sim = DeviceSimulator(CAMERA, server_id=CITY, server_port=city.platform.sip_port, password="city-secret",
                              keepalive_interval=30, **{"channels": 3, "management": {"groups": 2}, **(sim_kw or {})})
        await sim.start()
        await wait_for(lambda: city.platform.cascade.link(PROVINCE).online)
        async with aiohttp.ClientSession() as session:
            yield province, city, sim, Api(session, f"http://127.0.0.1:{province.http_port}")
    finally:
        if sim is not None:
            await sim.stop()
        if city is not None:
            await city.stop()
        await province.stop()


async def channels_at(api: Api, device: str) -> dict[str, dict]:
    status, body = await api.get(f"/api/v1/devices/{device}/channels?limit=1000")
    assert status == 200, body
    return {c["channel_id"]: c for c in body["items"]}


def walk(nodes, depth=0, out=None):
    out = [] if out is None else out
    for node in nodes:
        out.append((depth, node["id"], node["kind"]))
        walk(node["children"], depth + 1, out)
    return out


@pytest.mark.parametrize("tree, transport", [("2016", "udp"), ("2022", "tcp")])
async def test_province_lists_the_camera_with_the_tree(tmp_path, tree, transport):
    async with chain(tmp_path, tree=tree, catalog_group=2, transport=transport) as (province, city, sim, api):
        cams = sim.management.channel_ids
        vos = [cid for cid in sim.management.catalog if cid[10:13] == "216"]
        group = next(cid for cid in sim.management.catalog if cid[10:13] == "215")
        await wait_for(lambda: len(city.platform.management.catalog.channels(CAMERA)) == 6)

        async def complete():
            listed = await channels_at(api, CITY)
            return listed if set(cams) <= set(listed) else None
        listed = await wait_for(complete, timeout=10)
        assert province.platform.registry.get(CITY).transport.lower() == transport
        assert listed[CITY]["kind"] == "system"
        assert listed[group]["kind"] == "business_group" and {listed[v]["kind"] for v in vos} == {"virtual_org"}
        for i, cid in enumerate(cams):
            channel = listed[cid]
            assert channel["kind"] == "channel" and channel["status"] == "ON"
            assert channel["name"] == f"通道{i + 1}"          # GB2312 on the wire, intact
            assert channel["parent_id"] == vos[i % 2]
            assert channel["business_group_id"] == group
        if tree == "2022":
            assert all(listed[v]["parent_id"] is None for v in vos)
        else:
            assert all(listed[v]["parent_id"] == group for v in vos)

        status, body = await api.get(f"/api/v1/devices/{CITY}/tree")
        assert status == 200
        flat = walk(body["roots"] if "roots" in body else body["children"])
        assert flat[0] == (0, CITY, "system")
        assert (1, group, "business_group") in flat
        assert {(2, v, "virtual_org") for v in vos} <= set(flat)
        assert {(3, c, "channel") for c in cams} == {e for e in flat if e[2] == "channel"}

        # the city answers DeviceInfo and DeviceStatus about itself and its channels
        info = await province.platform.query_device_info(CITY)
        assert info.result == "OK" and info.channel == 3 and info.manufacturer == "sip28181"
        state = await province.platform.query_device_status(CITY)
        assert state.result == "OK" and state.is_online
        queries = province.platform.management.queries
        answer = await queries.request(CITY, m.DeviceStatusQuery(sn=queries.next_sn(), device_id=cams[0]))
        assert answer.result == "OK" and answer.is_online and answer.device_id == cams[0]
        answer = await queries.request(CITY, m.DeviceStatusQuery(sn=queries.next_sn(),
                                                                 device_id="44010600001319999999"))
        assert answer.result == "ERROR"


async def test_mapped_ids_resolve_both_ways(tmp_path):
    async with chain(tmp_path, ids="map", id_prefix="4488") as (province, city, sim, api):
        cams = sim.management.channel_ids
        mapped = ["4488" + c[4:] for c in cams]

        async def complete():
            listed = await channels_at(api, CITY)
            return listed if set(mapped) <= set(listed) else None
        listed = await wait_for(complete, timeout=10)
        assert not set(cams) & set(listed)
        vos = {"4488" + v[4:] for v in sim.management.catalog if v[10:13] == "216"}
        assert {listed[c]["parent_id"] for c in mapped} == vos
        cascade = city.platform.cascade
        link = cascade.link(PROVINCE)
        assert cascade.resolve(link, mapped[1]) == (CAMERA, cams[1])
        assert cascade.upper_side_id(link, CAMERA, cams[1]) == mapped[1]
        assert cascade.resolve(link, cams[1]) is None
        assert cascade.resolve(link, CITY) is None


@pytest.mark.parametrize("subscribe, transport", [(True, "udp"), (True, "tcp"), (False, "udp")])
async def test_catalog_changes_reach_the_province(tmp_path, subscribe, transport):
    province_kw = {"catalog_subscribe": subscribe}
    async with chain(tmp_path, province_kw=province_kw, transport=transport) as (province, city, sim, api):
        cams = sim.management.channel_ids
        catalog = province.platform.management.catalog
        await wait_for(lambda: all(catalog.channel(CITY, c) is not None for c in cams), timeout=10)
        assert province.platform.registry.get(CITY).transport.lower() == transport
        subs = city.platform.cascade.subscriptions
        if subscribe:
            sub = await wait_for(lambda: subs.active(PROVINCE, "Catalog"))
            sub = sub[0]
        else:
            assert not subs.active(PROVINCE, "Catalog")

        await sim.management.notify_catalog("OFF", [cams[0]])
        await wait_for(lambda: catalog.channel(CITY, cams[0]).status == "OFF", timeout=10)
        await sim.management.notify_catalog("ON", [cams[0]])
        await wait_for(lambda: catalog.channel(CITY, cams[0]).status == "ON", timeout=10)

        # a second device registers with the city: its channel appears at the province
        async with DeviceSimulator(CAMERA2, server_id=CITY, server_port=city.platform.sip_port,
                                   password="city-secret", keepalive_interval=30, channels=1) as sim2:
            new = sim2.management.channel_ids[0]
            await wait_for(lambda: catalog.channel(CITY, new) is not None, timeout=10)
            assert catalog.channel(CITY, new).status == "ON"
        # and goes offline when it unregisters
        await wait_for(lambda: catalog.channel(CITY, new).status == "OFF", timeout=10)
        await sim.management.notify_catalog("DEL", [cams[2]])
        await wait_for(lambda: catalog.channel(CITY, cams[2]) is None, timeout=10)
        if subscribe:
            assert sub.notifies >= 4 and not sub.terminated


MINISTRY = "10000000002000000001"


async def test_three_levels_share_on_up(tmp_path):
    """simulator → city → province → ministry: the province shares what the city shares with it,
    with its own platform node at the top (the city's node is not passed on), mapped once more."""
    ministry = Server(make_config(tmp_path / "m", sip_id=MINISTRY, password="min-secret", catalog_query_delay=0.0))
    await ministry.start()
    try:
        upper = {"sip_id": MINISTRY, "host": "127.0.0.1", "port": ministry.platform.sip_port,
                 "password": "min-secret", "keepalive_interval": 1, "tree": "2022", "ids": "map",
                 "id_prefix": "1000"}
        async with chain(tmp_path, province_kw={"upper": (upper,)}) as (province, city, sim, api):
            cams = sim.management.channel_ids
            catalog = ministry.platform.management.catalog
            top = ["1000" + c[4:] for c in cams]
            await wait_for(lambda: all(catalog.channel(PROVINCE, c) is not None for c in top), timeout=15)
            listed = {c.channel_id: c for c in catalog.channels(PROVINCE)}
            assert listed[PROVINCE].kind == "system" and CITY not in listed
            group = "1000" + next(c for c in sim.management.catalog if c[10:13] == "215")[4:]
            assert listed[group].kind == "business_group" and listed[group].parent_id == PROVINCE
            vos = {"1000" + v[4:] for v in sim.management.catalog if v[10:13] == "216"}
            assert {listed[c].parent_id for c in top} == vos
            assert all(listed[v].parent_id is None and listed[v].business_group_id == group for v in vos)
            roots = catalog.tree(PROVINCE)
            assert [r.id for r in roots] == [PROVINCE]
            # the province maps the ministry's ID back to the city's channel, the city to the camera's
            cascade = province.platform.cascade
            assert cascade.resolve(cascade.link(MINISTRY), top[0]) == (CITY, cams[0])
            assert city.platform.cascade.resolve(city.platform.cascade.link(PROVINCE), cams[0]) == (CAMERA, cams[0])
            # a status change at the bottom reaches the top
            await sim.notify_catalog("OFF", [cams[1]])
            await wait_for(lambda: catalog.channel(PROVINCE, top[1]).status == "OFF", timeout=15)
    finally:
        await ministry.stop()
