"""In-memory store: the :class:`~sip28181.store.base.Store` protocol over dicts and a list.

For tests and for embedding the platform without a database. Everything is lost on exit. Records
are copied on the way in and out, as a database would, so callers cannot change stored state by
mutating a record they hold. Each method runs without awaiting, hence atomically on the event loop.
"""

from __future__ import annotations

import bisect
import copy
import json
import time
from collections.abc import Sequence
from typing import Any

from .base import (AlarmFilter, AlarmRecord, ChannelRecord, ControlLogRecord, DeviceRecord,
                   MobilePositionRecord, PresenceEvent, PresenceSummary, StoreError, check_paging,
                   check_status, upper_key)

__all__ = ["MemoryStore"]


class MemoryStore:
    """:class:`~sip28181.store.base.Store` kept in process memory."""

    def __init__(self) -> None:
        self._open = False
        self._devices: dict[str, DeviceRecord] = {}
        # Kept sorted by ``at``; insort keeps equal times in insertion order.
        self._events: list[PresenceEvent] = []
        self._channels: dict[tuple[str, str], ChannelRecord] = {}
        self._alarms: list[AlarmRecord] = []        # in insertion order (ids ascending)
        self._positions: list[MobilePositionRecord] = []
        self._uppers: dict[str, dict[str, Any]] = {}
        self._control_log: list[ControlLogRecord] = []      # sorted by ``at``, then insertion

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
        for key in [k for k in self._channels if k[0] == device_id]:
            del self._channels[key]
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


    async def presence_summary(self) -> dict[str, PresenceSummary]:
        self._check_open()
        first: dict[str, float] = {}
        last_on: dict[str, float] = {}
        last_off: dict[str, float] = {}
        for e in self._events:
            if e.status == "online":
                first.setdefault(e.device_id, e.at)
                last_on[e.device_id] = e.at
            else:
                last_off[e.device_id] = e.at
        return {d: PresenceSummary(d, first.get(d), last_on.get(d), last_off.get(d))
                for d in {*first, *last_off}}

    # -- catalog ---------------------------------------------------------------------------------

    async def upsert_channels(self, records: Sequence[ChannelRecord]) -> None:
        self._check_open()
        now = time.time()
        for record in records:
            stored = record.copy()
            key = (record.device_id, record.channel_id)
            old = self._channels.get(key)
            if old is not None:
                stored.created_at = old.created_at
            elif stored.created_at is None:
                stored.created_at = now
            if stored.updated_at is None:
                stored.updated_at = now
            self._channels[key] = stored

    async def delete_channels(self, device_id: str, channel_ids: Sequence[str] | None = None) -> int:
        self._check_open()
        if channel_ids is None:
            keys = [k for k in self._channels if k[0] == device_id]
        else:
            keys = [k for c in channel_ids if (k := (device_id, c)) in self._channels]
        for key in keys:
            del self._channels[key]
        return len(keys)

    async def list_channels(self, device_id: str | None = None) -> list[ChannelRecord]:
        self._check_open()
        return [self._channels[k].copy() for k in sorted(self._channels)
                if device_id is None or k[0] == device_id]

    # -- alarms and positions --------------------------------------------------------------------

    async def add_alarms(self, records: Sequence[AlarmRecord]) -> None:
        self._check_open()
        next_id = (self._alarms[-1].id or 0) + 1 if self._alarms else 1
        for i, record in enumerate(records):
            stored = record.copy()
            stored.id = next_id + i
            self._alarms.append(stored)

    def _matching(self, where: AlarmFilter) -> list[AlarmRecord]:
        return [a for a in self._alarms
                if (where.since is None or a.at >= where.since)
                and (where.until is None or a.at < where.until)
                and (where.device_id is None or where.device_id in (a.device_id, a.alarm_device_id))
                and (where.alarm_type is None or a.alarm_type == where.alarm_type)
                and (where.method is None or a.method == where.method)
                and (where.priority is None or a.priority == where.priority)]

    async def search_alarms(self, where: AlarmFilter, *, offset: int = 0, limit: int | None = 100,
                            newest_first: bool = True) -> list[AlarmRecord]:
        self._check_open()
        check_paging(offset, limit)
        found = sorted(self._matching(where), key=lambda a: (a.at, a.id or 0), reverse=newest_first)
        end = None if limit is None else offset + limit
        return [a.copy() for a in found[offset:end]]

    async def count_alarms(self, where: AlarmFilter) -> int:
        self._check_open()
        return len(self._matching(where))

    async def add_mobile_positions(self, records: Sequence[MobilePositionRecord]) -> None:
        self._check_open()
        for record in records:
            bisect.insort(self._positions, record, key=_pos_at)

    async def mobile_positions(self, target_id: str | None = None, since: float | None = None,
                               until: float | None = None, limit: int = 1000) -> list[MobilePositionRecord]:
        self._check_open()
        check_paging(0, limit)
        out = [p for p in self._positions
               if (target_id is None or p.target_id == target_id)
               and (since is None or p.at >= since) and (until is None or p.at < until)]
        return out[:limit]


    # -- upper platforms -------------------------------------------------------------------------

    async def list_uppers(self) -> list[dict[str, Any]]:
        self._check_open()
        return [copy.deepcopy(self._uppers[k]) for k in sorted(self._uppers)]

    async def save_upper(self, settings: dict[str, Any]) -> None:
        self._check_open()
        key = upper_key(settings)
        # Through JSON, as a database would: refuses what SQLite could not store, tuples → lists.
        self._uppers[key] = json.loads(json.dumps(settings, ensure_ascii=False))

    async def delete_upper(self, sip_id: str) -> bool:
        self._check_open()
        return self._uppers.pop(sip_id, None) is not None

    # -- control log -----------------------------------------------------------------------------

    async def add_control_log(self, records: Sequence[ControlLogRecord]) -> None:
        self._check_open()
        for record in records:
            bisect.insort(self._control_log, record, key=_log_at)

    async def search_control_log(self, *, device_id: str | None = None, source: str | None = None,
                                 start: float | None = None, end: float | None = None,
                                 limit: int = 100, offset: int = 0) -> list[ControlLogRecord]:
        self._check_open()
        check_paging(offset, limit)
        found = [r for r in reversed(self._control_log)
                 if (device_id is None or device_id in (r.device_id, r.channel_id))
                 and (source is None or r.source == source)
                 and (start is None or r.at >= start) and (end is None or r.at < end)]
        return found[offset:offset + limit]

    async def prune_control_log(self, before: float) -> int:
        self._check_open()
        keep = bisect.bisect_left(self._control_log, before, key=_log_at)
        del self._control_log[:keep]
        return keep


def _log_at(record: ControlLogRecord) -> float:
    return record.at


def _pos_at(record: MobilePositionRecord) -> float:
    return record.at


def _at(event: PresenceEvent) -> float:
    return event.at
