"""Character sets of MANSCDP bodies (PROTOCOL §2.1).

Devices declare GB2312 and send GBK, declare GB2312 and send UTF-8, or declare nothing. What the
bytes are wins over what the prolog says: valid UTF-8 is UTF-8, anything else is GB18030 (a superset
of GB2312 and GBK).
"""

from __future__ import annotations

import re

_DECL = re.compile(rb"^\s*<\?xml[^>]*\?>", re.I)
_BARE_AMP = re.compile(r"&(?!(?:amp|lt|gt|apos|quot|#\d+|#x[0-9A-Fa-f]+);)")


def to_utf8(raw: bytes) -> bytes:
    """Bytes of a MANSCDP body → UTF-8 bytes without the declaration (the parser's input).

    The common case (ASCII or UTF-8, no NUL, no stray ``&``) costs one validation pass and no copy
    beyond stripping the declaration.
    """
    raw = _DECL.sub(b"", raw, count=1)
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return decode_body(raw).encode("utf-8")
    if b"\x00" in raw or b"&" in raw:
        return decode_body(raw).encode("utf-8")
    return raw.strip()


def decode_body(raw: bytes) -> str:
    """Bytes of a MANSCDP body → text without its XML declaration, ready for the parser."""
    raw = _DECL.sub(b"", raw, count=1)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        text = raw.decode("gb18030", errors="replace")
    if "\x00" in text:
        text = text.replace("\x00", "")
    if "&" in text:
        text = _BARE_AMP.sub("&amp;", text)   # Hikvision-style bare '&'
    return text.strip()


def encode_body(xml_text: str, charset: str = "GB2312") -> bytes:
    """Text → bytes with a declaration that matches the bytes."""
    label = charset.upper()
    codec = "gb18030" if label in ("GB2312", "GBK", "GB18030") else "utf-8"
    return f'<?xml version="1.0" encoding="{label}"?>\r\n{xml_text}'.encode(codec)
