"""HTTP-FLV: one relay's FLV tags written to an HTTP chunked response.

::

    watch = ClientWatch()                       # one per application, closed at shutdown
    async def handler(request):
        return await stream_flv(request, relay, watch=watch)

The response is ``200``, ``Content-Type: video/x-flv``, chunked, never cached, and open to pages of
other origins (players such as flv.js fetch it from a web page). It ends when the stream ends (the
FLV end-of-sequence tag is written first), when the viewer is disconnected for being too slow,
or when the client goes away.

A client that goes away is noticed by the next write, which fails at once while frames flow.
While nothing flows (a device that stopped sending), :class:`ClientWatch` notices it: one task
for all viewers looks every ``interval`` seconds for connections that were closed.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping

from aiohttp import web

from ..relay import FlvViewer, Relay

__all__ = ["FLV_CONTENT_TYPE", "ClientWatch", "stream_flv"]

log = logging.getLogger("media.outputs")

FLV_CONTENT_TYPE = "video/x-flv"

_HEADERS = {
    "Content-Type": FLV_CONTENT_TYPE,
    "Cache-Control": "no-cache, no-store",
    "Access-Control-Allow-Origin": "*",
}


class ClientWatch:
    """Closes the viewers whose HTTP connections are gone while no data is written to them.

    One task serves every viewer; it runs only while some are watched. :meth:`close` stops it
    (at application shutdown).
    """

    def __init__(self, interval: float = 1.0) -> None:
        self.interval = interval
        self._watched: dict[FlvViewer, Callable[[], bool]] = {}
        self._task: asyncio.Task | None = None
        self._closed = False

    def add(self, viewer: FlvViewer, gone: Callable[[], bool]) -> None:
        """Close ``viewer`` ("client gone") once ``gone()`` returns True."""
        if self._closed:
            return
        self._watched[viewer] = gone
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run(), name="flv client watch")

    def discard(self, viewer: FlvViewer) -> None:
        self._watched.pop(viewer, None)

    def __len__(self) -> int:
        return len(self._watched)

    async def _run(self) -> None:
        while self._watched:
            await asyncio.sleep(self.interval)
            for viewer, gone in list(self._watched.items()):
                if viewer.ended is not None:
                    self._watched.pop(viewer, None)
                elif gone():
                    self._watched.pop(viewer, None)
                    viewer.close("client gone")

    async def close(self) -> None:
        self._closed = True
        self._watched.clear()
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass


def _transport_gone(request: web.BaseRequest) -> Callable[[], bool]:
    def gone() -> bool:
        transport = request.transport
        return transport is None or transport.is_closing()
    return gone


async def write_viewer(viewer: FlvViewer, write: Callable[[bytes], object]) -> None:
    """Write everything ``viewer`` yields with ``write`` (a coroutine function) until it ends."""
    while True:
        data = await viewer.read()
        if data is None:
            return
        await write(data)       # type: ignore[misc]


async def stream_flv(request: web.BaseRequest, relay: Relay, *, watch: ClientWatch | None = None,
                     headers: Mapping[str, str] | None = None,
                     on_viewer: Callable[[FlvViewer], None] | None = None) -> web.StreamResponse:
    """Stream ``relay`` as FLV to the client of ``request``; returns when the stream is over.

    ``on_viewer`` is called with the new viewer (to list it, e.g. in the API's stream list).
    """
    viewer = relay.flv().add_viewer()
    if on_viewer is not None:
        on_viewer(viewer)
    response = web.StreamResponse(status=200, headers={**_HEADERS, **(headers or {})})
    response.enable_chunked_encoding()

    def abort() -> None:        # too slow: the writer may be stuck in a write, cut the connection
        transport = request.transport
        if transport is not None:
            transport.abort()

    viewer.on_abort = abort
    try:
        await response.prepare(request)
        if watch is not None:
            watch.add(viewer, _transport_gone(request))
        await write_viewer(viewer, response.write)
    except ConnectionError:
        log.debug("FLV client went away (%s)", relay.name)
    finally:
        viewer.close("client gone")         # no-op when the stream already ended
        if watch is not None:
            watch.discard(viewer)
        log.debug("FLV viewer of %s done: %s, %s", relay.name, viewer.ended, viewer.stats())
    return response
