"""Batched UDP reads: the readable reference.

Pure-Python twin of ``cext/_udprecv.pyx``: a loop of ``sock.recvmsg_into`` into one preallocated
buffer until the socket has nothing more (``EAGAIN``) or ``batch`` datagrams are read. Same
results and counters as the compiled reader, which fetches the same datagrams with a single
``recvmmsg(2)``; tests compare them over real sockets.
"""

from __future__ import annotations

import socket

__all__ = ["UdpReader", "READER_COUNTERS"]

#: Counters in the order :meth:`UdpReader.stats` lists them.
READER_COUNTERS = ("calls", "datagrams", "received_bytes", "truncated", "malformed", "rtcp")

_DONTWAIT = socket.MSG_DONTWAIT
_TRUNC = socket.MSG_TRUNC


class UdpReader:
    """Reads the datagrams waiting on non-blocking UDP sockets, ``batch`` at a time.

    One reader serves any number of sockets (its buffer is reused by every call, so share one per
    event loop). ``max_size`` is the largest datagram kept: a longer one is counted as
    ``truncated`` and dropped. Datagrams come back as ``bytes`` in arrival order; a call returns
    at most ``batch`` of them and an empty result when none is waiting (it never blocks).

    After each call ``last_count`` is the number of datagrams it took from the socket (dropped
    ones included: fewer than ``batch`` means the socket is drained) and ``last_bytes`` the bytes
    of those it kept.
    """

    def __init__(self, batch: int = 64, max_size: int = 65536) -> None:
        if not 1 <= batch <= 1024:
            raise ValueError("batch must be within 1..1024")
        if not 12 <= max_size <= 65536:
            raise ValueError("max_size must be within 12..65536")
        self.batch = batch
        self.max_size = max_size
        self._buf = bytearray(max_size)
        self._view = memoryview(self._buf)
        #: ``read*`` calls.
        self.calls = 0
        #: Datagrams returned (or, by :meth:`read_grouped`, classified).
        self.datagrams = 0
        #: Their bytes.
        self.received_bytes = 0
        #: Datagrams longer than ``max_size``, dropped.
        self.truncated = 0
        #: :meth:`read_grouped`: datagrams that are not RTP version 2 with a full header.
        self.malformed = 0
        #: :meth:`read_grouped`: RTCP packets (types 200–204), dropped.
        self.rtcp = 0
        #: Bytes of the datagrams the last call kept.
        self.last_bytes = 0
        #: Datagrams the last call took from the socket, dropped ones included.
        self.last_count = 0

    def stats(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in READER_COUNTERS}

    def _recv(self, sock: socket.socket, addresses: bool) -> list:
        """Up to ``batch`` ``(data, address)`` pairs of whole datagrams (address None unless
        asked)."""
        self.calls += 1
        self.last_bytes = 0
        self.last_count = 0
        out: list = []
        recv = sock.recvmsg_into
        buffers = [self._buf]
        view = self._view
        for _ in range(self.batch):
            try:
                n, _anc, flags, address = recv(buffers, 0, _DONTWAIT)
            except BlockingIOError:
                break
            except OSError:
                if out:          # recvmmsg(2) too returns what it read before an error
                    break
                raise
            self.last_count += 1
            if flags & _TRUNC:
                self.truncated += 1
                continue
            self.datagrams += 1
            self.received_bytes += n
            self.last_bytes += n
            out.append((bytes(view[:n]), address if addresses else None))
        return out

    def read(self, sock: socket.socket) -> list[bytes]:
        """The datagrams waiting on ``sock`` (at most ``batch``), as a list of ``bytes``."""
        return [data for data, _ in self._recv(sock, False)]

    def read_from(self, sock: socket.socket) -> list[tuple[bytes, tuple]]:
        """Like :meth:`read`, as ``(data, address)`` pairs (addresses as ``socket.recvfrom``)."""
        return self._recv(sock, True)

    def read_grouped(self, sock: socket.socket) -> dict[int, list[bytes]]:
        """The waiting RTP datagrams grouped by SSRC: ``{ssrc: [bytes, ...]}``, keys in order of
        first arrival, packets in arrival order. Datagrams too short for an RTP header or not RTP
        version 2 are counted as ``malformed``, RTCP (packet types 200–204) as ``rtcp``; both
        are dropped."""
        out: dict[int, list[bytes]] = {}
        for data, _ in self._recv(sock, False):
            if len(data) < 12 or data[0] >> 6 != 2:
                self.malformed += 1
                continue
            if 200 <= data[1] <= 204:
                self.rtcp += 1
                continue
            ssrc = int.from_bytes(data[8:12], "big")
            group = out.get(ssrc)
            if group is None:
                out[ssrc] = group = []
            group.append(data)
        return out
