"""MANSCDP envelope decoding with a hardened XML parser.

Every body is ``<Query|Response|Notify|Control>`` with ``CmdType``, ``SN`` and ``DeviceID``. The parser
refuses DTDs outright (no entity expansion, no external fetch: a billion-laughs or XXE body costs
nothing), bounds size and depth, and recovers from the sloppy XML devices send.

Flat bodies (a root holding only simple text elements, such as every Keepalive) are read by one
bounded regular expression and get an element tree only if a caller asks for ``root``: a server
answers tens of thousands of keepalives a second and none of them needs a tree.
"""

from __future__ import annotations

import re

from lxml import etree

from ..errors import ManscdpError
from .charset import to_utf8

MAX_BODY = 1024 * 1024
MAX_DEPTH = 32
KINDS = ("Query", "Response", "Notify", "Control")
_KIND_OF = {k.lower(): k for k in KINDS}

_DTD = re.compile(rb"<!(?:DOCTYPE|ENTITY)", re.I)
#: True when some element sits deeper than MAX_DEPTH (evaluated in C by libxml2).
_TOO_DEEP = etree.XPath("boolean(/" + "/".join(["*"] * (MAX_DEPTH + 1)) + ")")

_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False,
                          recover=True, remove_comments=True, remove_pis=True, dtd_validation=False)

#: A root element holding only ``<Name>text</Name>`` children (text without markup or entities).
_FLAT = re.compile(
    rb"\s*<(Query|Response|Notify|Control)>"
    rb"((?:\s*<([A-Za-z][A-Za-z0-9_]{0,63})>[^<>&]{0,1024}</\3>)*)"
    rb"\s*</\1>\s*\Z", re.I)
_FLAT_ITEM = re.compile(rb"<([A-Za-z][A-Za-z0-9_]*)>([^<>&]*)</\1>")
_FLAT_MAX = 4096
_ENVELOPE_FIELDS = ("cmdtype", "sn", "deviceid")


class Envelope:
    """A decoded MANSCDP body: what routing needs, and the element tree on demand."""

    __slots__ = ("kind", "cmd_type", "sn", "device_id", "_root", "_data", "_fields")

    def __init__(self, kind: str, cmd_type: str, sn: int | None, device_id: str,
                 root: etree._Element | None = None, *, data: bytes = b"",
                 fields: dict[str, str] | None = None) -> None:
        self.kind = kind
        self.cmd_type = cmd_type
        self.sn = sn
        self.device_id = device_id
        self._root = root
        self._data = data
        self._fields = fields

    @property
    def root(self) -> etree._Element:
        if self._root is None:
            self._root = _parse_tree(self._data)
        return self._root

    def text(self, name: str, default: str | None = None) -> str | None:
        """Text of a direct child, matched case-insensitively (``Alarmstatus`` vs ``AlarmStatus``)."""
        if self._fields is not None:
            return self._fields.get(name.lower(), default)
        child = find_ci(self.root, name)
        if child is None or child.text is None:
            return default
        return child.text.strip()

    def __repr__(self) -> str:
        return (f"Envelope(kind={self.kind!r}, cmd_type={self.cmd_type!r}, sn={self.sn!r}, "
                f"device_id={self.device_id!r})")


def find_ci(elem: etree._Element, name: str) -> etree._Element | None:
    low = name.lower()
    for child in elem:
        tag = child.tag
        if isinstance(tag, str) and tag.lower() == low:
            return child
    return None


def _utf8(raw: bytes) -> bytes:
    if len(raw) > MAX_BODY:
        raise ManscdpError("MANSCDP body too large", 413)
    if _DTD.search(raw):
        raise ManscdpError("DTDs and entities are not allowed in MANSCDP bodies")
    data = to_utf8(raw)
    if not data:
        raise ManscdpError("empty MANSCDP body")
    return data


def _parse_tree(data: bytes) -> etree._Element:
    try:
        root = etree.fromstring(data, _PARSER)
    except (etree.XMLSyntaxError, ValueError) as exc:
        raise ManscdpError(f"malformed XML: {exc}") from None
    if root is None:
        raise ManscdpError("malformed XML: no root element")
    if len(data) > 7 * MAX_DEPTH and _TOO_DEEP(root):   # nesting deeper needs >= 7 bytes a level
        raise ManscdpError("XML nested too deeply")
    return root


def parse_xml(raw: bytes) -> etree._Element:
    """A MANSCDP body as an element tree (hardened parser, charset repaired)."""
    return _parse_tree(_utf8(raw))


#: The Content-Type of MANSCDP bodies (compared case-insensitively on receipt).
CONTENT_TYPE = "Application/MANSCDP+xml"


def message_envelope(content_type: str | None, body: bytes) -> Envelope:
    """The envelope of a MESSAGE's MANSCDP body; :class:`ManscdpError` with 415 for another
    content type, else what :func:`parse_envelope` raises (400, 413)."""
    if (content_type or "").lower() != "application/manscdp+xml":
        raise ManscdpError("Expected Application/MANSCDP+xml", 415)
    return parse_envelope(body)


def parse_envelope(raw: bytes) -> Envelope:
    """Decode a MANSCDP body far enough to route it."""
    data = _utf8(raw)
    flat = _FLAT.match(data) if len(data) <= _FLAT_MAX else None
    if flat is not None:
        fields: dict[str, str] = {}
        for name, value in _FLAT_ITEM.findall(flat.group(2)):
            key = name.decode("ascii").lower()
            if key not in fields:
                fields[key] = value.decode("utf-8").strip()
        kind = _KIND_OF[flat.group(1).decode("ascii").lower()]
        return _envelope(kind, fields, data=data, keep_fields=fields)
    root = _parse_tree(data)
    kind = _KIND_OF.get(str(root.tag).lower())
    if kind is None:
        raise ManscdpError(f"unknown MANSCDP root element {str(root.tag)[:40]!r}")
    fields = {}
    for child in root:
        tag = child.tag
        if isinstance(tag, str):
            low = tag.lower()
            if low in _ENVELOPE_FIELDS and low not in fields:
                fields[low] = (child.text or "").strip()
    return _envelope(kind, fields, root=root)


def _envelope(kind: str, fields: dict[str, str], *, root: etree._Element | None = None,
              data: bytes = b"", keep_fields: dict[str, str] | None = None) -> Envelope:
    cmd = fields.get("cmdtype")
    if not cmd:
        raise ManscdpError("missing CmdType")
    sn_text = fields.get("sn")
    sn: int | None = None
    if sn_text:
        if not (sn_text.isascii() and sn_text.isdigit()) or len(sn_text) > 18:
            raise ManscdpError(f"bad SN {sn_text[:20]!r}")
        sn = int(sn_text)
    return Envelope(kind, cmd, sn, fields.get("deviceid", ""), root, data=data, fields=keep_fields)
