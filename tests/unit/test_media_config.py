"""[media] options and the per-device/per-channel media transport."""

from __future__ import annotations

import pytest

from sip28181.config import Config, DeviceSettings
from sip28181.errors import ConfigError

DEVICE = "34020000001320000001"
CHANNEL = "34020000001310000002"


def test_media_defaults():
    config = Config()
    assert (config.media_port_min, config.media_port_max) == (30000, 30999)
    assert config.media_transport == "udp" and config.media_single_port is None
    assert config.media_linger == 30.0 and config.media_no_media_timeout == 15.0
    assert config.media_host is None and config.media_bind == "0.0.0.0"


def test_media_options_from_toml_env_and_flags(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('[media]\nlinger = 5\ntransport = "tcp-passive"\nsingle_port = 0\n'
                    'port_min = 40000\nport_max = 40100\n'
                    f'[devices."{DEVICE}"]\ntransport = "tcp-active"\n'
                    f'[devices."{CHANNEL}"]\ntransport = "udp"\n')
    config = Config.load(["-c", str(path), "--media-host", "192.0.2.7"],
                         {"SIP28181_MEDIA_NO_MEDIA_TIMEOUT": "3.5"})
    assert config.media_linger == 5.0 and config.media_no_media_timeout == 3.5
    assert config.media_single_port == 0 and config.media_host == "192.0.2.7"
    assert (config.media_port_min, config.media_port_max) == (40000, 40100)
    # channel setting, then device setting, then the default
    assert config.media_transport_for(DEVICE, CHANNEL) == "udp"
    assert config.media_transport_for(DEVICE, "34020000001310000009") == "tcp-active"
    assert config.media_transport_for("34020000001320000099", None) == "tcp-passive"
    assert Config.load([], {"SIP28181_MEDIA_SINGLE_PORT": ""}).media_single_port is None


@pytest.mark.parametrize("text, message", [
    ('[media]\ntransport = "tcp"\n', "media.transport"),
    ('[media]\nlinger = -1\n', "media.linger"),
    ('[media]\nno_media_timeout = 0\n', "media.no_media_timeout"),
    ('[media]\nsingle_port = 70000\n', "media.single_port"),
    ('[media]\nport_min = 31000\nport_max = 30000\n', "media_port_min"),
    ('[media]\nrtp = 1\n', "unknown key media.rtp"),
    (f'[devices."{DEVICE}"]\ntransport = "sctp"\n', "transport: must be one of"),
])
def test_bad_media_options(tmp_path, text, message):
    path = tmp_path / "c.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        Config.load(["-c", str(path)], {})


def test_device_settings_transport_in_code():
    config = Config(devices={DEVICE: DeviceSettings(transport="tcp-passive")})
    assert config.media_transport_for(DEVICE, CHANNEL) == "tcp-passive"
    with pytest.raises(ConfigError, match="transport"):
        Config(devices={DEVICE: DeviceSettings(transport="bogus")})
