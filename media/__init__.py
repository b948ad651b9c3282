"""Media relay library: RTP, MPEG-PS and FLV for GB/T 28181 streams (usable without SIP)."""

from ._frame import Frame

__all__ = ["Frame"]
