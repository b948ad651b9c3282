"""The unit every media stage exchanges: one access unit of one elementary stream."""

from __future__ import annotations


class Frame:
    """An access unit (a video picture or an audio frame).

    ``pts``/``dts`` are in 90 kHz units as carried by PES (``dts == pts`` when the PES had no DTS;
    ``None`` when the PES carried no timestamp). ``data`` is the elementary-stream payload: Annex B
    byte stream for H.264/H.265, raw samples for G.711, ADTS for AAC.
    """

    __slots__ = ("codec", "pts", "dts", "keyframe", "data", "stream_id")

    def __init__(self, codec: str, pts: int | None, dts: int | None, keyframe: bool,
                 data: bytes, stream_id: int = 0) -> None:
        self.codec = codec
        self.pts = pts
        self.dts = dts
        self.keyframe = keyframe
        self.data = data
        self.stream_id = stream_id

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Frame):
            return NotImplemented
        return (self.codec, self.pts, self.dts, self.keyframe, bytes(self.data), self.stream_id) == (
            other.codec, other.pts, other.dts, other.keyframe, bytes(other.data), other.stream_id)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return (f"Frame({self.codec!r}, pts={self.pts}, dts={self.dts}, keyframe={self.keyframe}, "
                f"{len(self.data)} bytes, stream_id=0x{self.stream_id:02X})")
