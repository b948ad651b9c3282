"""SUBSCRIBE/NOTIFY over loopback: catalog events applied, refresh in the dialog before expiry,
alarm and position subscriptions, NOTIFY before the 200, termination, unsubscribe."""

from __future__ import annotations

import pytest

from sip28181.manscdp import messages as m
from sip28181.sip.message import Response

from .conftest import wait_for
from .scripted_device import NVR, catalog_items, catalog_packets, channel_id, scripted_server


@pytest.fixture
async def env(config_factory):
    config = config_factory(catalog_query_on_register=False, query_timeout=2.0, catalog_timeout=2.0)
    async with scripted_server(config) as (srv, api, dev):
        dev.answers["Catalog"] = lambda q: catalog_packets(q.sn, NVR, catalog_items(5))
        await srv.platform.query_catalog(NVR)
        yield srv, api, dev


def notify(*items: m.CatalogItem, sn: int = 900) -> m.CatalogNotify:
    return m.CatalogNotify(sn=sn, device_id=NVR, sum_num=len(items), items=list(items))


async def test_catalog_subscription_events(env):
    srv, api, dev = env
    status, body = await api.call("POST", f"/api/v1/devices/{NVR}/subscriptions", json={"kind": "catalog", "expires": 600})
    assert status == 200 and body["state"] == "active" and body["expires"] == 600
    sub_req = dev.subscribes[-1]
    assert sub_req.headers.get("Event") == "Catalog" and sub_req.expires == 600
    assert m.parse(sub_req.body).cmd_type == "Catalog"
    platform = srv.platform
    # OFF, VLOST, DEFECT, ON
    r = await dev.notify(sub_req, notify(m.CatalogItem(device_id=channel_id(0), event="OFF"),
                                         m.CatalogItem(device_id=channel_id(1), event="VLOST"),
                                         m.CatalogItem(device_id=channel_id(2), event="DEFECT")))
    assert r.status == 200
    ch = {c.channel_id: c for c in platform.channels(NVR)}
    assert (ch[channel_id(0)].status, ch[channel_id(1)].status, ch[channel_id(1)].fault) == ("OFF", "OFF", "VLOST")
    assert ch[channel_id(2)].fault == "DEFECT" and ch[channel_id(3)].status == "ON"
    await dev.notify(sub_req, notify(m.CatalogItem(device_id=channel_id(1), event="ON")), cseq=2)
    ch1 = next(c for c in platform.channels(NVR) if c.channel_id == channel_id(1))
    assert (ch1.status, ch1.fault) == ("ON", None)
    # ADD with full fields, UPDATE renames, DEL removes
    added = catalog_items(1, start=42)[0]
    added.event = "ADD"
    await dev.notify(sub_req, notify(added), cseq=3)
    renamed = catalog_items(1, start=3)[0]
    renamed.event, renamed.name = "UPDATE", "Gate North"
    await dev.notify(sub_req, notify(renamed, m.CatalogItem(device_id=channel_id(4), event="DEL")), cseq=4)
    ids = {c.channel_id: c for c in platform.channels(NVR)}
    assert channel_id(42) in ids and channel_id(4) not in ids and ids[channel_id(3)].name == "Gate North"
    status, body = await api.get(f"/api/v1/devices/{NVR}/subscriptions")
    assert status == 200 and body[0]["notifies"] == 4
    await platform.flush()
    stored = {c.channel_id for c in await platform.store.list_channels(NVR)}
    assert channel_id(42) in stored and channel_id(4) not in stored
    # unsubscribe: Expires 0 in the same dialog
    status, body = await api.call("DELETE", f"/api/v1/devices/{NVR}/subscriptions/catalog")
    assert status == 200
    last = dev.subscribes[-1]
    assert last.expires == 0 and last.call_id == sub_req.call_id and last.to.tag
    status, body = await api.call("DELETE", f"/api/v1/devices/{NVR}/subscriptions/catalog")
    assert status == 404
    # a NOTIFY of the ended subscription from the registered device is still accepted (pushing platforms)
    r = await dev.notify(sub_req, notify(m.CatalogItem(device_id=channel_id(0), event="ON")), cseq=5)
    assert r.status == 200


async def test_refresh_in_dialog_before_expiry(env, monkeypatch):
    from sip28181.platform import subscriptions

    monkeypatch.setattr(subscriptions, "MIN_REFRESH", 0.2)
    srv, api, dev = env
    dev.subscribe_expires = 1         # the device grants 1 s: refreshed at 0.8 s
    sub = await srv.platform.management.subscriptions.subscribe(NVR, "catalog", 600)
    await wait_for(lambda: len(dev.subscribes) >= 3, 5)
    first, second, third = dev.subscribes[:3]
    assert first.call_id == second.call_id == third.call_id
    assert second.cseq.number == first.cseq.number + 1 and third.cseq.number == second.cseq.number + 1
    assert second.to.tag and second.from_.tag == first.from_.tag
    # the device forgets the dialog: 481 → a new subscription (new Call-ID)
    dev.forget_dialogs = True
    await wait_for(lambda: len({r.call_id for r in dev.subscribes}) >= 2, 5)
    await wait_for(lambda: (s := srv.platform.management.subscriptions.get(NVR, "catalog")) is not None
                   and s.state == "active" and s.call_id != sub.call_id, 5)


async def test_notify_before_the_200_and_terminated(env):
    """The device NOTIFYs first and answers the SUBSCRIBE only after (a 100 holds it)."""
    srv, api, dev = env
    original = dev._on_subscribe
    responses = []

    async def answer_later(request):
        await wait_for(lambda: any(c.channel_id == channel_id(0) and c.status == "OFF" for c in srv.platform.channels(NVR)))
        dev.sim.endpoint.respond(original(request, None))

    def on_subscribe(request, flow):
        dev.subscribes.append(request)
        dev.spawn(dev.notify(request, notify(m.CatalogItem(device_id=channel_id(0), event="OFF"))))
        dev.spawn(answer_later(request))
        responses.append(request)
        return Response.for_request(request, 100)

    dev.sim.request_handlers["SUBSCRIBE"] = on_subscribe
    sub = await srv.platform.management.subscriptions.subscribe(NVR, "catalog")
    assert sub.state == "active" and sub.notifies == 1
    # terminated by the device: dropped, then renewed while the device is online
    dev.sim.request_handlers["SUBSCRIBE"] = original
    await dev.notify(responses[0], notify(m.CatalogItem(device_id=channel_id(0), event="ON")),
                     state="terminated;reason=timeout", cseq=2)
    await wait_for(lambda: (s := srv.platform.management.subscriptions.get(NVR, "catalog")) is not None
                   and s.call_id != sub.call_id)


async def test_alarm_and_position_subscriptions(env):
    srv, api, dev = env
    status, body = await api.call("POST", f"/api/v1/devices/{NVR}/subscriptions", json={"kind": "alarm"})
    assert status == 200
    alarm_sub = dev.subscribes[-1]
    assert m.parse(alarm_sub.body).cmd_type == "Alarm" and alarm_sub.headers.get("Event") == "presence"
    status, body = await api.call("POST", f"/api/v1/devices/{NVR}/subscriptions", json={"kind": "mobile_position"})
    pos_sub = dev.subscribes[-1]
    assert m.parse(pos_sub.body).interval == 5
    alarm = m.AlarmNotify(sn=77, device_id=channel_id(1), alarm_priority=1, alarm_method=5,
                          alarm_time="2024-05-20T10:00:00", alarm_type=100004,
                          image_urls=["http://192.0.2.1/x.jpg"])
    assert (await dev.notify(alarm_sub, alarm)).status == 200
    position = m.MobilePositionNotify(sn=78, device_id=channel_id(1), time="2024-05-20T10:00:01",
                                      longitude=113.1, latitude=23.1, speed=10.0, direction=45.0)
    assert (await dev.notify(pos_sub, position)).status == 200
    status, body = await api.get("/api/v1/alarms", params={"alarm_type": 100004})
    assert body["total"] == 1 and body["items"][0]["image_urls"] == ["http://192.0.2.1/x.jpg"]
    status, body = await api.get(f"/api/v1/devices/{NVR}/positions")
    assert len(body) == 1 and body[0]["longitude"] == 113.1
    # an alarm by NOTIFY gets no Response MESSAGE (the SIP 200 is its acknowledgement)
    assert not any(q.cmd_type == "Alarm" and q.kind.value == "Response" for q in dev.received)


async def test_bad_subscription_requests(env):
    srv, api, dev = env
    status, _ = await api.call("POST", f"/api/v1/devices/{NVR}/subscriptions", json={"kind": "weather"})
    assert status == 422
    status, _ = await api.call("POST", f"/api/v1/devices/{NVR}/subscriptions", json={"kind": "alarm", "expires": 5})
    assert status == 422
    dev.subscribe_status = 489
    status, body = await api.call("POST", f"/api/v1/devices/{NVR}/subscriptions", json={"kind": "alarm"})
    assert status == 502 and "489" in body["error"]["message"]
    status, _ = await api.call("DELETE", f"/api/v1/devices/{NVR}/subscriptions/weather")
    assert status == 400


async def test_notify_from_strangers_and_bad_bodies(env):
    srv, api, dev = env
    import asyncio
    from sip28181.device import DeviceSimulator

    stranger = DeviceSimulator("34020000001180000077", server_port=srv.sip_port)
    await stranger.start(register=False, keepalive=False)
    try:
        flow = await stranger.server_flow()
        req = stranger.endpoint.build_request("NOTIFY", f"sip:x@127.0.0.1:{srv.sip_port}", from_uri=stranger.uri,
                                              to_uri="sip:34020000002000000001@3402000000", flow=flow,
                                              body=b"<Notify/>", content_type="Application/MANSCDP+xml",
                                              extra=[("Event", "Catalog"), ("Subscription-State", "active")])
        assert (await stranger.endpoint.request(req, flow, timeout=5)).status == 481
    finally:
        await stranger.stop(unregister=False)
    await api.call("POST", f"/api/v1/devices/{NVR}/subscriptions", json={"kind": "catalog"})
    r = await dev.notify(dev.subscribes[-1], "<Notify><CmdType>Catalog</CmdType><SN>x1</SN></Notify>", cseq=7)
    assert r.status == 400
    await asyncio.sleep(0)
    assert len(srv.platform.channels(NVR)) == 5
