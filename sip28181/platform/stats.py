"""Statistics of device presence and streaming: the HJ draft's online and access rates, and the
device lists a video ingestion service offers.

**Online rate** (HJ draft 9.3): ``D = T / M`` for one device over a period ``[start, end)``.

* ``T`` (online time) is read from the presence history the platform already keeps: the device is
  online from an ``online`` event (a successful REGISTER, or a keepalive from a device that had
  been marked offline) until the next ``offline`` event. The platform records ``offline`` when
  keepalives have been missing for ``interval × count`` seconds, which is the draft's rule (9.3.4:
  "the receiver, while the sender is online, detects the configured number of consecutive
  keepalive timeouts"), and also when the registration expires or is withdrawn, when a TCP
  connection drops, and when the server stops (``server stop``) or starts (``server restart``):
  time the server was not running never counts as online.
* ``M`` (time it should have been online) is the part of ``[start, end)`` that lies between the
  device's first appearance on the platform (``created_at``) and now: a platform cannot expect a
  device before it knew of it, nor judge the future.

**Access rate** (9.4): ``A = S / Z`` over ``[start, end)``. ``Z`` is every device the platform is
meant to serve (the configured ``[devices]`` table and every device that ever registered); ``S``
counts those whose keepalives or media reached the platform in the period: online for any part
of it, or a stream started in it.

**Device lists** (the ingestion API's statistics): ``ever_online``, ``new_online_today`` (first
online event today), ``new_offline_today`` (offline now, went offline today), ``offline_over_3_days``
(offline now, and not online at any time in the last 3 days), ``offline_within_3_days`` (offline
now, but online at some time in the last 3 days), ``online_never_streamed`` (was online, and no
media of any of its channels ever reached the relay: :class:`~.events.StreamStarted`).
"Today" starts at local midnight of the server.

The functions here are pure (events and times in, numbers out); :class:`Statistics` reads the
store and the registry for them.
"""

from __future__ import annotations

import datetime as _dt
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..errors import LocalProtocolError
from ..store.base import PresenceEvent, PresenceSummary
from .events import DeviceOffline, StreamStarted

if TYPE_CHECKING:
    from .core import Platform

__all__ = ["AccessRate", "DEVICE_LISTS", "OnlineRate", "Statistics", "device_lists", "online_intervals",
           "online_time"]

DAY = 86400.0
DEVICE_LISTS = ("ever_online", "new_online_today", "new_offline_today", "offline_over_3_days",
                "offline_within_3_days", "online_never_streamed")


def online_intervals(events: Iterable[PresenceEvent], start: float, end: float,
                     initial: str = "offline") -> list[tuple[float, float]]:
    """Online intervals within ``[start, end)``: ``events`` sorted by time (those before ``start``
    only set the state), ``initial`` the state before the first of them. Repeated states (an
    ``offline`` after an ``offline``) change nothing."""
    out: list[tuple[float, float]] = []
    online_since = start if initial == "online" else None
    for event in events:
        at = min(max(event.at, start), end)
        if event.status == "online":
            if online_since is None:
                online_since = at
        elif online_since is not None:
            if at > online_since:
                out.append((online_since, at))
            online_since = None
    if online_since is not None and end > online_since:
        out.append((online_since, end))
    return out


def online_time(events: Iterable[PresenceEvent], start: float, end: float, initial: str = "offline") -> float:
    """``T``: seconds online within ``[start, end)`` (see :func:`online_intervals`)."""
    return sum(b - a for a, b in online_intervals(events, start, end, initial))


@dataclass(frozen=True, slots=True)
class OnlineRate:
    device_id: str
    start: float
    end: float
    online_seconds: float
    """``T``."""
    expected_seconds: float
    """``M``."""

    @property
    def rate(self) -> float | None:
        """``D = T / M`` (0..1); ``None`` when ``M`` is 0 (the device was not expected)."""
        return self.online_seconds / self.expected_seconds if self.expected_seconds > 0 else None


def online_rate(device_id: str, events: Sequence[PresenceEvent], start: float, end: float, *,
                initial: str = "offline", known_since: float | None = None, now: float | None = None) -> OnlineRate:
    """The online rate of one device from its presence events (see the module docstring)."""
    if end <= start:
        raise LocalProtocolError("the period must end after it starts")
    lo = start if known_since is None else max(start, known_since)
    hi = end if now is None else min(end, now)
    expected = max(0.0, hi - lo)
    online = online_time(events, lo, hi, initial) if expected > 0 else 0.0
    return OnlineRate(device_id, start, end, online, expected)


@dataclass(frozen=True, slots=True)
class AccessRate:
    start: float
    end: float
    accessed: list[str]
    """``S``: devices heard from (keepalive or media) in the period."""
    expected: list[str]
    """``Z``: devices that should be connected."""

    @property
    def rate(self) -> float | None:
        """``A = S / Z`` (0..1); ``None`` without any device expected."""
        return len(self.accessed) / len(self.expected) if self.expected else None


@dataclass(frozen=True, slots=True)
class DeviceFacts:
    """What the device lists are computed from, per device."""

    device_id: str
    online: bool
    summary: PresenceSummary | None = None
    first_stream_at: float | None = None
    created_at: float | None = None


def device_lists(facts: Iterable[DeviceFacts], now: float, day_start: float) -> dict[str, list[str]]:
    """The six lists of the module docstring, each sorted by device ID."""
    lists: dict[str, list[str]] = {name: [] for name in DEVICE_LISTS}
    three_days_ago = now - 3 * DAY
    for f in sorted(facts, key=lambda f: f.device_id):
        s = f.summary
        first_online = s.first_online_at if s else None
        ever_online = f.online or first_online is not None
        if ever_online:
            lists["ever_online"].append(f.device_id)
            if f.first_stream_at is None:
                lists["online_never_streamed"].append(f.device_id)
        if first_online is not None and first_online >= day_start:
            lists["new_online_today"].append(f.device_id)
        if f.online:
            continue
        last_offline = s.last_offline_at if s else None
        # offline now: its last online period (if any) ended at the last offline event
        if ever_online and last_offline is not None and last_offline >= day_start:
            lists["new_offline_today"].append(f.device_id)
        if ever_online and last_offline is not None and last_offline >= three_days_ago:
            lists["offline_within_3_days"].append(f.device_id)
        else:
            lists["offline_over_3_days"].append(f.device_id)
    return lists


def local_midnight(now: float) -> float:
    day = _dt.datetime.fromtimestamp(now).astimezone()
    return day.replace(hour=0, minute=0, second=0, microsecond=0).timestamp()


class Statistics:
    """Reads the presence history and the registry for the rates and lists; records streaming.

    The first :class:`StreamStarted` of a device is kept in its ``extra`` (``first_stream_at``,
    and ``last_stream_at`` for every start), so it survives restarts with the device record.
    """

    def __init__(self, platform: "Platform") -> None:
        self.platform = platform
        platform.events.on(self._on_stream, StreamStarted)

    def _on_stream(self, event: object) -> None:
        assert isinstance(event, StreamStarted)
        state = self.platform.registry.get(event.device_id)
        if state is None:
            return
        state.extra.setdefault("first_stream_at", event.at)
        state.extra["last_stream_at"] = event.at
        self.platform.registry.mark(state.device_id)

    def on_stop(self) -> None:
        """Close the online intervals of online devices: downtime is not online time."""
        wall = time.time()
        for state in self.platform.registry:
            if state.status == "online":
                self.platform._presence_events.append((DeviceOffline(state.device_id, wall, "server stop"), "offline"))

    async def _history(self, device_id: str, start: float, end: float) -> tuple[str, list[PresenceEvent]]:
        store = self.platform.store
        if store is None:
            raise LocalProtocolError("statistics need a store")
        before = await store.presence_events(device_id, until=start, limit=1, newest_first=True)
        initial = before[0].status if before else "offline"
        # presence changes are rare (keepalives never make one): a period holds few of them
        events = await store.presence_events(device_id, since=start, until=end, limit=1_000_000)
        return initial, events

    async def online_rate(self, device_id: str, start: float, end: float) -> OnlineRate:
        state = self.platform.device(device_id)
        await self.platform.flush()
        now = time.time()
        initial, events = await self._history(device_id, start, end)
        return online_rate(device_id, events, start, end, initial=initial, known_since=state.created_at, now=now)

    async def online_rates(self, start: float, end: float) -> list[OnlineRate]:
        return [await self.online_rate(s.device_id, start, end) for s in self.platform.devices()]

    def expected_devices(self) -> list[str]:
        return sorted({*self.platform.config.devices, *(s.device_id for s in self.platform.registry)})

    async def access_rate(self, start: float, end: float) -> AccessRate:
        if end <= start:
            raise LocalProtocolError("the period must end after it starts")
        await self.platform.flush()
        now = time.time()
        accessed = []
        for device_id in self.expected_devices():
            state = self.platform.registry.get(device_id)
            if state is None:
                continue
            last_stream = state.extra.get("last_stream_at")
            if isinstance(last_stream, (int, float)) and start <= last_stream < end:
                accessed.append(device_id)
                continue
            initial, events = await self._history(device_id, start, end)
            if online_intervals(events, start, min(end, now), initial):
                accessed.append(device_id)
        return AccessRate(start, end, accessed, self.expected_devices())

    async def device_lists(self, now: float | None = None) -> dict[str, list[str]]:
        store = self.platform.store
        await self.platform.flush()
        summary = await store.presence_summary() if store is not None else {}
        now = time.time() if now is None else now
        facts = []
        for device_id in self.expected_devices():
            state = self.platform.registry.get(device_id)
            first_stream = state.extra.get("first_stream_at") if state is not None else None
            facts.append(DeviceFacts(device_id, state is not None and state.status == "online",
                                     summary.get(device_id), first_stream if isinstance(first_stream, (int, float)) else None,
                                     state.created_at if state is not None else None))
        return device_lists(facts, now, local_midnight(now))
