"""Character sets: what the body says, what the bytes are, and what we send (PROTOCOL §2.1)."""

from __future__ import annotations

import pytest

from sip28181.manscdp import messages as m
from sip28181.manscdp.charset import decode_body, declared_encoding, encode_body, normalise_charset

NAME = "东门停车场出入口"


def info_body(declared: str | None, codec: str, name: str = NAME) -> bytes:
    prolog = f'<?xml version="1.0" encoding="{declared}"?>\r\n' if declared else ""
    xml = (f"<Response><CmdType>DeviceInfo</CmdType><SN>7</SN><DeviceID>34020000001110000001</DeviceID>"
           f"<DeviceName>{name}</DeviceName><Result>OK</Result></Response>")
    return (prolog + xml).encode(codec)


@pytest.mark.parametrize("declared, codec", [
    ("GB2312", "gb2312"),        # as the standard says
    ("gb2312", "gbk"),           # GBK bytes declared GB2312 (Hikvision, Dahua)
    ("GB2312", "utf-8"),         # UTF-8 mislabelled as GB2312 (software platforms, simulators)
    ("GBK", "gbk"),
    ("GB18030", "gb18030"),      # 2022
    ("UTF-8", "utf-8"),
    ("UTF-8", "gbk"),            # GBK mislabelled as UTF-8
    (None, "gbk"),               # no declaration at all
    (None, "utf-8"),
])
def test_decoding_whatever_the_label(declared, codec):
    assert m.parse(info_body(declared, codec)).device_name == NAME


def test_rare_characters_need_gbk_or_gb18030():
    name = "堃镕𠀀"                                  # 堃 and 镕 are GBK, not GB2312; 𠀀 is GB18030 four-byte
    assert m.parse(info_body("GB2312", "gb18030", name)).device_name == name
    assert m.parse(info_body("GB18030", "gb18030", name)).device_name == name
    assert m.parse(info_body("GB2312", "gbk", "堃镕")).device_name == "堃镕"


@pytest.mark.parametrize("name", ["模", "停", "模具", "°C·东"])
def test_short_gbk_names_that_happen_to_be_valid_utf8(name):
    # GBK 模 = C4 A3 reads as UTF-8 'ģ': declared GB2312, the GB18030 reading wins.
    assert m.parse(info_body("GB2312", "gbk", name)).device_name == name
    # and valid UTF-8 with a GB label stays UTF-8 when it carries Chinese
    assert m.parse(info_body("GB2312", "utf-8", name)).device_name == name


def test_latin_text_declared_utf8_is_not_reinterpreted():
    assert m.parse(info_body("UTF-8", "utf-8", "Café ģ")).device_name == "Café ģ"


def test_utf8_bom_and_utf16():
    body = b"\xef\xbb\xbf" + info_body("GB2312", "utf-8")
    assert m.parse(body).device_name == NAME
    assert m.parse(info_body("UTF-16", "utf-16")).device_name == NAME


def test_declared_encoding_reader():
    assert declared_encoding(b"<?xml version='1.0' encoding='gb2312'?><a/>") == "GB2312"
    assert declared_encoding(b'<?xml version="1.0"?><a/>') is None
    assert declared_encoding(b"<a/>") is None


@pytest.mark.parametrize("charset, label, codec", [
    ("GB2312", "GB2312", "gb2312"), ("gb2312", "GB2312", "gb2312"), ("UTF-8", "UTF-8", "utf-8"),
    ("utf8", "UTF-8", "utf-8"), ("GB18030", "GB18030", "gb18030"), ("GBK", "GBK", "gbk"),
])
def test_encoding_labels_match_bytes(charset, label, codec):
    msg = m.DeviceInfoResponse(sn=1, device_id="1", device_name=NAME, result="OK")
    data = msg.encode(charset)
    assert data.startswith(f'<?xml version="1.0" encoding="{label}"?>'.encode())
    assert NAME in data.decode(codec)
    assert m.parse(data) == msg


def test_default_is_gb2312():
    msg = m.DeviceInfoResponse(sn=1, device_id="1", device_name=NAME)
    assert bytes(msg) == msg.encode("GB2312") and b'encoding="GB2312"' in bytes(msg)
    assert NAME in bytes(msg).split(b"?>", 1)[1].decode("gb2312")


@pytest.mark.parametrize("name, label", [
    ("东门·北", "GB2312"),          # middle dot: GB2312 A1A4 (Python's gb2312 codec maps it elsewhere)
    ("东门—北", "GB2312"),          # em dash: A1AA
    ("堃", "GB18030"),              # outside GB2312: sent as GB18030 and declared so
    ("镕基", "GB18030"),
    ("camera 😀", "GB18030"),
])
def test_text_gb2312_cannot_hold_does_not_crash_the_encoder(name, label):
    msg = m.DeviceInfoResponse(sn=1, device_id="1", device_name=name)
    data = bytes(msg)
    assert data.startswith(f'<?xml version="1.0" encoding="{label}"?>'.encode())
    assert data.split(b"?>", 1)[1].decode(label.lower() if label != "GB2312" else "gbk").count(name) == 1
    assert m.parse(data).device_name == name


def test_control_characters_are_not_sent():
    msg = m.DeviceInfoResponse(sn=1, device_id="1", device_name="a\x01b\x00c")
    assert m.parse(bytes(msg)).device_name == "abc"


def test_encode_body_rejects_unknown_charsets():
    with pytest.raises(ValueError):
        encode_body("<a/>", "latin-1")
    with pytest.raises(ValueError):
        normalise_charset("big5")


def test_decode_body_strips_declaration_nuls_and_repairs_ampersands():
    text = decode_body(b'  <?xml version="1.0" encoding="GB2312"?>\r\n<a>x & y &amp; z\x00</a>\x00\x00')
    assert text == "<a>x &amp; y &amp; z</a>"
