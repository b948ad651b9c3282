"""Type stubs shared by ``media._ps`` (compiled) and ``media._ps_py`` (twin)."""

from media._frame import Frame

STREAM_TYPES: dict[int, str]
ERROR_NAMES: tuple[str, ...]
STAT_NAMES: tuple[str, ...]

class PsDemuxer:
    audio_codec: str | None
    video_codec: str | None
    max_frame_size: int
    stream_types: dict[int, int]
    parameter_sets: dict[int, dict[str, bytes]]
    def __init__(self, audio_codec: str | None = ..., video_codec: str | None = ...,
                 max_frame_size: int = ...) -> None: ...
    @property
    def errors(self) -> dict[str, int]: ...
    @property
    def stats(self) -> dict[str, int]: ...
    @property
    def streams(self) -> dict[int, str]: ...
    @property
    def buffered(self) -> int: ...
    def feed(self, data: bytes | bytearray | memoryview) -> list[Frame]: ...
    def flush(self) -> list[Frame]: ...
    def discontinuity(self) -> None: ...
