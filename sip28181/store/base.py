"""The store interface: device registry rows, presence history, and the async ``Store`` protocol.

The platform keeps live device state in memory and writes it here only when it changes (register,
unregister, online/offline) and in periodic batches (keepalive times, addresses); the store is the
truth after a restart. The interface is plain rows and ranges so that an SQL server backend
(PostgreSQL) can implement it with ordinary SQL: no SQLite-specific behaviour leaks through it.

Times are Unix epoch seconds as ``float``.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

from ..errors import LocalProtocolError, Sip28181Error

__all__ = [
    "AlarmFilter", "AlarmRecord", "ChannelRecord", "ControlLogRecord", "DEVICE_STATUSES", "DeviceRecord",
    "DeviceStatus", "MobilePositionRecord", "PresenceEvent", "PresenceSummary", "Store", "StoreError", "TRANSPORTS",
]

DeviceStatus = Literal["online", "offline"]
DEVICE_STATUSES: tuple[str, ...] = ("online", "offline")
TRANSPORTS: tuple[str, ...] = ("UDP", "TCP")


class StoreError(Sip28181Error):
    """The store cannot serve the request (not open, or a database newer than this code)."""


@dataclass(slots=True)
class DeviceRecord:
    """One registered device as the store keeps it.

    ``created_at`` is set by the store on first insert when left ``None`` and never changed after;
    ``updated_at`` is set to the time of the write when left ``None``. ``extra`` holds JSON-able
    values that have no column yet.
    """

    device_id: str
    name: str | None = None
    status: DeviceStatus = "offline"
    transport: str | None = None
    """``"UDP"`` or ``"TCP"``: how the device registered."""
    remote_host: str | None = None
    """Observed source address of the last REGISTER/keepalive (not the Contact host)."""
    remote_port: int | None = None
    contact: str | None = None
    expires: int | None = None
    """Granted registration length, seconds."""
    registered_at: float | None = None
    last_keepalive_at: float | None = None
    last_seen_at: float | None = None
    call_id: str | None = None
    """Call-ID of the registration."""
    user_agent: str | None = None
    gb_version: str | None = None
    manufacturer: str | None = None
    model: str | None = None
    firmware: str | None = None
    created_at: float | None = None
    updated_at: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.device_id, str) or not self.device_id:
            raise LocalProtocolError(f"device_id must be a non-empty string, got {self.device_id!r}")
        if self.status not in DEVICE_STATUSES:
            raise LocalProtocolError(f"status must be 'online' or 'offline', got {self.status!r}")
        if self.transport is not None and self.transport not in TRANSPORTS:
            raise LocalProtocolError(f"transport must be 'UDP', 'TCP' or None, got {self.transport!r}")

    def copy(self) -> DeviceRecord:
        """An independent copy (``extra`` is copied too)."""
        return dataclasses.replace(self, extra=dict(self.extra))


@dataclass(frozen=True, slots=True)
class PresenceEvent:
    """A device went online or offline at ``at`` for ``reason`` (``"register"``, ``"timeout"``…)."""

    device_id: str
    status: DeviceStatus
    at: float
    reason: str = ""

    def __post_init__(self) -> None:
        if self.status not in DEVICE_STATUSES:
            raise LocalProtocolError(f"status must be 'online' or 'offline', got {self.status!r}")


@dataclass(frozen=True, slots=True)
class PresenceSummary:
    """First and last presence changes of one device (``None``: never)."""

    device_id: str
    first_online_at: float | None = None
    last_online_at: float | None = None
    last_offline_at: float | None = None


@dataclass(slots=True)
class ChannelRecord:
    """One catalog node reported by a device (a channel, or a region/group/organisation node).

    ``device_id`` is the registered device that reported it (an NVR or a lower platform), the
    key is ``(device_id, channel_id)``. ``parent_id`` is kept as sent (2022 allows ``a/b``);
    ``fields`` holds every other element of the catalog item (``Info`` included) as sent.
    """

    device_id: str
    channel_id: str
    name: str | None = None
    kind: str = "channel"
    """``region``, ``business_group``, ``virtual_org``, ``system`` or ``channel`` (PROTOCOL §5.4.3)."""
    status: str = "ON"
    """``ON`` or ``OFF`` (ONLINE/OFFLINE/OK/missing read leniently)."""
    fault: str | None = None
    """``VLOST`` or ``DEFECT`` after such a catalog event, cleared by ``ON``."""
    parent_id: str | None = None
    business_group_id: str | None = None
    civil_code: str | None = None
    manufacturer: str | None = None
    model: str | None = None
    address: str | None = None
    parental: int | None = None
    longitude: float | None = None
    latitude: float | None = None
    fields: dict[str, Any] = field(default_factory=dict)
    created_at: float | None = None
    updated_at: float | None = None

    def copy(self) -> ChannelRecord:
        return dataclasses.replace(self, fields=dict(self.fields))


@dataclass(slots=True)
class AlarmRecord:
    """One alarm notification, every field kept (PROTOCOL §5.8, HJ draft Appendix C).

    ``at`` is when the platform received it (epoch seconds, what searches use); ``alarm_time`` is
    the device's local time as sent. ``alarm_type`` is an integer (HJ types exceed 255).
    """

    device_id: str
    """The registered device that sent it."""
    alarm_device_id: str
    """``DeviceID`` of the body (the alarming channel or the device itself)."""
    at: float
    sn: int | None = None
    priority: int | None = None
    method: int | None = None
    alarm_type: int | None = None
    alarm_time: str | None = None
    description: str | None = None
    longitude: float | None = None
    latitude: float | None = None
    event_type: int | None = None
    alarm_type_param: dict[str, Any] = field(default_factory=dict)
    image_urls: list[str] = field(default_factory=list)
    infos: list[dict[str, Any]] = field(default_factory=list)
    """Every ``Info`` element as a dict of its children, in order."""
    extra: dict[str, Any] = field(default_factory=dict)
    id: int | None = None
    """Assigned by the store."""

    def copy(self) -> AlarmRecord:
        return dataclasses.replace(self, alarm_type_param=dict(self.alarm_type_param),
                                   image_urls=list(self.image_urls),
                                   infos=[dict(i) for i in self.infos], extra=dict(self.extra))


@dataclass(frozen=True, slots=True)
class AlarmFilter:
    """Search criteria for alarms; every field optional. ``since <= at < until``."""

    since: float | None = None
    until: float | None = None
    device_id: str | None = None
    """Matches the sending device or the alarm's own DeviceID."""
    alarm_type: int | None = None
    method: int | None = None
    priority: int | None = None


@dataclass(frozen=True, slots=True)
class MobilePositionRecord:
    """One position report (PROTOCOL §5.9)."""

    device_id: str
    target_id: str
    at: float
    time: str | None = None
    longitude: float | None = None
    latitude: float | None = None
    speed: float | None = None
    direction: float | None = None
    altitude: float | None = None


@dataclass(frozen=True, slots=True)
class ControlLogRecord:
    """One control command (PTZ, device control…) and what became of it.

    Kept so that control of a camera can be audited afterwards, local and cascaded alike (the
    expressway requirements ask that both sides log PTZ operations). ``source`` says who asked
    (``"local"``, or the upper's SIP ID); ``result`` what happened (``"ok"``, ``"refused"``,
    ``"error: …"``).
    """

    at: float
    source: str
    device_id: str
    channel_id: str | None
    command: str
    detail: str
    result: str


@runtime_checkable
class Store(Protocol):
    """Async persistence for the device registry and presence history.

    Implementations: :class:`~sip28181.store.sqlite.SqliteStore` (default) and
    :class:`~sip28181.store.memory.MemoryStore`. Every method may be called concurrently from
    several tasks; each write call is atomic (one transaction). Records passed in and returned are
    copies: mutating them does not change the store. Calling a method before :meth:`open` or
    after :meth:`close` raises :class:`StoreError`.
    """

    async def open(self) -> None:
        """Connect and create or migrate the schema. Opening an open store does nothing."""
        ...

    async def close(self) -> None:
        """Release the connection. Closing a closed store does nothing."""
        ...

    async def upsert_devices(self, records: Sequence[DeviceRecord]) -> None:
        """Insert or fully replace ``records`` (keyed by ``device_id``) in one transaction.

        ``created_at`` of an existing row is kept.
        """
        ...

    async def get_device(self, device_id: str) -> DeviceRecord | None:
        ...

    async def list_devices(self, *, status: str | None = None, offset: int = 0,
                           limit: int | None = None) -> list[DeviceRecord]:
        """Devices ordered by ``device_id``, optionally only those with ``status``."""
        ...

    async def count_devices(self, status: str | None = None) -> int:
        ...

    async def delete_device(self, device_id: str) -> bool:
        """Remove the device, its channels and presence history; ``False`` when it was not there.

        Alarms and positions stay: they are history."""
        ...

    async def add_presence_events(self, events: Sequence[PresenceEvent]) -> None:
        """Append ``events`` in one transaction."""
        ...

    async def presence_events(self, device_id: str | None = None, since: float | None = None,
                              until: float | None = None, limit: int = 1000, *,
                              newest_first: bool = False) -> list[PresenceEvent]:
        """Events with ``since <= at < until`` (either bound optional), for one device or all.

        Ordered by time, oldest first (newest first with ``newest_first``), at most ``limit``;
        events with equal times keep the order they were added in.
        """
        ...

    async def prune_presence_events(self, before: float) -> int:
        """Delete events with ``at < before``; returns how many were removed."""
        ...

    async def set_all_offline(self, at: float, reason: str) -> int:
        """Mark every online device offline and record a presence event for each.

        Used at startup: live state does not survive a restart, the registry does. Returns the
        number of devices changed.
        """
        ...

    async def presence_summary(self) -> dict[str, PresenceSummary]:
        """Per device: first and last ``online`` event, last ``offline`` event (one query)."""
        ...

    # -- catalog ----------------------------------------------------------------------------------

    async def upsert_channels(self, records: Sequence[ChannelRecord]) -> None:
        """Insert or replace channels (keyed by ``(device_id, channel_id)``) in one transaction;
        ``created_at`` of an existing row is kept."""
        ...

    async def delete_channels(self, device_id: str, channel_ids: Sequence[str] | None = None) -> int:
        """Remove the named channels of ``device_id`` (all of them with ``None``); the count."""
        ...

    async def list_channels(self, device_id: str | None = None) -> list[ChannelRecord]:
        """Channels of one device (or all), ordered by ``(device_id, channel_id)``."""
        ...

    # -- alarms and positions ---------------------------------------------------------------------

    async def add_alarms(self, records: Sequence[AlarmRecord]) -> None:
        """Append alarms in one transaction (``id`` is assigned, the records are not changed)."""
        ...

    async def search_alarms(self, where: AlarmFilter, *, offset: int = 0, limit: int | None = 100,
                            newest_first: bool = True) -> list[AlarmRecord]:
        ...

    async def count_alarms(self, where: AlarmFilter) -> int:
        ...

    async def add_mobile_positions(self, records: Sequence[MobilePositionRecord]) -> None:
        ...

    async def mobile_positions(self, target_id: str | None = None, since: float | None = None,
                               until: float | None = None, limit: int = 1000) -> list[MobilePositionRecord]:
        """Positions of one channel/device ID (or all), oldest first, ``since <= at < until``."""
        ...

    # -- upper platforms (cascade) ----------------------------------------------------------------

    async def list_uppers(self) -> list[dict[str, Any]]:
        """Upper platform settings saved through the API, as saved, ordered by ``sip_id``."""
        ...

    async def save_upper(self, settings: dict[str, Any]) -> None:
        """Insert or replace the upper keyed by ``settings["sip_id"]`` (password included).

        ``settings`` must be JSON-able."""
        ...

    async def delete_upper(self, sip_id: str) -> bool:
        """Forget a saved upper; ``False`` when it was not saved."""
        ...

    # -- control log ------------------------------------------------------------------------------

    async def add_control_log(self, records: Sequence[ControlLogRecord]) -> None:
        """Append control log entries in one transaction."""
        ...

    async def search_control_log(self, *, device_id: str | None = None, source: str | None = None,
                                 start: float | None = None, end: float | None = None,
                                 limit: int = 100, offset: int = 0) -> list[ControlLogRecord]:
        """Entries with ``start <= at < end``, newest first (equal times: last added first).

        ``device_id`` matches the entry's device or channel ID."""
        ...

    async def prune_control_log(self, before: float) -> int:
        """Delete entries with ``at < before`` (the retention); returns how many were removed."""
        ...


async def write_in_order(steps: Sequence[tuple[Callable[[], Awaitable[Any]], Callable[[], None]]]) -> None:
    """Run queued store writes in order, each ``(write, requeue)``, so nothing is lost or doubled.

    When a write fails, it and every later step are put back (``requeue``) for the next flush.
    When the caller is cancelled during a write, only the later steps are: a cancelled
    :class:`~sip28181.store.sqlite.SqliteStore` write still completes, and inserting its rows again
    would store them twice.
    """
    for i, (write, _) in enumerate(steps):
        try:
            await write()
        except asyncio.CancelledError:
            for _, requeue in steps[i + 1:]:
                requeue()
            raise
        except BaseException:
            for _, requeue in steps[i:]:
                requeue()
            raise


def check_paging(offset: int, limit: int | None) -> None:
    """Shared argument check for :meth:`Store.list_devices`."""
    if offset < 0:
        raise LocalProtocolError(f"offset must be >= 0, got {offset}")
    if limit is not None and limit < 0:
        raise LocalProtocolError(f"limit must be >= 0 or None, got {limit}")


def upper_key(settings: dict[str, Any]) -> str:
    """The ``sip_id`` of an upper's settings dict, checked: the store's key."""
    sip_id = settings.get("sip_id") if isinstance(settings, dict) else None
    if not isinstance(sip_id, str) or not sip_id:
        raise LocalProtocolError(f"upper settings need a non-empty string sip_id, got {sip_id!r}")
    return sip_id


def check_status(status: str | None) -> None:
    if status is not None and status not in DEVICE_STATUSES:
        raise LocalProtocolError(f"status must be 'online', 'offline' or None, got {status!r}")
