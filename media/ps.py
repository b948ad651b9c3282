"""PS demux stage: the compiled ``media._ps`` when built, else the pure-Python twin ``media._ps_py``.

``SIP28181_NO_EXTENSIONS=1`` forces the twin. Typical use with the RTP stage::

    demuxer = PsDemuxer()
    for packet in jitter_buffer.add(parse_rtp(datagram)):
        if last is not None and seq_diff(packet.sequence, last) != 1:
            demuxer.discontinuity()
        last = packet.sequence
        frames = demuxer.feed(packet.payload)
"""

from __future__ import annotations

from ._impl import load

_mod, _py = load("ps")

PsDemuxer = _mod.PsDemuxer
STREAM_TYPES: dict[int, str] = dict(_py.STREAM_TYPES)
ERROR_NAMES: tuple[str, ...] = tuple(_py.ERROR_NAMES)
STAT_NAMES: tuple[str, ...] = tuple(_py.STAT_NAMES)

#: True when the compiled module is in use.
COMPILED: bool = _mod is not _py

__all__ = ["PsDemuxer", "STREAM_TYPES", "ERROR_NAMES", "STAT_NAMES", "COMPILED"]
