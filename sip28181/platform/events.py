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


Event = DeviceRegistered | DeviceUnregistered | DeviceOnline | DeviceOffline | RegistrationRefused
