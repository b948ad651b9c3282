"""The compiled SIP parser (``cext/_sipmsg.pyx``) agrees with the pure-Python reference.

Same class, start line, header items (canonical names and values, in order) and body for every
message one of them accepts; the same ``RemoteProtocolError`` reason and status hint for every
message the reference rejects. Inputs: every message of ``test_sip_message.py`` (collected by running
its tests against a recording parser), ``tests/data/sip/``, and random or mutated messages.
"""

from __future__ import annotations

import importlib.util
import inspect
import os
import pathlib
import subprocess
import sys

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sip28181 import _impl
from sip28181.errors import RemoteProtocolError
from sip28181.sip import message
from sip28181.sip.message import Request, Response

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parents[1]
DATA = ROOT / "tests" / "data" / "sip"
SEEDS = [p.read_bytes() for p in sorted(DATA.glob("*.sip"))]

compiled = _impl.compiled("sip28181.sip._sipmsg")
needs_compiled = pytest.mark.skipif(compiled is None, reason="sip28181.sip._sipmsg is not built")
FUZZ = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def outcome(parse, data):
    """Everything observable about one parse: the message's fields or the error."""
    try:
        msg = parse(data)
    except RemoteProtocolError as exc:
        return ("error", type(exc), exc.reason, exc.status_hint)
    except Exception as exc:    # noqa: BLE001 - the reference's own quirks must be shared too
        return ("exception", type(exc), str(exc))
    if isinstance(msg, Request):
        start = (msg.method, msg.uri)
    else:
        start = (msg.status, type(msg.status), msg.reason)
    items = msg.headers._items
    assert type(items) is list and all(type(i) is tuple and len(i) == 2 for i in items)
    assert all(type(k) is str and type(v) is str for k, v in items)
    return (type(msg), start, type(msg.headers), list(items), type(msg.body), msg.body)


def assert_same(data) -> None:
    expected = outcome(message.parse_message_py, data)
    assert expected[0] != "exception", f"only RemoteProtocolError may escape the parser: {expected}"
    assert outcome(compiled.parse_message, data) == expected, data


# ------------------------------------------------------------------------------------------------
# fixed inputs: the message tests' data and the seed files
# ------------------------------------------------------------------------------------------------
def _message_test_inputs() -> list[bytes]:
    """Every input test_sip_message.py parses: run its tests with a parser that records them."""
    spec = importlib.util.spec_from_file_location("_sip_message_cases", HERE / "test_sip_message.py")
    cases = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cases)
    seen: list[bytes] = []

    def recording(data):
        seen.append(bytes(data))
        return message.parse_message_py(data)

    cases.parse_message = recording
    for name, func in sorted(vars(cases).items()):
        if not name.startswith("test_") or not callable(func):
            continue
        marks = [m for m in getattr(func, "pytestmark", []) if m.name == "parametrize"]
        if marks:
            argnames = [a.strip() for a in marks[0].args[0].split(",")]
            params = marks[0].args[1]
            for param in params:
                args = param if len(argnames) > 1 else (param,)
                func(*args)
        elif not inspect.signature(func).parameters:
            func()
    seen.extend(cases.INVALID.values())
    seen.extend([cases.REGISTER, cases.WSINV])
    return list(dict.fromkeys(seen))


MESSAGE_TEST_INPUTS = _message_test_inputs()


def test_message_tests_provide_the_rfc4475_cases() -> None:
    assert len(MESSAGE_TEST_INPUTS) >= 60


@needs_compiled
@pytest.mark.parametrize("index", range(len(MESSAGE_TEST_INPUTS)))
def test_message_test_cases(index: int) -> None:
    data = MESSAGE_TEST_INPUTS[index]
    assert_same(data)
    assert_same(bytearray(data))
    assert_same(memoryview(data))


@needs_compiled
@pytest.mark.parametrize("seed", range(len(SEEDS)))
def test_seed_files_and_every_truncation(seed: int) -> None:
    data = SEEDS[seed]
    for end in range(len(data) + 1):
        assert_same(data[:end])


@needs_compiled
def test_objects_are_the_message_classes() -> None:
    for data in SEEDS:
        msg = compiled.parse_message(data)
        assert type(msg) in (Request, Response)
        assert type(msg.headers) is message.Headers
        assert msg.encode() == message.parse_message_py(data).encode()
        assert message.parse_message_py(msg.encode()).encode() == msg.encode()


REGISTER = (DATA / "register_auth.sip").read_bytes()
EDGE_CASES = [
    b"", b"\r\n", b"\r\n\r\n", b"\n\n", b"x\n\n", b"x\r\n\r\n", b"SIP/2.0\r\n\r\n",
    b"SIP/2.0 200\r\n\r\n", b"SIP/2.0 200 \r\n\r\n", b"SIP/2.0  200 OK\r\n\r\n", b"SIP/2.1 200 OK\r\n\r\n",
    b"SIP/2.0 099 x\r\n\r\n", b"SIP/2.0 700 x\r\n\r\n", b"SIP/2.0 2\xc2\xb200 x\r\n\r\n",
    "SIP/2.0 ²²² x\r\n\r\n".encode(), "SIP/2.0 １２３ x\r\n\r\n".encode(), b"sip/2.0 200 OK\r\n\r\n",
    b"A B C\r\n\r\n", b"A B sip/2.0\r\n\r\n", "A b \u017fIP/2.0\r\n\r\n".encode(), b"A b:c SIP/2.0 \r\n\r\n",
    b" sip:a SIP/2.0\r\n\r\n", b"A :a SIP/2.0\r\n\r\n", b"A a: SIP/2.0\r\n\r\n", b"A sip:a?b SIP/2.0\r\n\r\n",
    b"A sip:a?b@c SIP/2.0\r\n\r\n", b"A SIPS:a@c?d SIP/2.0\r\n\r\n", b"A sipx:a?b SIP/2.0\r\n\r\n",
    b"A sip:a\tb SIP/2.0\r\n\r\n", b"A sip:<a> SIP/2.0\r\n\r\n", b"A" * 65 + b" sip:a SIP/2.0\r\n\r\n",
    b"A\xc3\xa9 sip:a SIP/2.0\r\n\r\n", b"a/b sip:a SIP/2.0\r\n\r\n",
    b"\xff\r\n\r\n", b"A sip:a SIP/2.0\r\nX: \xed\xa0\x80\r\n\r\n",
    REGISTER.replace(b"CSeq: 2 REGISTER", b"CSeq: 2 register"),
    REGISTER.replace(b"CSeq: 2 REGISTER", b"CSeq: \xc2\xb2 REGISTER"),
    REGISTER.replace(b"CSeq: 2 REGISTER", "CSeq: ١ REGISTER".encode()),
    REGISTER.replace(b"CSeq: 2 REGISTER", b"CSeq: 2147483648 REGISTER"),
    REGISTER.replace(b"CSeq: 2 REGISTER", b"CSeq: 2147483647 REGISTER"),
    REGISTER.replace(b"CSeq: 2 REGISTER", b"CSeq: 02147483647 REGISTER"),
    REGISTER.replace(b"CSeq: 2 REGISTER", b"CSeq: 2\x1cREGISTER\x0b"),
    REGISTER.replace(b"CSeq: 2 REGISTER", "CSeq: 2\u3000REGISTER".encode()),
    REGISTER.replace(b"CSeq: 2 REGISTER", b"CSeq: 2 REGISTER x"),
    REGISTER.replace(b"CSeq: 2 REGISTER", b"CSeq: 2a REGISTER"),
    REGISTER.replace(b"Content-Length: 0", "Content-Length: \u00a00\u2003".encode()),
    REGISTER.replace(b"Content-Length: 0", "Content-Length: ²".encode()),
    REGISTER.replace(b"Content-Length: 0", "Content-Length: １".encode()) + b"xy",
    REGISTER.replace(b"Content-Length: 0", b"Content-Length: 000001") + b"xy",
    REGISTER.replace(b"Content-Length: 0", b"Content-Length: 0000001") + b"xy",
    REGISTER.replace(b"Content-Length: 0", b"Content-Length: 0\r\nl: 0\r\nContent-Length:0"),
    REGISTER.replace(b"Content-Length: 0", b"Content-Length: 0\r\nl: 00"),
    REGISTER.replace(b"Via:", "\u3000Via\u00a0:".encode()),
    REGISTER.replace(b"Via:", "V\u00e9a:".encode()),
    REGISTER.replace(b"Via:", b"V ia:"), REGISTER.replace(b"Via:", b"V\tia:"), REGISTER.replace(b"Via:", b":"),
    REGISTER.replace(b"Via:", b"\x1cVia\x1f:"), REGISTER.replace(b"Via:", b"Via\r:"),
    REGISTER.replace(b"Max-Forwards: 70", b"Max-Forwards: 70\r\nmax-forwards: 70"),
    REGISTER.replace(b"Max-Forwards: 70", b"Max-Forwards: 70\r\nVia: SIP/2.0/UDP b"),
    REGISTER.replace(b"Max-Forwards: 70", b"X-Odd-\xe4\xb8\xad: \xe4\xb8\xad\r\n \xe4\xb8\xad\r\n\t"),
    REGISTER.replace(b"Max-Forwards: 70\r\n", b""),
    REGISTER.replace(b"\r\nMax-Forwards: 70", b"\nMax-Forwards: 70\r"),
    REGISTER.replace(b"\r\n", b"\r\r\n"), REGISTER.replace(b"\r\n", b"\n\r"), REGISTER.replace(b"\r\n", b"\r"),
    REGISTER.replace(b"\r\n", b"\n", 3), REGISTER.replace(b"\r\n\r\n", b"\n\n"),
    REGISTER.replace(b"\r\n\r\n", b"\r\n\n") + b"\r\n\r\n", b"\n\n" + REGISTER + b"\n\n",
    REGISTER.replace(b"\r\nFrom", b"\r\n\nFrom"), REGISTER.replace(b"\r\nFrom", b"\r\n \r\nFrom"),
    REGISTER.replace(b"REGISTER sip", b"REGISTER  sip"), b" " + REGISTER, b"\t" + REGISTER,
    REGISTER.replace(b"Via: ", b" Via: "), REGISTER.split(b"\r\n", 1)[0] + b"\r\n \r\n" + REGISTER,
    REGISTER.replace(b"Call-ID: ", b"i:"), REGISTER.replace(b"Call-ID: ", b"I :"),
    REGISTER.replace(b"Max-Forwards: 70", b"\r\n".join(b"X-%d: 1" % i for i in range(127))),
    REGISTER.replace(b"Max-Forwards: 70", b"\r\n".join(b"X-%d: 1" % i for i in range(118))),
    REGISTER.replace(b"Max-Forwards: 70", b"\r\n".join(b"X-%d: 1" % i for i in range(119))),
    REGISTER.replace(b"Max-Forwards: 70", b"\r\n".join(b"X-%d: 1" % i for i in range(400))),
    b"SIP/7.0 200 OK\r\n" + b"X: 1\r\n" * 300 + b"\r\n",
    b"BAD\r\n" + b"X: 1\r\n" * 300 + b"\r\n",
    b"A sip:a SIP/2.0\r\nX: " + b"a" * 16_380 + b"\r\n\r\n", b"A sip:a SIP/2.0\r\nX: " + b"a" * 16_390 + b"\r\n\r\n",
    REGISTER + b"x" * (65_535 - len(REGISTER)), REGISTER + b"x" * (65_536 - len(REGISTER)),
]


@needs_compiled
@pytest.mark.parametrize("index", range(len(EDGE_CASES)))
def test_edge_cases(index: int) -> None:
    assert_same(EDGE_CASES[index])


@needs_compiled
def test_non_bytes_input() -> None:
    assert_same(bytearray(SEEDS[0]))
    for bad in ("text", None):
        with pytest.raises(TypeError):
            compiled.parse_message(bad)
    for other in ("text", None, 5, [65, 13, 10, 13, 10]):
        assert outcome(compiled.parse_message, other) == outcome(message.parse_message_py, other)


# ------------------------------------------------------------------------------------------------
# random and mutated messages
# ------------------------------------------------------------------------------------------------
TOKENS = [b"\r\n", b"\r\n\r\n", b"\n", b"\n\n", b"\r", b" ", b"\t", b"\r\n ", b"\r\n\t", b":", b";", b",",
          b"<", b">", b'"', b"?", b"@", b"\x00", b"\x0b", b"\x1c", b"\xff", b"\xc2\xa0", b"\xe3\x80\x80",
          b"\xc2\xb2", b"\xe4\xb8\xad", b"SIP/2.0", b"sip:", b"Via: ", b"v: ", b"CSeq: ", b"cseq:",
          b"Content-Length: ", b"l: ", b"l: 99999999", b"i: x", b"f: <sip:a@b>", b"t: <sip:a@b>",
          b"Max-Forwards: 70", b"-1", b"0", b"4294967296", b"2147483648", b"REGISTER", b"ACK"]


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 8))):
        pos = draw(st.integers(0, len(data)))
        kind = draw(st.integers(0, 3))
        if kind == 0:
            del data[pos:pos + draw(st.integers(1, 40))]
        elif kind == 1:
            data[pos:pos] = draw(st.sampled_from(TOKENS))
        elif kind == 2:
            if data:
                data[min(pos, len(data) - 1)] = draw(st.integers(0, 255))
        else:
            data[pos:pos] = data[pos:pos + draw(st.integers(1, 60))]
    return bytes(data)


NAMES = ["Via", "v", "VIA", "From", "f", "To", "t", "Call-ID", "i", "call-id", "CSeq", "cseq",
         "Content-Length", "l", "Max-Forwards", "Contact", "m", "Expires", "Content-Type", "c",
         "X-GB-Ver", "x-gb-ver", "Authorization", "Subject", "s", "X-Custom-Header", "a b", "", " Via",
         "Via ", "Via\t", "中文", "Na\u00efve", "x\u3000"]
SANE_NAMES = ["Via", "v", "Contact", "m", "Expires", "Content-Type", "c", "X-GB-Ver", "x-gb-ver", "Authorization",
              "Subject", "s", "X-Custom-Header", "Via\t", "中文", "Na\u00efve", "l", "Content-Length"]
VALUES = st.one_of(
    st.sampled_from(["SIP/2.0/UDP 1.2.3.4;branch=z9hG4bK1", "<sip:a@b>;tag=1", "<sip:a@b>", "cid@h",
                     "1 REGISTER", "1 MESSAGE", "2 register", " 3  REGISTER ", "0", "5", "00", " 7 ", "x",
                     "-1", "1234567", "", "70", "  ", "\t1\t", "\u00a01", "²", "١", "1 REGISTER extra"]),
    st.text(alphabet=st.characters(codec="utf-8", exclude_characters="\r\n"), max_size=20),
    st.text(alphabet=" \t\x0b\x0c\x1c\x1f\u00a0\u3000:;,<>\"0123456789aZ", max_size=12),
)


@st.composite
def generated(draw: st.DrawFn) -> bytes:
    """A message assembled from plausible and implausible parts (mostly plausible when ``sane``)."""
    sane = draw(st.booleans())
    method = draw(st.sampled_from(["REGISTER", "MESSAGE", "register", "INVITE", "A", "", "B@D"][:4 if sane else 7]))
    starts = [f"{method} sip:a@b SIP/2.0", "SIP/2.0 200 OK", "SIP/2.0 401 Unauthorized", "SIP/2.0 100",
              f"{method} tel:1 SIP/2.0", f"{method} sip:a@b sip/2.0", "SIP/2.0 600 x y", "SIP/2.0 99 x",
              f"{method} sips:a?b SIP/2.0", f"{method}  sip:a SIP/2.0"]
    if sane:
        start = draw(st.sampled_from(starts[:6]))
    else:
        start = draw(st.one_of(st.sampled_from(starts), st.text(max_size=30).filter(lambda s: "\n" not in s)))
    lines = [start]
    if sane or draw(st.booleans()):     # the required headers, so that messages get past the checks
        cseq = draw(st.sampled_from([method, method.lower(), "MESSAGE"][:2 if sane else 3]))
        lines += draw(st.permutations(["Via: SIP/2.0/UDP 1.2.3.4;branch=z9hG4bK1", "From: <sip:a@b>;tag=1",
                                       "To: <sip:a@b>", "Call-ID: c1", f"CSeq: 1 {cseq}"]))
    names = SANE_NAMES if sane else NAMES
    seps = [": ", ":", " : ", "\t:\t"] + ([] if sane else [" ", ""])
    for _ in range(draw(st.integers(0, 14 if not sane else 6))):
        if draw(st.integers(0, 9)) == 0:
            lines.append(draw(st.sampled_from([" ", "\t", "  "])) + draw(VALUES))      # folding
        else:
            lines.append(f"{draw(st.sampled_from(names))}{draw(st.sampled_from(seps))}{draw(VALUES)}")
    eol = draw(st.sampled_from(["\r\n", "\n", "mixed"]))
    if eol == "mixed":
        head = "".join(line + draw(st.sampled_from(["\r\n", "\n", "\r\r\n"])) for line in lines)
    else:
        head = "".join(line + eol for line in lines)
    if sane:
        end = "\n" if eol == "\n" else "\r\n"
    else:
        end = draw(st.sampled_from(["\r\n", "\n", "\r\n\r\n", ""]))
    body = draw(st.binary(max_size=30))
    return draw(st.sampled_from(["", "\r\n", "\n\n"])).encode() + (head + end).encode() + body


@needs_compiled
@FUZZ
@given(st.binary(max_size=600))
def test_random_bytes(data: bytes) -> None:
    assert_same(data)


@needs_compiled
@FUZZ
@given(mutated())
def test_mutated_messages(data: bytes) -> None:
    assert_same(data)


@needs_compiled
@FUZZ
@given(generated())
def test_generated_messages(data: bytes) -> None:
    assert_same(data)


@needs_compiled
@FUZZ
@given(st.sampled_from(SEEDS), st.integers(-5, 5), st.binary(max_size=8))
def test_content_length_mismatches(seed: bytes, delta: int, extra: bytes) -> None:
    msg = message.parse_message_py(seed)
    declared = max(len(msg.body) + delta, 0)
    head, _, _ = msg.encode().partition(b"\r\n\r\n")
    head = head.replace(f"Content-Length: {len(msg.body)}".encode(), f"Content-Length: {declared}".encode())
    assert_same(head + b"\r\n\r\n" + msg.body + extra)
    assert_same(head + b"\r\n\r\n" + msg.body[: max(len(msg.body) + delta, 0)])


# ------------------------------------------------------------------------------------------------
# which parser is chosen
# ------------------------------------------------------------------------------------------------
PROBE = (
    "import sip28181._impl as i, sip28181.sip.message as m\n"
    "print(int(i.NO_EXTENSIONS), ','.join(i.FALLBACKS) or '-', int(m.PARSER_COMPILED),"
    " m.parse_message.__module__, m.parse_message_py.__module__)\n"
)


def run_probe(**env_changes) -> list[str]:
    env = dict(os.environ)
    env.pop("SIP28181_NO_EXTENSIONS", None)
    env.update(env_changes)
    out = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True,
                         check=True, cwd=ROOT)
    return out.stdout.split()


def test_compiled_parser_is_built_and_chosen() -> None:
    assert run_probe() == ["0", "-", "1", "sip28181.sip._sipmsg", "sip28181.sip.message"]


def test_environment_forces_the_python_parser() -> None:
    assert run_probe(SIP28181_NO_EXTENSIONS="1") == ["1", "-", "0", "sip28181.sip.message",
                                                     "sip28181.sip.message"]


def test_importing_the_compiled_module_first_works() -> None:
    code = ("import sip28181.sip._sipmsg as c, sip28181.sip.message as m\n"
            "print(m.parse_message is c.parse_message, c.parse_message.__module__)")
    env = {k: v for k, v in os.environ.items() if k != "SIP28181_NO_EXTENSIONS"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=True, cwd=ROOT)
    assert out.stdout.split() == ["True", "sip28181.sip._sipmsg"]


def test_parser_source_exists() -> None:
    assert (ROOT / "cext" / "_sipmsg.pyx").exists()
