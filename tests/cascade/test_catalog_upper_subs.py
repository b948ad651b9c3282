"""An upper's subscriptions and notifications against a real city, over real sockets: they outlive
new settings and end with the upper, a new subscription supersedes the old one, catalog changes the
upper did not take go again, alarms queue per upper; requests under an upper's ID from elsewhere are
refused, an upper that is also our lower registers; shutdown unregisters from every upper at once.
"""

from __future__ import annotations

import asyncio
import dataclasses

import pytest

from sip28181.cascade import northbound
from sip28181.device import DeviceSimulator
from sip28181.endpoint import SipEndpoint
from sip28181.manscdp import messages as m
from sip28181.platform.events import AlarmReceived
from sip28181.server import Server
from sip28181.sip.dialog import Dialog, new_tag
from sip28181.sip.message import Request, Response
from sip28181.transport import Flow

from ..integration.conftest import loop_errors, make_config, wait_for  # noqa: F401  (autouse)
from .test_catalog_upper import CAMERA, CITY, MANSCDP, UPPER, ScriptedUpper, city_with_upper, query, told


def subscribe(upper: ScriptedUpper, city: Server, target: str, cmd: type = m.CatalogQuery, *,
              expires: int = 600, event: str = "Catalog", **kw) -> Request:
    return upper.request(city, "SUBSCRIBE", query(cmd, target, 1, **kw), extra=[("Event", event), ("Expires", expires)])


def in_dialog(upper: ScriptedUpper, request: Request, response: Response) -> Dialog:
    """The upper's side of the subscription dialog ``request`` opened."""
    return Dialog(call_id=request.call_id, local_tag=request.from_.tag, remote_tag=response.to.tag,
                  local_uri=f"<sip:{UPPER}@4400000000>", remote_uri=f"<sip:{CITY}@4401000000>",
                  remote_target=str(response.contacts[0].uri), route_set=[], local_cseq=5, remote_cseq=None,
                  invite_cseq=1, via_transport="UDP", via_host="127.0.0.1", via_port=upper.endpoint.port, role="uac")


def notifies(upper: ScriptedUpper, call_id: str, state: str = "") -> list[Request]:
    return [r for r in upper.received if r.method == "NOTIFY" and r.call_id == call_id
            and r.headers.get("Subscription-State", "").startswith(state)]


def tasks(server: Server, name: str) -> list[asyncio.Task]:
    return [t for t in server.platform._tasks if name in t.get_name() and not t.done()]


# -- subscriptions belong to the upper, not to one link ---------------------------------------------
async def test_new_settings_keep_the_subscriptions_and_removal_ends_them(tmp_path):
    async with city_with_upper(tmp_path, catalog_group=4) as (upper, city, sim):
        cascade = city.platform.cascade
        catalog = subscribe(upper, city, CITY)
        answer = await upper.send(city, catalog)
        assert answer.status == 200
        positions = subscribe(upper, city, CITY, m.MobilePositionQuery, event="MobilePosition", interval=1)
        assert (await upper.send(city, positions)).status == 200

        # new settings (as PUT /uppers/{id} gives): the link is replaced, the subscriptions go on
        old = cascade.link(UPPER)
        await cascade.update(dataclasses.replace(old.settings, catalog_group=2))
        await wait_for(lambda: cascade.link(UPPER) is not old and cascade.link(UPPER).online)
        dialog = in_dialog(upper, catalog, answer)
        refresh = dialog.create_request("SUBSCRIBE", query(m.CatalogQuery, CITY, 2), MANSCDP,
                                        headers=[("Event", "Catalog"), ("Expires", 900)])
        response = await upper.send(city, refresh)
        assert response.status == 200 and response.expires == 900
        [sub] = cascade.subscriptions.active(UPPER, "Catalog")
        assert sub.link is cascade.link(UPPER)

        # catalog changes go in the dialog with the new settings (2 items per NOTIFY)
        three = sim.management.channel_ids[:3]
        await sim.notify_catalog("OFF", three)
        parts = await wait_for(lambda: (n := notifies(upper, catalog.call_id, "active")) and
                               sum(len(m.parse(r.body).items) for r in n) == 3 and n)
        assert [len(m.parse(r.body).items) for r in parts] == [2, 1]

        # positions still go up through the new link
        report = m.MobilePositionNotify(sn=sim.next_sn(), device_id=CAMERA, time="2026-05-20T08:00:01",
                                        longitude=120.5, latitude=30.25)
        assert (await sim.send_manscdp(report.to_xml())).status == 200
        got = await wait_for(lambda: [m.parse(r.body) for r in notifies(upper, positions.call_id, "active")])
        assert got[0].cmd_type == "MobilePosition" and got[0].longitude == 120.5

        # the upper removed: each subscription ends with its last NOTIFY, nothing is left behind
        upper.received.clear()
        await cascade.remove(UPPER)
        for request in (catalog, positions):
            [final] = notifies(upper, request.call_id, "terminated")
            assert final.headers.get("Subscription-State") == "terminated;reason=rejected"
        assert not cascade.subscriptions.all()
        assert not [f for f in cascade.positions._feeds.values() if not f.sub.terminated]


# -- one subscription per CmdType and target; a cap per upper ---------------------------------------
async def test_a_new_subscription_supersedes_the_old_one_and_there_is_a_cap(tmp_path):
    async with city_with_upper(tmp_path) as (upper, city, sim):
        subs = city.platform.cascade.subscriptions
        first = subscribe(upper, city, CITY)
        assert (await upper.send(city, first)).status == 200
        # the upper restarted and subscribes again out of dialog
        second = subscribe(upper, city, CITY)
        assert second.call_id != first.call_id
        assert (await upper.send(city, second)).status == 200
        final = await wait_for(lambda: notifies(upper, first.call_id, "terminated"))
        assert final[0].headers.get("Subscription-State") == "terminated;reason=rejected"
        assert [s.call_id for s in subs.active(UPPER, "Catalog")] == [second.call_id]

        # another target is another subscription
        vo = next(c for c in sim.management.catalog if c[10:13] == "216")
        subtree = subscribe(upper, city, vo)
        assert (await upper.send(city, subtree)).status == 200
        assert {s.call_id for s in subs.active(UPPER, "Catalog")} == {second.call_id, subtree.call_id}

        # a change is told once per live subscription, never to the superseded one
        channel = sim.management.channel_ids[3]
        await sim.notify_catalog("OFF", [channel])
        await wait_for(lambda: notifies(upper, second.call_id, "active") and notifies(upper, subtree.call_id, "active"))
        await asyncio.sleep(0.3)
        assert not notifies(upper, first.call_id, "active")
        assert len(notifies(upper, second.call_id, "active")) == 1

        # at the cap a new target is refused, the same target still supersedes
        subs.max_per_upper = 2
        group = next(c for c in sim.management.catalog if c[10:13] == "215")
        refused = await upper.send(city, subscribe(upper, city, group))
        assert refused.status == 403 and refused.reason == "Too many subscriptions"
        alarm = await upper.send(city, subscribe(upper, city, CITY, m.AlarmQuery, event="Alarm"))
        assert alarm.status == 403
        third = subscribe(upper, city, CITY)
        assert (await upper.send(city, third)).status == 200
        await wait_for(lambda: notifies(upper, second.call_id, "terminated"))
        assert {s.call_id for s in subs.active(UPPER, "Catalog")} == {third.call_id, subtree.call_id}
        assert len(subs.all()) == 2


# -- catalog changes: delivered or sent again, one notifier per upper -------------------------------
async def test_a_catalog_change_the_upper_refused_goes_again(tmp_path, monkeypatch):
    monkeypatch.setattr(northbound, "RETRY", 0.2, raising=False)
    async with city_with_upper(tmp_path) as (upper, city, sim):
        refused: list[Request] = []

        def on_request(request: Request, flow: Flow) -> None:
            if request.method == "MESSAGE" and b"<Notify>" in request.body and not refused:
                refused.append(request)
                upper.endpoint.respond(Response.for_request(request, 500, "Busy", to_tag=new_tag()))
                return
            upper._on_request(request, flow)
        upper.endpoint.on_request = on_request

        channel = sim.management.channel_ids[1]
        await sim.notify_catalog("OFF", [channel])
        await wait_for(lambda: channel in told(upper, "OFF"))
        assert refused and channel in str(m.parse(refused[0].body).items)
        # once taken, it is not sent a third time
        await asyncio.sleep(0.6)
        assert len([r for r in upper.received if r.method == "MESSAGE" and b"<Notify>" in r.body]) == 1


async def test_changes_while_the_upper_is_busy_wait_and_go_together(tmp_path):
    async with city_with_upper(tmp_path, catalog_group=10) as (upper, city, sim):
        city.platform.cascade.link(UPPER).request_timeout = 60
        held: list[Request] = []

        def on_request(request: Request, flow: Flow) -> None:
            if request.method == "MESSAGE" and b"<Notify>" in request.body:
                upper.received.append(request)
                held.append(request)
                return
            upper._on_request(request, flow)
        upper.endpoint.on_request = on_request

        ids = sim.management.channel_ids
        await sim.notify_catalog("OFF", [ids[0]])
        await wait_for(lambda: held)
        for channel in ids[1:4]:
            await sim.notify_catalog("OFF", [channel])
            await asyncio.sleep(northbound.SETTLE * 1.5)
        assert len(held) == 1                             # nothing else while the first is unanswered
        assert len(tasks(city, "catalog changes")) == 1   # one notifier, no task per change
        upper.endpoint.respond(Response.for_request(held[0], 200, to_tag=new_tag()))
        await wait_for(lambda: len(held) == 2)
        together = m.parse(held[1].body)
        assert sorted(i.device_id for i in together.items) == sorted(ids[1:4])
        assert {i.event for i in together.items} == {"OFF"}
        upper.endpoint.respond(Response.for_request(held[1], 200, to_tag=new_tag()))
        await wait_for(lambda: not tasks(city, "catalog changes"))
        assert len(held) == 2


# -- alarms: one queue and one sender per upper, bounded ------------------------------------------------
async def test_alarms_to_a_busy_upper_queue_in_order_and_are_bounded(tmp_path):
    async with city_with_upper(tmp_path) as (upper, city, sim):
        city.platform.cascade.link(UPPER).request_timeout = 60
        forwarder = city.platform.cascade.alarms
        forwarder.max_queued = 2
        held: list[Request] = []

        def on_request(request: Request, flow: Flow) -> None:
            if request.method == "MESSAGE" and b"<CmdType>Alarm</CmdType>" in request.body:
                held.append(request)
                return
            upper._on_request(request, flow)
        upper.endpoint.on_request = on_request
        at_city: list[AlarmReceived] = []
        city.platform.events.on(at_city.append, AlarmReceived)

        channel = sim.management.channel_ids[0]
        for n in range(4):
            await sim.send_alarm(channel, method=5, alarm_type=100001 + n, priority=1, description=f"alarm {n}")
        await wait_for(lambda: len(at_city) == 4 and held)
        assert len(held) == 1 and forwarder.waiting(UPPER) == 2   # alarm 1 dropped: only 2 may wait
        assert len(tasks(city, "alarms to upper")) == 1
        got = []
        while len(got) < 3:
            request = held.pop(0) if held else None
            if request is None:
                await wait_for(lambda: held)
                continue
            got.append(m.parse(request.body).alarm_type)
            upper.endpoint.respond(Response.for_request(request, 200, to_tag=new_tag()))
        assert got == [100001, 100003, 100004]
        await wait_for(lambda: not tasks(city, "alarms to upper"))
        assert [e.result for e in forwarder.sent.values()].count(None) == 4
        assert sum(e.delivered for e in forwarder.sent.values()) == 3


# -- where an upper's requests come from ---------------------------------------------------------------
@pytest.mark.parametrize("check", [True, False])
async def test_requests_under_the_upper_id_from_another_address(tmp_path, check):
    async with city_with_upper(tmp_path, check_source=check) as (upper, city, sim):
        impostor = SipEndpoint(lambda request, flow: None, user_agent="impostor")
        await impostor.start("127.0.0.2", 0, tcp=False)
        try:
            channel = sim.management.channel_ids[0]
            ptz = m.DeviceControl(sn=9, device_id=channel, ptz_cmd="A50F010800FA00B7").encode()
            request = impostor.build_request(
                "MESSAGE", f"sip:{CITY}@127.0.0.1:{city.platform.sip_port}", from_uri=f"sip:{UPPER}@4400000000",
                to_uri=f"sip:{CITY}@4401000000", flow=Flow("UDP", "127.0.0.1", city.platform.sip_port),
                body=ptz, content_type=MANSCDP)
            response = await impostor.request(request, Flow("UDP", "127.0.0.1", city.platform.sip_port), timeout=5)
            if check:
                assert response.status == 403 and response.reason == "Not from the upper platform's address"
                await asyncio.sleep(0.3)
                assert not sim.ptz_log
            else:       # an upper behind NAT: its requests come from wherever
                assert response.status == 200
                await wait_for(lambda: sim.ptz_log)
            # the real upper, from its host, is heard either way
            answer = await upper.send(city, upper.request(city, "MESSAGE", query(m.DeviceInfoQuery, CITY, 7)))
            assert answer.status == 200
            await wait_for(lambda: upper.bodies("MESSAGE", "DeviceInfo"))
        finally:
            await impostor.close()


async def test_an_upper_that_is_also_our_lower_registers(tmp_path):
    async with city_with_upper(tmp_path) as (upper, city, sim):
        async with DeviceSimulator(UPPER, server_id=CITY, server_port=city.platform.sip_port,
                                   password="city-secret", keepalive_interval=30, channels=0):
            state = await wait_for(lambda: (s := city.platform.registry.get(UPPER)) and s.status == "online" and s)
            assert state.device_id == UPPER
        # and it is our upper all the same
        answer = await upper.send(city, upper.request(city, "MESSAGE", query(m.DeviceInfoQuery, CITY, 8)))
        assert answer.status == 200
        await wait_for(lambda: upper.bodies("MESSAGE", "DeviceInfo"))


# -- shutdown ------------------------------------------------------------------------------------------
OTHER = "44000000002000000002"


async def test_shutdown_unregisters_from_every_upper_at_once(tmp_path):
    stuck, other = ScriptedUpper(), ScriptedUpper()
    unregisters: list[str] = []

    def on_stuck(request: Request, flow: Flow) -> None:
        if request.method == "REGISTER" and request.expires == 0:
            unregisters.append("stuck")         # never answered
            return
        stuck._on_request(request, flow)

    def on_other(request: Request, flow: Flow) -> None:
        if request.method == "REGISTER" and request.expires == 0:
            unregisters.append("other")
        other._on_request(request, flow)
    stuck.endpoint.on_request, other.endpoint.on_request = on_stuck, on_other
    await stuck.endpoint.start("127.0.0.1", 0, tcp=False)
    await other.endpoint.start("127.0.0.1", 0, tcp=False)
    city = Server(make_config(tmp_path, sip_id=CITY, upper=(
        {"sip_id": UPPER, "host": "127.0.0.1", "port": stuck.endpoint.port},
        {"sip_id": OTHER, "host": "127.0.0.1", "port": other.endpoint.port})))
    await city.start()
    stopping = None
    try:
        cascade = city.platform.cascade
        await wait_for(lambda: len(cascade.online_links()) == 2)
        cascade.link(UPPER).request_timeout = 600      # the first upper would hold the shutdown
        cascade.stop_timeout = 1.0
        stopping = asyncio.ensure_future(city.stop())
        await wait_for(lambda: "other" in unregisters and "stuck" in unregisters, timeout=10)
        await asyncio.wait_for(stopping, 30)
        assert not cascade.online_links()
    finally:
        if stopping is None:
            await city.stop()
        await stuck.endpoint.close()
        await other.endpoint.close()


async def test_an_upper_configured_by_name_is_heard_from_its_address(tmp_path):
    """The address a host name resolved to when registering is where its requests come from."""
    async with city_with_upper(tmp_path, host="localhost") as (upper, city, sim):
        assert city.platform.cascade.link(UPPER).address == "127.0.0.1"
        answer = await upper.send(city, upper.request(city, "MESSAGE", query(m.DeviceInfoQuery, CITY, 8)))
        assert answer.status == 200
        await wait_for(lambda: upper.bodies("MESSAGE", "DeviceInfo"))
