"""Events the platform publishes to library users (frozen values, see :class:`EventBus`)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class DeviceRegistered:
    device_id: str
    transport: str
    host: str
    port: int
    expires: int
    refresh: bool           # True when the device was already registered (a refresh)
    at: float


@dataclass(frozen=True, slots=True)
class DeviceUnregistered:
    device_id: str
    at: float


@dataclass(frozen=True, slots=True)
class DeviceOnline:
    device_id: str
    at: float
    reason: str             # "register", "keepalive"


@dataclass(frozen=True, slots=True)
class DeviceOffline:
    device_id: str
    at: float
    reason: str             # "keepalive timeout", "registration expired", "unregistered", "connection lost", "deleted"


@dataclass(frozen=True, slots=True)
class RegistrationRefused:
    device_id: str
    host: str
    port: int
    status: int
    reason: str
    at: float


@dataclass(frozen=True, slots=True)
class StreamStarted:
    """Media from a device's channel reached the relay (the first frame of a session)."""
    device_id: str
    channel_id: str
    kind: str               # "Play", "Playback", "Download"
    at: float


@dataclass(frozen=True, slots=True)
class StreamStopped:
    device_id: str
    channel_id: str
    kind: str
    at: float
    reason: str             # "no viewers", "device bye", "no media", "end of file", "api", ...


Event = DeviceRegistered | DeviceUnregistered | DeviceOnline | DeviceOffline | RegistrationRefused | StreamStarted | StreamStopped


# -- device management ---------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class CatalogUpdated:
    """A device's channel list changed (a catalog answer, late packets, or a catalog NOTIFY)."""
    device_id: str
    added: int
    updated: int
    removed: int
    partial: bool           # True unless a complete catalog answer (which may remove channels)
    at: float


@dataclass(frozen=True, slots=True)
class ChannelStatusChanged:
    device_id: str
    channel_id: str
    status: str             # "ON" / "OFF"
    event: str              # the catalog event: "ON", "OFF", "VLOST", "DEFECT"
    at: float


@dataclass(frozen=True, slots=True)
class AlarmReceived:
    """An alarm from a device, as stored (``alarm`` is a :class:`~sip28181.store.base.AlarmRecord`)."""
    device_id: str
    alarm: object
    at: float


@dataclass(frozen=True, slots=True)
class MobilePositionReceived:
    device_id: str
    position: object        # a :class:`~sip28181.store.base.MobilePositionRecord`
    at: float


ManagementEvent = CatalogUpdated | ChannelStatusChanged | AlarmReceived | MobilePositionReceived


@dataclass(frozen=True, slots=True)
class UpperOnline:
    """We are registered with an upper platform (cascade)."""
    upper_id: str
    at: float


@dataclass(frozen=True, slots=True)
class UpperOffline:
    """An upper platform refused, lost or dropped our registration (cascade)."""
    upper_id: str
    at: float
    reason: str


CascadeEvent = UpperOnline | UpperOffline
