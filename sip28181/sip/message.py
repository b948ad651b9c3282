"""SIP requests and responses: parse from bytes, build, serialise (RFC 3261 §7, §18.3, §20).

Sans-IO: nothing here knows where bytes come from. Every malformed input raises
:class:`~sip28181.errors.RemoteProtocolError` (status hint 400, with a reason fit for the reply);
no other exception escapes :func:`parse_message`.

:func:`parse_message` is the compiled parser ``sip28181.sip._sipmsg`` (``cext/_sipmsg.pyx``) when it
is built and ``SIP28181_NO_EXTENSIONS`` is not set; :func:`parse_message_py` is the readable
reference it must agree with (same objects, same errors).
"""

from __future__ import annotations

from typing import Iterator

from .. import _impl
from ..errors import RemoteProtocolError
from .headers import _NAME_CACHE, CSeq, LIST_HEADERS, NameAddr, Via, canonical_name, split_commas

MAX_MESSAGE_SIZE = 65_535      # the largest UDP datagram; a TCP message is held to the same bound
MAX_HEADERS = 128
MAX_HEADER_BYTES = 16_384
SIP_VERSION = "SIP/2.0"

REASONS = {
    100: "Trying", 180: "Ringing", 183: "Session Progress", 200: "OK", 202: "Accepted",
    302: "Moved Temporarily", 400: "Bad Request", 401: "Unauthorized", 403: "Forbidden",
    404: "Not Found", 405: "Method Not Allowed", 408: "Request Timeout", 413: "Request Entity Too Large",
    415: "Unsupported Media Type", 420: "Bad Extension", 423: "Interval Too Brief",
    481: "Call/Transaction Does Not Exist", 482: "Loop Detected", 486: "Busy Here",
    487: "Request Terminated", 488: "Not Acceptable Here", 489: "Bad Event", 500: "Server Internal Error",
    501: "Not Implemented", 503: "Service Unavailable", 505: "Version Not Supported",
}

_REQUIRED = ("Call-ID", "CSeq", "From", "To", "Via")
_LWS = (" ", "\t")
_BAD_URI_CHARS = frozenset('<>"\t')
_COPIED = frozenset({"Via", "From", "Call-ID", "CSeq"})      # into a response, with To (§8.2.6.2)
_SINGLE = frozenset({"Call-ID", "CSeq", "From", "To", "Content-Length", "Max-Forwards"})
#: RFC 3261 §25.1 token characters (methods may use any of them, RFC 4475 "intmeth").
_TOKEN = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-.!%*_+`'~")


class Headers:
    """Ordered, case-insensitive multi-map of header fields (canonical names kept)."""

    __slots__ = ("_items",)

    def __init__(self, items: list[tuple[str, str]] | None = None) -> None:
        self._items: list[tuple[str, str]] = items if items is not None else []

    def get(self, name: str, default: str | None = None) -> str | None:
        name = _NAME_CACHE.get(name) or canonical_name(name)   # the memo, without a call
        for k, v in self._items:
            if k == name:
                return v
        return default

    def get_all(self, name: str) -> list[str]:
        """Every value of ``name``; list headers split at commas into their elements."""
        name = canonical_name(name)
        values = [v for k, v in self._items if k == name]
        if name in LIST_HEADERS:
            return [e for v in values for e in split_commas(v)]
        return values

    def set(self, name: str, value: object) -> None:
        name = canonical_name(name)
        items = [(k, v) for k, v in self._items if k != name]
        items.append((name, str(value)))
        self._items[:] = items

    def add(self, name: str, value: object) -> None:
        self._items.append((canonical_name(name), str(value)))

    def insert(self, name: str, value: object) -> None:
        """Add as the first field (a new top Via)."""
        self._items.insert(0, (canonical_name(name), str(value)))

    def remove(self, name: str) -> None:
        name = canonical_name(name)
        self._items[:] = [(k, v) for k, v in self._items if k != name]

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.get(name) is not None

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def copy(self) -> "Headers":
        return Headers(list(self._items))


class Message:
    """Fields and accessors shared by :class:`Request` and :class:`Response`."""

    __slots__ = ("headers", "body")

    headers: Headers
    body: bytes

    # -- frequently used fields, parsed on access ---------------------------------------------
    @property
    def call_id(self) -> str:
        return self.headers.get("Call-ID") or ""

    @property
    def cseq(self) -> CSeq:
        return CSeq.parse(self.headers.get("CSeq") or "")

    @property
    def from_(self) -> NameAddr:
        return NameAddr.parse(self.headers.get("From") or "")

    @property
    def from_user(self) -> str | None:
        """User part of the From URI (the sender's ID), without parsing the whole name-addr."""
        value = self.headers.get("From") or ""
        if '"' in value:
            return self.from_.user
        lt = value.find("<")
        if lt >= 0:
            gt = value.find(">", lt)
            uri = value[lt + 1:gt] if gt > 0 else value[lt + 1:]
        else:
            uri = value.partition(";")[0]
        _scheme, colon, rest = uri.partition(":")
        user, at, _host = rest.partition("@")
        if not colon or not at:
            return None
        return user.partition(":")[0].strip() or None

    @property
    def to(self) -> NameAddr:
        return NameAddr.parse(self.headers.get("To") or "")

    @property
    def vias(self) -> list[Via]:
        return [Via.parse(v) for v in self.headers.get_all("Via")]

    @property
    def via(self) -> Via:
        first = self.headers.get("Via")
        if first is None:
            raise RemoteProtocolError("missing Via")
        return Via.parse(split_commas(first)[0])

    @property
    def contacts(self) -> list[NameAddr]:
        return [NameAddr.parse(v) for v in self.headers.get_all("Contact")]

    @property
    def content_type(self) -> str:
        return (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()

    @property
    def expires(self) -> int | None:
        value = self.headers.get("Expires")
        if value is None:
            return None
        value = value.strip()
        if not (value.isascii() and value.isdigit()) or len(value) > 10:
            raise RemoteProtocolError(f"bad Expires {value[:20]!r}")
        return int(value)

    def _start_line(self) -> str:  # pragma: no cover - overridden
        raise NotImplementedError

    def encode(self) -> bytes:
        """Serialise; Content-Length is always written to match the body."""
        body = self.body
        lines = [self._start_line()]
        lines += [f"{k}: {v}" for k, v in self.headers._items if k != "Content-Length"]
        lines.append(f"Content-Length: {len(body)}\r\n\r\n")
        return "\r\n".join(lines).encode() + body

    __bytes__ = encode


class Request(Message):
    __slots__ = ("method", "uri")

    def __init__(self, method: str, uri: str, headers: Headers | None = None, body: bytes = b"") -> None:
        self.method = method
        self.uri = uri
        self.headers = headers if headers is not None else Headers()
        self.body = body

    def _start_line(self) -> str:
        return f"{self.method} {self.uri} {SIP_VERSION}"

    def __repr__(self) -> str:
        return f"<Request {self.method} {self.uri} Call-ID={self.call_id!r}>"


class Response(Message):
    __slots__ = ("status", "reason")

    def __init__(self, status: int, reason: str | None = None, headers: Headers | None = None,
                 body: bytes = b"") -> None:
        self.status = status
        self.reason = reason if reason is not None else REASONS.get(status, "")
        self.headers = headers if headers is not None else Headers()
        self.body = body

    def _start_line(self) -> str:
        return f"{SIP_VERSION} {self.status} {self.reason}"

    def __repr__(self) -> str:
        return f"<Response {self.status} {self.reason} Call-ID={self.call_id!r}>"

    @classmethod
    def for_request(cls, request: Request, status: int, reason: str | None = None,
                    to_tag: str | None = None) -> "Response":
        """A response copying Via, From, To (with ``to_tag`` added if it has none), Call-ID, CSeq."""
        items: list[tuple[str, str]] = []
        append = items.append
        tag = to_tag if status != 100 else None
        for item in request.headers._items:     # the (name, value) tuples are shared, not rebuilt
            k = item[0]
            if k in _COPIED:
                append(item)
            elif k == "To":
                v = item[1]
                if tag and ";tag=" not in v.replace(" ", "").lower():
                    item = (k, f"{v};tag={tag}")
                append(item)
        return cls(status, reason, Headers(items))


def parse_message(data: bytes | bytearray | memoryview) -> Request | Response:
    """Parse one complete message (a UDP datagram or a framed TCP message)."""
    if type(data) is not bytes:
        data = bytes(data)
    if len(data) > MAX_MESSAGE_SIZE:
        raise RemoteProtocolError("message too large", 413)
    if data[:1] in (b"\r", b"\n"):
        data = data.lstrip(b"\r\n")    # leading CRLFs are keepalive noise (RFC 5626 §3.5.1)
    end = data.find(b"\r\n\r\n")
    sep_len = 4
    if end < 0:
        end = data.find(b"\n\n")     # bare-LF senders (RFC 4475 torture cases); be lenient
        sep_len = 2
        if end < 0:
            raise RemoteProtocolError("incomplete header section")
    if end > MAX_HEADER_BYTES:
        raise RemoteProtocolError("header section too large", 413)
    try:
        head = data[:end].decode("utf-8")
    except UnicodeDecodeError:
        raise RemoteProtocolError("header section is not UTF-8") from None
    body = data[end + sep_len:]
    lines = head.split("\r\n")
    if sep_len == 2 or head.count("\n") != len(lines) - 1:
        lines = head.replace("\r\n", "\n").split("\n")    # bare-LF line ends, accepted leniently
    while lines and not lines[0]:     # leading CRLFs are keepalive noise (RFC 5626 §3.5.1)
        lines.pop(0)
    if not lines:
        raise RemoteProtocolError("empty message")
    msg = _parse_start_line(lines[0])
    items: list[tuple[str, str]] = []
    if len(lines) > MAX_HEADERS + 1:
        raise RemoteProtocolError("too many headers", 413)
    append = items.append
    for line in lines[1:]:
        if line[:1] in _LWS:
            if not items:
                raise RemoteProtocolError("continuation line before any header")
            name, value = items[-1]
            items[-1] = (name, f"{value} {line.strip()}")
            continue
        name, colon, value = line.partition(":")
        name = name.strip()
        if not colon or not name or " " in name:
            raise RemoteProtocolError(f"malformed header line {line[:60]!r}")
        append((canonical_name(name), value.strip()))
    msg.headers = Headers(items)
    first: dict[str, str] = {}
    for k, v in items:
        if k in first:
            if k in _SINGLE and not (k == "Content-Length" and v == first[k]):
                raise RemoteProtocolError(f"more than one {k}")
        else:
            first[k] = v
    for required in _REQUIRED:
        if required not in first:
            raise RemoteProtocolError(f"missing {required}")
    cseq = CSeq.parse(first["CSeq"])
    if isinstance(msg, Request) and cseq.method != msg.method:
        raise RemoteProtocolError("CSeq method does not match the request method")
    length = first.get("Content-Length")
    if length is not None:
        length = length.strip()
        if not (length.isascii() and length.isdigit()) or len(length) > 6:
            raise RemoteProtocolError(f"bad Content-Length {length[:20]!r}")
        n = int(length)
        if n > len(body):
            raise RemoteProtocolError("body shorter than Content-Length")
        body = body[:n]     # RFC 3261 §18.3: extra datagram bytes are discarded
    msg.body = body
    return msg


def _parse_start_line(line: str) -> Request | Response:
    if line.startswith("SIP/"):
        parts = line.split(" ", 2)
        if len(parts) < 2 or parts[0] != SIP_VERSION:
            raise RemoteProtocolError("unsupported SIP version", 505)
        code = parts[1]
        if len(code) != 3 or not (code.isascii() and code.isdigit()) or not 100 <= int(code) <= 699:
            raise RemoteProtocolError(f"bad status code {code[:10]!r}")
        return Response(int(code), parts[2] if len(parts) > 2 else "")
    parts = line.split(" ")      # exactly one SP between the elements (RFC 3261 §7.1)
    if len(parts) != 3:
        raise RemoteProtocolError(f"malformed request line {line[:80]!r}")
    method, uri, version = parts
    if version.upper() != SIP_VERSION:
        raise RemoteProtocolError(f"unsupported version {version[:20]!r}", 505)
    if not method or len(method) > 64 or not _TOKEN.issuperset(method):
        raise RemoteProtocolError(f"bad method {method[:32]!r}")
    scheme, colon, rest = uri.partition(":")
    if not colon or not scheme or not _BAD_URI_CHARS.isdisjoint(uri):
        raise RemoteProtocolError(f"bad Request-URI {uri[:80]!r}")
    if scheme.lower() in ("sip", "sips") and "?" in rest.rpartition("@")[2]:
        raise RemoteProtocolError("headers are not allowed in a Request-URI")   # RFC 3261 §19.1.5
    return Request(method.upper(), uri)


#: The pure-Python parser: the reference the compiled one is tested against.
parse_message_py = parse_message

_compiled = _impl.load("sip28181.sip._sipmsg")      # imports this module back: keep these lines last
#: True when :func:`parse_message` is the compiled parser.
PARSER_COMPILED: bool = _compiled is not None
if _compiled is not None:
    parse_message = _compiled.parse_message     # noqa: F811
