"""Type stubs shared by ``media._udprecv`` (compiled) and ``media._udprecv_py`` (twin)."""

import socket

READER_COUNTERS: tuple[str, ...]

class UdpReader:
    batch: int
    max_size: int
    calls: int
    datagrams: int
    received_bytes: int
    truncated: int
    malformed: int
    rtcp: int
    last_bytes: int
    last_count: int
    def __init__(self, batch: int = ..., max_size: int = ...) -> None: ...
    def stats(self) -> dict[str, int]: ...
    def read(self, sock: socket.socket) -> list[bytes]: ...
    def read_from(self, sock: socket.socket) -> list[tuple[bytes, tuple]]: ...
    def read_grouped(self, sock: socket.socket) -> dict[int, list[bytes]]: ...
