"""Character sets of MANSCDP bodies (PROTOCOL §2.1).

Devices declare GB2312 and send GBK, declare GB2312 and send UTF-8, declare UTF-8 and send GBK, or
declare nothing. Decoding therefore trusts the bytes first and the declaration second:

* a BOM decides (UTF-8, UTF-16);
* bytes that are not valid UTF-8 are GB18030 (a superset of GB2312 and GBK), whatever the label;
* valid UTF-8 is UTF-8, except when the body is declared GB2312/GBK/GB18030 and the UTF-8 reading
  gives only two-byte characters (Latin, Greek, Hebrew...) where GB18030 gives Chinese: a short
  GBK name can happen to be valid UTF-8 (``模`` is ``C4 A3``, which UTF-8 reads as ``ģ``).

Encoding sends GB2312 by default. Python's ``gb2312`` codec maps a few GB2312 code points to other
Unicode characters than GBK does (``·`` U+00B7, ``—`` U+2014), so text it refuses is tried with
GBK and kept under the GB2312 label when every byte pair still lies in the GB2312 area (rows A1–F7).
Text GB2312 really cannot hold (rare characters such as ``堃`` or ``镕``, emoji) is sent as GB18030
with a matching declaration rather than failing or sending ``?``.
"""

from __future__ import annotations

import re

_DECL = re.compile(rb"^\s*<\?xml[^>]*\?>", re.I)
_ENCODING = re.compile(rb"""encoding\s*=\s*["']?\s*([A-Za-z0-9_.:-]{1,40})""", re.I)
_BARE_AMP = re.compile(r"&(?!(?:amp|lt|gt|apos|quot|#\d{1,7}|#x[0-9A-Fa-f]{1,6});)")
#: Characters outside XML 1.0 (C0 controls other than tab, CR, LF; lone surrogates; U+FFFE/F).
_XML_INVALID = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
_GB_LABELS = frozenset({"GB2312", "GBK", "GB18030", "CP936", "GB_2312-80", "EUC-CN", "X-GBK", "GB2312-80"})
_UTF8_LABELS = frozenset({"UTF-8", "UTF8"})
#: Two-byte UTF-8 symbols Chinese text really uses (degree, middle dot, times, plus-minus...):
#: seeing only these does not make a GB-declared body GBK.
_PLAUSIBLE_LATIN = frozenset("°·×÷±§¨´µ¶©®«»¥£¢é")

#: Charsets :func:`encode_body` accepts, by normalised name.
CHARSETS = ("GB2312", "GBK", "GB18030", "UTF-8")


def normalise_charset(charset: str) -> str:
    """``utf8``/``Utf-8`` → ``UTF-8``, ``gbk`` → ``GBK``...; ValueError for anything else."""
    label = charset.strip().upper().replace("_", "-")
    if label in ("UTF-8", "UTF8"):
        return "UTF-8"
    if label in ("GB2312", "GBK", "GB18030"):
        return label
    raise ValueError(f"unsupported MANSCDP charset {charset!r} (use one of {', '.join(CHARSETS)})")


def declared_encoding(raw: bytes) -> str | None:
    """The ``encoding=`` of the XML declaration, upper-cased, or None."""
    decl = _DECL.match(raw)
    if decl is None:
        return None
    found = _ENCODING.search(decl.group(0))
    return found.group(1).decode("ascii").upper() if found else None


def to_utf8(raw: bytes) -> bytes:
    """Bytes of a MANSCDP body → UTF-8 bytes without the declaration (the parser's input).

    The common case (ASCII or UTF-8 without a GB label, no NUL, no stray ``&``) costs one validation
    pass and no copy beyond stripping the declaration.
    """
    if raw.isascii() and b"\x00" not in raw and b"&" not in raw:
        return _DECL.sub(b"", raw.lstrip(), count=1).strip()
    return decode_body(raw).encode("utf-8")


def _strip_bom(raw: bytes) -> tuple[bytes, str | None]:
    if raw.startswith(b"\xef\xbb\xbf"):
        return raw[3:], "utf-8"
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        return raw, "utf-16"
    return raw, None


def _looks_gbk(text: str, raw: bytes) -> str | None:
    """For valid UTF-8 declared GB*: the GB18030 reading when UTF-8 gave only 2-byte characters."""
    wide = False
    suspicious = False
    for ch in text:
        if ch > "\x7f":
            if ch >= "\u0800":
                wide = True
                break
            if ch not in _PLAUSIBLE_LATIN:
                suspicious = True
    if wide or not suspicious:
        return None
    try:
        gb = raw.decode("gb18030")
    except UnicodeDecodeError:
        return None
    if any("\u4e00" <= ch <= "\u9fff" or "\u3400" <= ch <= "\u4dbf" for ch in gb):
        return gb
    return None


def decode_bytes(raw: bytes) -> str:
    """Bytes of a body → text, by the rules in this module's docstring (declaration kept)."""
    raw, bom = _strip_bom(raw)
    if bom == "utf-16":
        try:
            return raw.decode("utf-16")
        except UnicodeDecodeError:
            raw = raw[2:]
    label = declared_encoding(raw.lstrip())
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("gb18030", errors="replace")
    if bom is None and label is not None and label in _GB_LABELS and not raw.isascii():
        gb = _looks_gbk(text, raw)
        if gb is not None:
            return gb
    return text


def decode_body(raw: bytes) -> str:
    """Bytes of a MANSCDP body → text without its XML declaration, cleaned for the parser.

    NUL bytes and other characters XML 1.0 forbids are dropped (some devices pad bodies with
    NULs); a bare ``&`` (Hikvision names and addresses) becomes ``&amp;``.
    """
    text = decode_bytes(raw).lstrip("\ufeff \t\r\n")
    if text[:5].lower() == "<?xml":
        end = text.find("?>")
        if end >= 0:
            text = text[end + 2:]
    if _XML_INVALID.search(text):
        text = _XML_INVALID.sub("", text)
    if "&" in text:
        text = _BARE_AMP.sub("&amp;", text)
    return text.strip()


def clean_text(text: str) -> str:
    """Drop characters XML 1.0 cannot carry (an encoder must not emit what no parser reads)."""
    return _XML_INVALID.sub("", text) if _XML_INVALID.search(text) else text


def _within_gb2312(data: bytes) -> bool:
    """Whether every double-byte character of GBK ``data`` lies in the GB2312 area."""
    i, n = 0, len(data)
    while i < n:
        b = data[i]
        if b < 0x80:
            i += 1
            continue
        if i + 1 >= n or not (0xA1 <= b <= 0xF7 and 0xA1 <= data[i + 1] <= 0xFE):
            return False
        i += 2
    return True


def encode_body(xml_text: str, charset: str = "GB2312") -> bytes:
    """Text → bytes with a declaration that matches the bytes.

    ``charset`` is GB2312 (default), GBK, GB18030 or UTF-8. Text the chosen GB charset cannot
    hold is encoded as GB18030 and declared so (every Chinese character, and all of Unicode, fits).
    """
    label = normalise_charset(charset)
    if label == "UTF-8":
        return f'<?xml version="1.0" encoding="UTF-8"?>\r\n{xml_text}'.encode("utf-8")
    if xml_text.isascii():
        return f'<?xml version="1.0" encoding="{label}"?>\r\n{xml_text}'.encode("ascii")
    try:
        body = xml_text.encode(label.lower())
    except UnicodeEncodeError:
        body = b""
        if label == "GB2312":
            try:
                body = xml_text.encode("gbk")
            except UnicodeEncodeError:
                pass
            if body and not _within_gb2312(body):
                body = b""
        if not body:
            label = "GB18030"
            body = xml_text.encode("gb18030")
    return f'<?xml version="1.0" encoding="{label}"?>\r\n'.encode("ascii") + body
