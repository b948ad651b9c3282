"""``GET /api/v1/events``: platform events as Server-Sent Events, filterable by type and device.

Each event is one SSE message: ``event: <type>`` and ``data: <JSON>`` (the event's fields). A
comment line is sent every ``heartbeat`` seconds so proxies keep the connection. A slow client
loses the oldest events (its queue holds 1000), it never slows the platform. The stream ends when
the client goes away (checked every second, so its subscription is dropped at once) and when the
server stops (:func:`close_streams` on application shutdown): no task outlives it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from typing import Any, Literal

from aiohttp import web
from pydantic import BaseModel, Field
from pydantic_core import to_jsonable_python

from ..platform import events as ev
from .devices import PLATFORM
from .errors import dumps
from .routing import ApiRouter

log = logging.getLogger("sip28181.api")

#: SSE event name -> event class.
EVENT_TYPES: dict[str, type] = {
    "alarm": ev.AlarmReceived,
    "mobile_position": ev.MobilePositionReceived,
    "catalog": ev.CatalogUpdated,
    "channel_status": ev.ChannelStatusChanged,
    "device_online": ev.DeviceOnline,
    "device_offline": ev.DeviceOffline,
    "device_registered": ev.DeviceRegistered,
    "device_unregistered": ev.DeviceUnregistered,
    "registration_refused": ev.RegistrationRefused,
    "stream_started": ev.StreamStarted,
    "stream_stopped": ev.StreamStopped,
}
_NAME_OF = {cls: name for name, cls in EVENT_TYPES.items()}
EventType = Literal[tuple(EVENT_TYPES)]  # type: ignore[valid-type]

STREAMS: web.AppKey[set[asyncio.Queue]] = web.AppKey("event_streams", set)
QUEUE_SIZE = 1000
_CLOSE = object()


class EventQuery(BaseModel):
    type: list[EventType] = Field(default_factory=list,  # type: ignore[valid-type]
                                  description="event types to receive (repeat the parameter); all when absent")
    device_id: str | None = Field(None, pattern=r"^\d{20}$", description="only events of this device")
    heartbeat: float = Field(15.0, ge=1, le=300, description="seconds between keep-alive comments")


def install(app: web.Application) -> None:
    """Track open streams and end them when the application shuts down."""
    app[STREAMS] = set()
    app.on_shutdown.append(close_streams)


async def close_streams(app: web.Application) -> None:
    for queue in list(app.get(STREAMS, ())):
        while queue.full():
            queue.get_nowait()
        queue.put_nowait(_CLOSE)


def encode(event: object) -> bytes:
    name = _NAME_OF.get(type(event), type(event).__name__)
    data = {f.name: getattr(event, f.name) for f in dataclasses.fields(event)}  # type: ignore[arg-type]
    text = dumps(to_jsonable_python(data, fallback=str, inf_nan_mode="null"))
    return f"event: {name}\ndata: {text}\n\n".encode()


def register_routes(api: ApiRouter) -> None:
    @api.get("/events", query=EventQuery, tags=["events"], content_type="text/event-stream",
             response={"type": "string", "description": "Server-Sent Events: event: <type>, data: <JSON>"})
    async def event_stream(request: web.Request, query: EventQuery) -> web.StreamResponse:
        """Platform events (alarms, positions, catalog and presence changes, streams) as Server-Sent Events."""
        platform = request.app[PLATFORM]
        types = tuple(EVENT_TYPES[t] for t in query.type) or tuple(EVENT_TYPES.values())
        device_id = query.device_id
        queue: asyncio.Queue[Any] = asyncio.Queue(QUEUE_SIZE)

        def offer(event: object) -> None:
            if device_id is not None and getattr(event, "device_id", None) != device_id:
                return
            if queue.full():
                queue.get_nowait()      # drop the oldest: a slow client never blocks the platform
            queue.put_nowait(event)

        response = web.StreamResponse(headers={"Content-Type": "text/event-stream; charset=utf-8",
                                               "Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
        streams = request.app.get(STREAMS)
        unsubscribe = platform.events.on(offer, *types)
        if streams is not None:
            streams.add(queue)
        try:
            await response.prepare(request)
            await response.write(b": connected\n\n")
            loop = asyncio.get_running_loop()
            next_beat = loop.time() + query.heartbeat
            while True:
                transport = request.transport
                if transport is None or transport.is_closing():
                    break
                try:
                    item = await asyncio.wait_for(queue.get(), 1.0)
                except asyncio.TimeoutError:
                    if loop.time() >= next_beat:
                        await response.write(b": keep-alive\n\n")
                        next_beat = loop.time() + query.heartbeat
                    continue
                if item is _CLOSE:
                    break
                await response.write(encode(item))
        except (ConnectionError, RuntimeError) as exc:     # the client went away mid-write
            log.debug("event stream closed: %s", exc)
        finally:
            unsubscribe()
            if streams is not None:
                streams.discard(queue)
        return response
