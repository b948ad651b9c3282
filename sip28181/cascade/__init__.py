"""Cascade between platform levels (PROTOCOL §11): this platform as a lower platform of uppers.

:class:`~.service.Cascade` owns one :class:`~.link.UpperLink` per upper (registration, keepalive,
recovery) and routes the requests each upper sends us to the services that answer them.
"""

from .settings import UpperSettings, parse_upper

__all__ = ["UpperSettings", "parse_upper"]
