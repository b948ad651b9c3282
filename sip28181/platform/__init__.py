"""Platform services: registrar, presence, and what later issues add (catalog, sessions, cascade)."""

from .bus import EventBus, Subscription
from .core import Platform
from .events import DeviceOffline, DeviceOnline, DeviceRegistered, DeviceUnregistered, RegistrationRefused
from .registry import DeviceState

__all__ = ["DeviceOffline", "DeviceOnline", "DeviceRegistered", "DeviceState", "DeviceUnregistered",
           "EventBus", "Platform", "RegistrationRefused", "Subscription"]
