"""The device simulator (``python -m sip28181.device``)."""

from .simulator import DeviceSimulator, RegistrationError

__all__ = ["DeviceSimulator", "RegistrationError"]
