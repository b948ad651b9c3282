"""What an upper has of us, through the city's HTTP API: the catalog it is shown, its media calls
and its subscriptions; checked against what the province (the real upper) sees and holds."""

from __future__ import annotations

import aiohttp
import pytest

from sip28181.platform.sessions import MediaTransport

from ..integration.conftest import Api, wait_for
from ..integration.livekit import read_flv
from .control_support import CITY, DEVICE, PROVINCE, city_chain
from .test_invite import CHANNEL, chain as media_chain, live_url

UNKNOWN = "44999999992000000001"


def mapped(local_id: str) -> str:
    return "4488" + local_id[4:]


async def test_catalog_and_subscriptions_of_an_upper(tmp_path):
    province_cfg = {"catalog_subscribe": True, "position_subscribe": True, "position_interval": 7,
                    "catalog_query_delay": 0.0}
    async with city_chain(tmp_path, upper={"ids": "map", "id_prefix": "4488"}, province=province_cfg) as chain:
        api = chain.city_api
        base = f"/api/v1/uppers/{PROVINCE}"

        status, page = await api.get(f"{base}/catalog?limit=1000")
        assert status == 200, page
        items = {i["id"]: i for i in page["items"]}
        assert page["total"] == len(page["items"]) and page["offset"] == 0
        root = page["items"][0]
        assert (root["id"], root["kind"], root["parents"]) == (CITY, "system", [])
        for channel in chain.channels:
            item = items[mapped(channel)]
            assert item["kind"] == "channel" and item["local_id"] == channel and item["device_id"] == DEVICE
            assert item["status"] == "ON" and item["parents"]
            assert channel not in items
        # what the city says the province sees is what the province lists
        province_channels = await wait_for(
            lambda: (ids := {c.channel_id for c in chain.province.platform.channels(CITY)}) >= set(items) and ids,
            timeout=10)
        assert set(items) <= province_channels

        # paging and the kind filter
        status, one = await api.get(f"{base}/catalog?offset=1&limit=1")
        assert status == 200 and one["total"] == page["total"] and one["limit"] == 1
        assert [i["id"] for i in one["items"]] == [page["items"][1]["id"]]
        status, channels = await api.get(f"{base}/catalog?kind=channel")
        assert status == 200
        assert {i["id"] for i in channels["items"]} == {mapped(c) for c in chain.channels}

        # the province subscribed to the catalog and to positions as it was configured to
        async def both():
            status, subs = await api.get(f"{base}/subscriptions")
            assert status == 200, subs
            return subs if {s["cmd_type"] for s in subs} == {"Catalog", "MobilePosition"} else None
        subs = {s["cmd_type"]: s for s in await wait_for(both, timeout=10)}
        province_subs = {s.kind: s for s in chain.province.platform.management.subscriptions.of(CITY)}
        assert subs["Catalog"]["call_id"] == province_subs["catalog"].call_id
        assert subs["MobilePosition"]["call_id"] == province_subs["mobile_position"].call_id
        assert subs["MobilePosition"]["interval"] == 7 and subs["Catalog"]["interval"] is None
        assert 0 < subs["Catalog"]["expires_in"] <= chain.province.platform.config.catalog_subscribe_expires
        assert subs["Catalog"]["event"].startswith("Catalog")

        # no media calls yet
        assert await api.get(f"{base}/calls") == (200, [])


@pytest.mark.parametrize("path, params", [("catalog", ""), ("calls", ""), ("subscriptions", ""),
                                          ("catalog", "?limit=5")])
async def test_unknown_upper_is_404_json(tmp_path, path, params):
    async with city_chain(tmp_path, channels=1) as chain:
        status, body = await chain.city_api.get(f"/api/v1/uppers/{UNKNOWN}/{path}{params}")
        assert status == 404 and body["error"]["status"] == 404 and UNKNOWN in body["error"]["message"]


async def test_bad_parameters_are_400_json(tmp_path):
    async with city_chain(tmp_path, channels=1) as chain:
        api = chain.city_api
        for path in (f"/api/v1/uppers/{PROVINCE}/catalog?limit=0", f"/api/v1/uppers/{PROVINCE}/catalog?offset=-1",
                     f"/api/v1/uppers/{PROVINCE}/catalog?kind=camera", "/api/v1/uppers/4401/catalog",
                     "/api/v1/uppers/abc/calls", "/api/v1/uppers/4401x/subscriptions"):
            status, body = await api.get(path)
            assert status == 400, (path, body)
            assert body["error"]["status"] == 400
        # past the end: an empty page, not an error
        status, page = await api.get(f"/api/v1/uppers/{PROVINCE}/catalog?offset=1000")
        assert status == 200 and page["items"] == [] and page["total"] > 0


async def test_calls_of_an_upper(tmp_path):
    async with media_chain(tmp_path) as (province, city, camera), aiohttp.ClientSession() as http:
        api = Api(http, f"http://127.0.0.1:{city.http_port}")
        async with http.get(live_url(province)) as resp:
            assert resp.status == 200
            await read_flv(resp, frames=10)
            status, calls = await api.get(f"/api/v1/uppers/{PROVINCE}/calls")
            assert status == 200 and len(calls) == 1
            call = calls[0]
            pstream = province.platform.streams.list()[0]
            assert call["upper_id"] == PROVINCE and call["channel_id"] == CHANNEL
            assert call["local_channel_id"] == CHANNEL and call["device_id"] == camera.device_id
            assert call["kind"] == "Play" and call["transport"] == MediaTransport.UDP.value
            assert call["state"] == "sending" and int(call["ssrc"]) == int(pstream.ssrc)
            assert call["destination"].startswith("127.0.0.1:")
            assert call["media"]["packets_sent"] > 0 and call["media"]["frames_sent"] > 0
        # the province's viewer left: after its linger the call ends and the list empties
        async def empty():
            status, calls = await api.get(f"/api/v1/uppers/{PROVINCE}/calls")
            return status == 200 and calls == []
        await wait_for(empty, timeout=10)


async def test_routes_are_in_the_openapi_document(tmp_path):
    async with city_chain(tmp_path, channels=1) as chain:
        status, doc = await chain.city_api.get("/api/v1/openapi.json", token=None)
        assert status == 200
        paths = doc["paths"]
        for path in ("catalog", "calls", "subscriptions"):
            op = paths[f"/api/v1/uppers/{{sip_id}}/{path}"]["get"]
            assert {"200", "404"} <= set(op["responses"]), path
        params = {p["name"] for p in paths["/api/v1/uppers/{sip_id}/catalog"]["get"]["parameters"]}
        assert {"sip_id", "offset", "limit", "kind"} <= params
        from openapi_spec_validator import validate

        validate(doc)

