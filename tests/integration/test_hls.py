"""Live HLS and snapshots over the server: simulator → server → HLS/JPEG over HTTP, decoded with PyAV."""

from __future__ import annotations

import io
import re

import aiohttp
import av
import pytest

from sip28181.device.media import MediaOptions
from sip28181.server import Server

from .conftest import TOKEN, Api, wait_for
from .livekit import CHANNEL, DEVICE, camera

PS_FILE = "tests/data/ps/libmpeg_h264_g711a.ps"
UNKNOWN = "34020000001320000999"


@pytest.fixture
async def env(config_factory):
    server = Server(config_factory(media_linger=0.5, hls_idle_timeout=1.5, hls_segment_seconds=2,
                                   hls_list_size=4, media_port_min=31000, media_port_max=31099))
    await server.start()
    try:
        async with camera(server, MediaOptions(source=PS_FILE)) as device, \
                aiohttp.ClientSession() as session:
            yield server, device, Api(session, f"http://127.0.0.1:{server.http_port}")
    finally:
        await server.stop()


def segment_lines(playlist: str) -> list[str]:
    return [line for line in playlist.splitlines() if line and not line.startswith("#")]


async def test_hls_on_demand_segments_decode_and_idle_stop(env):
    server, device, api = env
    base = f"/live/{DEVICE}/{CHANNEL}"
    status, playlist = await api.get(f"{base}/index.m3u8", token=False,
                                     params={"token": TOKEN})
    assert status == 200, playlist
    assert playlist.startswith("#EXTM3U")
    uris = segment_lines(playlist)
    assert uris and all(re.fullmatch(r"seg\d{6}\.ts\?token=" + TOKEN, u) for u in uris)
    # The stream list shows the HLS output and its URL.
    status, streams = await api.get("/api/v1/streams")
    (stream,) = streams
    assert stream["urls"]["hls"].endswith(f"{base}/index.m3u8")
    assert "hls" in [o["kind"] for o in stream["outputs"]]
    # Fetch segments the way a player does, until three are in: each decodes, starting on a
    # keyframe, 2 s of the 25 fps clip.
    fetched: dict[str, bytes] = {}
    async def poll():
        status, text = await api.get(f"{base}/index.m3u8")
        assert status == 200
        for uri in segment_lines(text):
            name = uri.split("?")[0]
            if name not in fetched:
                async with api.session.get(f"{api.base}{base}/{uri}", headers={
                        "Authorization": f"Bearer {TOKEN}"}) as resp:
                    if resp.status == 200:
                        assert resp.headers["Content-Type"] == "video/mp2t"
                        fetched[name] = await resp.read()
        return len(fetched) >= 3
    await wait_for(poll, timeout=30, interval=0.3)
    for name, data in sorted(fetched.items())[:3]:
        with av.open(io.BytesIO(data), format="mpegts") as container:
            kinds = sorted(s.type for s in container.streams)
            assert kinds == ["audio", "video"]
            assert container.streams.audio[0].codec_context.name == "aac"
            frames = [f for f in container.decode(video=0)]
        assert frames and frames[0].key_frame, name
        assert len(frames) == 50, name
    # Nobody asks any more: the HLS output stops, releases the stream, which ends (linger).
    await wait_for(lambda: server.platform.outputs.hls_outputs() == [], timeout=15)
    await wait_for(lambda: len(server.platform.streams) == 0, timeout=15)
    assert not (server.config.data_dir / "hls" / f"{DEVICE}_{CHANNEL}").exists()
    status, body = await api.get(f"{base}/{sorted(fetched)[0]}")
    assert status == 404


async def test_snapshot(env):
    server, device, api = env
    url = f"/api/v1/devices/{DEVICE}/channels/{CHANNEL}/snapshot"
    async with api.session.get(api.base + url, params={"width": "320"},
                               headers={"Authorization": f"Bearer {TOKEN}"}) as resp:
        assert resp.status == 200, await resp.text()
        assert resp.headers["Content-Type"] == "image/jpeg"
        data = await resp.read()
    with av.open(io.BytesIO(data)) as container:
        frame = next(container.decode(video=0))
    assert (frame.width, frame.height) == (320, 180)
    # The second one comes from the GOP cache of the running stream.
    async with api.session.get(api.base + url, headers={"Authorization": f"Bearer {TOKEN}"}) as resp:
        assert resp.status == 200
        with av.open(io.BytesIO(await resp.read())) as container:
            assert next(container.decode(video=0)).width == 640


@pytest.mark.parametrize("path, status", [
    (f"/live/{UNKNOWN}/{CHANNEL}/index.m3u8", 404),
    (f"/live/123/{CHANNEL}/index.m3u8", 400),
    (f"/live/{DEVICE}/{CHANNEL}/seg000001.ts", 404),          # no HLS output running
    (f"/live/{DEVICE}/{CHANNEL}/../index.m3u8", 404),
    (f"/live/{DEVICE}/{CHANNEL}/seg1.ts", 400),
    (f"/live/{DEVICE}/{CHANNEL}/index.m3u8?transport=carrier-pigeon", 400),
    (f"/api/v1/devices/{UNKNOWN}/channels/{CHANNEL}/snapshot", 404),
    (f"/api/v1/devices/{DEVICE}/channels/{CHANNEL}/snapshot?width=1", 400),
    (f"/api/v1/devices/{DEVICE}/channels/{CHANNEL}/snapshot?quality=99", 400),
    (f"/api/v1/devices/{DEVICE}/channels/{CHANNEL}/snapshot?timeout=abc", 400),
])
async def test_bad_requests(env, path, status):
    server, device, api = env
    got, body = await api.get(path)
    assert got == status, body
    assert body["error"]["status"] == status
    assert len(server.platform.streams) == 0


async def test_playlist_requires_the_token(env):
    server, device, api = env
    status, body = await api.get(f"/live/{DEVICE}/{CHANNEL}/index.m3u8", token=False)
    assert status == 401


async def test_openapi_lists_the_output_routes(env):
    server, device, api = env
    status, doc = await api.get("/api/v1/openapi.json", token=False)
    assert status == 200
    paths = doc["paths"]
    for path, method in [("/live/{device_id}/{channel_id}/index.m3u8", "get"),
                         ("/live/{device_id}/{channel_id}/{segment}", "get"),
                         ("/api/v1/devices/{device_id}/channels/{channel_id}/snapshot", "get"),
                         ("/api/v1/devices/{device_id}/channels/{channel_id}/push", "post"),
                         ("/api/v1/devices/{device_id}/channels/{channel_id}/push", "delete"),
                         ("/api/v1/devices/{device_id}/channels/{channel_id}/record", "post"),
                         ("/api/v1/devices/{device_id}/channels/{channel_id}/record", "delete"),
                         ("/api/v1/pushes", "get"), ("/api/v1/records", "get")]:
        op = paths[path][method]
        assert op["summary"] and op["responses"], (path, method)
    snap = paths["/api/v1/devices/{device_id}/channels/{channel_id}/snapshot"]["get"]
    assert "image/jpeg" in snap["responses"]["200"]["content"]
