"""PS-over-RTP receive stage: the compiled ``media._receiver`` when built, else the pure-Python twin
``media._receiver_py``. ``SIP28181_NO_EXTENSIONS=1`` forces the twin.

Typical use with a batched UDP reader (``recvmmsg``) or an RFC 4571 framer, into FLV::

    receiver = RtpPsReceiver(ssrc=stream_ssrc)
    muxer = FlvMuxer("h264", "g711a")
    for batch in datagram_batches:
        for frame in receiver.feed_packets(batch):
            sink.write(muxer.mux(frame))
    for frame in receiver.flush():
        sink.write(muxer.mux(frame))
"""

from __future__ import annotations

from ._impl import load

_mod, _py = load("receiver")

RtpPsReceiver = _mod.RtpPsReceiver
RECEIVER_COUNTERS: tuple[str, ...] = tuple(_py.RECEIVER_COUNTERS)

#: True when the compiled module is in use.
COMPILED: bool = _mod is not _py

__all__ = ["RtpPsReceiver", "RECEIVER_COUNTERS", "COMPILED"]
