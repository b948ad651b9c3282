"""Batched UDP reads: the compiled ``media._udprecv`` (``recvmmsg``) when built, else the
pure-Python twin ``media._udprecv_py``. ``SIP28181_NO_EXTENSIONS=1`` forces the twin.

Typical use, on an event loop's reader callback for a non-blocking UDP socket::

    reader = UdpReader(batch=64)
    def readable():
        while True:
            packets = reader.read(sock)
            if packets:
                frames = receiver.feed_packets(packets)
            if len(packets) < reader.batch:
                break
    loop.add_reader(sock, readable)
"""

from __future__ import annotations

from ._impl import load

_mod, _py = load("udprecv")

UdpReader = _mod.UdpReader
READER_COUNTERS: tuple[str, ...] = tuple(_py.READER_COUNTERS)

#: True when the compiled module is in use.
COMPILED: bool = _mod is not _py

__all__ = ["UdpReader", "READER_COUNTERS", "COMPILED"]
