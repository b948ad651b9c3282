"""In-memory store: the :class:`~sip28181.store.base.Store` protocol over dicts and a list.

For tests and for embedding the platform without a database. Everything is lost on exit. Records
are copied on the way in and out, as a database would, so callers cannot change stored state by
mutating a record they hold. Each method runs without awaiting, hence atomically on the event loop.
"""

from __future__ import annotations

import bisect
import time
from collections.abc import Sequence

from .base import DeviceRecord, PresenceEvent, StoreError, check_paging, check_status

__all__ = ["MemoryStore"]


class MemoryStore:
    """:class:`~sip28181.store.base.Store` kept in process memory."""

    def __init__(self) -> None:
        self._open = False
        self._devices: dict[str, DeviceRecord] = {}
        # Kept sorted by ``at``; insort keeps equal times in insertion order.
        self._events: list[PresenceEvent] = []

    def __repr__(self) -> str:
        return f"<MemoryStore {len(self._devices)} devices {'open' if self._open else 'closed'}>"

    async def __aenter__(self) -> MemoryStore:
        await self.open()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def open(self) -> None:
        self._open = True

    async def close(self) -> None:
        self._open = False

    def _check_open(self) -> None:
        if not self._open:
            raise StoreError("the store is not open")

    # -- devices ---------------------------------------------------------------------------------

    async def upsert_devices(self, records: Sequence[DeviceRecord]) -> None:
        self._check_open()
        now = time.time()
        for record in records:
            stored = record.copy()
            old = self._devices.get(record.device_id)
            if old is not None:
                stored.created_at = old.created_at
            elif stored.created_at is None:
                stored.created_at = now
            if stored.updated_at is None:
                stored.updated_at = now
            self._devices[record.device_id] = stored

    async def get_device(self, device_id: str) -> DeviceRecord | None:
        self._check_open()
        record = self._devices.get(device_id)
        return record.copy() if record is not None else None

    async def list_devices(self, *, status: str | None = None, offset: int = 0,
                           limit: int | None = None) -> list[DeviceRecord]:
        self._check_open()
        check_status(status)
        check_paging(offset, limit)
        ids = sorted(d for d, r in self._devices.items() if status is None or r.status == status)
        end = None if limit is None else offset + limit
        return [self._devices[d].copy() for d in ids[offset:end]]

    async def count_devices(self, status: str | None = None) -> int:
        self._check_open()
        check_status(status)
        if status is None:
            return len(self._devices)
        return sum(1 for r in self._devices.values() if r.status == status)

    async def delete_device(self, device_id: str) -> bool:
        self._check_open()
        existed = self._devices.pop(device_id, None) is not None
        self._events = [e for e in self._events if e.device_id != device_id]
        return existed

    async def set_all_offline(self, at: float, reason: str) -> int:
        self._check_open()
        changed = 0
        for record in self._devices.values():
            if record.status != "offline":
                record.status = "offline"
                record.updated_at = at
                bisect.insort(self._events, PresenceEvent(record.device_id, "offline", at, reason),
                              key=_at)
                changed += 1
        return changed

    # -- presence history ------------------------------------------------------------------------

    async def add_presence_events(self, events: Sequence[PresenceEvent]) -> None:
        self._check_open()
        for event in events:
            bisect.insort(self._events, event, key=_at)

    async def presence_events(self, device_id: str | None = None, since: float | None = None,
                              until: float | None = None, limit: int = 1000, *,
                              newest_first: bool = False) -> list[PresenceEvent]:
        self._check_open()
        check_paging(0, limit)
        lo = 0 if since is None else bisect.bisect_left(self._events, since, key=_at)
        hi = len(self._events) if until is None else bisect.bisect_left(self._events, until, key=_at)
        window = self._events[lo:hi]
        if newest_first:
            window.reverse()
        out: list[PresenceEvent] = []
        for event in window:
            if len(out) >= limit:
                break
            if device_id is None or event.device_id == device_id:
                out.append(event)
        return out

    async def prune_presence_events(self, before: float) -> int:
        self._check_open()
        cut = bisect.bisect_left(self._events, before, key=_at)
        del self._events[:cut]
        return cut


def _at(event: PresenceEvent) -> float:
    return event.at
