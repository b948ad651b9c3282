"""Hostile and broken MANSCDP bodies: a clear ManscdpError (400, or 413 when too large), quickly and
without touching the file system or the network; fuzzed bodies never raise anything else."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from sip28181.errors import ManscdpError
from sip28181.manscdp import messages as m
from sip28181.manscdp.codec import MAX_BODY, MAX_DEPTH

BILLION_LAUGHS = (b'<?xml version="1.0"?>\n<!DOCTYPE lolz [\n<!ENTITY lol "lol">\n'
                  + b"".join(b'<!ENTITY lol%d "%s">\n' % (i, b"".join(b"&lol%d;" % (i - 1) if i > 1 else b"&lol;"
                                                                      for _ in range(10))) for i in range(1, 10))
                  + b"]>\n<Notify><CmdType>Keepalive</CmdType><SN>1</SN><DeviceID>&lol9;</DeviceID></Notify>")
QUADRATIC_BLOWUP = (b'<?xml version="1.0"?><!DOCTYPE k [<!ENTITY a "' + b"x" * 50_000 + b'">]>'
                    b"<Notify><CmdType>Keepalive</CmdType><SN>1</SN><DeviceID>" + b"&a;" * 1000 + b"</DeviceID></Notify>")
XXE_FILE = (b'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
            b"<Notify><CmdType>Keepalive</CmdType><SN>1</SN><DeviceID>&x;</DeviceID></Notify>")
XXE_NETWORK = (b'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY x SYSTEM "http://127.0.0.1:9/x">]>'
               b"<Notify><CmdType>Keepalive</CmdType><SN>1</SN><DeviceID>&x;</DeviceID></Notify>")
XXE_PARAMETER = (b'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY % p SYSTEM "http://127.0.0.1:9/evil.dtd"> %p;]>'
                 b"<Notify><CmdType>Keepalive</CmdType><SN>1</SN></Notify>")
EXTERNAL_DTD = (b'<?xml version="1.0"?><!DOCTYPE Notify SYSTEM "http://127.0.0.1:9/gb.dtd">'
                b"<Notify><CmdType>Keepalive</CmdType><SN>1</SN></Notify>")
XINCLUDE = (b'<Notify xmlns:xi="http://www.w3.org/2001/XInclude"><CmdType>Keepalive</CmdType><SN>1</SN>'
            b'<DeviceID><xi:include href="file:///etc/passwd" parse="text"/></DeviceID></Notify>')
DEEP = b"<Notify><CmdType>Keepalive</CmdType><SN>1</SN>" + b"<a>" * 5000 + b"</a>" * 5000 + b"</Notify>"
JUST_TOO_DEEP = (b"<Notify><CmdType>Keepalive</CmdType><SN>1</SN>" + b"<a>" * MAX_DEPTH + b"x" + b"</a>" * MAX_DEPTH
                 + b"</Notify>")
HUGE = b"<Notify><CmdType>Keepalive</CmdType><SN>1</SN><DeviceID>" + b"9" * MAX_BODY + b"</DeviceID></Notify>"


@pytest.mark.parametrize("body", [BILLION_LAUGHS, QUADRATIC_BLOWUP, XXE_FILE, XXE_NETWORK, XXE_PARAMETER,
                                  EXTERNAL_DTD, DEEP, JUST_TOO_DEEP],
                         ids=["billion-laughs", "quadratic", "xxe-file", "xxe-network", "xxe-parameter",
                              "external-dtd", "deep", "just-too-deep"])
def test_hostile_bodies_get_400(body):
    with pytest.raises(ManscdpError) as info:
        m.parse(body)
    assert info.value.status_hint == 400 and info.value.reason


def test_lowercase_doctype_is_refused_too():
    with pytest.raises(ManscdpError):
        m.parse(XXE_FILE.replace(b"DOCTYPE", b"doctype").replace(b"ENTITY", b"entity"))


def test_huge_body_is_refused_before_parsing():
    with pytest.raises(ManscdpError) as info:
        m.parse(HUGE)
    assert info.value.status_hint == 413


def test_xinclude_is_not_processed():
    msg = m.parse(XINCLUDE)
    assert "root:" not in msg.device_id and all("root:" not in (x.text or "") for x in msg.extra)


def test_maximum_depth_is_accepted():
    depth = MAX_DEPTH - 2                       # root and the element holding the chain count too
    body = (b"<Notify><CmdType>Keepalive</CmdType><SN>1</SN><DeviceID>1</DeviceID>" + b"<a>" * depth + b"x"
            + b"</a>" * depth + b"</Notify>")
    msg = m.parse(body)
    node, levels = msg.extra[0], 1
    while node.children:
        node, levels = node.children[0], levels + 1
    assert levels == depth and node.text == "x"


@pytest.mark.parametrize("body, words", [
    (b"", "empty"),
    (b"\x00\x00\x00", "empty"),
    (b"   ", "empty"),
    (b"not xml at all", "no root"),
    (b"<Order><CmdType>Keepalive</CmdType></Order>", "root element"),
    (b"<Notify><SN>1</SN></Notify>", "CmdType"),
    (b"<Notify><CmdType></CmdType><SN>1</SN></Notify>", "CmdType"),
    (b"<Notify><CmdType>Keepalive</CmdType><SN>x1</SN></Notify>", "SN"),
    (b"<Notify><CmdType>Keepalive</CmdType><SN>-1</SN></Notify>", "SN"),
    (b"<Notify><CmdType>Keepalive</CmdType><SN>" + b"9" * 30 + b"</SN></Notify>", "SN"),
    (b"<Notify><CmdType>Keepalive</CmdType><SN>\xd9\xa3</SN></Notify>", "SN"),      # Arabic-Indic digit
])
def test_malformed_bodies_get_a_clear_error(body, words):
    with pytest.raises(ManscdpError) as info:
        m.parse(body)
    assert words.lower() in info.value.reason.lower() and info.value.status_hint == 400


def test_str_bodies_are_accepted():
    assert m.parse("<Notify><CmdType>Keepalive</CmdType><SN>1</SN><DeviceID>东</DeviceID></Notify>").device_id == "东"


# -- fuzzing ---------------------------------------------------------------------------------------------------

TAGS = ["CmdType", "SN", "DeviceID", "SumNum", "DeviceList", "Item", "Info", "AlarmType", "AlarmMethod",
        "Longitude", "Parental", "Alarmstatus", "RecordList", "PresetList", "ImageURL", "AlarmTypeParam",
        "EventType", "BasicParam", "DragZoomIn", "IFrameCmd", "x"]
CMDS = ["Catalog", "Keepalive", "Alarm", "RecordInfo", "DeviceStatus", "DeviceInfo", "MobilePosition",
        "DeviceControl", "DeviceConfig", "ConfigDownload", "PresetQuery", "Broadcast", "MediaStatus", "Nope"]
TEXT = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=12)


@st.composite
def elements(draw, depth=0):
    tag = draw(st.sampled_from(TAGS))
    if depth < 4 and draw(st.booleans()):
        children = "".join(draw(st.lists(elements(depth=depth + 1), max_size=4)))
    else:
        children = draw(st.sampled_from(["", "1", " 2 ", "-3", "1e9", "ON", "abc", "&", "<", "&amp;", "东"]))
    attr = draw(st.sampled_from(["", ' Num="2"', " Num='x'"]))
    return f"<{tag}{attr}>{children}</{tag}>"


@st.composite
def bodies(draw):
    root = draw(st.sampled_from(["Query", "Response", "Notify", "Control", "query"]))
    cmd = draw(st.sampled_from(CMDS))
    inner = "".join(draw(st.lists(elements(), max_size=6)))
    xml = f"<{root}><CmdType>{cmd}</CmdType><SN>{draw(st.integers(0, 10**6))}</SN>{inner}</{root}>"
    data = xml.encode(draw(st.sampled_from(["utf-8", "gb18030"])))
    cut = draw(st.integers(0, len(data)))
    return draw(st.sampled_from([data, data[:cut], data[:cut] + draw(st.binary(max_size=8)) + data[cut:]]))


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(body=bodies())
def test_fuzz_structured_bodies(body):
    try:
        msg = m.parse(body)
    except ManscdpError:
        return
    again = m.parse(bytes(msg))                 # whatever we accepted, we can write and read back
    assert type(again) is type(msg) and again.sn == msg.sn


@settings(max_examples=500, deadline=None)
@given(body=st.binary(max_size=300))
def test_fuzz_random_bytes(body):
    try:
        m.parse(body)
    except ManscdpError:
        pass


@settings(max_examples=300, deadline=None)
@given(text=TEXT)
def test_fuzz_text_values_survive_a_round_trip(text):
    msg = m.DeviceInfoResponse(sn=1, device_id="1", device_name=text)
    for charset in ("GB2312", "UTF-8", "GB18030"):
        got = m.parse(msg.encode(charset)).device_name
        expected = "".join(c for c in text if c in "\t\n\r" or (c >= " " and c not in "\ufffe\uffff")).strip()
        assert got == expected
