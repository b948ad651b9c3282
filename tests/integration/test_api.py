"""The HTTP API over real sockets: auth, validation, errors, OpenAPI, metrics, device deletion."""

from __future__ import annotations

import pytest

from sip28181.device import DeviceSimulator

from .conftest import SERVER_ID, TOKEN

DEVICE = "34020000001320000009"


async def test_health_is_open_everything_else_needs_the_token(server, api):
    status, body = await api.get("/api/v1/health", token=None)
    assert status == 200 and body["status"] == "ok" and body["sip_id"] == SERVER_ID
    assert body["sip_port"] == server.sip_port

    status, body = await api.get("/api/v1/devices", token=None)
    assert status == 401 and body["error"]["status"] == 401
    status, body = await api.get("/api/v1/devices", token="wrong")
    assert status == 401
    status, body = await api.get(f"/api/v1/devices?token={TOKEN}", token=None)
    assert status == 200 and body == {"items": [], "total": 0, "offset": 0, "limit": 100}


async def test_bad_parameters_get_json_4xx(server, api):
    status, body = await api.get("/api/v1/devices/123")
    assert status == 400 and "device_id" in str(body["error"])
    status, body = await api.get("/api/v1/devices/34020000001320000999")
    assert status == 404 and "not found" in body["error"]["message"]
    status, body = await api.get("/api/v1/devices?limit=0")
    assert status == 400 and body["error"]["detail"]
    status, body = await api.get("/api/v1/devices?status=sleeping")
    assert status == 400
    status, body = await api.get("/api/v1/nothing-here")
    assert status == 404 and body["error"]["status"] == 404
    status, body = await api.call("POST", "/api/v1/devices")
    assert status == 405 and body["error"]["status"] == 405


async def test_list_filter_paging_and_delete(server, api):
    ids = [f"3402000000132000010{i}" for i in range(3)]
    devices = [DeviceSimulator(d, server_port=server.sip_port, keepalive_interval=30) for d in ids]
    for dev in devices:
        await dev.start()
    await devices[0].stop()          # unregisters: offline
    try:
        status, body = await api.get("/api/v1/devices?status=online")
        assert status == 200 and [d["device_id"] for d in body["items"]] == ids[1:]
        status, body = await api.get("/api/v1/devices?offset=1&limit=1")
        assert body["total"] == 3 and [d["device_id"] for d in body["items"]] == [ids[1]]
        status, body = await api.call("DELETE", f"/api/v1/devices/{ids[0]}")
        assert status == 200 and body == {"device_id": ids[0], "deleted": True}
        status, _ = await api.get(f"/api/v1/devices/{ids[0]}")
        assert status == 404
        await server.platform.flush()
        assert await server.platform.store.get_device(ids[0]) is None
        status, _ = await api.call("DELETE", f"/api/v1/devices/{ids[0]}")
        assert status == 404
    finally:
        for dev in devices[1:]:
            await dev.stop()


async def test_openapi_document_is_complete_and_valid(server, api):
    status, doc = await api.get("/api/v1/openapi.json", token=None)
    assert status == 200 and doc["openapi"].startswith("3.1")
    paths = doc["paths"]
    assert set(paths) >= {"/api/v1/health", "/api/v1/devices", "/api/v1/devices/{device_id}", "/metrics"}
    assert set(paths["/api/v1/devices/{device_id}"]) >= {"get", "delete"}
    management = {
        "/api/v1/devices/{device_id}/channels": {"get"},
        "/api/v1/devices/{device_id}/channels/{channel_id}": {"get"},
        "/api/v1/devices/{device_id}/tree": {"get"},
        "/api/v1/devices/{device_id}/catalog": {"post"},
        "/api/v1/devices/{device_id}/info": {"get"},
        "/api/v1/devices/{device_id}/status": {"get"},
        "/api/v1/devices/{device_id}/config": {"get", "post"},
        "/api/v1/devices/{device_id}/channels/{channel_id}/records": {"get"},
        "/api/v1/devices/{device_id}/channels/{channel_id}/presets": {"get"},
        "/api/v1/devices/{device_id}/channels/{channel_id}/ptz": {"post"},
        "/api/v1/devices/{device_id}/control": {"post"},
        "/api/v1/devices/{device_id}/subscriptions": {"get", "post"},
        "/api/v1/devices/{device_id}/subscriptions/{kind}": {"delete"},
        "/api/v1/devices/{device_id}/positions": {"get"},
        "/api/v1/alarms": {"get"},
        "/api/v1/events": {"get"},
        "/api/v1/stats/online-rate": {"get"},
        "/api/v1/stats/access-rate": {"get"},
        "/api/v1/stats/devices/{list_name}": {"get"},
    }
    for path, methods in management.items():
        assert set(paths[path]) >= methods, path
        for method in methods:
            op = paths[path][method]
            assert op["summary"] and "400" in op["responses"] and "401" in op["responses"], (path, method)
    # live queries document the device errors, bodies their validation errors
    assert {"404", "502", "504"} <= set(paths["/api/v1/devices/{device_id}/info"]["get"]["responses"])
    assert "422" in paths["/api/v1/devices/{device_id}/control"]["post"]["responses"]
    ptz_body = paths["/api/v1/devices/{device_id}/channels/{channel_id}/ptz"]["post"]["requestBody"]
    assert ptz_body["content"]["application/json"]["schema"]
    assert "text/event-stream" in paths["/api/v1/events"]["get"]["responses"]["200"]["content"]
    from openapi_spec_validator import validate

    validate(doc)


async def test_metrics_count_registrations(server, api):
    async with DeviceSimulator(DEVICE, server_port=server.sip_port, keepalive_interval=30):
        status, text = await api.get("/metrics")
    assert status == 200
    from prometheus_client.parser import text_string_to_metric_families

    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for fam in text_string_to_metric_families(text) for s in fam.samples}
    assert samples[("sip28181_registrations_total", (("result", "challenge"),))] >= 1
    assert samples[("sip28181_registrations_total", (("result", "ok"),))] >= 1
    assert samples[("sip28181_devices_online", ())] == 1
