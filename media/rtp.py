"""RTP stage: the compiled ``media._rtp`` when built, else the pure-Python twin ``media._rtp_py``.

``SIP28181_NO_EXTENSIONS=1`` forces the twin. Loss shows up in the released order of
:class:`JitterBuffer`: a sequence step other than +1 between released packets is where the PS
demuxer must be told (``PsDemuxer.discontinuity()``).
"""

from __future__ import annotations

from ._impl import load

_mod, _py = load("rtp")

RtpPacket = _mod.RtpPacket
parse_rtp = _mod.parse_rtp
Rfc4571Framer = _mod.Rfc4571Framer
JitterBuffer = _mod.JitterBuffer
seq_diff = _mod.seq_diff

#: True when the compiled module is in use.
COMPILED: bool = _mod is not _py

__all__ = ["RtpPacket", "parse_rtp", "Rfc4571Framer", "JitterBuffer", "seq_diff", "COMPILED"]
