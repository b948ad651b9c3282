"""Type stub for the compiled PS muxer / RTP packetizer ``media._psmux`` (twin of ``_psmux_py``)."""

from ._frame import Frame

class PsMuxer:
    mux_rate: int
    video_codec: str | None
    audio_codec: str | None
    psm_version: int
    units: int
    def __init__(self, video_codec: str | None = ..., audio_codec: str | None = ...,
                 mux_rate: int = ...) -> None: ...
    def tables(self) -> bytes: ...
    def mux(self, frame: Frame) -> bytes: ...

class RtpPacketizer:
    ssrc: int
    payload_type: int
    mtu_payload: int
    seq: int
    packets: int
    def __init__(self, ssrc: int, payload_type: int = ..., mtu_payload: int = ...,
                 seq: int | None = ...) -> None: ...
    def packetize(self, payload: bytes, timestamp: int) -> list[bytes]: ...
    def packetize_rfc4571(self, payload: bytes, timestamp: int) -> bytes: ...

def rfc4571_frame(packet: bytes) -> bytes: ...
