"""Config: defaults < TOML < SIP28181_* environment < flags, validation and error messages."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from sip28181.config import OPTIONS, Config, DeviceSettings, build_arg_parser
from sip28181.errors import ConfigError

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "sip28181.toml"


@pytest.fixture
def toml_file(tmp_path):
    def write(text: str) -> Path:
        path = tmp_path / "sip28181.toml"
        path.write_text(text, encoding="utf-8")
        return path
    return write


def test_defaults():
    config = Config.load([], {})
    assert config == Config()
    assert config.sip_id == "34020000002000000001"
    assert config.domain == "3402000000"
    assert (config.sip_host, config.sip_port) == ("0.0.0.0", 5060)
    assert config.sip_transports == ("udp", "tcp")
    assert config.external_host is None
    assert config.password == "12345678"
    assert config.devices == {}
    assert (config.http_host, config.http_port) == ("0.0.0.0", 8080)
    assert config.data_dir == Path("./data")
    assert config.db_path == Path("data") / "sip28181.sqlite3"
    assert config.api_token is None
    assert config.log_level == "INFO"
    assert config.profile == "default"
    assert (config.keepalive_interval, config.keepalive_count) == (60, 3)
    assert config.keepalive_timeout == 180
    assert (config.register_expires_min, config.register_expires_max,
            config.register_expires_default) == (60, 86400, 3600)
    assert (config.nonce_lifetime, config.auth_qop, config.date_header) == (300, True, True)
    assert (config.auth_max_failures, config.auth_failure_window,
            config.auth_block_seconds) == (5, 60, 300)
    assert (config.store, config.store_flush_interval) == ("sqlite", 5.0)
    assert config.upper == ()
    assert config.config_file is None


def test_secrets_not_in_repr():
    config = Config(password="s3cret-pw", api_token="tok-123",
                    devices={"34020000001320000001": {"password": "dev-pw"}})
    text = repr(config)
    assert "s3cret-pw" not in text and "tok-123" not in text and "dev-pw" not in text


TOML = """
profile = "default"
data_dir = "/var/lib/sip28181"

[sip]
id = "44010000002000000001"
port = 5070
transports = ["UDP"]

[register]
expires_default = 1800
date_header = false

[auth]
password = "toml-pw"
qop = false

[keepalive]
interval = 30
count = 4

[http]
port = 9000

[store]
backend = "memory"
flush_interval = 2.5

[log]
level = "debug"
"""


def test_toml_overrides_defaults(toml_file):
    config = Config.load(["--config", str(toml_file(TOML))], {})
    assert config.sip_id == "44010000002000000001"
    assert config.domain == "4401000000"            # follows the ID when not given
    assert config.sip_port == 5070
    assert config.sip_transports == ("udp",)
    assert config.register_expires_default == 1800
    assert config.date_header is False
    assert config.password == "toml-pw"
    assert config.auth_qop is False
    assert (config.keepalive_interval, config.keepalive_count) == (30, 4)
    assert config.keepalive_timeout == 120
    assert config.http_port == 9000
    assert config.http_host == "0.0.0.0"            # untouched keys keep their defaults
    assert config.store == "memory"
    assert config.store_flush_interval == 2.5
    assert config.log_level == "DEBUG"
    assert config.data_dir == Path("/var/lib/sip28181")
    assert config.db_path == Path("/var/lib/sip28181/sip28181.sqlite3")
    assert config.config_file == toml_file(TOML)


def test_config_file_from_environment(toml_file):
    path = toml_file(TOML)
    config = Config.load([], {"SIP28181_CONFIG": str(path)})
    assert config.sip_port == 5070
    # --config wins over SIP28181_CONFIG
    other = path.with_name("other.toml")
    other.write_text("[sip]\nport = 5080\n")
    config = Config.load(["-c", str(other)], {"SIP28181_CONFIG": str(path)})
    assert config.sip_port == 5080


def test_environment_overrides_toml(toml_file):
    env = {
        "SIP28181_CONFIG": str(toml_file(TOML)),
        "SIP28181_SIP_PORT": "5090",
        "SIP28181_PASSWORD": "env-pw",
        "SIP28181_KEEPALIVE_INTERVAL": "45",
        "SIP28181_AUTH_QOP": "yes",
        "SIP28181_DATE_HEADER": "1",
        "SIP28181_STORE": "sqlite",
        "SIP28181_STORE_FLUSH_INTERVAL": "0.5",
        "SIP28181_LOG_LEVEL": "warning",
        "SIP28181_DATA_DIR": "/srv/gb",
        "SIP28181_API_TOKEN": "env-token",
        "SIP28181_REGISTER_EXPIRES_MIN": "120",
        "UNRELATED": "x",
        "SIP28181_NO_EXTENSIONS": "1",              # other SIP28181_* variables are not ours
    }
    config = Config.load([], env)
    assert config.sip_port == 5090
    assert config.password == "env-pw"
    assert config.keepalive_interval == 45
    assert config.keepalive_count == 4                # from TOML
    assert config.auth_qop is True
    assert config.date_header is True
    assert config.store == "sqlite"
    assert config.store_flush_interval == 0.5
    assert config.log_level == "WARNING"
    assert config.data_dir == Path("/srv/gb")
    assert config.api_token == "env-token"
    assert config.register_expires_min == 120
    assert config.sip_id == "44010000002000000001"    # from TOML


def test_flags_override_environment(toml_file):
    env = {
        "SIP28181_CONFIG": str(toml_file(TOML)),
        "SIP28181_SIP_PORT": "5090",
        "SIP28181_PASSWORD": "env-pw",
        "SIP28181_LOG_LEVEL": "warning",
        "SIP28181_HTTP_HOST": "10.0.0.1",
    }
    argv = ["--sip-port", "5100", "--password", "flag-pw", "--log-level", "error",
            "--sip-id", "11010000002000000001", "--keepalive-count", "2", "--data-dir", "d2",
            "--external-host", "203.0.113.10"]
    config = Config.load(argv, env)
    assert config.sip_port == 5100
    assert config.password == "flag-pw"
    assert config.log_level == "ERROR"
    assert config.sip_id == "11010000002000000001"
    assert config.domain == "1101000000"
    assert config.keepalive_count == 2
    assert config.keepalive_interval == 30            # from TOML
    assert config.data_dir == Path("d2")
    assert config.external_host == "203.0.113.10"
    assert config.http_host == "10.0.0.1"             # env, no flag given
    assert config.http_port == 9000                   # TOML, neither env nor flag


def test_flags_absent_do_not_override():
    """Every flag defaults to a sentinel, never to the built-in default."""
    args = build_arg_parser().parse_args([])
    for opt in OPTIONS:
        if opt.flag is not None:
            assert repr(getattr(args, opt.name)) == "<unset>", opt.name
    config = Config.load([], {"SIP28181_HTTP_PORT": "8181", "SIP28181_PROFILE": "hj"})
    assert config.http_port == 8181
    assert config.profile == "hj"


def test_explicit_domain_is_kept(toml_file):
    path = toml_file('[sip]\nid = "44010000002000000001"\ndomain = "4401000001"\n')
    assert Config.load(["-c", str(path)], {}).domain == "4401000001"
    assert Config.load(["-c", str(path), "--domain", "4401000002"], {}).domain == "4401000002"


def test_hj_profile_keepalive_interval(toml_file):
    config = Config.load(["--profile", "hj"], {})
    assert config.profile == "hj"
    assert config.keepalive_interval == 300
    assert config.keepalive_timeout == 900
    assert Config(profile="hj").keepalive_interval == 300
    # An interval set explicitly in any layer wins over the profile.
    path = toml_file('profile = "hj"\n[keepalive]\ninterval = 120\n')
    assert Config.load(["-c", str(path)], {}).keepalive_interval == 120
    path = toml_file('profile = "hj"\n')
    assert Config.load(["-c", str(path)], {}).keepalive_interval == 300
    assert Config.load(["-c", str(path)],
                       {"SIP28181_KEEPALIVE_INTERVAL": "90"}).keepalive_interval == 90
    assert Config.load(["-c", str(path), "--keepalive-interval", "100"],
                       {}).keepalive_interval == 100
    # A default profile set later does not keep the hj interval.
    assert Config.load(["-c", str(path), "--profile", "default"], {}).keepalive_interval == 60


def test_per_device_passwords(toml_file):
    path = toml_file("""
[auth]
password = "global"

[devices."34020000001320000001"]
password = "one"
name = "Gate"

[devices."34020000001320000002"]
name = "Lobby"
""")
    config = Config.load(["-c", str(path)], {})
    assert config.devices == {
        "34020000001320000001": DeviceSettings(password="one", name="Gate"),
        "34020000001320000002": DeviceSettings(password=None, name="Lobby"),
    }
    assert config.password_for("34020000001320000001") == "one"
    assert config.password_for("34020000001320000002") == "global"
    assert config.password_for("34020000001320000099") == "global"


def test_upper_tables_typed(toml_file):
    path = toml_file("""
[[upper]]
sip_id = "44010000002000000001"
host = "198.51.100.7"
port = 5060

[[upper]]
sip_id = "44000000002000000001"
domain = "4400000000"
host = "198.51.100.8"
transport = "TCP"
share = ["34020000001320000001"]
tree = 2022
""")
    config = Config.load(["-c", str(path)], {})
    first, second = config.upper
    assert (first.sip_id, first.domain, first.host, first.port, first.transport) == (
        "44010000002000000001", "4401000000", "198.51.100.7", 5060, "udp")
    assert first.share == "all" and first.ids == "keep" and first.tree == "2016"
    assert (second.transport, second.share, second.tree) == ("tcp", ("34020000001320000001",), "2022")


@pytest.mark.parametrize("table, message", [
    ('sip_id = "4401"\nhost = "h"', "sip_id must be a 20-digit ID"),
    ('sip_id = "44010000002000000001"', "host is required"),
    ('sip_id = "44010000002000000001"\nhost = "h"\nport = 0', "port must be an integer"),
    ('sip_id = "44010000002000000001"\nhost = "h"\ntransport = "sctp"', "transport must be one of"),
    ('sip_id = "44010000002000000001"\nhost = "h"\nshare = "some"', "share must be"),
    ('sip_id = "44010000002000000001"\nhost = "h"\nids = "map"', "needs id_prefix or id_map"),
    ('sip_id = "44010000002000000001"\nhost = "h"\ncolour = 1', "unknown key 'colour'"),
])
def test_upper_errors_name_the_key(toml_file, table, message):
    path = toml_file(f"[[upper]]\n{table}\n")
    with pytest.raises(ConfigError, match=message):
        Config.load(["-c", str(path)], {})


def test_upper_twice_refused(toml_file):
    path = toml_file('[[upper]]\nsip_id = "44010000002000000001"\nhost = "a"\n'
                     '[[upper]]\nsip_id = "44010000002000000001"\nhost = "b"\n')
    with pytest.raises(ConfigError, match="appears twice"):
        Config.load(["-c", str(path)], {})


def test_example_file_loads():
    config = Config.load(["--config", str(EXAMPLE)], {})
    assert config.sip_id == "34020000002000000001"
    assert config.domain == "3402000000"
    assert config.keepalive_interval == 60
    assert config.password_for("34020000001320000001") == "cam-0001-secret"
    assert config.password_for("34020000001320000099") == "12345678"
    # Apart from the example devices, every value in the example is the built-in default.
    assert dataclasses.replace(config, devices={}, config_file=None) == Config()


def test_dataclass_replace_revalidates():
    config = Config()
    assert dataclasses.replace(config, sip_port=5061).sip_port == 5061
    with pytest.raises(ConfigError, match="sip_port"):
        dataclasses.replace(config, sip_port=70000)


# -- errors ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("text, message", [
    ('[sip]\nidd = "1"\n', r"unknown key sip\.idd \(known in \[sip\]: id, domain"),
    ('sip_port = 5060\n', r"unknown key 'sip_port'"),
    ('[database]\npath = "x"\n', r"unknown key 'database'"),
    ('[devices."34020000001320000001"]\npasswd = "x"\n',
     r'devices\."34020000001320000001": unknown key \'passwd\''),
    ('[devices.camera1]\npassword = "x"\n', r"20-digit device ID, got 'camera1'"),
    ('[sip]\nport = "5060"\n', r"sip\.port: must be an integer, got '5060'"),
    ('[sip]\nport = 70000\n', r"sip\.port: must be at most 65535, got 70000"),
    ('[sip]\nid = "3402000000200000001"\n', r"sip\.id: must be 20 digits"),
    ('[sip]\ndomain = "34020"\n', r"sip\.domain: must be 10 digits"),
    ('[sip]\ntransports = ["udp", "sctp"]\n', r"sip\.transports: entries must be"),
    ('[auth]\nqop = "yes"\n', r"auth\.qop: must be a boolean"),
    ('[log]\nlevel = "LOUD"\n', r"log\.level: must be one of TRACE, DEBUG"),
    ('profile = "eco"\n', r"profile: must be one of default, hj; got 'eco'"),
    ('[store]\nbackend = "mysql"\n', r"store\.backend: must be one of sqlite, memory"),
    ('[keepalive]\ninterval = 0\n', r"keepalive\.interval: must be at least 1, got 0"),
    ('sip = 1\n', r"sip must be a table"),
    ('upper = 1\n', r"upper: must be an array of tables"),
    ('[sip\n', r"is not valid TOML"),
])
def test_toml_errors(toml_file, text, message):
    path = toml_file(text)
    with pytest.raises(ConfigError, match=message) as info:
        Config.load(["-c", str(path)], {})
    assert str(path) in str(info.value)


def test_missing_config_file(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        Config.load(["--config", str(tmp_path / "nope.toml")], {})
    with pytest.raises(ConfigError, match="does not exist"):
        Config.load([], {"SIP28181_CONFIG": str(tmp_path / "nope.toml")})


@pytest.mark.parametrize("var, value, message", [
    ("SIP28181_SIP_PORT", "50x60", "must be an integer, got '50x60'"),
    ("SIP28181_SIP_PORT", "-1", "must be at least 0"),
    ("SIP28181_AUTH_QOP", "maybe", r"must be a boolean \(1/0, true/false, yes/no, on/off\)"),
    ("SIP28181_STORE_FLUSH_INTERVAL", "soon", "must be a number"),
    ("SIP28181_STORE_FLUSH_INTERVAL", "0", "must be greater than 0"),
    ("SIP28181_SIP_ID", "abc", "must be 20 digits, got 'abc'"),
    ("SIP28181_DOMAIN", "34020000001", "must be 10 digits"),
    ("SIP28181_LOG_LEVEL", "verbose", "must be one of"),
    ("SIP28181_PROFILE", "HJ", "must be one of default, hj"),
])
def test_environment_errors(var, value, message):
    with pytest.raises(ConfigError, match=message) as info:
        Config.load([], {var: value})
    assert str(info.value).startswith(f"environment variable {var}: ")


def test_empty_environment_value_clears_optional():
    config = Config.load([], {"SIP28181_API_TOKEN": "", "SIP28181_EXTERNAL_HOST": ""})
    assert config.api_token is None and config.external_host is None


@pytest.mark.parametrize("argv, message", [
    (["--sip-id", "123"], r"argument --sip-id: must be 20 digits, got '123'"),
    (["--sip-port", "udp"], r"argument --sip-port: must be an integer"),
    (["--profile", "eco"], r"argument --profile: must be one of default, hj"),
    (["--no-such-flag"], r"unrecognized arguments: --no-such-flag"),
    (["--sip-port"], r"argument --sip-port: expected one argument"),
])
def test_flag_errors(argv, message):
    with pytest.raises(ConfigError, match=message) as info:
        Config.load(argv, {})
    assert str(info.value).startswith("command line: ")


def test_cross_field_errors():
    with pytest.raises(ConfigError, match="register_expires_min <= register_expires_default"):
        Config.load([], {"SIP28181_REGISTER_EXPIRES_MIN": "7200"})
    with pytest.raises(ConfigError, match="sip_id: must be 20 digits"):
        Config(sip_id="1234")


def test_config_error_is_value_error():
    with pytest.raises(ValueError):
        Config.load([], {"SIP28181_SIP_PORT": "x"})


def test_help_mentions_every_flag_and_env():
    parser = build_arg_parser()
    assert parser.prog == "python -m sip28181.server"
    text = parser.format_help()
    for opt in OPTIONS:
        if opt.flag is not None:
            assert opt.flag in text and opt.env_var in text
    assert "SIP28181_CONFIG" in text
