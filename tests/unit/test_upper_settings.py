"""Settings of an upper platform: what parse_upper accepts, normalises and refuses (naming the key)."""

from __future__ import annotations

import pytest

from sip28181.cascade.settings import UpperSettings, parse_upper
from sip28181.config import Config
from sip28181.errors import ConfigError

PROVINCE = "44000000002000000001"
CAM = "34020000001320000001"


def test_defaults_and_normalising():
    s = parse_upper({"sip_id": PROVINCE, "host": "127.0.0.1"})
    assert (s.domain, s.port, s.transport, s.share, s.ids, s.tree, s.charset) == \
        ("4400000000", 5060, "udp", "all", "keep", "2016", "GB2312")
    assert (s.register_interval, s.keepalive_interval, s.retry_interval, s.retry_max) == (3600, 60, 60.0, 600.0)
    s = parse_upper({"sip_id": PROVINCE, "host": "h", "transport": "TCP", "charset": "gb18030",
                     "tree": 2022, "share": [CAM, CAM], "retry_interval": 1, "password": "zz-secret-zz"})
    assert (s.transport, s.charset, s.tree, s.share, s.retry_interval) == ("tcp", "GB18030", "2022", (CAM,), 1.0)
    assert "zz-secret-zz" not in repr(s)                                # the password stays out of logs


def test_round_trip_through_to_dict():
    s = parse_upper({"sip_id": PROVINCE, "host": "h", "password": "secret", "share": [CAM],
                     "ids": "map", "id_map": {CAM: "44000000001320000001"}})
    d = s.to_dict()
    assert d["password"] == "secret" and d["share"] == [CAM] and isinstance(d["id_map"], dict)
    assert parse_upper(d) == s and parse_upper(s) == s


@pytest.mark.parametrize("raw, key", [
    ({"host": "h"}, "sip_id"),
    ({"sip_id": PROVINCE}, "host"),
    ({"sip_id": "4400", "host": "h"}, "sip_id"),
    ({"sip_id": PROVINCE, "host": ""}, "host"),
    ({"sip_id": PROVINCE, "host": "h", "port": 0}, "port"),
    ({"sip_id": PROVINCE, "host": "h", "port": "5060"}, "port"),
    ({"sip_id": PROVINCE, "host": "h", "transport": "sctp"}, "transport"),
    ({"sip_id": PROVINCE, "host": "h", "enabled": "yes"}, "enabled"),
    ({"sip_id": PROVINCE, "host": "h", "register_interval": 10}, "register_interval"),
    ({"sip_id": PROVINCE, "host": "h", "keepalive_timeout_count": 0}, "keepalive_timeout_count"),
    ({"sip_id": PROVINCE, "host": "h", "retry_interval": 0}, "retry_interval"),
    ({"sip_id": PROVINCE, "host": "h", "retry_interval": 5, "retry_max": 1}, "retry_max"),
    ({"sip_id": PROVINCE, "host": "h", "share": "some"}, "share"),
    ({"sip_id": PROVINCE, "host": "h", "share": ["1"]}, "share"),
    ({"sip_id": PROVINCE, "host": "h", "ids": "map"}, "ids"),
    ({"sip_id": PROVINCE, "host": "h", "id_prefix": "44x"}, "id_prefix"),
    ({"sip_id": PROVINCE, "host": "h", "id_map": {CAM: "1"}}, "id_map"),
    ({"sip_id": PROVINCE, "host": "h", "id_map": {CAM: PROVINCE, "34020000001320000002": PROVINCE}}, "id_map"),
    ({"sip_id": PROVINCE, "host": "h", "tree": "2011"}, "tree"),
    ({"sip_id": PROVINCE, "host": "h", "civil_code": "4401x"}, "civil_code"),
    ({"sip_id": PROVINCE, "host": "h", "domain": "44 00"}, "domain"),
    ({"sip_id": PROVINCE, "host": "h", "local_id": "1"}, "local_id"),
    ({"sip_id": PROVINCE, "host": "h", "colour": "red"}, "colour"),
])
def test_bad_values_name_their_key(raw, key):
    with pytest.raises(ConfigError) as info:
        parse_upper(raw, "upper[0]")
    assert key in str(info.value) and str(info.value).startswith("upper[0]")


def test_config_takes_several_uppers_and_refuses_duplicates():
    config = Config(upper=({"sip_id": PROVINCE, "host": "a"}, {"sip_id": "10000000002000000001", "host": "b"}))
    assert [u.sip_id for u in config.upper] == [PROVINCE, "10000000002000000001"]
    assert all(isinstance(u, UpperSettings) for u in config.upper)
    with pytest.raises(ConfigError, match="twice"):
        Config(upper=({"sip_id": PROVINCE, "host": "a"}, {"sip_id": PROVINCE, "host": "b"}))
    with pytest.raises(ConfigError, match=r"upper\[1\]: port"):
        Config(upper=({"sip_id": PROVINCE, "host": "a"}, {"sip_id": "10000000002000000001", "host": "b", "port": -1}))
