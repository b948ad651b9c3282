"""MANSCDP envelope decoding: charsets, hostile XML, and the flat fast path agreeing with lxml."""

from __future__ import annotations

import pytest
from hypothesis import given, settings, strategies as st

from sip28181.errors import ManscdpError
from sip28181.manscdp.charset import encode_body
from sip28181.manscdp.codec import parse_envelope, parse_xml

KEEPALIVE = ('<?xml version="1.0" encoding="GB2312"?>\r\n<Notify>\r\n<CmdType>Keepalive</CmdType>\r\n'
             '<SN>43</SN>\r\n<DeviceID>44010600001320000010</DeviceID>\r\n<Status>OK</Status>\r\n</Notify>\r\n')


def test_keepalive_fields():
    env = parse_envelope(KEEPALIVE.encode())
    assert (env.kind, env.cmd_type, env.sn, env.device_id) == ("Notify", "Keepalive", 43, "44010600001320000010")
    assert env.text("status") == "OK" and env.text("Missing", "x") == "x"
    assert env.root.tag == "Notify" and env.root.findtext("Status") == "OK"   # tree built on demand


@pytest.mark.parametrize("declared, codec", [("GB2312", "gbk"), ("GB2312", "utf-8"), ("UTF-8", "gb18030"),
                                              (None, "gb2312")])
def test_charsets_whatever_the_declaration_says(declared, codec):
    xml = "<Response><CmdType>DeviceInfo</CmdType><SN>7</SN><DeviceID>1</DeviceID><DeviceName>东门摄像机</DeviceName></Response>"
    prolog = f'<?xml version="1.0" encoding="{declared}"?>\n' if declared else ""
    env = parse_envelope((prolog + xml).encode(codec))
    assert env.text("DeviceName") == "东门摄像机"


def test_nested_bodies_use_the_tree():
    body = ("<Notify><CmdType>Keepalive</CmdType><SN>1</SN><DeviceID>1</DeviceID><Status>OK</Status>"
            "<Info><DeviceID>2</DeviceID></Info></Notify>").encode()
    env = parse_envelope(body)
    assert env.cmd_type == "Keepalive" and env.root.find("Info/DeviceID").text == "2"


@pytest.mark.parametrize("body", [
    b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;">]>'
    b"<Notify><CmdType>&lol2;</CmdType></Notify>",
    b'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]><Notify><CmdType>&x;</CmdType></Notify>',
    b"<Notify><CmdType>Keepalive</CmdType>" + b"<a>" * 40 + b"</a>" * 40 + b"</Notify>",
    b"<Order><CmdType>Keepalive</CmdType></Order>",
    b"<Notify><SN>1</SN></Notify>",
    b"<Notify><CmdType>Keepalive</CmdType><SN>x1</SN></Notify>",
    b"",
    b"\xff\xfe garbage",
])
def test_hostile_or_broken_bodies_raise_manscdp_error(body):
    with pytest.raises(ManscdpError):
        parse_envelope(body)


def test_bare_ampersand_and_nul_are_repaired():
    env = parse_envelope(b"<Notify><CmdType>Alarm</CmdType><SN>2</SN><DeviceID>1</DeviceID>"
                         b"<AlarmDescription>A & B\x00</AlarmDescription></Notify>")
    assert env.text("AlarmDescription") == "A & B"


NAME = st.sampled_from(["CmdType", "SN", "DeviceID", "Status", "cmdtype", "Name", "X1"])
TEXT = st.text(alphabet=st.characters(blacklist_characters="<>&\x00", blacklist_categories=("Cs", "Cc")),
               max_size=20)


@settings(max_examples=300, deadline=None)
@given(kind=st.sampled_from(["Notify", "Query", "Response", "Control"]),
       items=st.lists(st.tuples(NAME, TEXT), max_size=6), sn=st.integers(0, 10**6))
def test_fast_path_agrees_with_the_tree(kind, items, sn):
    inner = "".join(f"<{n}>{t}</{n}>" for n, t in [("CmdType", "Keepalive"), ("SN", str(sn)), *items])
    body = encode_body(f"<{kind}>{inner}</{kind}>", "UTF-8")
    fast = parse_envelope(body)
    tree = parse_xml(body)
    assert fast.kind == tree.tag
    for name, _ in items:
        first = next(c for c in tree if c.tag.lower() == name.lower())
        assert fast.text(name) == (first.text or "").strip()
