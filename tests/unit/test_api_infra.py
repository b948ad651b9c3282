"""HTTP infrastructure: router, validation, JSON errors, token auth, OpenAPI and metrics.

A small app built from dummy models and handlers is served by aiohttp's TestServer on a real
loopback socket.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer, make_mocked_request
from prometheus_client.parser import text_string_to_metric_families
from pydantic import BaseModel, ConfigDict, Field

from sip28181.api import (ApiRouter, HttpError, Metrics, Page, PageQuery, PathParam,
                          RedactingAccessLogger, create_app)
from sip28181.errors import (ConfigError, LocalProtocolError, NotFoundError,
                             RemoteProtocolError, Sip28181Error, TransactionError)

TOKEN = "s3cret-token"
DEV = "34020000001320000001"
DEVICE_ID = PathParam(pattern=r"^\d{20}$", description="20-digit device ID")


class DeviceOut(BaseModel):
    device_id: str
    name: str = ""
    online: bool = False


class DeviceIn(BaseModel):
    name: str = Field(min_length=1, max_length=64)
    online: bool = False


class DeviceQuery(PageQuery):
    model_config = ConfigDict(extra="forbid")
    online: bool | None = None
    status: list[str] = []


class Channel(BaseModel):
    channel_id: str


DEVICES = {DEV: DeviceOut(device_id=DEV, name="大门", online=True)}


def build(*, metrics_public: bool = False) -> tuple[ApiRouter, Metrics]:
    api = ApiRouter(prefix="/api/v1", title="sip28181-test", version="9.9")
    metrics = Metrics()
    metrics.register(api, public=metrics_public)

    @api.get("/health", public=True, tags=["system"])
    async def health(request: web.Request) -> dict[str, str]:
        """Liveness probe."""
        return {"status": "ok"}

    @api.get("/devices", response=Page[DeviceOut], query=DeviceQuery, tags=["devices"])
    async def list_devices(request: web.Request, query: DeviceQuery) -> Page[DeviceOut]:
        """List devices."""
        items = [d for d in DEVICES.values() if query.online is None or d.online == query.online]
        return Page[DeviceOut](items=items[query.offset:query.offset + query.limit],
                               total=len(items), offset=query.offset, limit=query.limit)

    @api.get("/devices/{device_id}", response=DeviceOut, tags=["devices"],
             path_params={"device_id": DEVICE_ID}, errors={404: "device not found"})
    async def get_device(request: web.Request, device_id: str) -> DeviceOut:
        """Get one device."""
        try:
            return DEVICES[device_id]
        except KeyError:
            raise NotFoundError(f"device {device_id} not found") from None

    @api.put("/devices/{device_id}", response=DeviceOut, body=DeviceIn, status=201,
             path_params={"device_id": DEVICE_ID}, tags=["devices"])
    async def put_device(request: web.Request, device_id: str, body: DeviceIn) -> dict[str, Any]:
        """Create or replace a device."""
        return {"device_id": device_id, **body.model_dump()}

    @api.delete("/devices/{device_id}", status=204, path_params={"device_id": DEVICE_ID})
    async def delete_device(request: web.Request, device_id: str) -> None:
        """Forget a device."""

    @api.get("/devices/{device_id}/channels", response=list[Channel],
             path_params={"device_id": DEVICE_ID})
    async def list_channels(request: web.Request, device_id: str) -> list[Channel]:
        return [Channel(channel_id=device_id[:10] + "1310000001")]

    @api.post("/fail/{kind}", body=dict[str, Any])
    async def fail(request: web.Request, kind: str, body: dict[str, Any]) -> None:
        raise {
            "remote": RemoteProtocolError("bad SDP"),
            "remote488": RemoteProtocolError("not acceptable here", status_hint=488),
            "remote503": RemoteProtocolError("busy", status_hint=503),
            "local": LocalProtocolError("no dialog"),
            "config": ConfigError("bad port"),
            "transaction": TransactionError("device did not answer"),
            "timeout": TimeoutError(),
            "sip": Sip28181Error("relay closed"),
            "http": HttpError(409, "device busy", {"session": 7}),
            "bug": ZeroDivisionError("secret internals"),
        }[kind]

    @api.get("/live/{device_id}/{channel_id}.flv", prefixed=False, content_type="video/x-flv",
             path_params={"device_id": DEVICE_ID}, tags=["media"])
    async def live_flv(request: web.Request, device_id: str, channel_id: str) -> web.StreamResponse:
        """HTTP-FLV live stream."""
        response = web.StreamResponse(headers={"Content-Type": "video/x-flv"})
        await response.prepare(request)
        await response.write(b"FLV\x01")
        await response.write(channel_id.encode())
        return response

    @api.get("/broken.flv", prefixed=False, content_type="video/x-flv")
    async def broken_stream(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "video/x-flv"})
        await response.prepare(request)
        await response.write(b"FLV\x01")
        raise RuntimeError("source vanished")

    return api, metrics


@pytest.fixture
async def open_client():
    api, _ = build()
    async with TestClient(TestServer(create_app(api))) as client:
        yield client


@pytest.fixture
async def client():
    api, _ = build()
    async with TestClient(TestServer(create_app(api, token=TOKEN))) as client:
        yield client


AUTH = {"Authorization": f"Bearer {TOKEN}"}


async def error_of(response, status: int) -> dict[str, Any]:
    assert response.status == status
    assert response.content_type == "application/json"
    body = await response.json()
    assert set(body) == {"error"}
    assert body["error"]["status"] == status
    assert isinstance(body["error"]["message"], str)
    return body["error"]


# --- routes and rendering ---------------------------------------------------------------------

async def test_get_model(open_client):
    r = await open_client.get(f"/api/v1/devices/{DEV}")
    assert r.status == 200
    assert await r.json() == {"device_id": DEV, "name": "大门", "online": True}


async def test_page_and_query_parsing(open_client):
    r = await open_client.get("/api/v1/devices", params={"online": "true", "limit": "5"})
    assert r.status == 200
    assert await r.json() == {"items": [DEVICES[DEV].model_dump()], "total": 1, "offset": 0,
                              "limit": 5}
    r = await open_client.get("/api/v1/devices?online=false")
    assert (await r.json())["items"] == []


async def test_repeated_query_values_fill_list_fields(open_client):
    r = await open_client.get("/api/v1/devices?status=ON&status=OFF&limit=1")
    assert r.status == 200


async def test_list_response(open_client):
    r = await open_client.get(f"/api/v1/devices/{DEV}/channels")
    assert await r.json() == [{"channel_id": "34020000001310000001"}]


async def test_body_and_status(open_client):
    r = await open_client.put(f"/api/v1/devices/{DEV}", json={"name": "后门"})
    assert r.status == 201
    assert await r.json() == {"device_id": DEV, "name": "后门", "online": False}


async def test_no_content(open_client):
    r = await open_client.delete(f"/api/v1/devices/{DEV}")
    assert r.status == 204
    assert await r.read() == b""


async def test_stream_response_passes_through(open_client):
    r = await open_client.get(f"/live/{DEV}/34020000001310000001.flv")
    assert r.status == 200
    assert r.content_type == "video/x-flv"
    assert await r.read() == b"FLV\x0134020000001310000001"


async def test_error_after_stream_started_sends_no_error_body(open_client, caplog):
    with caplog.at_level(logging.ERROR, logger="sip28181.api"):
        r = await open_client.get("/broken.flv")
        assert r.status == 200
        try:
            data = await r.read()
        except Exception:  # the connection is cut mid-stream  # noqa: BLE001
            data = b""
    assert b"error" not in data
    assert any(rec.exc_info and rec.exc_info[0] is RuntimeError for rec in caplog.records)


# --- request validation -----------------------------------------------------------------------

async def test_path_pattern_mismatch_is_400(open_client):
    err = await error_of(await open_client.get("/api/v1/devices/12345"), 400)
    assert err["detail"][0]["loc"] == ["path", "device_id"]
    err = await error_of(await open_client.get("/live/abc/1.flv"), 400)
    assert err["detail"][0]["loc"] == ["path", "device_id"]


@pytest.mark.parametrize("qs, field", [("limit=0", "limit"), ("limit=many", "limit"),
                                       ("offset=-1", "offset"), ("online=perhaps", "online"),
                                       ("unknown=1", "unknown")])
async def test_query_validation_is_400(open_client, qs, field):
    err = await error_of(await open_client.get(f"/api/v1/devices?{qs}"), 400)
    assert err["message"] == "invalid query parameters"
    assert [d["loc"] for d in err["detail"]] == [["query", field]]
    assert "input" not in err["detail"][0]


async def test_body_validation_is_422(open_client):
    err = await error_of(await open_client.put(f"/api/v1/devices/{DEV}", json={"name": ""}), 422)
    assert err["detail"][0]["loc"] == ["body", "name"]
    err = await error_of(await open_client.put(f"/api/v1/devices/{DEV}", json=[1, 2]), 422)


@pytest.mark.parametrize("data", [b'{"name": ', b"not json", b"\xff\xfe\x00garbage", b"", b"  "])
async def test_malformed_or_missing_body_is_400(open_client, data):
    r = await open_client.put(f"/api/v1/devices/{DEV}", data=data,
                              headers={"Content-Type": "application/json"})
    await error_of(r, 400)


async def test_body_too_large_is_413_json():
    api, _ = build()
    app = create_app(api, client_max_size=64)
    async with TestClient(TestServer(app)) as client:
        r = await client.put(f"/api/v1/devices/{DEV}", json={"name": "x" * 200})
        await error_of(r, 413)


# --- error mapping ----------------------------------------------------------------------------

async def test_unknown_route_is_404_json(open_client):
    err = await error_of(await open_client.get("/api/v1/nothing-here"), 404)
    assert err["message"] == "Not Found"


async def test_wrong_method_is_405_json(open_client):
    r = await open_client.post("/api/v1/health")
    err = await error_of(r, 405)
    assert r.headers["Allow"] == "GET"
    assert err["detail"] == {"method": "POST", "allowed": ["GET"]}


async def test_not_found_error_is_404(open_client):
    err = await error_of(await open_client.get("/api/v1/devices/34020000001329999999"), 404)
    assert err["message"] == "device 34020000001329999999 not found"


@pytest.mark.parametrize("kind, status, message", [
    ("remote", 400, "bad SDP"),
    ("remote488", 400, "not acceptable here"),
    ("remote503", 503, "busy"),
    ("local", 400, "no dialog"),
    ("config", 400, "bad port"),
    ("transaction", 504, "device did not answer"),
    ("timeout", 504, "timed out"),
    ("sip", 500, "relay closed"),
    ("http", 409, "device busy"),
])
async def test_exception_mapping(open_client, kind, status, message):
    err = await error_of(await open_client.post(f"/api/v1/fail/{kind}", json={}), status)
    assert err["message"] == message


async def test_unexpected_exception_is_500_without_traceback(open_client, caplog):
    with caplog.at_level(logging.ERROR, logger="sip28181.api"):
        r = await open_client.post("/api/v1/fail/bug", json={})
        text = await r.text()
    assert r.status == 500
    assert json.loads(text) == {"error": {"status": 500, "message": "internal error",
                                          "detail": None}}
    for leak in ("Traceback", "ZeroDivisionError", "secret internals", "test_api_infra"):
        assert leak not in text
    assert any(rec.exc_info and rec.exc_info[0] is ZeroDivisionError for rec in caplog.records)


# --- auth -------------------------------------------------------------------------------------

async def test_bearer_header(client):
    assert (await client.get(f"/api/v1/devices/{DEV}", headers=AUTH)).status == 200


async def test_query_token_is_not_a_query_parameter(client):
    # DeviceQuery forbids unknown fields: the auth token must not reach it.
    r = await client.get("/api/v1/devices", params={"token": TOKEN, "limit": "2"})
    assert r.status == 200
    assert (await r.json())["limit"] == 2


async def test_query_token_for_players(client):
    r = await client.get(f"/live/{DEV}/1.flv?token={TOKEN}")
    assert r.status == 200


async def test_missing_token_is_401(client):
    r = await client.get(f"/api/v1/devices/{DEV}")
    err = await error_of(r, 401)
    assert err["message"] == "authentication required"
    assert r.headers["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.parametrize("headers, qs", [({"Authorization": "Bearer wrong"}, ""),
                                         ({"Authorization": f"Basic {TOKEN}"}, "?token=nope"),
                                         ({}, f"?token={TOKEN}x")])
async def test_wrong_token_is_401(client, headers, qs):
    r = await client.get(f"/api/v1/devices/{DEV}{qs}", headers=headers)
    err = await error_of(r, 401)
    assert err["message"] == "invalid token"
    assert 'error="invalid_token"' in r.headers["WWW-Authenticate"]


async def test_public_routes(client):
    assert (await client.get("/api/v1/health")).status == 200
    assert (await client.get("/api/v1/openapi.json")).status == 200


async def test_unknown_paths_need_the_token(client):
    await error_of(await client.get("/api/v1/nothing-here"), 401)
    await error_of(await client.get("/api/v1/nothing-here", headers=AUTH), 404)


async def test_metrics_protected_by_default(client):
    await error_of(await client.get("/metrics"), 401)
    assert (await client.get("/metrics", headers=AUTH)).status == 200


async def test_metrics_can_be_public():
    api, _ = build(metrics_public=True)
    async with TestClient(TestServer(create_app(api, token=TOKEN))) as client:
        assert (await client.get("/metrics")).status == 200
        await error_of(await client.get(f"/api/v1/devices/{DEV}"), 401)


async def test_no_token_configured_means_open(open_client):
    assert (await open_client.get("/metrics")).status == 200


def test_access_log_redacts_query_token(caplog):
    logger = logging.getLogger("test.access")
    access = RedactingAccessLogger(logger, '%a "%r" %s')
    request = make_mocked_request("GET", f"/live/{DEV}/1.flv?a=1&token={TOKEN}&b=2")
    with caplog.at_level(logging.INFO, logger="test.access"):
        access.log(request, web.Response(), 0.01)
    assert TOKEN not in caplog.text
    assert "token=***&b=2" in caplog.text


# --- OpenAPI ----------------------------------------------------------------------------------

def _refs(node: Any):
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref":
                yield value
            else:
                yield from _refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from _refs(value)


def _resolve(doc: dict[str, Any], ref: str) -> Any:
    assert ref.startswith("#/")
    node: Any = doc
    for part in ref[2:].split("/"):
        node = node[part]
    return node


async def test_openapi_document(open_client):
    r = await open_client.get("/api/v1/openapi.json")
    assert r.status == 200
    doc = await r.json()
    api, _ = build()
    assert doc == json.loads(json.dumps(api.openapi()))

    assert doc["openapi"] == "3.1.0"
    assert doc["info"] == {"title": "sip28181-test", "version": "9.9"}
    for route in api.routes:
        if route.include_in_schema:
            op = doc["paths"][route.path][route.method.lower()]
            assert op["operationId"] == route.operation_id
            documented = {(p["in"], p["name"]) for p in op.get("parameters", ())}
            assert {("path", n) for n in route.path_params} <= documented
            assert str(route.status) in op["responses"]
    assert "/api/v1/openapi.json" not in doc["paths"]

    for ref in set(_refs(doc)):
        assert isinstance(_resolve(doc, ref), dict), ref

    schemes = doc["components"]["securitySchemes"]
    assert schemes["bearerAuth"] == {**schemes["bearerAuth"], "type": "http", "scheme": "bearer"}
    assert schemes["tokenQuery"]["in"] == "query" and schemes["tokenQuery"]["name"] == "token"
    assert doc["security"] == [{"bearerAuth": []}, {"tokenQuery": []}]
    assert doc["paths"]["/api/v1/health"]["get"]["security"] == []
    assert "security" not in doc["paths"]["/metrics"]["get"]

    error = _resolve(doc, "#/components/schemas/ApiError")
    body = _resolve(doc, error["properties"]["error"]["$ref"])
    assert set(body["properties"]) == {"status", "message", "detail"}


def test_openapi_operation_details():
    api, _ = build()
    doc = api.openapi()
    schemas = doc["components"]["schemas"]

    get = doc["paths"]["/api/v1/devices/{device_id}"]["get"]
    assert get["summary"] == "Get one device."
    assert get["parameters"] == [{"name": "device_id", "in": "path", "required": True,
                                  "schema": {"type": "string", "pattern": r"^\d{20}$"},
                                  "description": "20-digit device ID"}]
    assert get["responses"]["200"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/DeviceOut"}
    assert set(get["responses"]) == {"200", "400", "401", "404"}
    assert get["responses"]["404"]["description"] == "device not found"

    listing = doc["paths"]["/api/v1/devices"]["get"]
    params = {p["name"]: p for p in listing["parameters"]}
    assert set(params) == {"offset", "limit", "online", "status"}
    assert all(p["in"] == "query" and not p["required"] for p in params.values())
    assert params["limit"]["schema"]["maximum"] == 1000
    assert params["status"]["schema"]["type"] == "array"
    page = _resolve(doc, listing["responses"]["200"]["content"]["application/json"]["schema"]["$ref"])
    assert set(page["properties"]) == {"items", "total", "offset", "limit"}
    assert "DeviceQuery" not in schemas  # documented as parameters only

    put = doc["paths"]["/api/v1/devices/{device_id}"]["put"]
    assert put["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/DeviceIn"}
    assert {"201", "400", "401", "422"} <= set(put["responses"])

    channels = doc["paths"]["/api/v1/devices/{device_id}/channels"]["get"]
    assert channels["responses"]["200"]["content"]["application/json"]["schema"] == {
        "type": "array", "items": {"$ref": "#/components/schemas/Channel"}}

    assert "content" not in doc["paths"]["/api/v1/devices/{device_id}"]["delete"]["responses"]["204"]
    flv = doc["paths"]["/live/{device_id}/{channel_id}.flv"]["get"]
    assert "video/x-flv" in flv["responses"]["200"]["content"]
    assert "text/plain" in doc["paths"]["/metrics"]["get"]["responses"]["200"]["content"]
    assert {t["name"] for t in doc["tags"]} == {"system", "devices", "media", "monitoring"}


def test_openapi_validates_against_the_specification():
    validator = pytest.importorskip("openapi_spec_validator")
    api, _ = build()
    validator.validate(api.openapi())


# --- registration errors ----------------------------------------------------------------------

def test_registration_mistakes_fail_early():
    api = ApiRouter()

    async def handler(request: web.Request, device_id: str) -> None: ...

    with pytest.raises(ValueError, match="regular expressions"):
        api.add("GET", r"/d/{device_id:\d+}", handler)
    with pytest.raises(ValueError, match="not in"):
        api.add("GET", "/d/{device_id}", handler, path_params={"channel_id": PathParam()})
    with pytest.raises(TypeError, match="query"):
        api.add("GET", "/d/{device_id}", handler, query=DeviceQuery)
    with pytest.raises(TypeError, match="async"):
        api.add("GET", "/d/{device_id}", lambda request, device_id: None)
    api.add("GET", "/d/{device_id}", handler)
    with pytest.raises(ValueError, match="already registered|duplicate"):
        api.add("GET", "/d/{device_id}", handler, operation_id="other")
    with pytest.raises(ValueError, match="duplicate operation id"):
        api.add("GET", "/e/{device_id}", handler)
    api.install(web.Application())
    with pytest.raises(RuntimeError):
        api.add("GET", "/f/{device_id}", handler, operation_id="late")


# --- metrics ----------------------------------------------------------------------------------

EXPECTED_METRICS = {
    "sip28181_registrations": "counter", "sip28181_devices_online": "gauge",
    "sip28181_devices_registered": "gauge", "sip28181_keepalives": "counter",
    "sip28181_sip_messages": "counter", "sip28181_sip_parse_errors": "counter",
    "sip28181_presence_changes": "counter", "sip28181_media_streams": "gauge",
    "sip28181_rtp_packets_lost": "counter", "sip28181_rtp_packets_received": "counter",
}


async def test_metrics_endpoint_parses():
    api, metrics = build()
    metrics.registrations.labels(result="challenge").inc()
    metrics.registrations.labels(result="ok").inc(2)
    metrics.devices_online.set(3)
    metrics.sip_messages.labels(direction="in", method="REGISTER").inc()
    metrics.rtp_packets_received.inc(100)
    async with TestClient(TestServer(create_app(api))) as client:
        r = await client.get("/metrics")
        assert r.status == 200
        assert r.content_type == "text/plain"
        text = await r.text()
    families = {f.name: f for f in text_string_to_metric_families(text)}
    for name, kind in EXPECTED_METRICS.items():
        assert families[name].type == kind, name
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for f in families.values() for s in f.samples}
    assert samples[("sip28181_registrations_total", (("result", "ok"),))] == 2
    assert samples[("sip28181_registrations_total", (("result", "throttled"),))] == 0
    assert samples[("sip28181_devices_online", ())] == 3
    assert samples[("sip28181_sip_messages_total",
                    (("direction", "in"), ("method", "REGISTER")))] == 1
    assert samples[("sip28181_rtp_packets_received_total", ())] == 100


async def test_metrics_openmetrics_negotiation():
    api, _ = build()
    async with TestClient(TestServer(create_app(api))) as client:
        r = await client.get("/metrics", headers={"Accept": "application/openmetrics-text"})
        assert r.content_type == "application/openmetrics-text"
        assert (await r.text()).rstrip().endswith("# EOF")


def test_metrics_registries_are_private():
    a, b = Metrics(), Metrics(process=False)
    a.keepalives.inc(5)
    assert b.registry.get_sample_value("sip28181_keepalives_total") == 0
    assert a.registry.get_sample_value("sip28181_keepalives_total") == 5
    body, content_type = b.render()
    assert content_type.startswith("text/plain")
    assert b"process_" not in body
