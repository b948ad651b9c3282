"""Edges of serving an upper, against a real city over real sockets: what the upper was shown of the
catalog, a subscription fetch, a disabled or removed upper, peer interconnect, TCP links replaced,
an upper configured by name that fails to register, media output limits and teardown.
"""

from __future__ import annotations

import asyncio

import pytest

from sip28181.cascade import northbound
from sip28181.manscdp import messages as m
from sip28181.sip.dialog import new_tag
from sip28181.sip.message import Request, Response
from sip28181.transport import Flow

from ..integration.conftest import loop_errors, make_config, wait_for  # noqa: F401  (autouse)
from .test_catalog_upper import CITY, UPPER, city_with_upper, query, told
from .test_catalog_upper_subs import notifies, subscribe


# -- the catalog an upper was shown ------------------------------------------------------------------
async def test_a_catalog_answer_the_upper_did_not_take_does_not_count_as_shown(tmp_path, monkeypatch):
    monkeypatch.setattr(northbound, "RETRY", 1.0, raising=False)
    async with city_with_upper(tmp_path, catalog_group=100) as (upper, city, sim):
        refuse = {"notify": True, "answer": True}

        def on_request(request: Request, flow: Flow) -> None:
            body = request.body
            if request.method == "MESSAGE" and b"Catalog" in body and (
                    (b"<Notify>" in body and refuse["notify"]) or (b"<Response>" in body and refuse["answer"])):
                upper.received.append(request)
                upper.endpoint.respond(Response.for_request(request, 500, "Busy", to_tag=new_tag()))
                return
            upper._on_request(request, flow)
        upper.endpoint.on_request = on_request

        first, second = sim.management.channel_ids[1], sim.management.channel_ids[2]
        await sim.notify_catalog("OFF", [first])
        await wait_for(lambda: first in told(upper, "OFF"))     # sent, refused
        await upper.send(city, upper.request(city, "MESSAGE", query(m.CatalogQuery, CITY, 90)))
        await wait_for(lambda: [msg for _, msg in upper.bodies("MESSAGE", "Catalog") if msg.sn == 90])
        await asyncio.sleep(0.2)                                    # the refused answer is over
        refuse["notify"] = refuse["answer"] = False
        upper.received.clear()
        await sim.notify_catalog("OFF", [second])
        # the first change was never taken: it goes together with the second
        await wait_for(lambda: {first, second} <= told(upper, "OFF"))


# -- a fetch ----------------------------------------------------------------------------------------
async def test_a_fetch_gets_the_current_catalog_terminated(tmp_path):
    async with city_with_upper(tmp_path, catalog_group=3) as (upper, city, sim):
        request = subscribe(upper, city, CITY, expires=0)
        response = await upper.send(city, request)
        assert response.status == 200 and response.expires == 0
        parts = await wait_for(lambda: (n := notifies(upper, request.call_id)) and len(n) == 3 and n)
        states = [r.headers.get("Subscription-State") for r in parts]
        assert states[-1] == "terminated;reason=timeout"
        assert all(s.startswith("active") for s in states[:-1])
        bodies = [m.parse(r.body) for r in parts]
        items = [i.device_id for b in bodies for i in b.items]
        assert {b.sum_num for b in bodies} == {8} and len(items) == 8
        assert items[0] == CITY and set(sim.management.channel_ids) <= set(items)
        assert not city.platform.cascade.subscriptions.active(UPPER, "Catalog")


# -- an upper configured by name ----------------------------------------------------------------------
async def test_an_upper_by_name_that_fails_to_register_is_still_heard(tmp_path):
    async with city_with_upper(tmp_path, host="localhost", retry_interval=0.2, retry_max=0.4) as (upper, city, sim):
        link = city.platform.cascade.link(UPPER)
        assert link.address == "127.0.0.1"

        def on_request(request: Request, flow: Flow) -> None:
            if request.method == "REGISTER":
                upper.endpoint.respond(Response.for_request(request, 403, "Forbidden", to_tag=new_tag()))
                return
            upper._on_request(request, flow)
        upper.endpoint.on_request = on_request
        await link.register_now()                       # the refresh is refused
        await wait_for(lambda: link.failures >= 2 and link.last_error and "403" in link.last_error)
        assert not link.online
        # the upper still speaks from the address its name had: heard, not 403
        answer = await upper.send(city, upper.request(city, "MESSAGE", query(m.DeviceInfoQuery, CITY, 9)))
        assert answer.status == 200
        await wait_for(lambda: upper.bodies("MESSAGE", "DeviceInfo"))
        assert link.address == "127.0.0.1"


# -- an upper's playback ------------------------------------------------------------------------------
async def test_an_upper_s_playback_ends_at_the_device_as_soon_as_the_upper_byes(tmp_path):
    import aiohttp

    from sip28181.errors import NotFoundError

    from .test_invite import chain, upper_calls
    from .test_invite_history import start, window
    # a long linger: a stream nobody else can join must not wait for it
    from sip28181.device.media import MediaOptions
    async with chain(tmp_path, options=MediaOptions(history_seconds=60), media_linger=30.0) as (province, city, camera), aiohttp.ClientSession() as http:
        s, e = window()
        status, out = await start(http, province, start=s, end=e, transport="udp")
        assert status == 200, out
        [call] = upper_calls(city)
        [stream] = city.platform.streams.list()
        assert stream.exclusive and stream.stream_id.endswith("_x1")
        with pytest.raises(NotFoundError):
            city.platform.streams.join(stream.stream_id)
        assert len(camera.media.streams) == 1
        await province.platform.streams.stop(out["stream_id"])
        assert await asyncio.wait_for(call.closed, 5) == "upper bye"
        await wait_for(lambda: not camera.media.streams and len(city.platform.streams) == 0)
        assert len(city.platform.sessions) == 0


async def test_udp_media_to_an_upper_skips_to_a_keyframe_when_its_queue_is_over_the_limit(tmp_path):
    import aiohttp

    from ..integration.livekit import read_flv
    from .test_invite import chain, live_url, upper_calls
    # the queue limit guards the asyncio transport's path (GSO sends bypass its queue and drop at
    # a full socket instead: see test_invite_gso)
    async with chain(tmp_path, cascade_udp_gso=False) as (province, city, camera), \
            aiohttp.ClientSession() as http:
        async with http.get(live_url(province, "udp")) as resp:
            assert resp.status == 200
            tags = await read_flv(resp, frames=5)
            [call] = upper_calls(city)
            media = city.platform.cascade.media
            assert call._udp_sender is None
            limit = media.udp_queue_limit
            media.udp_queue_limit = -1          # every datagram finds the queue "full"
            await wait_for(lambda: call.sink.resyncs > 0)
            sent = call.sink.packets_sent
            await asyncio.sleep(0.3)
            assert call.sink.packets_sent == sent       # nothing queued meanwhile
            media.udp_queue_limit = limit
            # back at the next keyframe: the province plays on
            await read_flv(resp, frames=len(tags.video_frames) + 10, tags=tags)
            assert call.sink.packets_sent > sent


async def test_a_cancel_while_the_listener_is_handed_to_asyncio_leaks_nothing(tmp_path, monkeypatch):
    """The upper's CANCEL lands at the first moment the answer waits after taking its port."""
    import socket

    import aiohttp

    from .test_invite import chain, live_url, upper_calls
    async with chain(tmp_path) as (province, city, camera), aiohttp.ClientSession() as http:
        media = city.platform.cascade.media
        ingest = city.platform.streams.ingest
        bind_port = ingest.bind_port
        taken: list[tuple[int, int]] = []

        def cancel_now() -> None:
            [call] = upper_calls(city)
            media._respond(call.invite, 487)            # what the CANCEL does
            media._close(call, "cancelled")

        def bind_and_cancel(kind: str):
            sock = bind_port(kind)
            if kind == "tcp-listen":
                taken.append((sock.fileno(), sock.getsockname()[1]))
                asyncio.get_running_loop().call_soon(cancel_now)
            return sock
        monkeypatch.setattr(ingest, "bind_port", bind_and_cancel)
        async with http.get(live_url(province, "tcp-active")) as resp:
            assert resp.status >= 400
        [(fd, port)] = taken
        await wait_for(lambda: not upper_calls(city))
        await asyncio.sleep(0.1)
        loop = asyncio.get_running_loop()
        assert fd not in loop._selector.get_map()       # no reader left on the closed socket
        with pytest.raises(OSError):
            await asyncio.open_connection("127.0.0.1", port)
        # a socket that gets the same descriptor works
        fresh = socket.socket()
        fresh.bind(("127.0.0.1", 0))
        accepted = asyncio.Event()
        server = await asyncio.start_server(lambda r, w: (accepted.set(), w.close()), sock=fresh)
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", fresh.getsockname()[1])
            await asyncio.wait_for(accepted.wait(), 5)
            writer.close()
        finally:
            server.close()


# -- mobile positions to a slow upper -----------------------------------------------------------------
async def test_positions_to_an_upper_that_does_not_answer_wait_in_order(tmp_path):
    from .test_positions_up import report
    async with city_with_upper(tmp_path) as (upper, city, sim):
        held: list[Request] = []

        def on_request(request: Request, flow: Flow) -> None:
            if request.method == "NOTIFY":
                if all(r.cseq.number != request.cseq.number for r in held):
                    held.append(request)            # unanswered until released
                return
            upper._on_request(request, flow)
        upper.endpoint.on_request = on_request
        city.platform.cascade.link(UPPER).request_timeout = 60
        request = upper.request(city, "SUBSCRIBE", query(m.MobilePositionQuery, CITY, 41, interval=1),
                                extra=[("Event", "presence"), ("Expires", 600)])
        assert (await upper.send(city, request)).status == 200
        channel = sim.management.channel_ids[0]
        await sim.send_manscdp(report(sim, target=channel, lon=116.1, lat=39.9).to_xml())
        await wait_for(lambda: held)
        for lon in (116.2, 116.3):
            await sim.send_manscdp(report(sim, target=channel, lon=lon, lat=39.9).to_xml())
        await asyncio.sleep(1.5)                # past the interval: the newest is due
        assert len(held) == 1                   # nothing more before the upper answers
        upper.endpoint.respond(Response.for_request(held[0], 200, to_tag=new_tag()))
        await wait_for(lambda: len(held) == 2)
        upper.endpoint.respond(Response.for_request(held[1], 200, to_tag=new_tag()))
        assert [m.parse(r.body).longitude for r in held] == [116.1, 116.3]


# -- a disabled or removed upper ----------------------------------------------------------------------
async def test_a_disabled_upper_is_refused_everything(tmp_path):
    import dataclasses

    from .test_catalog_upper_subs import subscribe
    async with city_with_upper(tmp_path) as (upper, city, sim):
        cascade = city.platform.cascade
        await cascade.update(dataclasses.replace(cascade.link(UPPER).settings, enabled=False))
        channel = sim.management.channel_ids[0]
        ptz = m.DeviceControl(sn=3, device_id=channel, ptz_cmd="A50F010800FA00B7").encode()
        for request in (upper.request(city, "MESSAGE", ptz),
                        upper.request(city, "SUBSCRIBE", subscribe(upper, city, CITY).body,
                                      extra=[("Event", "Catalog"), ("Expires", 600)]),
                        upper.request(city, "INVITE", b"v=0\r\n")):
            response = await upper.send(city, request)
            assert (request.method, response.status, response.reason) == (request.method, 403, "upper disabled")
        assert not sim.ptz_log and not cascade.subscriptions.active(UPPER, "Catalog")
        assert not cascade.media.calls
        # and an unknown BYE is no call of its: refused too
        assert (await upper.send(city, upper.request(city, "BYE"))).status == 403


async def test_removing_an_upper_ends_a_call_opened_while_its_link_was_down(tmp_path):
    import aiohttp

    from ..integration.livekit import read_flv
    from .test_invite import PROVINCE, chain, live_url, upper_calls
    async with chain(tmp_path) as (province, city, camera), aiohttp.ClientSession() as http:
        cascade = city.platform.cascade
        link = cascade.link(PROVINCE)
        await link.stop(unregister=False)       # not online, still enabled: the province plays on
        assert not link.online
        async with http.get(live_url(province)) as resp:
            tags = await read_flv(resp, frames=5)
            [call] = upper_calls(city)
            await cascade.remove(PROVINCE)
            assert call.closed.done() and call.close_reason == "upper removed" and call.bye_sent
            # the province took the BYE: its viewer sees the end
            await read_flv(resp, frames=None, tags=tags, timeout=10)
        assert not upper_calls(city)
        await wait_for(lambda: len(city.platform.streams) == 0 and not camera.media.streams)


# -- a TCP link replaced ------------------------------------------------------------------------------
async def test_new_settings_for_a_tcp_upper_leave_no_connection_behind(tmp_path):
    import dataclasses
    import socket

    from .test_invite import PROVINCE, chain
    async with chain(tmp_path, upper_transport="tcp") as (province, city, camera):
        cascade = city.platform.cascade
        transport = city.platform.endpoint.transport
        port = province.platform.sip_port

        def to_province() -> list[int]:
            return [key for key, conn in transport._connections.items()
                    if conn.flow is not None and conn.flow.port == port]
        [first] = to_province()
        # a setting that does not touch the address: the connection serves the new link
        settings = cascade.link(PROVINCE).settings
        link = await cascade.update(dataclasses.replace(settings, name="Province"))
        await wait_for(lambda: link.online)
        assert to_province() == [first]
        # another address: the old connection is closed
        dead = socket.socket()
        dead.bind(("127.0.0.1", 0))
        dead_port = dead.getsockname()[1]
        dead.close()
        await cascade.update(dataclasses.replace(settings, port=dead_port, retry_interval=30))
        await wait_for(lambda: not to_province())
        # back, then disabled: one connection, then none
        link = await cascade.update(settings)
        await wait_for(lambda: link.online)
        assert len(to_province()) == 1
        await cascade.update(dataclasses.replace(settings, enabled=False))
        await wait_for(lambda: not to_province())


# -- peer interconnect ----------------------------------------------------------------------------------
async def test_an_upper_that_is_also_our_lower_is_a_device_too(tmp_path):
    from sip28181.device import DeviceSimulator
    from sip28181.server import Server

    from ..integration.conftest import make_config
    from .test_catalog_upper import ScriptedUpper
    upper = ScriptedUpper()
    await upper.endpoint.start("127.0.0.1", 0, tcp=False)
    city = Server(make_config(tmp_path, sip_id=CITY, password="city-secret", catalog_query_delay=0.0,
                              keepalive_interval=1, keepalive_count=2, upper=({
                                  "sip_id": UPPER, "host": "127.0.0.1", "port": upper.endpoint.port,
                                  "keepalive_interval": 30},)))
    await city.start()
    try:
        await wait_for(lambda: city.platform.cascade.link(UPPER).online)
        async with DeviceSimulator(UPPER, server_id=CITY, server_port=city.platform.sip_port,
                                   password="city-secret", keepalive_interval=1, channels=2) as peer:
            state = await wait_for(lambda: (s := city.platform.registry.get(UPPER)) and s.status == "online" and s)
            first = state.last_keepalive_at
            await asyncio.sleep(3.5)            # past interval x count: its keepalives were heard
            assert state.status == "online" and state.last_keepalive_at and state.last_keepalive_at != first
            # our query to it is answered to us
            result = await city.platform.query_catalog(UPPER, timeout=5)
            assert {c.channel_id for c in city.platform.channels(UPPER)} >= set(peer.management.channel_ids[-2:])
            assert result is not None
            # and it is our upper all the same
            answer = await upper.send(city, upper.request(city, "MESSAGE", query(m.DeviceInfoQuery, CITY, 8)))
            assert answer.status == 200
            await wait_for(lambda: upper.bodies("MESSAGE", "DeviceInfo"))
    finally:
        await city.stop()
        await upper.endpoint.close()
