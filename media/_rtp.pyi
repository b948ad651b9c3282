"""Type stubs shared by ``media._rtp`` (compiled) and ``media._rtp_py`` (twin)."""

from typing import Any

RTP_VERSION: int

def seq_diff(a: int, b: int) -> int: ...

class RtpPacket:
    marker: bool
    payload_type: int
    sequence: int
    timestamp: int
    ssrc: int
    csrc: tuple[int, ...]
    extension_profile: int | None
    extension: bytes | None
    padding: int
    payload: memoryview | bytes
    def __init__(self, marker: bool, payload_type: int, sequence: int, timestamp: int, ssrc: int,
                 csrc: tuple[int, ...] = ..., extension_profile: int | None = ...,
                 extension: bytes | None = ..., padding: int = ...,
                 payload: bytes | memoryview = ...) -> None: ...

def parse_rtp(data: bytes | bytearray | memoryview) -> RtpPacket: ...

class Rfc4571Framer:
    MAX_BUFFER: int
    packets: int
    empty_frames: int
    resyncs: int
    discarded_bytes: int
    def __init__(self, payload_type: int | None = ..., ssrc: int | None = ...) -> None: ...
    @property
    def payload_type(self) -> int | None: ...
    @property
    def ssrc(self) -> int | None: ...
    @property
    def buffered(self) -> int: ...
    def stats(self) -> dict[str, int]: ...
    def feed(self, data: bytes | bytearray | memoryview) -> list[bytes]: ...

class JitterBuffer:
    capacity: int
    max_wait_packets: int
    max_dropout: int
    max_misorder: int
    received: int
    lost: int
    duplicate: int
    late: int
    reordered: int
    bad_sequence: int
    resets: int
    def __init__(self, capacity: int = ..., max_wait_packets: int = ..., max_dropout: int = ...,
                 max_misorder: int = ...) -> None: ...
    @property
    def expected(self) -> int: ...
    @property
    def received_rate(self) -> float: ...
    @property
    def buffered(self) -> int: ...
    def stats(self) -> dict[str, int]: ...
    def add(self, packet: Any) -> list[Any]: ...
    def flush(self) -> list[Any]: ...
