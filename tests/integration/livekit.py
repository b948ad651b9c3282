"""Helpers of the live/playback tests: a media-enabled server, a simulated camera, FLV readers."""

from __future__ import annotations

import asyncio
import contextlib
import io
import struct

import aiohttp
import av

from sip28181.device import DeviceSimulator
from sip28181.device.media import MediaOptions
from sip28181.server import Server

from .conftest import SERVER_ID, TOKEN, make_config, wait_for

DEVICE = "34020000001320000001"
CHANNEL = "34020000001310000001"

MEDIA = dict(media_bind="127.0.0.1", media_host="127.0.0.1", media_linger=0.5,
             media_no_media_timeout=2.0, media_invite_timeout=3.0)


@contextlib.asynccontextmanager
async def media_server(tmp_path, **overrides):
    srv = Server(make_config(tmp_path, **{**MEDIA, **overrides}))
    await srv.start()
    try:
        yield srv
    finally:
        await srv.stop()


@contextlib.asynccontextmanager
async def camera(server: Server, options: MediaOptions | None = None, device_id: str = DEVICE, **kw):
    """A simulated camera registered and online."""
    kw.setdefault("keepalive_interval", 30)
    device = DeviceSimulator(device_id, server_id=SERVER_ID, server_host="127.0.0.1",
                             server_port=server.sip_port, media=options, **kw)
    await device.start()
    try:
        await wait_for(lambda: (s := server.platform.registry.get(device_id)) is not None
                       and s.status == "online")
        yield device
    finally:
        await device.stop()


def base(server: Server) -> str:
    return f"http://127.0.0.1:{server.http_port}"


def live_url(server: Server, suffix: str = ".flv", device: str = DEVICE, channel: str = CHANNEL,
             **query: str) -> str:
    qs = "&".join(f"{k}={v}" for k, v in {"token": TOKEN, **query}.items())
    return f"{base(server)}/live/{device}/{channel}{suffix}?{qs}"


def auth() -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKEN}"}


# -- FLV ------------------------------------------------------------------------------------------

class FlvTags:
    """Incremental FLV parser: the header, then (type, timestamp, body) per tag."""

    def __init__(self) -> None:
        self.buffer = b""
        self.data = b""
        self.header_seen = False
        self.tags: list[tuple[int, int, bytes]] = []

    def feed(self, chunk: bytes) -> None:
        self.data += chunk
        self.buffer += chunk
        if not self.header_seen:
            if len(self.buffer) < 13:
                return
            assert self.buffer[:3] == b"FLV", self.buffer[:16]
            self.buffer = self.buffer[13:]
            self.header_seen = True
        while len(self.buffer) >= 11:
            size = int.from_bytes(self.buffer[1:4], "big")
            if len(self.buffer) < 11 + size + 4:
                return
            ts = int.from_bytes(self.buffer[4:7], "big") | (self.buffer[7] << 24)
            self.tags.append((self.buffer[0], ts, self.buffer[11:11 + size]))
            prev = struct.unpack(">I", self.buffer[11 + size:15 + size])[0]
            assert prev == 11 + size
            self.buffer = self.buffer[15 + size:]

    @property
    def video_frames(self) -> list[bytes]:
        """Video tags carrying coded frames (not sequence headers / end of sequence)."""
        return [body for kind, _, body in self.tags if kind == 9 and len(body) > 1 and body[1] == 1]

    @property
    def audio_frames(self) -> int:
        return sum(1 for kind, _, _ in self.tags if kind == 8)


def decode(data: bytes) -> tuple[int, bool]:
    """(pictures PyAV decodes from FLV bytes, whether the first one is a keyframe)."""
    container = av.open(io.BytesIO(data), format="flv")
    pictures = []
    try:
        for packet in container.demux(video=0):
            pictures.extend(packet.decode())
    finally:
        container.close()
    return len(pictures), bool(pictures and pictures[0].key_frame)


async def read_flv(response: aiohttp.ClientResponse, frames: int | None = None,
                   timeout: float = 15.0, tags: FlvTags | None = None) -> FlvTags:
    """Read until ``frames`` coded video frames arrived (None: until the response ends);
    ``tags`` continues an earlier read of the same response."""
    tags = tags if tags is not None else FlvTags()

    async def run() -> None:
        async for chunk in response.content.iter_any():
            tags.feed(chunk)
            if frames is not None and len(tags.video_frames) >= frames:
                return

    await asyncio.wait_for(run(), timeout)
    return tags
