# cython: language_level=3
"""SIP message parser, compiled twin of :func:`sip28181.sip.message.parse_message_py` (the reference).

Same objects (class, start line, ``Headers`` items in order with the same canonical names and
values, body) and, for every input the reference rejects, a :class:`RemoteProtocolError` with the
same reason and status hint, raised by the same checks in the same order.

The header section is scanned as bytes: CRLFs found with ``memchr``, names and values trimmed with
pointers and decoded to ``str`` once per field, canonical names read from the memo of
:func:`~sip28181.sip.headers.canonical_name`. Only plain ASCII lines that the fast path accepts are
handled in C; every other line (non-ASCII text, folding, anything malformed) goes through a verbatim
copy of the reference logic on ``str``, so Unicode whitespace, ``str.isdigit`` and the error texts
behave exactly as in Python.
"""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.dict cimport PyDict_GetItem
from cpython.object cimport PyObject
from libc.stdint cimport uint64_t
from libc.string cimport memchr, memcmp, memcpy

from sip28181.errors import RemoteProtocolError
from sip28181.sip.headers import CSeq, _NAME_CACHE, canonical_name

cdef dict _MEMO = _NAME_CACHE        # canonical_name's memo: spelling -> canonical name
cdef object _canonical_name = canonical_name

cdef extern from "Python.h":
    object PyUnicode_New(Py_ssize_t size, Py_UCS4 maxchar)
    void* PyUnicode_DATA(object o)
    bint PyUnicode_IS_ASCII(object o)
    Py_ssize_t PyUnicode_GET_LENGTH(object o)
    object PyUnicode_DecodeUTF8(const char* s, Py_ssize_t size, const char* errors)

cdef extern from *:
    """
    /* A bare instance of a Python class (its __init__ is not run), as object.__new__(cls). */
    static PyObject* sipmsg_bare_instance(PyObject* cls, PyObject* empty) {
        PyTypeObject* t = (PyTypeObject*)cls;
        return t->tp_new(t, empty, NULL);
    }
    """
    object sipmsg_bare_instance(object cls, object empty)

# Bound at the end of the module (message.py imports this module from its last lines).
cdef object _Headers, _Request, _Response
cdef Py_ssize_t _MAX_MESSAGE_SIZE, _MAX_HEADERS, _MAX_HEADER_BYTES
cdef tuple _EMPTY = ()
cdef tuple _LWS = (" ", "\t")
cdef object _BAD_URI_CHARS
cdef object _TOKEN_SET
cdef str _SIP_VERSION = "SIP/2.0"

# str.isspace() for ASCII: HT LF VT FF CR, FS GS RS US, SP (what str.strip() and str.split() remove)
cdef unsigned char _WS[256]
cdef unsigned char _TOKEN[256]      # RFC 3261 token characters (message._TOKEN)
cdef unsigned char _BAD_URI[256]    # message._BAD_URI_CHARS

# Headers checked after the loop: message._REQUIRED first (in order), then the rest of _SINGLE.
DEF N_SPECIAL = 8
cdef PyObject* _SPECIAL[N_SPECIAL]
cdef bint _SPECIAL_SINGLE[N_SPECIAL]
cdef int _N_SPECIAL = 0
cdef int _N_REQUIRED = 0
cdef int _K_CSEQ = -1
cdef int _K_LENGTH = -1
cdef tuple _SPECIAL_NAMES = ()
cdef frozenset _SPECIAL_SET = frozenset()

DEF MAX_LINES = 160     # > MAX_HEADERS + 1 (checked at bind time)


cdef inline bint _ascii_only(const unsigned char* p, Py_ssize_t n) noexcept nogil:
    cdef uint64_t acc = 0, w
    cdef Py_ssize_t i = 0
    while i + 8 <= n:
        memcpy(&w, p + i, 8)
        acc |= w
        i += 8
    while i < n:
        acc |= p[i]
        i += 1
    return (acc & 0x8080808080808080ULL) == 0


cdef inline str _ascii_str(const unsigned char* p, Py_ssize_t n):
    cdef object s = PyUnicode_New(n, 127)
    memcpy(PyUnicode_DATA(s), p, n)
    return <str>s


cdef inline str _utf8_str(const unsigned char* p, Py_ssize_t n):
    return <str>PyUnicode_DecodeUTF8(<const char*>p, n, NULL)


cdef Py_ssize_t _find_crlfcrlf(const unsigned char* p, Py_ssize_t n) noexcept nogil:
    cdef const unsigned char* q = p
    cdef const unsigned char* e = p + n
    while q < e:
        q = <const unsigned char*>memchr(q, b'\n', e - q)
        if q == NULL:
            return -1
        if q > p and (q - 1)[0] == b'\r' and e - q >= 3 and q[1] == b'\r' and q[2] == b'\n':
            return q - 1 - p
        q += 1
    return -1


cdef Py_ssize_t _find_lflf(const unsigned char* p, Py_ssize_t n) noexcept nogil:
    cdef const unsigned char* q = p
    cdef const unsigned char* e = p + n
    while q < e:
        q = <const unsigned char*>memchr(q, b'\n', e - q)
        if q == NULL:
            return -1
        if e - q >= 2 and q[1] == b'\n':
            return q - p
        q += 1
    return -1


# ------------------------------------------------------------------------------------------------
# reference logic on str (message.py), for everything the byte fast path does not accept
# ------------------------------------------------------------------------------------------------
cdef object _start_line_slow(str line):
    if line.startswith("SIP/"):
        parts = line.split(" ", 2)
        if len(parts) < 2 or parts[0] != _SIP_VERSION:
            raise RemoteProtocolError("unsupported SIP version", 505)
        code = parts[1]
        if len(code) != 3 or not (code.isascii() and code.isdigit()) or not 100 <= int(code) <= 699:
            raise RemoteProtocolError(f"bad status code {code[:10]!r}")
        return _Response(int(code), parts[2] if len(parts) > 2 else "")
    parts = line.split(" ")
    if len(parts) != 3:
        raise RemoteProtocolError(f"malformed request line {line[:80]!r}")
    method, uri, version = parts
    if version.upper() != _SIP_VERSION:
        raise RemoteProtocolError(f"unsupported version {version[:20]!r}", 505)
    if not method or len(method) > 64 or not _TOKEN_SET.issuperset(method):
        raise RemoteProtocolError(f"bad method {method[:32]!r}")
    scheme, colon, rest = uri.partition(":")
    if not colon or not scheme or not _BAD_URI_CHARS.isdisjoint(uri):
        raise RemoteProtocolError(f"bad Request-URI {uri[:80]!r}")
    if scheme.lower() in ("sip", "sips") and "?" in rest.rpartition("@")[2]:
        raise RemoteProtocolError("headers are not allowed in a Request-URI")
    return _Request(method.upper(), uri)


cdef object _header_line_slow(list items, str line):
    """Add one header line to ``items``; return its canonical name (None for a continuation)."""
    if line[:1] in _LWS:
        if not items:
            raise RemoteProtocolError("continuation line before any header")
        last = len(items) - 1       # (the module is compiled without wraparound)
        name, value = items[last]
        items[last] = (name, f"{value} {line.strip()}")
        return None
    name, colon, value = line.partition(":")
    name = name.strip()
    if not colon or not name or " " in name:
        raise RemoteProtocolError(f"malformed header line {line[:60]!r}")
    name = canonical_name(name)
    items.append((name, value.strip()))
    return name


cdef Py_ssize_t _content_length_slow(str length) except -1:
    length = length.strip()
    if not (length.isascii() and length.isdigit()) or len(length) > 6:
        raise RemoteProtocolError(f"bad Content-Length {length[:20]!r}")
    return int(length)


# ------------------------------------------------------------------------------------------------
# byte fast paths
# ------------------------------------------------------------------------------------------------
cdef object _start_line(const unsigned char* l, Py_ssize_t n):
    """Request or Response from an ASCII start line; the reference decides anything unusual."""
    cdef const unsigned char* sp1
    cdef const unsigned char* sp2
    cdef const unsigned char* e = l + n
    cdef const unsigned char* q
    cdef const unsigned char* at
    cdef Py_ssize_t i, mlen
    cdef int code
    cdef object msg, method
    cdef unsigned char* out
    if n <= 0:      # (never: the first line is not empty)
        return _start_line_slow("")
    if n >= 4 and memcmp(l, b"SIP/", 4) == 0:
        sp1 = <const unsigned char*>memchr(l, b' ', n)
        if sp1 != NULL and sp1 - l == 7 and memcmp(l, b"SIP/2.0", 7) == 0:
            q = sp1 + 1
            sp2 = <const unsigned char*>memchr(q, b' ', e - q)
            if sp2 == NULL:
                sp2 = e
            if (sp2 - q == 3 and b'0' <= q[0] <= b'9' and b'0' <= q[1] <= b'9'
                    and b'0' <= q[2] <= b'9'):
                code = (q[0] - 48) * 100 + (q[1] - 48) * 10 + (q[2] - 48)
                if 100 <= code <= 699:
                    msg = sipmsg_bare_instance(_Response, _EMPTY)
                    msg.status = code
                    msg.reason = _ascii_str(sp2 + 1, e - sp2 - 1) if sp2 < e else ""
                    return msg
        return _start_line_slow(_ascii_str(l, n))
    sp1 = <const unsigned char*>memchr(l, b' ', n)
    if sp1 != NULL:
        q = sp1 + 1
        sp2 = <const unsigned char*>memchr(q, b' ', e - q)
        if sp2 != NULL and memchr(sp2 + 1, b' ', e - sp2 - 1) == NULL and e - sp2 - 1 == 7:
            q = sp2 + 1     # version, compared as version.upper() == "SIP/2.0"
            if ((q[0] | 0x20) == b's' and (q[1] | 0x20) == b'i' and (q[2] | 0x20) == b'p'
                    and memcmp(q + 3, b"/2.0", 4) == 0):
                mlen = sp1 - l
                if 0 < mlen <= 64:
                    for i in range(mlen):
                        if not _TOKEN[l[i]]:
                            break
                    else:
                        if _uri_ok(sp1 + 1, sp2):
                            method = PyUnicode_New(mlen, 127)
                            out = <unsigned char*>PyUnicode_DATA(method)
                            for i in range(mlen):
                                out[i] = l[i] - 32 if b'a' <= l[i] <= b'z' else l[i]
                            msg = sipmsg_bare_instance(_Request, _EMPTY)
                            msg.method = method
                            msg.uri = _ascii_str(sp1 + 1, sp2 - sp1 - 1)
                            return msg
    return _start_line_slow(_ascii_str(l, n))


cdef bint _uri_ok(const unsigned char* u, const unsigned char* e) noexcept:
    cdef const unsigned char* q
    cdef const unsigned char* colon = <const unsigned char*>memchr(u, b':', e - u)
    if colon == NULL or colon == u:
        return False
    q = u
    while q < e:
        if _BAD_URI[q[0]]:
            return False
        q += 1
    cdef Py_ssize_t slen = colon - u
    cdef bint sip = ((slen == 3 or (slen == 4 and (u[3] | 0x20) == b's'))
                     and (u[0] | 0x20) == b's' and (u[1] | 0x20) == b'i' and (u[2] | 0x20) == b'p')
    if sip:
        q = e     # the part after the last '@' of what follows the scheme may not hold '?'
        while q > colon + 1 and (q - 1)[0] != b'@':
            q -= 1
        if memchr(q, b'?', e - q) != NULL:
            return False
    return True


cdef inline int _special(object name):
    cdef int j
    cdef PyObject* o = <PyObject*>name
    for j in range(_N_SPECIAL):
        if o == _SPECIAL[j]:
            return j
    if name in _SPECIAL_SET:        # equal but not the memo's object (never in practice)
        return _SPECIAL_NAMES.index(name)
    return -1


def parse_message(data):
    """Parse one complete message (a UDP datagram or a framed TCP message)."""
    if type(data) is not bytes:
        data = bytes(data)
    cdef const unsigned char* p = <const unsigned char*>PyBytes_AS_STRING(data)
    cdef Py_ssize_t n = PyBytes_GET_SIZE(data)
    if n > _MAX_MESSAGE_SIZE:
        raise RemoteProtocolError("message too large", 413)
    while n and (p[0] == b'\r' or p[0] == b'\n'):    # leading CRLFs are keepalive noise
        p += 1
        n -= 1
    cdef Py_ssize_t end = _find_crlfcrlf(p, n)
    cdef Py_ssize_t sep_len = 4
    if end < 0:
        end = _find_lflf(p, n)      # bare-LF senders; be lenient
        sep_len = 2
        if end < 0:
            raise RemoteProtocolError("incomplete header section")
    if end > _MAX_HEADER_BYTES:
        raise RemoteProtocolError("header section too large", 413)
    cdef bint ascii = _ascii_only(p, end)
    if not ascii:
        try:
            PyUnicode_DecodeUTF8(<const char*>p, end, NULL)
        except UnicodeDecodeError:
            raise RemoteProtocolError("header section is not UTF-8") from None

    # line spans: split at LF, one CR before each LF dropped; leading empty lines skipped
    cdef Py_ssize_t starts[MAX_LINES]
    cdef Py_ssize_t ends[MAX_LINES]
    cdef Py_ssize_t nlines = 0, pos = 0, stop
    cdef const unsigned char* nl
    while True:
        nl = <const unsigned char*>memchr(p + pos, b'\n', end - pos)
        if nl == NULL:
            stop = end
        else:
            stop = nl - p
            if stop > pos and p[stop - 1] == b'\r':
                stop -= 1
        if nlines or stop > pos:
            if nlines < MAX_LINES:
                starts[nlines] = pos
                ends[nlines] = stop
            nlines += 1
        if nl == NULL:
            break
        pos = nl - p + 1
    if not nlines:
        raise RemoteProtocolError("empty message")

    cdef const unsigned char* l = p + starts[0]
    cdef Py_ssize_t ln = ends[0] - starts[0]
    if ascii or _ascii_only(l, ln):
        msg = _start_line(l, ln)
    else:
        msg = _start_line_slow(_utf8_str(l, ln))
    if nlines > _MAX_HEADERS + 1:
        raise RemoteProtocolError("too many headers", 413)

    cdef list items = []
    cdef int kinds[MAX_LINES]
    cdef Py_ssize_t nitems = 0, i, ns, ne, vs, ve
    cdef const unsigned char* colon
    cdef object name, canon, value
    cdef PyObject* cached
    for i in range(1, nlines):
        l = p + starts[i]
        ln = ends[i] - starts[i]
        if ascii or _ascii_only(l, ln):
            if ln and l[0] != b' ' and l[0] != b'\t':
                colon = <const unsigned char*>memchr(l, b':', ln)
                if colon != NULL:
                    ns = 0
                    ne = colon - l
                    while ns < ne and _WS[l[ns]]:
                        ns += 1
                    while ne > ns and _WS[l[ne - 1]]:
                        ne -= 1
                    if ne > ns and memchr(l + ns, b' ', ne - ns) == NULL:
                        vs = colon - l + 1
                        ve = ln
                        while vs < ve and _WS[l[vs]]:
                            vs += 1
                        while ve > vs and _WS[l[ve - 1]]:
                            ve -= 1
                        name = _ascii_str(l + ns, ne - ns)
                        cached = PyDict_GetItem(_MEMO, name)
                        canon = <object>cached if cached != NULL else _canonical_name(name)
                        value = _ascii_str(l + vs, ve - vs)
                        items.append((canon, value))
                        kinds[nitems] = _special(canon)
                        nitems += 1
                        continue
            canon = _header_line_slow(items, _ascii_str(l, ln))
        else:
            canon = _header_line_slow(items, _utf8_str(l, ln))
        if canon is not None:
            kinds[nitems] = _special(canon)
            nitems += 1

    headers = sipmsg_bare_instance(_Headers, _EMPTY)
    headers._items = items
    msg.headers = headers

    # one of each single-valued header (equal Content-Lengths tolerated), the required ones present
    cdef Py_ssize_t first[N_SPECIAL]
    cdef int k
    for k in range(_N_SPECIAL):
        first[k] = -1
    for i in range(nitems):
        k = kinds[i]
        if k < 0:
            continue
        if first[k] < 0:
            first[k] = i
        elif _SPECIAL_SINGLE[k]:
            if not (k == _K_LENGTH and (<tuple>items[i])[1] == (<tuple>items[first[k]])[1]):
                raise RemoteProtocolError(f"more than one {_SPECIAL_NAMES[k]}")
    for k in range(_N_REQUIRED):
        if first[k] < 0:
            raise RemoteProtocolError(f"missing {_SPECIAL_NAMES[k]}")

    _check_cseq(msg, (<tuple>items[first[_K_CSEQ]])[1])

    cdef Py_ssize_t body_len = n - end - sep_len
    cdef Py_ssize_t length
    if first[_K_LENGTH] >= 0:
        value = (<tuple>items[first[_K_LENGTH]])[1]
        length = _content_length(value)
        if length < 0:
            length = _content_length_slow(value)
        if length > body_len:
            raise RemoteProtocolError("body shorter than Content-Length")
        body_len = length      # RFC 3261 §18.3: extra datagram bytes are discarded
    msg.body = PyBytes_FromStringAndSize(<const char*>p + end + sep_len, body_len)
    return msg


cdef Py_ssize_t _content_length(str value) noexcept:
    """Digits of an ASCII value (1 to 6 of them after trimming), or -1 to let the reference decide."""
    if not PyUnicode_IS_ASCII(value):
        return -1
    cdef const unsigned char* c = <const unsigned char*>PyUnicode_DATA(value)
    cdef Py_ssize_t s = 0, e = PyUnicode_GET_LENGTH(value), n = 0
    while s < e and _WS[c[s]]:
        s += 1
    while e > s and _WS[c[e - 1]]:
        e -= 1
    if e == s or e - s > 6:
        return -1
    while s < e:
        if not b'0' <= c[s] <= b'9':
            return -1
        n = n * 10 + (c[s] - 48)
        s += 1
    return n


cdef int _check_cseq(object msg, str value) except -1:
    """CSeq.parse(value), then the method must match a request's."""
    cdef const unsigned char* c
    cdef const unsigned char* m
    cdef Py_ssize_t s, e, ds, de, ms, me, i
    cdef long long number = 0
    cdef bint is_request = type(msg) is _Request or isinstance(msg, _Request)
    if PyUnicode_IS_ASCII(value):
        c = <const unsigned char*>PyUnicode_DATA(value)
        e = PyUnicode_GET_LENGTH(value)
        s = 0
        while s < e and _WS[c[s]]:
            s += 1
        ds = s
        while s < e and b'0' <= c[s] <= b'9':
            number = number * 10 + (c[s] - 48)
            s += 1
        de = s
        if 0 < de - ds <= 10 and s < e and _WS[c[s]] and number < 2147483648:
            while s < e and _WS[c[s]]:
                s += 1
            ms = s
            while s < e and not _WS[c[s]]:
                s += 1
            me = s
            while s < e and _WS[c[s]]:
                s += 1
            if s == e and me > ms:
                if not is_request:
                    return 0
                method = msg.method
                if PyUnicode_IS_ASCII(method) and PyUnicode_GET_LENGTH(method) == me - ms:
                    m = <const unsigned char*>PyUnicode_DATA(method)
                    for i in range(me - ms):
                        if (c[ms + i] - 32 if b'a' <= c[ms + i] <= b'z' else c[ms + i]) != m[i]:
                            break
                    else:
                        return 0
                raise RemoteProtocolError("CSeq method does not match the request method")
    cseq = CSeq.parse(value)
    if is_request and cseq.method != msg.method:
        raise RemoteProtocolError("CSeq method does not match the request method")
    return 0


def _bind():
    """Take the classes and limits of ``sip28181.sip.message`` (called once, below)."""
    global _Headers, _Request, _Response, _MAX_MESSAGE_SIZE, _MAX_HEADERS, _MAX_HEADER_BYTES
    global _BAD_URI_CHARS, _TOKEN_SET, _N_SPECIAL, _N_REQUIRED, _K_CSEQ, _K_LENGTH
    global _SPECIAL_NAMES, _SPECIAL_SET, _SIP_VERSION
    from sip28181.sip import message as m
    _Headers, _Request, _Response = m.Headers, m.Request, m.Response
    _MAX_MESSAGE_SIZE, _MAX_HEADERS, _MAX_HEADER_BYTES = m.MAX_MESSAGE_SIZE, m.MAX_HEADERS, m.MAX_HEADER_BYTES
    if _MAX_HEADERS + 1 >= MAX_LINES:
        raise ImportError("sip28181.sip._sipmsg: MAX_HEADERS exceeds the compiled line table")
    _SIP_VERSION = m.SIP_VERSION
    if _SIP_VERSION != "SIP/2.0" or tuple(m._LWS) != _LWS:
        raise ImportError("sip28181.sip._sipmsg: start-line rules changed; rebuild the parser")
    _BAD_URI_CHARS = m._BAD_URI_CHARS
    _TOKEN_SET = m._TOKEN
    cdef int c
    for c in range(256):
        _WS[c] = chr(c).isspace() and c < 128
        _TOKEN[c] = chr(c) in _TOKEN_SET
        _BAD_URI[c] = chr(c) in _BAD_URI_CHARS
    names = tuple(m._REQUIRED) + tuple(sorted(set(m._SINGLE) - set(m._REQUIRED)))
    if len(names) > N_SPECIAL or "CSeq" not in m._REQUIRED or "Content-Length" not in names:
        raise ImportError("sip28181.sip._sipmsg: header rules changed; rebuild the parser")
    if any(canonical_name(k) != k for k in names):
        raise ImportError("sip28181.sip._sipmsg: header rules changed; rebuild the parser")
    _SPECIAL_NAMES = tuple(canonical_name(k) for k in names)     # the memo's own objects
    _SPECIAL_SET = frozenset(_SPECIAL_NAMES)
    _N_SPECIAL = len(names)
    _N_REQUIRED = len(m._REQUIRED)
    for c in range(_N_SPECIAL):
        _SPECIAL[c] = <PyObject*>_SPECIAL_NAMES[c]
        _SPECIAL_SINGLE[c] = names[c] in m._SINGLE
    _K_CSEQ = names.index("CSeq")
    _K_LENGTH = names.index("Content-Length")


_bind()
