"""A scripted upper platform (a bare SIP endpoint) against a real city server with a camera.

It checks on the wire what the city sends up: catalog answers split in ``catalog_group`` items with
one SN and SumNum, GB2312; the subscription dialog (200 with Expires, Event echoed, NOTIFYs with
Subscription-State, refresh, ``Expires: 0``, expiry); and the answers to bad input.
"""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from sip28181.device import DeviceSimulator
from sip28181.endpoint import SipEndpoint
from sip28181.manscdp import messages as m
from sip28181.server import Server
from sip28181.sip.dialog import Dialog, new_tag
from sip28181.sip.message import Request, Response
from sip28181.transport import Flow

from ..integration.conftest import make_config, wait_for

CITY = "44010000002000000001"
UPPER = "44000000002000000001"
CAMERA = "44010600001180000001"
MANSCDP = "Application/MANSCDP+xml"


class ScriptedUpper:
    """Answers 200 to everything (REGISTER included) and keeps what it received."""

    def __init__(self) -> None:
        self.endpoint = SipEndpoint(self._on_request, user_agent="scripted-upper")
        self.received: list[Request] = []
        self.notify_status = 200
        #: when set, catalog answers are received but not answered (kept here) until released
        self.held: list[Request] | None = None

    def _on_request(self, request: Request, flow: Flow) -> None:
        self.received.append(request)
        if self.held is not None and request.method == "MESSAGE" and b"<Response>" in request.body:
            self.held.append(request)
            return
        status = self.notify_status if request.method == "NOTIFY" else 200
        self.endpoint.respond(Response.for_request(request, status, to_tag=new_tag()))

    def bodies(self, method: str, cmd_type: str) -> list[tuple[Request, m.Message]]:
        out = []
        for r in self.received:
            if r.method == method and r.body:
                msg = m.parse(r.body)
                if msg.cmd_type == cmd_type:
                    out.append((r, msg))
        return out

    def flow(self, city: Server) -> Flow:
        return Flow("UDP", "127.0.0.1", city.platform.sip_port)

    def request(self, city: Server, method: str, body: bytes = b"", *, extra=(), call_id=None) -> Request:
        return self.endpoint.build_request(
            method, f"sip:{CITY}@127.0.0.1:{city.platform.sip_port}", from_uri=f"sip:{UPPER}@4400000000",
            to_uri=f"sip:{CITY}@4401000000", flow=self.flow(city), body=body,
            content_type=MANSCDP if body else None, call_id=call_id,
            extra=[("Contact", f"<sip:{UPPER}@127.0.0.1:{self.endpoint.port}>"), *extra])

    async def send(self, city: Server, request: Request) -> Response:
        return await self.endpoint.request(request, self.flow(city), timeout=5)


@contextlib.asynccontextmanager
async def city_with_upper(tmp_path, **upper_kw):
    upper = ScriptedUpper()
    await upper.endpoint.start("127.0.0.1", 0, tcp=False)
    city = Server(make_config(tmp_path, sip_id=CITY, password="city-secret", catalog_query_delay=0.0, upper=({
        "sip_id": UPPER, "host": "127.0.0.1", "port": upper.endpoint.port, "keepalive_interval": 30,
        **upper_kw},)))
    await city.start()
    try:
        # the camera comes after the link is up: what exists when an upper registers us counts as
        # known to it (it queries the catalog), so only later channels are announced as ADD
        await wait_for(lambda: city.platform.cascade.link(UPPER).online, 15)
        async with DeviceSimulator(CAMERA, server_id=CITY, server_port=city.platform.sip_port,
                                   password="city-secret", keepalive_interval=30, channels=5,
                                   management={"groups": 1}) as sim:
            await wait_for(lambda: len(city.platform.management.catalog.channels(CAMERA)) == 7, 15)
            await wait_for(lambda: told(upper, "ADD") >= set(sim.management.channel_ids), 15)
            upper.received.clear()
            yield upper, city, sim
    finally:
        await city.stop()
        await upper.endpoint.close()


def told(upper: ScriptedUpper, event: str) -> set[str]:
    """IDs the upper was sent a catalog ``event`` for (by MESSAGE or NOTIFY)."""
    return {i.device_id for method in ("MESSAGE", "NOTIFY") for _, msg in upper.bodies(method, "Catalog")
            if msg.kind is m.Kind.NOTIFY for i in msg.items if i.event == event}


def query(cmd: type, device_id: str, sn: int, **kw) -> bytes:
    return cmd(sn=sn, device_id=device_id, **kw).encode()


async def test_catalog_answer_is_split_and_gb2312(tmp_path):
    async with city_with_upper(tmp_path, catalog_group=3) as (upper, city, sim):
        response = await upper.send(city, upper.request(city, "MESSAGE", query(m.CatalogQuery, CITY, 77)))
        assert response.status == 200
        parts = await wait_for(lambda: (p := upper.bodies("MESSAGE", "Catalog")) and len(p) == 3 and p)
        # 1 platform node + 1 business group + 1 VO + 5 channels = 8 items, 3 per message
        assert [len(msg.items) for _, msg in parts] == [3, 3, 2]
        assert {msg.sn for _, msg in parts} == {77} and {msg.sum_num for _, msg in parts} == {8}
        assert all(r.body.startswith(b'<?xml version="1.0" encoding="GB2312"?>') for r, _ in parts)
        items = [i for _, msg in parts for i in msg.items]
        assert items[0].device_id == CITY and items[0].parental == 1
        names = {i.device_id: i.name for i in items}
        assert names[sim.management.channel_ids[0]] == "通道1"
        assert "通道1".encode("gb2312") in parts[1][0].body + parts[2][0].body + parts[0][0].body

        # a subtree (2022 Annex J): the virtual organisation and its channels
        vo = next(c for c in sim.management.catalog if c[10:13] == "216")
        await upper.send(city, upper.request(city, "MESSAGE", query(m.CatalogQuery, vo, 78)))
        sub = await wait_for(lambda: [msg for _, msg in upper.bodies("MESSAGE", "Catalog") if msg.sn == 78])
        assert sub[0].sum_num == 6 and sub[0].device_id == vo
        # an ID the upper was never shown: an empty answer
        await upper.send(city, upper.request(city, "MESSAGE", query(m.CatalogQuery, "44999999992160000001", 79)))
        empty = await wait_for(lambda: [msg for _, msg in upper.bodies("MESSAGE", "Catalog") if msg.sn == 79])
        assert empty[0].sum_num == 0 and empty[0].items == []


async def test_next_part_waits_for_the_200_of_the_previous_one(tmp_path):
    async with city_with_upper(tmp_path, catalog_group=4) as (upper, city, sim):
        upper.held = []
        await upper.send(city, upper.request(city, "MESSAGE", query(m.CatalogQuery, CITY, 5)))
        await wait_for(lambda: upper.held)
        await asyncio.sleep(0.3)
        assert len(upper.held) == 1                   # nothing more until the first is answered
        first = upper.held.pop()
        upper.endpoint.respond(Response.for_request(first, 200, to_tag=new_tag()))
        await wait_for(lambda: upper.held)
        second = upper.held.pop()
        assert m.parse(second.body).sn == m.parse(first.body).sn == 5
        upper.endpoint.respond(Response.for_request(second, 200, to_tag=new_tag()))
        upper.held = None


async def test_device_info_status_and_keepalive_from_upper(tmp_path):
    async with city_with_upper(tmp_path) as (upper, city, sim):
        channel = sim.management.channel_ids[2]
        for sn, (cmd, target) in enumerate([(m.DeviceInfoQuery, CITY), (m.DeviceStatusQuery, CITY),
                                            (m.DeviceStatusQuery, channel),
                                            (m.DeviceStatusQuery, "44010600001319999999")], start=10):
            response = await upper.send(city, upper.request(city, "MESSAGE", query(cmd, target, sn)))
            assert response.status == 200
        info = (await wait_for(lambda: upper.bodies("MESSAGE", "DeviceInfo")))[0][1]
        assert info.result == "OK" and info.channel == 5 and info.device_id == CITY
        statuses = await wait_for(lambda: len(upper.bodies("MESSAGE", "DeviceStatus")) == 3
                                  and {msg.sn: msg for _, msg in upper.bodies("MESSAGE", "DeviceStatus")})
        assert statuses[11].result == "OK" and statuses[11].online == "ONLINE"
        assert statuses[12].result == "OK" and statuses[12].online == "ONLINE" and statuses[12].device_id == channel
        assert statuses[13].result == "ERROR"
        keepalive = m.KeepaliveNotify(sn=5, device_id=UPPER, status="OK").encode()
        assert (await upper.send(city, upper.request(city, "MESSAGE", keepalive))).status == 200
        # the camera goes offline: the channels' status follows
        await sim.stop()
        await wait_for(lambda: city.platform.registry.get(CAMERA).status == "offline")
        await upper.send(city, upper.request(city, "MESSAGE", query(m.DeviceStatusQuery, channel, 20)))
        late = await wait_for(lambda: [msg for _, msg in upper.bodies("MESSAGE", "DeviceStatus") if msg.sn == 20])
        assert late[0].result == "OK" and late[0].online == "OFFLINE"
        off = await wait_for(lambda: [i for _, msg in upper.bodies("MESSAGE", "Catalog")
                                      if msg.kind is m.Kind.NOTIFY for i in msg.items if i.event == "OFF"])
        assert {i.device_id for i in off} == set(sim.management.channel_ids)


async def test_subscription_dialog(tmp_path):
    async with city_with_upper(tmp_path) as (upper, city, sim):
        subscribe = upper.request(city, "SUBSCRIBE", query(m.CatalogQuery, CITY, 300),
                                  extra=[("Event", "Catalog;id=4711"), ("Expires", 600)])
        response = await upper.send(city, subscribe)
        assert response.status == 200 and response.expires == 600
        assert response.headers.get("Event") == "Catalog;id=4711"
        assert response.to.tag and response.contacts
        ack = m.parse(response.body)
        assert ack.kind is m.Kind.RESPONSE and ack.find_extra("Result").text == "OK"
        subs = city.platform.cascade.subscriptions
        [sub] = subs.active(UPPER, "Catalog")

        await sim.notify_catalog("OFF", [sim.management.channel_ids[1]])
        notify = await wait_for(lambda: [r for r in upper.received if r.method == "NOTIFY"])
        notify = notify[0]
        assert notify.call_id == subscribe.call_id and notify.to.tag == subscribe.from_.tag
        assert notify.from_.tag == response.to.tag
        assert notify.headers.get("Event") == "Catalog;id=4711"
        state = notify.headers.get("Subscription-State")
        assert state.startswith("active;expires=") and 0 < int(state.split("=")[1]) <= 600
        body = m.parse(notify.body)
        assert [(i.device_id, i.event) for i in body.items] == [(sim.management.channel_ids[1], "OFF")]
        assert not [r for r in upper.received if r.method == "MESSAGE" and b"<Notify>" in r.body
                    and b"Catalog" in r.body]      # subscribed: changes go in the dialog only

        dialog = Dialog(call_id=subscribe.call_id, local_tag=subscribe.from_.tag, remote_tag=response.to.tag,
                        local_uri=f"<sip:{UPPER}@4400000000>", remote_uri=f"<sip:{CITY}@4401000000>",
                        remote_target=str(response.contacts[0].uri), route_set=[], local_cseq=1, remote_cseq=None,
                        invite_cseq=1, via_transport="UDP", via_host="127.0.0.1", via_port=upper.endpoint.port,
                        role="uac")
        refresh = dialog.create_request("SUBSCRIBE", query(m.CatalogQuery, CITY, 301), MANSCDP,
                                        headers=[("Event", "Catalog;id=4711"), ("Expires", 1200)])
        response = await upper.send(city, refresh)
        assert response.status == 200 and response.expires == 1200
        assert 600 < sub.remaining() <= 1200
        # a stale CSeq in the dialog is refused
        dialog.local_cseq = 0
        stale = dialog.create_request("SUBSCRIBE", b"", None, headers=[("Expires", 60)])
        assert (await upper.send(city, stale)).status == 500
        dialog.local_cseq = 10
        end = dialog.create_request("SUBSCRIBE", b"", None, headers=[("Event", "Catalog;id=4711"), ("Expires", 0)])
        response = await upper.send(city, end)
        assert response.status == 200 and response.expires == 0
        final = await wait_for(lambda: [r for r in upper.received if r.method == "NOTIFY"
                                        and r.headers.get("Subscription-State", "").startswith("terminated")])
        assert final[0].call_id == subscribe.call_id
        assert not subs.active(UPPER, "Catalog") and sub.terminated
        # the dialog is gone
        again = dialog.create_request("SUBSCRIBE", b"", None, headers=[("Expires", 60)])
        assert (await upper.send(city, again)).status == 481


async def test_subscription_to_a_subtree_hears_only_of_it(tmp_path):
    async with city_with_upper(tmp_path) as (upper, city, sim):
        vo = next(c for c in sim.management.catalog if c[10:13] == "216")
        request = upper.request(city, "SUBSCRIBE", query(m.CatalogQuery, vo, 1), extra=[("Event", "Catalog"),
                                                                                        ("Expires", 600)])
        assert (await upper.send(city, request)).status == 200
        lone = "44010600001320000077"
        async with DeviceSimulator(lone, server_id=CITY, server_port=city.platform.sip_port, password="city-secret",
                                   keepalive_interval=30, channels=0):
            await wait_for(lambda: city.platform.cascade.resolve(city.platform.cascade.link(UPPER), lone))
            await sim.notify_catalog("OFF", [sim.management.channel_ids[3]])
            notifies = await wait_for(lambda: [r for r in upper.received if r.method == "NOTIFY"])
        events = [(i.device_id, i.event) for r in notifies for i in m.parse(r.body).items]
        assert events == [(sim.management.channel_ids[3], "OFF")]
        assert lone not in str(events)


async def test_subscription_expires_and_forgotten_dialog(tmp_path):
    async with city_with_upper(tmp_path) as (upper, city, sim):
        subs = city.platform.cascade.subscriptions
        short = upper.request(city, "SUBSCRIBE", query(m.CatalogQuery, CITY, 1), extra=[("Event", "Catalog"),
                                                                                        ("Expires", 1)])
        assert (await upper.send(city, short)).status == 200
        final = await wait_for(lambda: [r for r in upper.received if r.method == "NOTIFY"
                                        and r.call_id == short.call_id])
        assert final[0].headers.get("Subscription-State") == "terminated;reason=timeout"
        assert not subs.active(UPPER, "Catalog")

        # an upper that answers a NOTIFY with 481 forgot the dialog: the subscription ends
        sub_req = upper.request(city, "SUBSCRIBE", query(m.CatalogQuery, CITY, 2), extra=[("Event", "Catalog"),
                                                                                          ("Expires", 600)])
        assert (await upper.send(city, sub_req)).status == 200
        await wait_for(lambda: subs.active(UPPER, "Catalog"))
        upper.notify_status = 481
        await sim.notify_catalog("OFF", [sim.management.channel_ids[0]])
        await wait_for(lambda: not subs.active(UPPER, "Catalog"))


@pytest.mark.parametrize("body, extra, status", [
    (b"<Query><CmdType>Catalog</CmdType><SN>abc</SN></Query>", [("Expires", 60)], 400),
    (b"not xml at all <<<", [("Expires", 60)], 400),
    (b"", [("Expires", 60)], 400),
    (m.DeviceInfoQuery(sn=1, device_id=CITY).encode(), [("Expires", 60)], 489),
    (m.CatalogQuery(sn=1, device_id=CITY).encode(), [("Expires", "soon")], 400),
])
async def test_bad_subscribe_is_refused(tmp_path, body, extra, status):
    async with city_with_upper(tmp_path) as (upper, city, sim):
        response = await upper.send(city, upper.request(city, "SUBSCRIBE", body, extra=[("Event", "Catalog"), *extra]))
        assert response.status == status and response.reason
        assert not city.platform.cascade.subscriptions.all()
        # a refresh for a dialog that never existed
        stray = upper.request(city, "SUBSCRIBE", m.CatalogQuery(sn=2, device_id=CITY).encode(),
                              extra=[("Event", "Catalog"), ("Expires", 60)])
        stray.headers.set("To", f"<sip:{CITY}@4401000000>;tag=nosuchtag")
        assert (await upper.send(city, stray)).status == 481
        # bad MESSAGE bodies from the upper get 4xx, the city keeps working
        bad = upper.request(city, "MESSAGE", b"<Query><SN>1</SN></Query>")
        assert 400 <= (await upper.send(city, bad)).status < 500
        ok = await upper.send(city, upper.request(city, "MESSAGE", query(m.DeviceInfoQuery, CITY, 9)))
        assert ok.status == 200
        await wait_for(lambda: upper.bodies("MESSAGE", "DeviceInfo"))
        await asyncio.sleep(0)
