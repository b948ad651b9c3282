"""RTP over UDP with one system call per frame: Linux UDP generic segmentation offload (GSO).

A sender that writes every RTP packet with its own ``sendto`` pays a system call, a route lookup
and a socket lock per packet: for a forwarded 4 Mbit/s stream (about 390 packets/s) that is most
of what forwarding costs. With the ``UDP_SEGMENT`` option (Linux 4.18+) one ``sendmsg`` hands the
kernel a buffer it cuts into datagrams of the given segment size (the last one may be shorter),
so the packets of one frame leave in one call and arrive as separate datagrams.

:class:`~media.psmux.RtpPacketizer` output has that shape by construction: every packet of a frame
is ``12 + mtu_payload`` bytes except the last. :func:`gso_runs` (pure) groups any list of packets
into runs GSO can send; :class:`UdpSender` sends them on a non-blocking socket (the caller's),
falls back to one ``sendto`` per packet where GSO is refused, and stops at the first packet the
socket cannot take (EAGAIN), so the caller can drop the rest and resume at a keyframe.
"""

from __future__ import annotations

import errno
import logging
import socket
import struct
import sys
from collections.abc import Sequence
from typing import Protocol

__all__ = ["UDP_SEGMENT", "MAX_SEGMENTS", "MAX_GSO_BYTES", "gso_runs", "gso_supported", "UdpSender"]

log = logging.getLogger("media.udpsend")

#: ``UDP_SEGMENT`` from ``<linux/udp.h>`` (Python has it from 3.12 only).
UDP_SEGMENT = getattr(socket, "UDP_SEGMENT", 103)
SOL_UDP = getattr(socket, "SOL_UDP", 17)
#: Segments per send: ``UDP_MAX_SEGMENTS`` is 64 in every kernel that has GSO (128 from 6.11).
MAX_SEGMENTS = 64
#: Bytes per send: under the 65,507 a UDP/IPv4 datagram carries, whatever the header options.
MAX_GSO_BYTES = 65000
#: Errors meaning "GSO does not work here" (not "this packet cannot go"): no kernel support
#: (ENOPROTOOPT, EOPNOTSUPP), a device or route that cannot segment (EIO: IPsec, no checksum
#: offload), a segment above the path MTU (EINVAL), a buffer the stack refuses (EMSGSIZE).
GSO_REFUSED = frozenset({errno.EIO, errno.EINVAL, errno.ENOPROTOOPT, errno.EOPNOTSUPP, errno.EMSGSIZE})
#: Of those, the ones that mean the kernel has no GSO at all: no other socket tries again.
GSO_ABSENT = frozenset({errno.ENOPROTOOPT, errno.EOPNOTSUPP})

_kernel_lacks_gso = not sys.platform.startswith("linux")


def gso_supported() -> bool:
    """Whether GSO is worth trying in this process (Linux, and no socket found it missing yet)."""
    return not _kernel_lacks_gso


def gso_runs(sizes: Sequence[int], max_segments: int = MAX_SEGMENTS,
             max_bytes: int = MAX_GSO_BYTES) -> list[tuple[int, int, int]]:
    """Split packets (by their sizes, in order) into runs one GSO send can carry.

    Returns ``(start, stop, segment)`` per run, covering ``range(len(sizes))`` in order: every
    packet of ``sizes[start:stop]`` is ``segment`` bytes except the last, which may be shorter,
    and a run has at most ``max_segments`` packets and ``max_bytes`` bytes. A run of one packet
    is a plain send. Greedy: a run grows while the next packet is no larger than its first and
    ends with a shorter one, so the frames of a :class:`~media.psmux.RtpPacketizer` each make one
    run (two when over ``max_segments``), and a frame whose last packet is full joins the next.
    """
    runs: list[tuple[int, int, int]] = []
    n = len(sizes)
    i = 0
    while i < n:
        segment = sizes[i]
        total = segment
        j = i + 1
        if segment > 0:
            while j < n and j - i < max_segments:
                size = sizes[j]
                if size > segment or size == 0 or total + size > max_bytes:
                    break
                total += size
                j += 1
                if size < segment:
                    break
        runs.append((i, j, segment))
        i = j
    return runs


class DatagramSocket(Protocol):
    def sendto(self, data: bytes, address: tuple, /) -> int: ...
    def sendmsg(self, buffers: list[bytes], ancdata: list, flags: int, address: tuple, /) -> int: ...


class UdpSender:
    """Sends lists of RTP packets on a non-blocking UDP socket, a GSO send per run of
    :func:`gso_runs` (one ``sendto`` per packet when ``gso`` is off).

    :meth:`send` returns how many leading packets the kernel took; fewer than given means the
    rest were dropped: the socket would block (``blocked``, the network or the receiver cannot
    keep up) or it failed (``errors``, e.g. no route). Either way the caller should resume at a
    keyframe: the receiver cannot decode a frame with missing packets. The first GSO send the
    kernel refuses (:data:`GSO_REFUSED`) turns GSO off for this sender (for every sender when the
    kernel has none) and the same packets go out one by one.
    """

    def __init__(self, sock: DatagramSocket, *, gso: bool = True) -> None:
        self.sock = sock
        self.gso = gso and gso_supported()
        self.gso_error: str | None = None   # why GSO was turned off, if it was
        self.datagrams = 0          # packets the kernel took
        self.syscalls = 0           # successful sendmsg/sendto calls
        self.gso_sends = 0          # of which sendmsg with UDP_SEGMENT
        self.dropped = 0            # packets not sent (blocked or failed)
        self.blocked = 0            # sends that found the socket full (EAGAIN)
        self.errors = 0             # sends that failed otherwise
        self.last_error: str | None = None

    def send(self, packets: Sequence[bytes], address: tuple) -> int:
        """Send ``packets`` in order to ``address``; the number sent (see the class doc)."""
        sent = 0
        if self.gso:
            for start, stop, segment in gso_runs([len(p) for p in packets]):
                if stop - start > 1 and self.gso:
                    ok = self._send_gso(packets[start:stop], segment, address)
                    if ok is None:          # GSO refused: these packets one by one, as if never tried
                        ok = self._send_each(packets[start:stop], address)
                else:
                    ok = self._send_each(packets[start:stop], address)
                sent += ok
                if ok < stop - start:
                    break
        else:
            sent = self._send_each(packets, address)
        self.dropped += len(packets) - sent
        return sent

    def _send_gso(self, packets: Sequence[bytes], segment: int, address: tuple) -> int | None:
        """All of ``packets`` (len), none (0, dropped), or None when GSO is refused."""
        try:
            self.sock.sendmsg(list(packets), [(SOL_UDP, UDP_SEGMENT, struct.pack("=H", segment))], 0, address)
        except BlockingIOError:
            self.blocked += 1
            return 0
        except OSError as exc:
            if exc.errno not in GSO_REFUSED:
                self._failed(exc)
                return 0
            self._refused(exc)
            return None
        self.syscalls += 1
        self.gso_sends += 1
        self.datagrams += len(packets)
        return len(packets)

    def _send_each(self, packets: Sequence[bytes], address: tuple) -> int:
        sendto = self.sock.sendto
        sent = 0
        try:
            for packet in packets:
                sendto(packet, address)
                sent += 1
        except BlockingIOError:
            self.blocked += 1
        except OSError as exc:
            self._failed(exc)
        self.syscalls += sent
        self.datagrams += sent
        return sent

    def _failed(self, exc: OSError) -> None:
        self.errors += 1
        self.last_error = exc.strerror or str(exc)

    def _refused(self, exc: OSError) -> None:
        global _kernel_lacks_gso
        self.gso = False
        self.gso_error = exc.strerror or str(exc)
        if exc.errno in GSO_ABSENT:
            _kernel_lacks_gso = True
        log.info("UDP GSO refused (%s): one send per packet from now on", self.gso_error)

    def stats(self) -> dict[str, int | bool | str | None]:
        return {"gso": self.gso, "gso_error": self.gso_error, "datagrams": self.datagrams,
                "syscalls": self.syscalls, "gso_sends": self.gso_sends, "dropped": self.dropped,
                "blocked": self.blocked, "errors": self.errors, "last_error": self.last_error}
