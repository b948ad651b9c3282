"""MANSCDP envelope decoding with a hardened XML parser.

Every body is ``<Query|Response|Notify|Control>`` with ``CmdType``, ``SN`` and ``DeviceID``. The parser
refuses DTDs outright (no entity expansion, no external fetch: a billion-laughs or XXE body costs
nothing), bounds size and depth, and recovers from the sloppy XML devices send.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from lxml import etree

from ..errors import ManscdpError
import re

from .charset import to_utf8

MAX_BODY = 1024 * 1024
MAX_DEPTH = 32
KINDS = ("Query", "Response", "Notify", "Control")

_DTD = re.compile(rb"<!(?:DOCTYPE|ENTITY)", re.I)
#: True when some element sits deeper than MAX_DEPTH (evaluated in C by libxml2).
_TOO_DEEP = etree.XPath("boolean(/" + "/".join(["*"] * (MAX_DEPTH + 1)) + ")")

_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False,
                          recover=True, remove_comments=True, remove_pis=True, dtd_validation=False)


@dataclass(slots=True)
class Envelope:
    kind: str                 # Query, Response, Notify or Control
    cmd_type: str
    sn: int | None
    device_id: str
    root: etree._Element = field(repr=False)

    def text(self, name: str, default: str | None = None) -> str | None:
        """Text of a direct child, matched case-insensitively (``Alarmstatus`` vs ``AlarmStatus``)."""
        child = find_ci(self.root, name)
        if child is None or child.text is None:
            return default
        return child.text.strip()


def find_ci(elem: etree._Element, name: str) -> etree._Element | None:
    low = name.lower()
    for child in elem:
        tag = child.tag
        if isinstance(tag, str) and tag.lower() == low:
            return child
    return None


def parse_xml(raw: bytes) -> etree._Element:
    if len(raw) > MAX_BODY:
        raise ManscdpError("MANSCDP body too large", 413)
    if _DTD.search(raw):
        raise ManscdpError("DTDs and entities are not allowed in MANSCDP bodies")
    data = to_utf8(raw)
    if not data:
        raise ManscdpError("empty MANSCDP body")
    try:
        root = etree.fromstring(data, _PARSER)
    except (etree.XMLSyntaxError, ValueError) as exc:
        raise ManscdpError(f"malformed XML: {exc}") from None
    if root is None:
        raise ManscdpError("malformed XML: no root element")
    if len(data) > 7 * MAX_DEPTH and _TOO_DEEP(root):   # nesting deeper needs >= 7 bytes a level
        raise ManscdpError("XML nested too deeply")
    return root


def parse_envelope(raw: bytes) -> Envelope:
    """Decode a MANSCDP body far enough to route it."""
    root = parse_xml(raw)
    kind = next((k for k in KINDS if k.lower() == str(root.tag).lower()), None)
    if kind is None:
        raise ManscdpError(f"unknown MANSCDP root element {str(root.tag)[:40]!r}")
    fields: dict[str, str] = {}
    for child in root:
        tag = child.tag
        if isinstance(tag, str):
            low = tag.lower()
            if low in _ENVELOPE_FIELDS and low not in fields:
                fields[low] = (child.text or "").strip()
    cmd = fields.get("cmdtype")
    if not cmd:
        raise ManscdpError("missing CmdType")
    sn_text = fields.get("sn")
    sn: int | None = None
    if sn_text:
        if not sn_text.isdigit() or len(sn_text) > 18:
            raise ManscdpError(f"bad SN {sn_text[:20]!r}")
        sn = int(sn_text)
    return Envelope(kind, cmd, sn, fields.get("deviceid", ""), root)


_ENVELOPE_FIELDS = frozenset({"cmdtype", "sn", "deviceid"})
