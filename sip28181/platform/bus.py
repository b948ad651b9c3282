"""Publish/subscribe for platform events: callbacks and async iterators, never blocking the loop."""

from __future__ import annotations

import asyncio
import logging
from typing import AsyncIterator, Callable

log = logging.getLogger("sip28181.events")


class Subscription:
    """An async iterator over events; a slow reader loses the oldest events (counted), never blocks."""

    def __init__(self, bus: "EventBus", types: tuple[type, ...], maxsize: int) -> None:
        self._bus = bus
        self._types = types
        self._queue: asyncio.Queue = asyncio.Queue(maxsize)
        self.dropped = 0

    def _offer(self, event: object) -> None:
        if self._types and not isinstance(event, self._types):
            return
        if self._queue.full():
            self._queue.get_nowait()
            self.dropped += 1
        self._queue.put_nowait(event)

    def __aiter__(self) -> AsyncIterator:
        return self

    async def __anext__(self):
        return await self._queue.get()

    async def get(self, timeout: float | None = None):
        return await asyncio.wait_for(self._queue.get(), timeout)

    def close(self) -> None:
        self._bus._subs.discard(self)

    def __enter__(self) -> "Subscription":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class EventBus:
    def __init__(self) -> None:
        self._callbacks: list[tuple[tuple[type, ...], Callable[[object], None]]] = []
        self._subs: set[Subscription] = set()

    def on(self, callback: Callable[[object], None], *types: type) -> Callable[[], None]:
        """Call ``callback(event)`` for events of ``types`` (all when none); returns an unsubscribe."""
        entry = (types, callback)
        self._callbacks.append(entry)
        return lambda: self._callbacks.remove(entry) if entry in self._callbacks else None

    def subscribe(self, *types: type, maxsize: int = 1000) -> Subscription:
        sub = Subscription(self, types, maxsize)
        self._subs.add(sub)
        return sub

    def publish(self, event: object) -> None:
        for types, callback in list(self._callbacks):
            if not types or isinstance(event, types):
                try:
                    callback(event)
                except Exception:
                    log.exception("event callback failed for %r", event)
        for sub in list(self._subs):
            sub._offer(event)
