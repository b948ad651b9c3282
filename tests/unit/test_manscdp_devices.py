"""Bodies shaped like what real devices and platforms send (written here from the quirks reported
in public issue trackers and in PROTOCOL.md §5/§14; identifiers invented)."""

from __future__ import annotations

import pytest

from sip28181.manscdp import messages as m
from sip28181.manscdp.codec import parse_envelope


def roundtrip(msg: m.Message) -> m.Message:
    again = m.parse(bytes(msg))
    assert m.parse(bytes(again)) == again
    return again


def test_hikvision_nvr_catalog_gbk_lowercase_label_online_status_bare_ampersand_nul_padding():
    # Hikvision NVRs (DS-7716N-E4 and kin) declare lower-case gb2312, send GBK bytes, report
    # channels ONLINE/OFFLINE, put a bare '&' in addresses and pad UDP bodies with NULs.
    xml = """<?xml version="1.0" encoding="gb2312"?>\r
<Response>\r
<CmdType>Catalog</CmdType>\r
<SN>2781</SN>\r
<DeviceID>34020000001110000001</DeviceID>\r
<SumNum>2</SumNum>\r
<DeviceList Num="2">\r
<Item>\r
<DeviceID>34020000001310000001</DeviceID>\r
<Name>东门&amp;北门</Name>\r
<Manufacturer>Hikvision</Manufacturer>\r
<Model>IP Camera</Model>\r
<Owner>Owner</Owner>\r
<CivilCode>3402000000</CivilCode>\r
<Address>滨江区 A&B 路口</Address>\r
<Parental>0</Parental>\r
<ParentID>34020000001110000001</ParentID>\r
<SafetyWay>0</SafetyWay>\r
<RegisterWay>1</RegisterWay>\r
<Secrecy>0</Secrecy>\r
<Status>ONLINE</Status>\r
</Item>\r
<Item>\r
<DeviceID>34020000001310000002</DeviceID>\r
<Name>停车场</Name>\r
<Status>OFFLINE</Status>\r
</Item>\r
</DeviceList>\r
</Response>\r
"""
    body = xml.encode("gbk") + b"\x00" * 7
    msg = m.parse(body)
    a, b = msg.items
    assert (a.name, a.address, a.status, a.online) == ("东门&北门", "滨江区 A&B 路口", "ONLINE", True)
    assert (b.name, b.status, b.online) == ("停车场", "OFFLINE", False)
    assert roundtrip(msg) == msg
    assert "A&amp;B" in bytes(msg).decode("gb2312")          # we escape what we send


def test_hikvision_keepalive_with_empty_info_element():
    body = (b'<?xml version="1.0" encoding="GB2312"?>\n<Notify>\n<CmdType>Keepalive</CmdType>\n<SN>80</SN>\n'
            b"<DeviceID>34020000001320000001</DeviceID>\n<Status>OK</Status>\n<Info>\n</Info>\n</Notify>\n")
    msg = m.parse(body)
    assert isinstance(msg, m.KeepaliveNotify) and msg.status == "OK" and msg.info == m.XmlNode("Info")
    assert roundtrip(msg) == msg
    env = parse_envelope(body)
    assert (env.cmd_type, env.sn, env.text("Status")) == ("Keepalive", 80, "OK")


def test_lower_platform_stray_closing_tag_and_nul_bytes():
    # A lower platform's catalog packet with a stray </Item>, SumNum 2 but one item, NULs after the root.
    body = (b'<?xml version="1.0" encoding="GB2312"?>\n<Response>\n<CmdType>Catalog</CmdType>\n<SN>317343</SN>\n'
            b"<DeviceID>61010500002000000001</DeviceID>\n<SumNum>2</SumNum>\n<DeviceList Num=\"1\">\n<Item>\n"
            b"<DeviceID>61010500009994655540</DeviceID>\n<Name>client-7-1</Name>\n</Item>\n</Item>\n</DeviceList>\n"
            b"</Response>\n\x00\x00\x00")
    msg = m.parse(body)
    assert msg.sum_num == 2 and [i.device_id for i in msg.items] == ["61010500009994655540"]
    assert roundtrip(msg) == msg


def test_ipc_with_placeholder_fields_and_garbled_address():
    # Cameras ship with placeholder values ("CivilCode", "Owner") and some send an address of
    # undecodable bytes with '<' in it: the rest of the item must survive.
    body = (b'<?xml version="1.0" encoding="gb2312"?>\n<Response>\n<CmdType>Catalog</CmdType>\n<SN>726289</SN>\n'
            b"<DeviceID>34020000001110000001</DeviceID>\n<SumNum>1</SumNum>\n<DeviceList Num=\"1\">\n<Item>\n"
            b"<DeviceID>34020000001320000001</DeviceID>\n<Name>Camera 01</Name>\n<Manufacturer>Manufacturer</Manufacturer>\n"
            b"<Model>Camera</Model>\n<Owner>Owner</Owner>\n<CivilCode>CivilCode</CivilCode>\n"
            b"<Address>\xa8\x80<KP\xa8<K\xa8'@\xa8f/@P\xa8<KL\xa8</Address>\n<Parental>0</Parental>\n"
            b"<SafetyWay>0</SafetyWay>\n<RegisterWay>1</RegisterWay>\n<Secrecy>0</Secrecy>\n<Status>ON</Status>\n"
            b"</Item>\n</DeviceList>\n</Response>\n")
    item = m.parse(body).items[0]
    assert (item.device_id, item.civil_code, item.owner, item.parental, item.register_way, item.status) == (
        "34020000001320000001", "CivilCode", "Owner", 0, 1, "ON")
    assert roundtrip(m.parse(body)).items[0].status == "ON"


def test_camera_declaring_utf8_with_uppercase_everything():
    body = ('<?xml version="1.0" encoding="UTF-8"?>\n<Response>\n<CmdType>Catalog</CmdType>\n<SN>159643</SN>\n'
            "<DeviceID>37070000081118000002</DeviceID>\n<SumNum>1</SumNum>\n<DeviceList Num=\"1\">\n<Item>\n"
            "<DeviceID>37070000081318000001</DeviceID>\n<Name>通道一</Name>\n<Manufacturer>GBT28181</Manufacturer>\n"
            "<Status>ON</Status>\n</Item>\n</DeviceList>\n</Response>\n").encode("utf-8")
    assert m.parse(body).items[0].name == "通道一"


def test_wrong_case_lowercase_declaration_bom_and_numbers_with_spaces():
    body = ("\ufeff<?XML version='1.0' encoding='GB2312'?>\n<response>\n\t<cmdtype>Catalog</cmdtype>\n"
            "\t<sn> 17 </sn>\n\t<deviceid> 34020000001110000001 </deviceid>\n\t<sumnum> 3 </sumnum>\n"
            "\t<devicelist num='9'>\n\t\t<item><deviceid>1</deviceid><parental> 1 </parental><info>"
            "<businessgroupid>34020000002150000001</businessgroupid></info></item>\n\t</devicelist>\n</response>")
    msg = m.parse(body.encode("utf-8"))
    assert isinstance(msg, m.CatalogResponse)
    assert (msg.sn, msg.device_id, msg.sum_num, len(msg.items)) == (17, "34020000001110000001", 3, 1)
    assert msg.items[0].parental == 1 and msg.items[0].group_id == "34020000002150000001"
    assert '<DeviceList Num="1">' in msg.to_xml()           # Num follows the children, not the claim


def test_missing_sum_num_and_missing_sn():
    body = (b"<Response><CmdType>Catalog</CmdType><DeviceID>1</DeviceID><DeviceList>"
            b"<Item><DeviceID>2</DeviceID></Item><Item><Name>no id</Name></Item></DeviceList></Response>")
    msg = m.parse(body)
    assert msg.sn == 0 and msg.sum_num is None and [i.device_id for i in msg.items] == ["2", ""]
    keepalive = m.parse(b"<Notify><CmdType>Keepalive</CmdType><DeviceID>1</DeviceID><Status>OK</Status></Notify>")
    assert keepalive.sn == 0 and keepalive.status == "OK"


def test_empty_catalog_without_device_list():
    msg = m.parse(b"<Response><CmdType>Catalog</CmdType><SN>5</SN><DeviceID>1</DeviceID><SumNum>0</SumNum></Response>")
    assert msg.sum_num == 0 and msg.items == []


def test_empty_elements_are_kept_as_empty():
    msg = m.parse(b"<Response><CmdType>DeviceInfo</CmdType><SN>5</SN><DeviceID>1</DeviceID><DeviceName/>"
                  b"<Manufacturer></Manufacturer><Channel></Channel><Result>OK</Result></Response>")
    assert (msg.device_name, msg.manufacturer, msg.channel, msg.result) == ("", "", None, "OK")
    assert roundtrip(msg) == msg


def test_2022_catalog_fields_business_group_at_item_level_and_multi_parent():
    body = """<Response><CmdType>Catalog</CmdType><SN>1</SN><DeviceID>34020000002000000001</DeviceID><SumNum>1</SumNum>
<DeviceList Num="1"><Item><DeviceID>34020000001320000009</DeviceID><Name>Cam</Name><Manufacturer>X</Manufacturer>
<Model>Y</Model><CivilCode>340200</CivilCode><Parental>0</Parental>
<ParentID>34020000002160000001/34020000002160000002</ParentID><BusinessGroupID>34020000002150000001</BusinessGroupID>
<RegisterWay>4</RegisterWay><SecurityLevelCode>A</SecurityLevelCode><Secrecy>0</Secrecy><Status>ON</Status>
<Info><PTZType>1/6</PTZType><PhotoelectricImagingType>1/2</PhotoelectricImagingType><StreamNumberList>0/1/2</StreamNumberList>
<MaxViewDistance>120</MaxViewDistance><PointType>1</PointType><MAC>00-11-22-33-44-55</MAC><RecordSaveDays>90</RecordSaveDays>
</Info></Item></DeviceList></Response>"""
    item = m.parse(body.encode()).items[0]
    assert item.parent_ids == ["34020000002160000001", "34020000002160000002"]
    assert (item.group_id, item.register_way, item.security_level_code) == ("34020000002150000001", 4, "A")
    assert (item.info.ptz_type, item.info.stream_number_list, item.info.mac) == ("1/6", "0/1/2", "00-11-22-33-44-55")
    assert item.extra == [] and item.info.extra == []


def test_alarm_type_at_root_and_lowercase_info():
    # WVP forwards alarms with a lower-case <info>; some devices put AlarmType at the root.
    body = (b"<Notify><CmdType>Alarm</CmdType><SN>9</SN><DeviceID>1</DeviceID><AlarmPriority>4</AlarmPriority>"
            b"<AlarmMethod>2</AlarmMethod><AlarmTime>2024-05-20 08:12:45.123</AlarmTime><AlarmType>1</AlarmType>"
            b"<info><ImageURL>http://192.0.2.3/a.jpg</ImageURL></info></Notify>")
    msg = m.parse(body)
    assert (msg.alarm_method, msg.alarm_type, msg.alarm_time) == (2, 1, "2024-05-20 08:12:45.123")
    assert msg.image_urls == ["http://192.0.2.3/a.jpg"] and msg.extra == []
    again = roundtrip(msg)
    assert (again.alarm_type, again.image_urls) == (1, ["http://192.0.2.3/a.jpg"])
    assert "<Info>\r\n<AlarmType>1</AlarmType>" in again.to_xml()


@pytest.mark.parametrize("infos", [
    "<Info><AlarmType>100001</AlarmType><ImageURL>http://192.0.2.9/1.jpg</ImageURL></Info>",
    "<Info><AlarmType>100001</AlarmType></Info><Info><ImageURL>http://192.0.2.9/1.jpg</ImageURL></Info>",
    "<Info><AlarmType>100001</AlarmType></Info><Info><Other>x</Other></Info><Info><ImageURL>http://192.0.2.9/1.jpg</ImageURL></Info>",
])
def test_hj_image_url_in_first_or_later_info(infos):
    body = ("<Notify><CmdType>Alarm</CmdType><SN>301</SN><DeviceID>44010600531327000001</DeviceID>"
            "<AlarmPriority>2</AlarmPriority><AlarmMethod>5</AlarmMethod><AlarmTime>2024-05-20T09:30:12</AlarmTime>"
            f"{infos}</Notify>")
    msg = m.parse(body.encode())
    assert (msg.alarm_method, msg.alarm_type, msg.image_urls) == (5, 100001, ["http://192.0.2.9/1.jpg"])
    assert roundtrip(msg) == msg


def test_intrusion_event_type_and_text_parameter():
    body = (b"<Notify><CmdType>Alarm</CmdType><SN>1</SN><DeviceID>1</DeviceID><AlarmMethod>5</AlarmMethod>"
            b"<Info><AlarmType>6</AlarmType><AlarmTypeParam><EventType>2</EventType></AlarmTypeParam></Info></Notify>")
    assert m.parse(body).event_type == 2
    text = m.parse(body.replace(b"<EventType>2</EventType>", b"zone-3"))
    assert text.event_type is None and text.alarm_type_param.text == "zone-3"
    assert roundtrip(text).alarm_type_param.text == "zone-3"


def test_alarm_status_spellings():
    for tag in ("Alarmstatus", "AlarmStatus", "alarmstatus"):
        body = (f"<Response><CmdType>DeviceStatus</CmdType><SN>3</SN><DeviceID>1</DeviceID><Result>OK</Result>"
                f"<Online>ONLINE</Online><{tag} Num='1'><Item><DeviceID>2</DeviceID><DutyStatus>ALARM</DutyStatus>"
                f"</Item></{tag}></Response>")
        assert m.parse(body.encode()).alarm_status[0].duty_status == "ALARM"


def test_mobile_position_list_form_never_falls_back_to_root_coordinates():
    body = (b"<Notify><CmdType>MobilePosition</CmdType><SN>8</SN><DeviceID>1</DeviceID><Time>t</Time>"
            b"<Longitude>1</Longitude><Latitude>2</Latitude><SumNum>1</SumNum><DeviceList Num='1'><Item>"
            b"<DeviceID>2</DeviceID><CaptureTime>c</CaptureTime><Longitude>3</Longitude><Latitude>4</Latitude>"
            b"</Item></DeviceList></Notify>")
    (pos,) = m.parse(body).positions()
    assert (pos.device_id, pos.longitude, pos.latitude, pos.capture_time) == ("2", 3, 4, "c")


def test_uniview_config_download_with_another_element_name():
    # Some Uniview devices answer a ConfigType with an element named differently: kept, reachable.
    body = (b"<Response><CmdType>ConfigDownload</CmdType><SN>30</SN><DeviceID>1</DeviceID><Result>OK</Result>"
            b"<BasicParamCfg><Name>x</Name><HeartBeatInterval>30</HeartBeatInterval></BasicParamCfg></Response>")
    msg = m.parse(body)
    assert msg.basic_param is None and msg.result == "OK"
    assert msg.find_extra("BasicParamCfg").findtext("HeartBeatInterval") == "30"
    assert roundtrip(msg) == msg


def test_device_info_answer_with_2011_fields():
    body = (b"<Response><CmdType>DeviceInfo</CmdType><SN>2</SN><DeviceID>1</DeviceID><DeviceName>NVR</DeviceName>"
            b"<Result>OK</Result><DeviceType>NVR</DeviceType><Manufacturer>Dahua</Manufacturer><Model>NVR4832</Model>"
            b"<Firmware>4.001</Firmware><MaxCamera>32</MaxCamera><MaxAlarm>16</MaxAlarm><Channel>32</Channel></Response>")
    msg = m.parse(body)
    assert (msg.device_type, msg.max_camera, msg.max_alarm, msg.channel) == ("NVR", 32, 16, 32)


def test_lowercase_cmd_type_value_and_namespaced_elements():
    msg = m.parse(b'<Query xmlns="urn:x"><CmdType>catalog</CmdType><SN>3</SN><DeviceID>1</DeviceID></Query>')
    assert isinstance(msg, m.CatalogQuery) and msg.sn == 3 and msg.cmd_type == "Catalog"


def test_comments_and_processing_instructions_are_ignored():
    msg = m.parse(b"<Notify><!-- heartbeat --><CmdType>Keepalive</CmdType><?pi x?><SN>4</SN>"
                  b"<DeviceID>1</DeviceID><Status>OK</Status></Notify>")
    assert msg == m.KeepaliveNotify(sn=4, device_id="1", status="OK")
