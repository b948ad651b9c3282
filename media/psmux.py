"""GB-style PS muxer and RTP packetizer: the compiled stage ``media._psmux`` or the twin.

``SIP28181_NO_EXTENSIONS=1`` forces the pure-Python twin ``media._psmux_py``. Both produce the same
bytes for the same frames.
"""

from __future__ import annotations

from . import _psmux_py
from ._impl import load

_chosen, _twin = load("psmux")

#: The PS muxer in use (compiled when built).
PsMuxer = _chosen.PsMuxer
#: The RTP packetizer in use (compiled when built).
RtpPacketizer = _chosen.RtpPacketizer
#: Pure-Python references, always available.
PsMuxerPy = _twin.PsMuxer
RtpPacketizerPy = _twin.RtpPacketizer

rfc4571_frame = _psmux_py.rfc4571_frame
STREAM_TYPES = _psmux_py.STREAM_TYPES

__all__ = ["PsMuxer", "RtpPacketizer", "PsMuxerPy", "RtpPacketizerPy", "rfc4571_frame",
           "STREAM_TYPES"]
