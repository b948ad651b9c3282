"""WS-FLV: one relay's FLV tags sent as WebSocket binary messages (flv.js / mpegts.js ``ws://``).

Each message holds the tags queued since the previous one (players concatenate messages into one
FLV byte stream). Messages from the client are read and ignored; its close frame or a broken
connection closes the viewer at once. When the stream ends the server closes the WebSocket with
code 1000 and the reason (``"device bye"``, ``"no media"``...); a viewer disconnected for being
too slow gets 1008.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from aiohttp import WSCloseCode, WSMsgType, hdrs, web

from ..relay import FlvViewer, Relay

__all__ = ["stream_wsflv", "wants_websocket"]

log = logging.getLogger("media.outputs")


def wants_websocket(request: web.BaseRequest) -> bool:
    """True when ``request`` asks for a WebSocket upgrade."""
    return (request.headers.get(hdrs.UPGRADE, "").lower() == "websocket"
            and "upgrade" in request.headers.get(hdrs.CONNECTION, "").lower())


async def _read_until_closed(ws: web.WebSocketResponse, viewer: FlvViewer) -> None:
    try:
        async for msg in ws:
            if msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.ERROR):
                break
    finally:
        viewer.close("client gone")


async def stream_wsflv(request: web.Request, relay: Relay, *, heartbeat: float | None = 20.0,
                       on_viewer: Callable[[FlvViewer], None] | None = None,
                       ws: web.WebSocketResponse | None = None) -> web.WebSocketResponse:
    """Stream ``relay`` as FLV over a WebSocket to the client of ``request`` (upgrades it)."""
    if ws is None:
        ws = web.WebSocketResponse(heartbeat=heartbeat, max_msg_size=64 * 1024)
        await ws.prepare(request)
    viewer = relay.flv().add_viewer()
    if on_viewer is not None:
        on_viewer(viewer)

    def abort() -> None:
        transport = request.transport
        if transport is not None:
            transport.abort()

    viewer.on_abort = abort
    reader = asyncio.get_running_loop().create_task(_read_until_closed(ws, viewer),
                                                    name="ws-flv reader")
    try:
        while True:
            data = await viewer.read()
            if data is None:
                break
            await ws.send_bytes(data)
    except ConnectionError:
        log.debug("WS-FLV client went away (%s)", relay.name)
    finally:
        viewer.close("client gone")
        if not ws.closed:
            code = WSCloseCode.POLICY_VIOLATION if viewer.ended == "too slow" else WSCloseCode.OK
            try:
                await ws.close(code=code, message=(viewer.ended or "").encode()[:120])
            except ConnectionError:
                pass
        if not reader.done():
            reader.cancel()
        await asyncio.gather(reader, return_exceptions=True)
    return ws
