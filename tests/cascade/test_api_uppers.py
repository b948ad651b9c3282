"""Uppers through the HTTP API against a real province: create, read, change, register again,
delete, validation errors, and persistence across a restart of the city."""

from __future__ import annotations

import pytest

from ..integration.conftest import make_config, running as running_server, wait_for

CITY = "44010000002000000001"
PROVINCE = "44000000002000000001"
MINISTRY = "10000000002000000001"
SECRET = "prov-secret"


def running(config):
    return running_server(config, "/api/v1")


def province_config(tmp_path, **kw):
    return make_config(tmp_path / "p", sip_id=PROVINCE, password=SECRET, **kw)


def upper_body(port: int, **kw):
    return {"sip_id": PROVINCE, "host": "127.0.0.1", "port": port, "password": SECRET,
            "keepalive_interval": 1, "retry_interval": 0.2, "retry_max": 1.0, "name": "省平台", **kw}


async def test_create_get_change_register_delete(tmp_path):
    async with running(province_config(tmp_path)) as (province, _):
        port = province.platform.sip_port
        registry = province.platform.registry
        async with running(make_config(tmp_path / "c", sip_id=CITY)) as (city, api):
            assert await api.get("/uppers") == (200, [])
            status, body = await api.call("POST", "/uppers", json=upper_body(port, transport="TCP"))
            assert status == 201, body
            assert body["sip_id"] == PROVINCE and body["source"] == "api" and body["has_password"] is True
            assert "password" not in body and "password" not in body["settings"]
            assert SECRET not in str(body)
            assert body["settings"]["transport"] == "tcp" and body["name"] == "省平台"
            await wait_for(lambda: registry.get(CITY) and registry.get(CITY).registered)

            status, one = await api.get(f"/uppers/{PROVINCE}")
            assert status == 200 and one["state"] == "online" and one["online"] is True
            assert one["last_error"] is None and one["registered_at"] and SECRET not in str(one)
            status, listed = await api.get("/uppers")
            assert [u["sip_id"] for u in listed] == [PROVINCE]

            call_id = registry.get(CITY).call_id
            status, again = await api.call("POST", f"/uppers/{PROVINCE}/register")
            assert status == 200 and again["online"] and again["registered_at"] >= one["registered_at"]
            assert registry.get(CITY).call_id == call_id           # a refresh

            # PUT without a password keeps it: the link registers again over UDP
            changed = {k: v for k, v in upper_body(port, transport="udp", name="renamed").items()
                       if k != "password"}
            status, body = await api.call("PUT", f"/uppers/{PROVINCE}", json=changed)
            assert status == 200, body
            assert body["name"] == "renamed" and body["has_password"] is True
            await wait_for(lambda: city.platform.cascade.link(PROVINCE).online)
            await wait_for(lambda: registry.get(CITY).registered and registry.get(CITY).transport == "UDP")

            status, body = await api.call("DELETE", f"/uppers/{PROVINCE}")
            assert (status, body) == (200, {"sip_id": PROVINCE, "deleted": True})
            await wait_for(lambda: not registry.get(CITY).registered)   # unregistered
            assert await api.get(f"/uppers/{PROVINCE}") == (404, {"error": {
                "status": 404, "message": f"upper platform {PROVINCE} not found", "detail": None}})
            assert await city.platform.store.list_uppers() == []


async def test_bad_requests(tmp_path):
    async with running(make_config(tmp_path / "c", sip_id=CITY)) as (city, api):
        body = upper_body(5060, enabled=False)
        for bad, key in ((dict(body, port="x"), "port"), (dict(body, transport="sctp"), "transport"),
                         (dict(body, sip_id="123"), "sip_id"), (dict(body, colour="red"), "colour"),
                         (dict(body, share=["nope"]), "share"), ({"host": "127.0.0.1"}, "sip_id"),
                         (dict(body, retry_interval=10.0, retry_max=1.0), "retry_max")):
            status, answer = await api.call("POST", "/uppers", json=bad)
            assert status == 400, (bad, answer)
            assert key in answer["error"]["message"], answer
        assert (await api.call("POST", "/uppers", data=b"{not json"))[0] == 400
        assert (await api.call("POST", "/uppers", json=[1, 2]))[0] == 422
        assert (await api.call("POST", "/uppers", json=body))[0] == 201
        status, answer = await api.call("POST", "/uppers", json=body)
        assert status == 409 and PROVINCE in answer["error"]["message"]
        status, answer = await api.call("PUT", f"/uppers/{PROVINCE}", json=dict(body, sip_id=MINISTRY))
        assert status == 400 and "sip_id" in answer["error"]["message"]
        status, answer = await api.call("PUT", f"/uppers/{PROVINCE}", json=dict(body, keepalive_interval=0))
        assert status == 400 and "keepalive_interval" in answer["error"]["message"]
        status, answer = await api.call("POST", f"/uppers/{PROVINCE}/register")
        assert status == 409 and "disabled" in answer["error"]["message"]
        assert (await api.get(f"/uppers/{MINISTRY}"))[0] == 404
        assert (await api.call("PUT", f"/uppers/{MINISTRY}", json=dict(body, sip_id=MINISTRY)))[0] == 404
        assert (await api.call("DELETE", f"/uppers/{MINISTRY}"))[0] == 404
        assert (await api.call("POST", f"/uppers/{MINISTRY}/register"))[0] == 404
        assert (await api.get("/uppers/12345"))[0] == 400
        assert (await api.get("/uppers", token=None))[0] == 401
        # nothing half-done: the failed changes left the saved upper as it was
        saved = await city.platform.store.list_uppers()
        assert len(saved) == 1 and saved[0]["keepalive_interval"] == 1 and saved[0]["password"] == SECRET
        status, doc = await api.get("/openapi.json")
        paths = doc["paths"]
        assert set(paths["/api/v1/uppers"]) >= {"get", "post"}
        assert set(paths["/api/v1/uppers/{sip_id}"]) >= {"get", "put", "delete"}
        assert "post" in paths["/api/v1/uppers/{sip_id}/register"]


async def test_api_changes_survive_a_restart_and_override_the_config(tmp_path):
    async with running(province_config(tmp_path)) as (province, _):
        port = province.platform.sip_port
        registry = province.platform.registry
        configured = {"sip_id": MINISTRY, "host": "127.0.0.1", "port": port, "enabled": False}
        config = make_config(tmp_path / "c", sip_id=CITY, upper=(configured, {
            "sip_id": PROVINCE, "host": "127.0.0.1", "port": 9, "password": "old", "enabled": False}))
        async with running(config) as (city, api):
            status, body = await api.get(f"/uppers/{PROVINCE}")
            assert body["source"] == "config" and body["state"] == "disabled"
            # the configured province entry is replaced through the API: the right port and password
            status, body = await api.call("PUT", f"/uppers/{PROVINCE}", json=upper_body(port))
            assert status == 200 and body["source"] == "api"
            await wait_for(lambda: registry.get(CITY) and registry.get(CITY).registered)
            # a configured upper deleted through the API stays deleted
            assert (await api.call("DELETE", f"/uppers/{MINISTRY}"))[0] == 200
        await wait_for(lambda: not registry.get(CITY).registered)
        async with running(config) as (city, api):
            status, listed = await api.get("/uppers")
            assert [(u["sip_id"], u["source"]) for u in listed] == [(PROVINCE, "api")]
            assert listed[0]["settings"]["port"] == port and listed[0]["name"] == "省平台"
            await wait_for(lambda: city.platform.cascade.link(PROVINCE).online)
            await wait_for(lambda: registry.get(CITY).registered)       # the saved password works


@pytest.mark.parametrize("store", ["memory"])
async def test_without_a_database_the_api_still_manages_uppers(tmp_path, store):
    async with running(province_config(tmp_path)) as (province, _):
        async with running(make_config(tmp_path / "c", sip_id=CITY, store=store)) as (city, api):
            status, body = await api.call("POST", "/uppers", json=upper_body(province.platform.sip_port))
            assert status == 201
            await wait_for(lambda: city.platform.cascade.link(PROVINCE).online)
            assert [u["sip_id"] for u in await city.platform.store.list_uppers()] == [PROVINCE]


async def test_a_broken_saved_upper_is_skipped_at_start(tmp_path, caplog):
    from sip28181.store import SqliteStore
    config = make_config(tmp_path / "c", sip_id=CITY, upper=({"sip_id": PROVINCE, "host": "127.0.0.1",
                                                             "enabled": False},))
    async with SqliteStore(config.db_path) as store:
        await store.save_upper({"sip_id": MINISTRY, "host": "127.0.0.1", "port": "not a port"})
        await store.save_upper({"sip_id": "45000000002000000001", "host": "127.0.0.1", "enabled": False})
    async with running(config) as (city, api):
        status, listed = await api.get("/uppers")
        assert [(u["sip_id"], u["source"]) for u in listed] == [
            (PROVINCE, "config"), ("45000000002000000001", "api")]
    assert any("saved upper ignored" in r.message and MINISTRY in r.getMessage() for r in caplog.records)
