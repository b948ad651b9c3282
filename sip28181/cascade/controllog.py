"""The control log: every PTZ and device control, ours and our uppers', with its outcome.

Cascaded networks must be able to say who steered a camera and when (expressway requirements:
"双方对云台控制的操作要进行日志记录"). Each control is logged at INFO on ``sip28181.control`` and
kept as a :class:`ControlLogRecord`: ``source`` is ``local`` (our API or library caller) or
the upper's SIP ID; ``device_id``/``channel_id`` are our own IDs of the target; ``result`` is
``ok``, ``refused`` (local priority, control not allowed, unknown target) or ``failed`` (the
device refused or did not answer); ``detail`` says what was sent and why it ended so.

Records go to the store's ``control_log`` table with the platform's periodic flush (a platform
without a store keeps them in a bounded memory buffer); :meth:`ControlLog.search` flushes the
control log first, so a control is found as soon as it is logged. While the store fails, at most
``memory_size`` records wait for it (the oldest are dropped, with a warning). Records older than
``[cascade] control_log_days`` are pruned from the store at start and then hourly.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from typing import TYPE_CHECKING

from ..store.base import ControlLogRecord, write_in_order

if TYPE_CHECKING:
    from ..platform.core import Platform

log = logging.getLogger("sip28181.control")

__all__ = ["ControlLog", "ControlLogRecord", "LOCAL", "RESULTS", "upper_source"]

LOCAL = "local"
RESULTS = ("ok", "refused", "failed")
#: seconds between two prunes of the store's control log
PRUNE_EVERY = 3600.0
DAY = 86400.0


def upper_source(upper_id: str) -> str:
    """The ``source`` of a control sent by the upper platform ``upper_id``."""
    return upper_id


class ControlLog:
    """Logs each control at once; keeps the records for the API (store or memory)."""

    def __init__(self, platform: "Platform", *, memory_size: int = 10_000) -> None:
        self.platform = platform
        self._memory: collections.deque[ControlLogRecord] = collections.deque(maxlen=memory_size)
        self._pending: list[ControlLogRecord] = []
        self._max_pending = memory_size
        self._flush_lock = asyncio.Lock()
        self._pruned_at: float | None = None     # monotonic time of the last prune
        #: records dropped because the store kept failing
        self.dropped = 0

    def record(self, source: str, device_id: str, channel_id: str | None, command: str, detail: str,
               result: str, *, call_id: str | None = None) -> ControlLogRecord:
        entry = ControlLogRecord(time.time(), source, device_id, channel_id, command, detail, result)
        log.log(logging.INFO if result == "ok" else logging.WARNING, "control %s on %s from %s: %s (%s)",
                command, channel_id or device_id, source, result, detail,
                extra={"device_id": device_id if source == LOCAL else source, "call_id": call_id or ""})
        self.platform._count("controls", LOCAL if source == LOCAL else "upper", result)
        if self._persistent():
            self._pending.append(entry)
            self._bound()
        else:
            self._memory.append(entry)
        return entry

    def _bound(self) -> None:
        """Keep at most ``memory_size`` records waiting for the store: the oldest go first."""
        over = len(self._pending) - self._max_pending
        if over > 0:
            del self._pending[:over]
            before, self.dropped = self.dropped, self.dropped + over
            if before == 0 or before // 1000 != self.dropped // 1000:      # not once per control
                log.warning("control log: the store is not taking records, %d oldest dropped so far",
                            self.dropped, extra={"device_id": "", "call_id": ""})

    async def flush(self) -> None:
        """Write the records logged since the last flush (kept, within bounds, when the write
        fails), and prune the old ones when it is time."""
        async with self._flush_lock:
            pending, self._pending = self._pending, []
            if not self._persistent():
                return
            if pending:
                def requeue() -> None:
                    self._pending[:0] = pending
                    self._bound()
                await write_in_order([(lambda: self.platform.store.add_control_log(pending), requeue)])
            await self._prune()

    async def _prune(self) -> None:
        days = self.platform.config.cascade_control_log_days
        now = time.monotonic()
        if days <= 0 or (self._pruned_at is not None and now - self._pruned_at < PRUNE_EVERY):
            return
        self._pruned_at = now
        removed = await self.platform.store.prune_control_log(time.time() - days * DAY)
        if removed:
            log.info("control log: %d entries older than %g days pruned", removed, days,
                     extra={"device_id": "", "call_id": ""})

    def _persistent(self) -> bool:
        """Whether records go to the store (else they stay in memory)."""
        return self.platform.store is not None

    async def search(self, *, device_id: str | None = None, source: str | None = None,
                     start: float | None = None, end: float | None = None, limit: int = 100,
                     offset: int = 0) -> list[ControlLogRecord]:
        """Records matching every given filter, newest first (``device_id`` matches the device or
        the channel)."""
        if self._persistent():
            await self.flush()
            return await self.platform.store.search_control_log(
                device_id=device_id, source=source, start=start, end=end, limit=limit, offset=offset)
        out = [r for r in reversed(self._memory)
               if (device_id is None or device_id in (r.device_id, r.channel_id))
               and (source is None or r.source == source)
               and (start is None or r.at >= start) and (end is None or r.at < end)]
        return out[offset:offset + limit]
