"""Mobile positions up the chain: simulator → city → province over real sockets.

The province subscribes to the city's mobile positions (``[alarm] position_subscribe`` or its
subscriptions API); positions the simulated device reports to the city arrive at the province
under the channel IDs the city shows it, at most one per channel per subscription Interval.
"""

from __future__ import annotations

import dataclasses

import pytest

from sip28181.cascade.positions import DEFAULT_INTERVAL, Throttle, interval_of
from sip28181.manscdp import messages as m
from sip28181.platform.events import MobilePositionReceived

from ..integration.conftest import wait_for
from .control_support import CITY, DEVICE, PROVINCE, city_chain

MAPPED = {"ids": "map", "id_prefix": "4488"}


def mapped(local_id: str) -> str:
    return "4488" + local_id[4:]


def collect(province) -> list:
    """Positions arriving at the province from now on (robust to its store flushing them)."""
    seen: list = []
    province.platform.events.on(lambda e: seen.append(e.position) if e.device_id == CITY else None,
                                MobilePositionReceived)
    return seen


def city_feeds(city) -> list:
    return [f for f in city.platform.cascade.positions._feeds.values() if not f.sub.terminated]


def report(sim, *, target: str | None = None, lon: float, lat: float) -> m.MobilePositionNotify:
    return m.MobilePositionNotify(sn=sim.next_sn(), device_id=target or sim.device_id, time="2026-05-20T08:00:01",
                                  longitude=lon, latitude=lat, speed=12.5, direction=270.0, altitude=30.0)


async def test_subscribed_province_stores_positions_under_mapped_ids(tmp_path):
    province_cfg = {"position_subscribe": True, "position_interval": 1, "catalog_query_delay": 0.0}
    async with city_chain(tmp_path, upper=MAPPED, province=province_cfg) as chain:
        city, province, sim = chain.city, chain.province, chain.device
        subs = city.platform.cascade.subscriptions
        await wait_for(lambda: subs.active(PROVINCE, "MobilePosition"), timeout=10)
        sub = subs.active(PROVINCE, "MobilePosition")[0]
        assert interval_of(sub.query) == 1.0
        seen = collect(province)

        # the device reports its own position: it stands for each of its channels
        response = await sim.send_manscdp(report(sim, lon=120.123456, lat=30.654321).to_xml())
        assert response.status == 200
        want = {mapped(c) for c in chain.channels}
        await wait_for(lambda: {r.target_id for r in seen} >= want, timeout=10)
        assert {r.target_id for r in seen} == want          # never the city's local IDs
        for r in seen:
            assert (r.longitude, r.latitude, r.speed, r.direction, r.altitude) == (120.123456, 30.654321, 12.5,
                                                                                  270.0, 30.0)
            assert r.time == "2026-05-20T08:00:01"

        # a position of one channel goes up for that channel only
        seen.clear()
        one = chain.channels[1]
        await sim.send_manscdp(report(sim, target=one, lon=121.5, lat=31.25).to_xml())
        await wait_for(lambda: any(r.longitude == 121.5 for r in seen), timeout=10)
        assert {r.target_id for r in seen} == {mapped(one)}

        # and the province's API finds it under the mapped channel ID
        async def stored():
            status, body = await chain.province_api.get(
                f"/api/v1/devices/{CITY}/positions?channel_id={mapped(one)}")
            assert status == 200, body
            return [p for p in body if p["longitude"] == 121.5]
        rows = await wait_for(stored, timeout=10)
        assert rows[0]["target_id"] == mapped(one) and rows[0]["latitude"] == 31.25

        # an ID the city does not know as a shared channel goes nowhere
        assert city.platform.cascade.positions.targets(city.platform.cascade.link(PROVINCE), DEVICE,
                                                       "44010000001320009999") == []


async def test_positions_are_throttled_to_the_interval(tmp_path):
    # the province asks for one report an hour: the first goes at once, later ones wait
    province_cfg = {"position_subscribe": True, "position_interval": 3600, "catalog_query_delay": 0.0}
    async with city_chain(tmp_path, province=province_cfg, channels=1) as chain:
        city, province, sim = chain.city, chain.province, chain.device
        await wait_for(lambda: city_feeds(city), timeout=10)
        seen = collect(province)
        channel = chain.channels[0]

        await sim.send_manscdp(report(sim, lon=100.0, lat=20.0).to_xml())
        await wait_for(lambda: seen, timeout=10)
        for lon in (101.0, 102.0, 103.0):
            assert (await sim.send_manscdp(report(sim, lon=lon, lat=20.0).to_xml())).status == 200
        feed = city_feeds(city)[0]
        await wait_for(lambda: city.platform.cascade.positions.latest[(DEVICE, DEVICE)].longitude == 103.0)
        # the newest position waits for the interval; the ones before it are superseded
        assert feed.throttle.waiting == 1
        assert feed.throttle._pending[channel].longitude == 103.0
        assert feed.timer is not None
        assert [(r.target_id, r.longitude) for r in seen] == [(channel, 100.0)]
        assert feed.sub.notifies == 1


async def test_new_subscription_gets_the_last_known_position_and_unsubscribe_stops(tmp_path):
    async with city_chain(tmp_path, channels=1) as chain:
        city, province, sim = chain.city, chain.province, chain.device
        channel = chain.channels[0]
        await sim.send_manscdp(report(sim, target=channel, lon=113.25, lat=23.125).to_xml())
        await wait_for(lambda: (DEVICE, channel) in city.platform.cascade.positions.latest)
        seen = collect(province)

        status, body = await chain.province_api.call("POST", f"/api/v1/devices/{CITY}/subscriptions",
                                                     json={"kind": "mobile_position", "expires": 600})
        assert status == 200, body
        await wait_for(lambda: seen, timeout=10)
        assert (seen[0].target_id, seen[0].longitude, seen[0].latitude) == (channel, 113.25, 23.125)

        status, body = await chain.province_api.call("DELETE", f"/api/v1/devices/{CITY}/subscriptions/mobile_position")
        assert status == 200, body
        subs = city.platform.cascade.subscriptions
        await wait_for(lambda: not subs.active(PROVINCE, "MobilePosition"))
        before = len(seen)
        await sim.send_manscdp(report(sim, target=channel, lon=114.0, lat=23.0).to_xml())
        await wait_for(lambda: city.platform.cascade.positions.latest[(DEVICE, channel)].longitude == 114.0)
        assert not city_feeds(city)
        assert all(r.longitude != 114.0 for r in seen[before:])


async def test_positions_of_unshared_channels_stay_local(tmp_path):
    province_cfg = {"position_subscribe": True, "position_interval": 1, "catalog_query_delay": 0.0}
    async with city_chain(tmp_path, province=province_cfg, channels=2) as chain:
        city, province, sim = chain.city, chain.province, chain.device
        shown, hidden = chain.channels
        cascade = city.platform.cascade
        # share one channel only: the link registers again and the province subscribes anew
        await cascade.update(dataclasses.replace(cascade.link(PROVINCE).settings, share=(shown,)))
        await wait_for(lambda: cascade.link(PROVINCE).online and city_feeds(city), timeout=15)
        seen = collect(province)

        await sim.send_manscdp(report(sim, target=hidden, lon=90.0, lat=10.0).to_xml())
        await sim.send_manscdp(report(sim, lon=91.0, lat=11.0).to_xml())   # the device: its shared channel
        await wait_for(lambda: any(r.longitude == 91.0 for r in seen), timeout=10)
        assert {(r.target_id, r.longitude) for r in seen} == {(shown, 91.0)}
        assert cascade.positions.latest[(DEVICE, hidden)].longitude == 90.0     # known locally all the same


@pytest.mark.parametrize("query, expected", [
    (m.MobilePositionQuery(sn=1, device_id=CITY, interval=5), 5.0),
    (m.MobilePositionQuery(sn=1, device_id=CITY, interval=None), DEFAULT_INTERVAL),
    (m.MobilePositionQuery(sn=1, device_id=CITY, interval=0), DEFAULT_INTERVAL),
    (m.MobilePositionQuery(sn=1, device_id=CITY, interval=-3), DEFAULT_INTERVAL),
])
def test_interval_of(query, expected):
    assert interval_of(query) == expected


def test_throttle_keeps_the_newest_and_releases_it_after_the_interval():
    t: Throttle[str, int] = Throttle(2.0)
    assert t.offer("a", 1, now=10.0)
    assert t.offer("b", 1, now=10.5)            # keys are independent
    assert not t.offer("a", 2, now=11.0)
    assert not t.offer("a", 3, now=11.5)
    assert t.waiting == 1 and t.next_due() == 12.0
    assert t.due(11.9) == []
    assert t.due(12.0) == [("a", 3)]
    assert t.next_due() is None
    assert not t.offer("a", 4, now=13.0)        # the interval runs from the last send (12.0)
    assert t.due(14.0) == [("a", 4)]
    assert t.offer("a", 5, now=16.0)


async def test_position_notify_on_the_wire(tmp_path):
    """What a scripted upper receives: NOTIFYs in its dialog, GB2312, its Event echoed, the
    channel's ID; a 481 to a NOTIFY ends the subscription and the positions stop."""
    from .test_catalog_upper import MANSCDP, UPPER, city_with_upper, query

    async with city_with_upper(tmp_path) as (upper, city, sim):
        channel = sim.management.channel_ids[0]
        subscribe = upper.request(city, "SUBSCRIBE", query(m.MobilePositionQuery, city.platform.sip_id, 41,
                                                           interval=1),
                                  extra=[("Event", "presence"), ("Expires", 600)])
        response = await upper.send(city, subscribe)
        assert response.status == 200 and response.expires == 600 and response.headers.get("Event") == "presence"
        assert m.parse(response.body).cmd_type == "MobilePosition"
        await sim.send_manscdp(report(sim, target=channel, lon=116.397, lat=39.909).to_xml())
        notifies = await wait_for(lambda: [r for r in upper.received if r.method == "NOTIFY"])
        notify = notifies[0]
        assert notify.call_id == subscribe.call_id and notify.to.tag == subscribe.from_.tag
        assert notify.from_.tag == response.to.tag and notify.headers.get("Event") == "presence"
        assert notify.headers.get("Subscription-State").startswith("active;expires=")
        assert notify.headers.get("Content-Type") == MANSCDP
        assert notify.body.startswith(b'<?xml version="1.0" encoding="GB2312"?>')
        body = m.parse(notify.body)
        assert isinstance(body, m.MobilePositionNotify) and body.kind is m.Kind.NOTIFY
        assert (body.device_id, body.longitude, body.latitude, body.speed) == (channel, 116.397, 39.909, 12.5)

        # the upper forgets the dialog: its 481 ends the subscription, nothing more is sent in it
        upper.notify_status = 481
        feeds = city.platform.cascade.positions._feeds
        await sim.send_manscdp(report(sim, target=channel, lon=116.5, lat=39.9).to_xml())
        subs = city.platform.cascade.subscriptions
        await wait_for(lambda: not subs.active(UPPER, "MobilePosition"))
        await sim.send_manscdp(report(sim, target=channel, lon=117.0, lat=39.9).to_xml())
        await wait_for(lambda: city.platform.cascade.positions.latest[(sim.device_id, channel)].longitude == 117.0)
        assert not feeds
        sent = [m.parse(r.body).longitude for r in upper.received if r.method == "NOTIFY"]
        assert sent == [116.397, 116.5]


@pytest.mark.parametrize("interval", [b"abc", b"0", b""])
async def test_unusable_interval_gets_the_default(tmp_path, interval):
    from .test_catalog_upper import UPPER, city_with_upper

    async with city_with_upper(tmp_path) as (upper, city, sim):
        body = (b'<?xml version="1.0"?>\r\n<Query>\r\n<CmdType>MobilePosition</CmdType>\r\n<SN>7</SN>\r\n'
                b"<DeviceID>" + city.platform.sip_id.encode() + b"</DeviceID>\r\n<Interval>" + interval
                + b"</Interval>\r\n</Query>\r\n")
        response = await upper.send(city, upper.request(city, "SUBSCRIBE", body,
                                                        extra=[("Event", "presence"), ("Expires", 600)]))
        assert response.status == 200
        assert city.platform.cascade.subscriptions.active(UPPER, "MobilePosition")
        [feed] = await wait_for(lambda: list(city.platform.cascade.positions._feeds.values()))
        assert feed.throttle.interval == DEFAULT_INTERVAL


async def test_malformed_subscribe_body_is_refused(tmp_path):
    from .test_catalog_upper import UPPER, city_with_upper

    async with city_with_upper(tmp_path) as (upper, city, sim):
        body = b"MobilePosition, please: every 5 s"      # not MANSCDP at all
        response = await upper.send(city, upper.request(city, "SUBSCRIBE", body,
                                                        extra=[("Event", "presence"), ("Expires", 600)]))
        assert 400 <= response.status < 500 and response.reason
        assert not city.platform.cascade.subscriptions.active(UPPER, "MobilePosition")
        assert not city.platform.cascade.positions._feeds


async def test_stopping_the_city_leaves_no_position_timer(tmp_path):
    province_cfg = {"position_subscribe": True, "position_interval": 3600, "catalog_query_delay": 0.0}
    async with city_chain(tmp_path, province=province_cfg, channels=1) as chain:
        city, sim = chain.city, chain.device
        await wait_for(lambda: city_feeds(city), timeout=10)
        [feed] = city_feeds(city)
        await sim.send_manscdp(report(sim, lon=100.0, lat=20.0).to_xml())
        await sim.send_manscdp(report(sim, lon=101.0, lat=20.0).to_xml())
        await wait_for(lambda: feed.timer is not None)          # the second one waits for the hour
        timer = feed.timer
        await city.platform.cascade.stop()
        assert timer.cancelled() and not city.platform.cascade.positions._feeds
