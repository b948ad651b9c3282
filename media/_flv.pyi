"""Type stub for the compiled FLV muxer ``media._flv`` (twin of ``media._flv_py``)."""

from collections.abc import Iterable
from typing import Any

from ._frame import Frame

class FlvMuxer:
    video_codec: str | None
    audio_codec: str | None
    hevc_mode: str
    width: int
    height: int
    frames_in: int
    frames_out: int
    frames_dropped: int
    def __init__(self, video_codec: str | None = ..., audio_codec: str | None = ...,
                 hevc_mode: str = ...) -> None: ...
    def header(self) -> bytes: ...
    def metadata(self) -> dict[str, Any]: ...
    def init_segment(self) -> bytes | None: ...
    @property
    def started(self) -> bool: ...
    def mux(self, frame: Frame) -> bytes: ...
    def mux_batch(self, frames: Iterable[Frame],
                  refused: list[tuple[Frame, Exception]] | None = ...) -> list[bytes]: ...
    def end(self) -> bytes: ...
