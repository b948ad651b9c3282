"""MANSRTSP: the RTSP-like bodies of in-dialog INFO that steer playback (PROTOCOL §8.8), sans-IO.

::

    PAUSE RTSP/1.0          PLAY RTSP/1.0           PLAY RTSP/1.0        TEARDOWN RTSP/1.0
    CSeq: 3                 CSeq: 4                 CSeq: 5              CSeq: 7
    PauseTime: now          Range: npt=600-         Scale: 2.0

A PLAY with ``Range: npt=now-`` and no Scale resumes, one with a Range from a number seeks (seconds
from the start of the ``t=`` range), one with Scale only changes the speed (negative: reverse,
2022). The MANSRTSP CSeq is its own counter, independent of the SIP CSeq.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from .errors import RemoteProtocolError

__all__ = ["MansrtspError", "Method", "MansrtspRequest", "MansrtspResponse", "parse_request",
           "parse_response", "CONTENT_TYPE"]

CONTENT_TYPE = "Application/MANSRTSP"
MAX_BODY = 4096


class MansrtspError(RemoteProtocolError):
    """A MANSRTSP body that cannot be read (answered 400)."""


class Method(str, enum.Enum):
    PLAY = "PLAY"
    PAUSE = "PAUSE"
    TEARDOWN = "TEARDOWN"


@dataclass(slots=True)
class MansrtspRequest:
    """One MANSRTSP request. ``range_start`` None with ``range_now`` True means ``npt=now-``."""

    method: Method
    cseq: int = 1
    range_start: float | None = None      # seconds from the playback start (npt=<start>-)
    range_end: float | None = None
    range_now: bool = False               # Range: npt=now-
    scale: float | None = None
    pause_time: str | None = None         # PauseTime: now
    headers: list[tuple[str, str]] = field(default_factory=list)   # other header lines, kept

    # -- constructors -------------------------------------------------------------------------
    @classmethod
    def pause(cls, cseq: int) -> "MansrtspRequest":
        return cls(Method.PAUSE, cseq, pause_time="now")

    @classmethod
    def play(cls, cseq: int, range_start: float | None = None, scale: float | None = None,
             range_end: float | None = None) -> "MansrtspRequest":
        """Resume (no argument), seek (``range_start``), speed (``scale``), or both."""
        if range_start is not None and range_start < 0:
            raise ValueError("range_start must be >= 0")
        if scale is not None and scale == 0:
            raise ValueError("scale must not be 0")
        now = range_start is None and scale is None
        return cls(Method.PLAY, cseq, range_start=range_start, range_end=range_end, range_now=now,
                   scale=scale)

    @classmethod
    def teardown(cls, cseq: int) -> "MansrtspRequest":
        return cls(Method.TEARDOWN, cseq)

    # -- meaning ------------------------------------------------------------------------------
    @property
    def is_resume(self) -> bool:
        return self.method is Method.PLAY and self.range_start is None and self.scale is None

    @property
    def is_seek(self) -> bool:
        return self.method is Method.PLAY and self.range_start is not None

    @property
    def is_scale(self) -> bool:
        return self.method is Method.PLAY and self.scale is not None

    # -- bytes --------------------------------------------------------------------------------
    def encode(self) -> bytes:
        lines = [f"{self.method.value} RTSP/1.0", f"CSeq: {self.cseq}"]
        if self.method is Method.PAUSE and self.pause_time is not None:
            lines.append(f"PauseTime: {self.pause_time}")
        if self.method is Method.PLAY:
            if self.range_start is not None:
                end = _npt(self.range_end) if self.range_end is not None else ""
                lines.append(f"Range: npt={_npt(self.range_start)}-{end}")
            elif self.range_now:
                lines.append("Range: npt=now-")
            if self.scale is not None:
                lines.append(f"Scale: {_scale(self.scale)}")
        lines += [f"{k}: {v}" for k, v in self.headers]
        return ("\r\n".join(lines) + "\r\n\r\n").encode()

    __bytes__ = encode


@dataclass(slots=True)
class MansrtspResponse:
    """The ``RTSP/1.0 200 OK`` body some devices put in their answer to INFO."""

    status: int = 200
    reason: str = "OK"
    cseq: int | None = None
    headers: list[tuple[str, str]] = field(default_factory=list)

    def encode(self) -> bytes:
        lines = [f"RTSP/1.0 {self.status} {self.reason}"]
        if self.cseq is not None:
            lines.append(f"CSeq: {self.cseq}")
        lines += [f"{k}: {v}" for k, v in self.headers]
        return ("\r\n".join(lines) + "\r\n\r\n").encode()

    __bytes__ = encode


def _scale(scale: float) -> str:
    """``2.0``, ``0.25``, ``-1.0``: one decimal at least, as devices print it."""
    return f"{scale:.1f}" if float(scale).is_integer() else f"{scale:g}"


def _npt(seconds: float) -> str:
    return str(int(seconds)) if float(seconds).is_integer() else f"{seconds:.3f}".rstrip("0")


def _lines(data: bytes | str) -> list[str]:
    if isinstance(data, (bytes, bytearray, memoryview)):
        raw = bytes(data)
        if len(raw) > MAX_BODY:
            raise MansrtspError("MANSRTSP body too large")
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise MansrtspError("MANSRTSP body is not text") from None
    else:
        text = data
    lines = [ln.strip() for ln in text.replace("\r\n", "\n").replace("\r", "\n").split("\n")]
    lines = [ln for ln in lines if ln]
    if not lines:
        raise MansrtspError("empty MANSRTSP body")
    return lines


def _headers(lines: list[str]) -> list[tuple[str, str]]:
    out = []
    for line in lines:
        name, colon, value = line.partition(":")
        if not colon or not name.strip():
            raise MansrtspError(f"bad MANSRTSP header line {line[:40]!r}")
        out.append((name.strip(), value.strip()))
    return out


def _number(value: str, what: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise MansrtspError(f"bad {what} {value[:20]!r}") from None
    if number != number or number in (float("inf"), float("-inf")):
        raise MansrtspError(f"bad {what} {value[:20]!r}")
    return number


def parse_request(data: bytes | str) -> MansrtspRequest:
    """Parse an INFO body; :class:`MansrtspError` (400) when it is not a MANSRTSP request."""
    lines = _lines(data)
    parts = lines[0].split()
    if len(parts) != 2 or not parts[1].upper().startswith("RTSP/"):
        raise MansrtspError(f"bad MANSRTSP request line {lines[0][:40]!r}")
    try:
        method = Method(parts[0].upper())
    except ValueError:
        raise MansrtspError(f"unsupported MANSRTSP method {parts[0][:20]!r}", 405) from None
    request = MansrtspRequest(method)
    cseq_seen = False
    for name, value in _headers(lines[1:]):
        key = name.lower()
        if key == "cseq":
            if not (value.isascii() and value.isdigit()) or len(value) > 10:
                raise MansrtspError(f"bad CSeq {value[:20]!r}")
            request.cseq = int(value)
            cseq_seen = True
        elif key == "range":
            _parse_range(request, value)
        elif key == "scale":
            scale = _number(value, "Scale")
            if scale == 0:
                raise MansrtspError("Scale 0")
            request.scale = scale
        elif key == "pausetime":
            request.pause_time = value
        else:
            request.headers.append((name, value))
    if not cseq_seen:
        raise MansrtspError("MANSRTSP request without CSeq")
    return request


def _parse_range(request: MansrtspRequest, value: str) -> None:
    unit, eq, spec = value.partition("=")
    if not eq or unit.strip().lower() != "npt" or "-" not in spec:
        raise MansrtspError(f"bad Range {value[:40]!r}")
    start, _, end = spec.strip().partition("-")
    start, end = start.strip(), end.strip()
    if start.lower() == "now" or start == "":
        request.range_now = True
    else:
        request.range_start = _number(start, "Range start")
        if request.range_start < 0:
            raise MansrtspError("negative Range start")
    if end:
        request.range_end = _number(end, "Range end")


def parse_response(data: bytes | str) -> MansrtspResponse:
    """Parse an ``RTSP/1.0 <status> <reason>`` body."""
    lines = _lines(data)
    parts = lines[0].split(None, 2)
    if len(parts) < 2 or not parts[0].upper().startswith("RTSP/") or not parts[1].isdigit():
        raise MansrtspError(f"bad MANSRTSP status line {lines[0][:40]!r}")
    response = MansrtspResponse(int(parts[1]), parts[2] if len(parts) > 2 else "")
    for name, value in _headers(lines[1:]):
        if name.lower() == "cseq" and value.isascii() and value.isdigit():
            response.cseq = int(value)
        else:
            response.headers.append((name, value))
    return response
