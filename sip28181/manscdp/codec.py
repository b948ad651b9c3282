"""MANSCDP envelope decoding with a hardened XML parser.

Every body is ``<Query|Response|Notify|Control>`` with ``CmdType``, ``SN`` and ``DeviceID``. The parser
refuses DTDs outright (no entity expansion, no external fetch: a billion-laughs or XXE body costs
nothing), bounds size and depth, and recovers from the sloppy XML devices send.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from lxml import etree

from ..errors import ManscdpError
from .charset import decode_body

MAX_BODY = 1024 * 1024
MAX_DEPTH = 32
KINDS = ("Query", "Response", "Notify", "Control")

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
    if b"<!DOCTYPE" in raw.upper() or b"<!ENTITY" in raw.upper():
        raise ManscdpError("DTDs and entities are not allowed in MANSCDP bodies")
    text = decode_body(raw)
    if not text:
        raise ManscdpError("empty MANSCDP body")
    try:
        root = etree.fromstring(text.encode("utf-8"), _PARSER)
    except (etree.XMLSyntaxError, ValueError) as exc:
        raise ManscdpError(f"malformed XML: {exc}") from None
    if root is None:
        raise ManscdpError("malformed XML: no root element")
    depth = _depth(root)
    if depth > MAX_DEPTH:
        raise ManscdpError("XML nested too deeply")
    return root


def _depth(root: etree._Element) -> int:
    deepest = 0
    for elem in root.iter():
        d = 0
        node = elem
        while node is not None and d <= MAX_DEPTH + 1:
            node = node.getparent()
            d += 1
        if d > deepest:
            deepest = d
            if deepest > MAX_DEPTH:
                break
    return deepest


def parse_envelope(raw: bytes) -> Envelope:
    """Decode a MANSCDP body far enough to route it."""
    root = parse_xml(raw)
    kind = next((k for k in KINDS if k.lower() == str(root.tag).lower()), None)
    if kind is None:
        raise ManscdpError(f"unknown MANSCDP root element {str(root.tag)[:40]!r}")
    cmd = find_ci(root, "CmdType")
    if cmd is None or not (cmd.text or "").strip():
        raise ManscdpError("missing CmdType")
    sn_el = find_ci(root, "SN")
    sn: int | None = None
    if sn_el is not None and (sn_el.text or "").strip():
        try:
            sn = int(sn_el.text.strip())
        except ValueError:
            raise ManscdpError(f"bad SN {sn_el.text.strip()[:20]!r}") from None
    dev = find_ci(root, "DeviceID")
    device_id = (dev.text or "").strip() if dev is not None else ""
    return Envelope(kind, cmd.text.strip(), sn, device_id, root)
