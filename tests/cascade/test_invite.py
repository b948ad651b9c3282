"""Video requested by an upper: simulator → city server → province server, all on loopback.

The province plays the city's shared channel over HTTP-FLV at ``/live/{city}/{channel}.flv``: it
INVITEs the city, which holds the camera's stream (INVITEing the camera or reusing the running
stream) and sends it on as PS over RTP to the province's media port.
"""

from __future__ import annotations

import asyncio
import contextlib

import aiohttp
import pytest

from sip28181.device import DeviceSimulator
from sip28181.device.media import MediaOptions
from sip28181.server import Server

from ..integration.conftest import TOKEN, make_config, wait_for
from ..integration.livekit import decode, read_flv

CITY = "44010000002000000001"
PROVINCE = "44000000002000000001"
DEVICE = "44010000001320000001"
CHANNEL = "44010000001310000001"
PASSWORD = "prov-secret"

MEDIA = dict(media_bind="127.0.0.1", media_host="127.0.0.1", media_linger=0.5,
             media_no_media_timeout=2.0, media_invite_timeout=4.0)


@contextlib.asynccontextmanager
async def chain(tmp_path, *, city_transport: str = "udp", options: MediaOptions | None = None,
                upper_transport: str = "udp", upper: dict | None = None, province_sees: str = CHANNEL,
                **city_overrides):
    """Province, city registered to it, a camera registered to the city with its catalog known."""
    province = Server(make_config(tmp_path / "p", sip_id=PROVINCE, password=PASSWORD, catalog_query_delay=0.0,
                                  **MEDIA))
    await province.start()
    city = camera = None
    try:
        city = Server(make_config(tmp_path / "c", sip_id=CITY, media_transport=city_transport,
                                  catalog_query_delay=0.0, upper=({
            "sip_id": PROVINCE, "host": "127.0.0.1", "port": province.platform.sip_port,
            "transport": upper_transport, "password": PASSWORD, "keepalive_interval": 5, **(upper or {}),
        },), **{**MEDIA, **city_overrides}))
        await city.start()
        camera = DeviceSimulator(DEVICE, server_id=CITY, server_host="127.0.0.1", server_port=city.sip_port,
                                 media=options, keepalive_interval=30)
        await camera.start()
        await wait_for(lambda: city.platform.cascade.link(PROVINCE).online)
        await wait_for(lambda: (s := province.platform.registry.get(CITY)) is not None and s.status == "online")
        await wait_for(lambda: city.platform.management.catalog.find_channel(CHANNEL) is not None, timeout=10)
        # the province lists the channel the city shares (plays check a lower's channels like a device's)
        await wait_for(lambda: province_sees in {c.channel_id for c in province.platform.channels(CITY)},
                       timeout=10)
        yield province, city, camera
    finally:
        if camera is not None:
            await camera.stop()
        if city is not None:
            await city.stop()
        await province.stop()


def live_url(server: Server, transport: str = "udp", channel: str = CHANNEL) -> str:
    return (f"http://127.0.0.1:{server.http_port}/live/{CITY}/{channel}.flv"
            f"?token={TOKEN}&transport={transport}")


def upper_calls(city: Server):
    return city.platform.cascade.media.list(PROVINCE)


@pytest.mark.parametrize("upper_transport, device_transport, sip", [
    ("udp", "udp", "udp"),
    ("tcp-passive", "tcp-active", "tcp"),
    ("tcp-active", "tcp-passive", "udp"),
])
async def test_province_plays_the_city_channel_over_http_flv(tmp_path, upper_transport, device_transport, sip):
    async with chain(tmp_path, city_transport=device_transport, upper_transport=sip) as (province, city, camera), \
            aiohttp.ClientSession() as http:
        async with http.get(live_url(province, upper_transport)) as resp:
            assert resp.status == 200
            tags = await read_flv(resp, frames=40)
            # the camera streams to the city with the transport the city uses towards it
            assert camera.media.invites_received == 1
            ds = camera.media.stream()
            assert ds.transport == device_transport and ds.kind == "Play"
            # the city sends to the province with the transport the province offered
            calls = upper_calls(city)
            assert len(calls) == 1
            call = calls[0]
            assert call.transport.value == upper_transport and call.state.value == "sending"
            assert call.upper_side_id == CHANNEL and call.device_id == DEVICE
            assert call.flow.transport == sip.upper()
            # with the province's SSRC (its y=), which the province's stream expects
            pstream = province.platform.streams.list()[0]
            assert pstream.device_id == CITY and pstream.channel_id == CHANNEL
            assert int(call.ssrc) == int(pstream.ssrc) and call.sink.packets_sent > 0
            stats = pstream.stats()
            assert stats["lost"] == 0 and stats["packets"] > 0
            # one city stream feeds the province (a sink next to nothing else)
            cstream = city.platform.streams.list()[0]
            assert cstream.device_id == DEVICE and cstream.viewers == 1
        frames = len(tags.video_frames)
        assert frames >= 40 and tags.audio_frames > 0
        pictures, key_first = decode(tags.data)
        assert key_first and pictures >= frames - 1
        # the province's viewer left: after its linger the province BYEs the city, the city frees
        # its sink, and after the city's linger the camera gets its BYE
        await wait_for(lambda: len(province.platform.streams) == 0, timeout=5)
        await asyncio.wait_for(call.closed, 5)
        assert call.close_reason == "upper bye" and not upper_calls(city)
        assert call.sink not in cstream.relay.sinks
        assert await asyncio.wait_for(ds.ended, 5) == "bye received"
        await wait_for(lambda: len(city.platform.streams) == 0 and len(city.platform.sessions) == 0)
        assert len(province.platform.sessions) == 0


async def test_two_province_viewers_and_a_city_viewer_share_one_upstream(tmp_path):
    async with chain(tmp_path) as (province, city, camera), aiohttp.ClientSession() as http:
        city_url = (f"http://127.0.0.1:{city.http_port}/live/{DEVICE}/{CHANNEL}.flv?token={TOKEN}")
        async with http.get(city_url) as local:
            await read_flv(local, frames=5)
            r1, r2 = await asyncio.gather(http.get(live_url(province)), http.get(live_url(province)))
            try:
                t1, t2 = await asyncio.gather(read_flv(r1, frames=30), read_flv(r2, frames=30))
            finally:
                r1.close()
                r2.close()
            assert decode(t1.data)[1] and decode(t2.data)[1]
            # one INVITE reached the camera, one reached the city
            assert camera.media.invites_received == 1
            assert len(upper_calls(city)) == 1 and len(province.platform.sessions) == 1
            assert len(city.platform.streams) == 1 and city.platform.streams.list()[0].viewers == 2


@pytest.mark.parametrize("sip", ["udp", "tcp"])
async def test_device_bye_ends_the_province_stream(tmp_path, sip):
    async with chain(tmp_path, upper_transport=sip) as (province, city, camera), aiohttp.ClientSession() as http:
        async with http.get(live_url(province)) as resp:
            tags = await read_flv(resp, frames=10)
            call = upper_calls(city)[0]
            await camera.media.bye()
            # the city's stream ends, the city BYEs the province, the province's viewer sees the end
            await read_flv(resp, frames=None, tags=tags, timeout=10)
        assert await asyncio.wait_for(call.closed, 5) == "stream device bye"
        assert call.bye_sent
        await wait_for(lambda: len(province.platform.streams) == 0 and len(province.platform.sessions) == 0)
        await wait_for(lambda: len(city.platform.streams) == 0)


async def test_device_silence_ends_the_province_stream(tmp_path):
    async with chain(tmp_path) as (province, city, camera), aiohttp.ClientSession() as http:
        async with http.get(live_url(province)) as resp:
            tags = await read_flv(resp, frames=10)
            call = upper_calls(city)[0]
            camera.media.silence()
            await read_flv(resp, frames=None, tags=tags, timeout=15)
        assert await asyncio.wait_for(call.closed, 5) == "stream no media"
        await wait_for(lambda: len(province.platform.streams) == 0)


async def test_unknown_channel_is_refused_with_404(tmp_path):
    async with chain(tmp_path) as (province, city, camera), aiohttp.ClientSession() as http:
        async with http.get(live_url(province, channel="44010000001310009999")) as resp:
            assert resp.status in (404, 502)
            body = await resp.text()
        assert "404" in body
        assert camera.media.invites_received == 0 and not upper_calls(city)
        assert len(province.platform.streams) == 0 and len(city.platform.streams) == 0


async def test_province_plays_a_channel_by_its_mapped_id(tmp_path):
    mapped = "4488" + CHANNEL[4:]
    async with chain(tmp_path, upper={"ids": "map", "id_prefix": "4488"}, province_sees=mapped) as \
            (province, city, camera), aiohttp.ClientSession() as http:
        async with http.get(live_url(province, channel=CHANNEL)) as resp:
            assert resp.status == 404                       # the local ID is not what the province knows
        assert camera.media.invites_received == 0
        async with http.get(live_url(province, channel=mapped)) as resp:
            assert resp.status == 200
            tags = await read_flv(resp, frames=20)
            call = upper_calls(city)[0]
            assert (call.upper_side_id, call.device_id, call.channel_id) == (mapped, DEVICE, CHANNEL)
            assert camera.media.stream().channel_id == CHANNEL
        assert decode(tags.data)[1]
