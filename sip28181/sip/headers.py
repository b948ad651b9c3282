"""Header values: names, comma lists, name-addr (From/To/Contact), Via and CSeq (RFC 3261 §20, §25).

Values are parsed on demand from the raw text the message keeps, so a keepalive that only needs
Call-ID and CSeq never pays for parsing Via or Contact.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from ..errors import RemoteProtocolError
from .uri import SipUri, split_hostport

#: RFC 3261 §7.3.3 compact forms (plus RFC 3265 o/u and RFC 4028 x).
COMPACT = {
    "i": "Call-ID", "m": "Contact", "e": "Content-Encoding", "l": "Content-Length",
    "c": "Content-Type", "f": "From", "s": "Subject", "k": "Supported", "t": "To", "v": "Via",
    "o": "Event", "u": "Allow-Events", "r": "Refer-To", "b": "Referred-By", "x": "Session-Expires",
}
_CANONICAL = {n.lower(): n for n in (
    "Via", "From", "To", "Call-ID", "CSeq", "Contact", "Max-Forwards", "Expires", "Content-Length",
    "Content-Type", "Authorization", "WWW-Authenticate", "Proxy-Authenticate", "Proxy-Authorization",
    "User-Agent", "Server", "Date", "Subject", "Event", "Subscription-State", "Allow", "Supported",
    "Route", "Record-Route", "Require", "Accept", "Allow-Events", "Retry-After", "Warning",
    "Min-Expires", "Unsupported", "Reason", "X-GB-Ver", "Content-Encoding", "Session-Expires",
    "Refer-To", "Referred-By", "Monitor-User-Identity",
)}
_CANONICAL["call-id"] = "Call-ID"
_CANONICAL["cseq"] = "CSeq"
_CANONICAL["www-authenticate"] = "WWW-Authenticate"
_CANONICAL["x-gb-ver"] = "X-GB-Ver"

#: Headers whose values may be comma-joined lists (RFC 3261 §7.3.1). Authorization-type headers and
#: dates contain commas inside one value and are never split.
LIST_HEADERS = frozenset({"Via", "Contact", "Route", "Record-Route", "Allow", "Supported", "Require",
                          "Accept", "Allow-Events", "Unsupported", "Proxy-Require"})


_NAME_CACHE: dict[str, str] = {}


def canonical_name(name: str) -> str:
    """Canonical spelling of a header name: compact forms expanded, case normalised.

    Memoised: a server sees the same few dozen spellings millions of times. The memo is bounded so
    a peer inventing header names cannot grow it.
    """
    cached = _NAME_CACHE.get(name)
    if cached is not None:
        return cached
    result = _canonical_name(name)
    if len(_NAME_CACHE) < 4096:
        _NAME_CACHE[name] = result
    return result


def _canonical_name(name: str) -> str:
    if len(name) == 1:
        full = COMPACT.get(name.lower())
        if full:
            return full
    low = name.lower()
    known = _CANONICAL.get(low)
    if known:
        return known
    return "-".join(p[:1].upper() + p[1:].lower() for p in low.split("-"))


#: One element of a comma list: plain text, quoted strings and ``<...>`` spans (not nested).
_LIST_ITEM = re.compile(r'(?:[^,"<]+|"(?:[^"\\]|\\.)*"?|<[^>]*>?)+')


def split_commas(value: str) -> list[str]:
    """Split a list header at commas outside quotes and ``<...>``."""
    if "," not in value:
        return [value.strip()]
    if '"' not in value and "<" not in value:
        parts = value.split(",")
    else:
        parts = _LIST_ITEM.findall(value)
    return [v for v in (p.strip() for p in parts) if v]


def parse_params(text: str) -> dict[str, str | None]:
    """``;a=b;c`` → ``{"a": "b", "c": None}`` (names lower-cased, quotes removed)."""
    params: dict[str, str | None] = {}
    for part in _split_semis(text):
        if not part:
            continue
        k, eq, v = part.partition("=")
        k = k.strip().lower()
        if not k:
            continue
        v = v.strip()
        if len(v) >= 2 and v[0] == '"' and v[-1] == '"':
            v = v[1:-1]
        params[k] = v if eq else None
    return params


def _split_semis(text: str) -> list[str]:
    if '"' not in text:
        return [p.strip() for p in text.split(";")]
    out, quoted, escaped, start = [], False, False, 0
    for i, c in enumerate(text):
        if escaped:
            escaped = False
        elif c == "\\" and quoted:
            escaped = True
        elif c == '"':
            quoted = not quoted
        elif c == ";" and not quoted:
            out.append(text[start:i].strip())
            start = i + 1
    out.append(text[start:].strip())
    return out


def format_params(params: dict[str, str | None]) -> str:
    return "".join(f";{k}" if v is None else f";{k}={v}" for k, v in params.items())


#: ASCII separators that may not appear in an unquoted display name (RFC 3261 §25.1 token);
#: non-ASCII text is tolerated because devices send unquoted UTF-8 names.
_DISPLAY_SEPARATORS = frozenset(',;<>"\\@:()[]{}?=/')


def _quoted_end(value: str, start: int) -> int:
    """Index just past the quoted string opening at ``start`` (backslash escapes honoured)."""
    i, n = start + 1, len(value)
    while i < n:
        c = value[i]
        if c == "\\":
            i += 2
            continue
        if c == '"':
            return i + 1
        i += 1
    raise RemoteProtocolError(f"unbalanced quotes in {value[:80]!r}")


@dataclass(slots=True)
class NameAddr:
    """``"Display" <sip:user@host>;tag=x`` as in From, To and Contact."""

    uri: SipUri | None
    display: str = ""
    params: dict[str, str | None] = field(default_factory=dict)
    wildcard: bool = False

    @classmethod
    def parse(cls, value: str) -> "NameAddr":
        value = value.strip()
        if value == "*":
            return cls(None, wildcard=True)
        quoted_end = _quoted_end(value, 0) if value.startswith('"') else 0
        lt = value.find("<", quoted_end)
        if lt >= 0:
            gt = value.find(">", lt)
            if gt < 0:
                raise RemoteProtocolError(f"unterminated <> in {value[:80]!r}")
            if quoted_end:
                if value[quoted_end:lt].strip():
                    raise RemoteProtocolError(f"text after the quoted display name in {value[:80]!r}")
                display = value[1:quoted_end - 1]
            else:
                display = value[:lt].strip()
                if _DISPLAY_SEPARATORS.intersection(display):
                    raise RemoteProtocolError(f"unquoted display name with separators {display[:40]!r}")
            inner = value[lt + 1:gt]
            if inner != inner.strip():
                raise RemoteProtocolError(f"whitespace inside <> in {value[:80]!r}")
            uri = SipUri.parse(inner)
            params = parse_params(value[gt + 1:].lstrip(";")) if value[gt + 1:].strip() else {}
            return cls(uri, display, params)
        if quoted_end:
            raise RemoteProtocolError(f"display name without <uri> in {value[:80]!r}")
        # addr-spec without brackets: parameters belong to the header, not the URI (RFC 3261 §20.10);
        # a URI with "?" or "," must be bracketed
        uri_text, _, rest = value.partition(";")
        if "?" in uri_text or "," in uri_text:
            raise RemoteProtocolError(f"URI with '?' or ',' must be in <> in {value[:80]!r}")
        return cls(SipUri.parse(uri_text), "", parse_params(rest) if rest else {})

    @property
    def tag(self) -> str | None:
        return self.params.get("tag")

    @property
    def user(self) -> str | None:
        return self.uri.user if self.uri else None

    def __str__(self) -> str:
        if self.wildcard:
            return "*"
        head = f'"{self.display}" ' if self.display else ""
        return f"{head}<{self.uri}>{format_params(self.params)}"


_VIA_PROTOCOL = re.compile(r"\s*([^/\s]+)\s*/\s*([^/\s]+)\s*/\s*([^/\s;]+)\s+(\S.*)\Z", re.S)


@dataclass(slots=True)
class Via:
    transport: str
    host: str
    port: int | None
    params: dict[str, str | None] = field(default_factory=dict)

    @classmethod
    def parse(cls, value: str) -> "Via":
        m = _VIA_PROTOCOL.match(value)      # LWS is allowed around the slashes (RFC 4475 "wsinv")
        if m is None or m.group(1).upper() != "SIP":
            raise RemoteProtocolError(f"malformed Via {value[:80]!r}")
        transport, sent_by = m.group(3), m.group(4)
        hostport, _, rest = sent_by.partition(";")
        host, port = split_hostport(hostport)
        return cls(transport.upper(), host, port, parse_params(rest) if rest else {})

    @property
    def branch(self) -> str | None:
        return self.params.get("branch")

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        port = f":{self.port}" if self.port else ""
        return f"SIP/2.0/{self.transport} {host}{port}{format_params(self.params)}"


@dataclass(frozen=True, slots=True)
class CSeq:
    number: int
    method: str

    @classmethod
    def parse(cls, value: str) -> "CSeq":
        parts = value.split()
        if len(parts) != 2 or not (parts[0].isascii() and parts[0].isdigit()) or len(parts[0]) > 10:
            raise RemoteProtocolError(f"malformed CSeq {value[:40]!r}")
        number = int(parts[0])
        if number >= 2**31:
            raise RemoteProtocolError("CSeq number out of range")
        return cls(number, parts[1].upper())

    def __str__(self) -> str:
        return f"{self.number} {self.method}"
