"""HTTP-FLV and WS-FLV writers over real loopback sockets, fed from a relay (no SIP involved)."""

from __future__ import annotations

import asyncio
import functools
import io
import socket
import sys
from pathlib import Path

import aiohttp
import av
import pytest
from aiohttp import web

from media.outputs import ClientWatch, stream_flv, stream_wsflv
from media.relay import Relay

from .conftest import wait_for

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "media"))
from media_gen import encode_video, g711_frames, interleave  # noqa: E402


@functools.lru_cache(maxsize=None)
def stream(frames: int = 50):
    vid = encode_video("h264", frames=frames, gop=25, bframes=0, width=160, height=120)
    return tuple(interleave(vid, g711_frames("g711a", count=frames, samples=320)))


def decoded_frames(data: bytes) -> int:
    container = av.open(io.BytesIO(data), format="flv")
    n = sum(len(p.decode()) for p in container.demux(video=0))
    container.close()
    return n


@pytest.fixture
async def served():
    """An aiohttp server with /flv and /ws streaming one relay; yields (base url, relay, watch)."""
    relay = Relay("test", audio_probe_ms=0)
    watch = ClientWatch(interval=0.05)

    async def flv(request):
        return await stream_flv(request, relay, watch=watch)

    async def ws(request):
        return await stream_wsflv(request, relay)

    app = web.Application()
    app.router.add_get("/flv", flv)
    app.router.add_get("/ws", ws)
    runner = web.AppRunner(app, shutdown_timeout=1.0)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}", relay, watch
    finally:
        await watch.close()
        await runner.cleanup()


async def feed_slowly(relay, frames, per_batch=5):
    for i in range(0, len(frames), per_batch):
        relay.feed(list(frames[i:i + per_batch]))
        await asyncio.sleep(0.005)


async def test_http_flv_streams_every_frame_and_ends_with_the_relay(served):
    base, relay, _ = served
    frames = stream(50)
    async with aiohttp.ClientSession() as session:
        async with session.get(base + "/flv") as resp:
            assert resp.status == 200
            assert resp.headers["Content-Type"] == "video/x-flv"
            assert resp.headers.get("Transfer-Encoding") == "chunked"
            await wait_for(lambda: relay.flv_viewers == 1)
            await feed_slowly(relay, frames)
            relay.end("device bye")
            data = await resp.read()
    assert data.startswith(b"FLV")
    assert decoded_frames(data) == 50


async def test_two_http_viewers_get_identical_bytes(served):
    base, relay, _ = served
    frames = stream(50)
    async with aiohttp.ClientSession() as session:
        r1 = await session.get(base + "/flv")
        r2 = await session.get(base + "/flv")
        await wait_for(lambda: relay.flv_viewers == 2)
        await feed_slowly(relay, frames)
        relay.end("api")
        d1, d2 = await r1.read(), await r2.read()
        r1.release(), r2.release()
    assert d1 == d2 and decoded_frames(d1) == 50


async def test_http_client_going_away_releases_its_viewer_while_nothing_flows(served):
    base, relay, watch = served
    frames = stream(10)
    relay.feed(list(frames[:5]))
    host, port = base.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(b"GET /flv HTTP/1.1\r\nHost: x\r\n\r\n")
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    assert b"200 OK" in head
    await wait_for(lambda: relay.flv_viewers == 1)
    writer.transport.set_write_buffer_limits(0)
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    writer.close()                                   # no frames flow now: only the watch sees it
    await wait_for(lambda: relay.flv_viewers == 0)
    await wait_for(lambda: len(watch) == 0)


async def test_http_client_going_away_while_frames_flow(served):
    base, relay, _ = served
    frames = stream(50)
    async with aiohttp.ClientSession() as session:
        resp = await session.get(base + "/flv")
        await wait_for(lambda: relay.flv_viewers == 1)
        relay.feed(list(frames[:10]))
        assert (await resp.content.read(13)).startswith(b"FLV")
        resp.close()
    for i in range(10, 50):
        relay.feed([frames[i]])
        await asyncio.sleep(0.002)
        if relay.flv_viewers == 0:
            break
    await wait_for(lambda: relay.flv_viewers == 0)


async def test_ws_flv_streams_frames_and_closes_with_the_reason(served):
    base, relay, _ = served
    frames = stream(50)
    async with aiohttp.ClientSession() as session:
        async with session.ws_connect(base.replace("http", "ws") + "/ws") as ws:
            await wait_for(lambda: relay.flv_viewers == 1)
            await feed_slowly(relay, frames)
            relay.end("end of file")
            data = b""
            while True:
                msg = await ws.receive()
                if msg.type != aiohttp.WSMsgType.BINARY:
                    break
                data += msg.data
            assert msg.type == aiohttp.WSMsgType.CLOSE
            assert msg.data == 1000 and msg.extra == "end of file"
    assert data.startswith(b"FLV") and decoded_frames(data) == 50


async def test_ws_client_close_releases_the_viewer(served):
    base, relay, _ = served
    relay.feed(list(stream(10)))
    async with aiohttp.ClientSession() as session:
        ws = await session.ws_connect(base.replace("http", "ws") + "/ws")
        msg = await ws.receive()
        assert msg.type == aiohttp.WSMsgType.BINARY and msg.data.startswith(b"FLV")
        await ws.close()
    await wait_for(lambda: relay.flv_viewers == 0)
