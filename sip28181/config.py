"""Server configuration: one typed :class:`Config`, loaded from four layers.

Precedence, lowest first::

    defaults  <  TOML file  <  SIP28181_* environment variables  <  command-line flags

The TOML file is named by ``--config FILE`` or, failing that, ``SIP28181_CONFIG``. Command-line flags
default to a sentinel, so a flag overrides the layers below only when it is actually given (as in
hypercorn's ``__main__``).

One table, :data:`OPTIONS`, drives all three sources: each scalar option has a TOML location, an
environment variable (``SIP28181_`` + the field name in upper case) and, for the common ones, a flag.
``sip_transports``, ``devices`` and ``upper`` are read from TOML only.

TOML layout (see ``examples/sip28181.toml``)::

    profile = "default"            # top-level keys: profile, data_dir
    data_dir = "./data"
    [sip]       id domain host port transports external_host name
    [register]  expires_min expires_max expires_default date_header
    [auth]      password qop nonce_lifetime max_failures failure_window block_seconds
    [keepalive] interval count
    [http]      host port api_token
    [store]     backend flush_interval
    [catalog]   query_on_register query_delay timeout idle_timeout notify_status subscribe
                subscribe_expires
    [alarm]     respond subscribe subscribe_expires position_subscribe position_interval
    [query]     timeout
    [log]       level
    [media]     host bind port_min port_max single_port transport linger no_media_timeout
                invite_timeout gop_cache viewer_queue
    [hls]       segment_seconds list_size idle_timeout
    [cascade]   local_control_hold control_log_days udp_gso
    [devices."<20-digit ID>"]  password name transport (a channel ID too: transport only)
    [[upper]]   sip_id domain host port transport password register_interval keepalive_interval
                share ids id_prefix id_map tree ... (cascade: see sip28181.cascade.settings)

Unknown keys and tables are refused with a :class:`~sip28181.errors.ConfigError` naming them.
Every error names where the bad value came from (TOML key, environment variable or flag).
"""

from __future__ import annotations

import argparse
import os
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from .errors import ConfigError

if TYPE_CHECKING:
    from .cascade.settings import UpperSettings

__all__ = [
    "Config", "DeviceSettings", "ENV_PREFIX", "LOG_LEVELS", "MEDIA_TRANSPORTS", "OPTIONS", "Option",
    "PROFILES", "STORES", "TRANSPORTS", "build_arg_parser",
]

ENV_PREFIX = "SIP28181_"
CONFIG_ENV = ENV_PREFIX + "CONFIG"

PROFILES = ("default", "hj")
STORES = ("sqlite", "memory")
TRANSPORTS = ("udp", "tcp")
#: How RTP media travels (PROTOCOL §8.6): UDP, TCP with the device connecting to us, TCP with us
#: connecting to the device.
MEDIA_TRANSPORTS = ("udp", "tcp-passive", "tcp-active")
LOG_LEVELS = ("TRACE", "DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")

#: Keepalive interval (seconds) each profile uses when ``keepalive_interval`` is not set.
PROFILE_KEEPALIVE_INTERVAL = {"default": 60, "hj": 300}

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})


# -- value kinds: parse text (env, flags) or check a native value (TOML, constructor) ---------------

class _Kind:
    """How one option's value is read. Both methods raise ``ValueError`` with a short reason."""

    def text(self, raw: str) -> Any:
        return self.native(raw)

    def native(self, value: Any) -> Any:
        raise NotImplementedError


@dataclass(frozen=True)
class _Str(_Kind):
    choices: tuple[str, ...] = ()
    upper: bool = False
    check: Callable[[str], None] | None = None
    optional: bool = False      # None allowed; empty text from env/flags means None

    def text(self, raw: str) -> Any:
        if self.optional and raw == "":
            return None
        return self.native(raw)

    def native(self, value: Any) -> Any:
        if value is None and self.optional:
            return None
        if not isinstance(value, str):
            raise ValueError(f"must be a string, got {_show(value)}")
        if self.upper:
            value = value.upper()
        if self.choices and value not in self.choices:
            raise ValueError(f"must be one of {', '.join(self.choices)}; got {value!r}")
        if self.check is not None:
            self.check(value)
        return value


@dataclass(frozen=True)
class _Int(_Kind):
    minimum: int | None = None
    maximum: int | None = None
    optional: bool = False      # None allowed; empty text from env/flags means None

    def text(self, raw: str) -> Any:
        if self.optional and raw.strip() == "":
            return None
        try:
            value = int(raw.strip(), 10)
        except ValueError:
            raise ValueError(f"must be an integer, got {raw!r}") from None
        return self.native(value)

    def native(self, value: Any) -> Any:
        if value is None and self.optional:
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"must be an integer, got {_show(value)}")
        if self.minimum is not None and value < self.minimum:
            raise ValueError(f"must be at least {self.minimum}, got {value}")
        if self.maximum is not None and value > self.maximum:
            raise ValueError(f"must be at most {self.maximum}, got {value}")
        return value


@dataclass(frozen=True)
class _Float(_Kind):
    minimum: float | None = None
    exclusive: bool = False

    def text(self, raw: str) -> Any:
        try:
            value = float(raw.strip())
        except ValueError:
            raise ValueError(f"must be a number, got {raw!r}") from None
        return self.native(value)

    def native(self, value: Any) -> Any:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"must be a number, got {_show(value)}")
        value = float(value)
        if value != value or value in (float("inf"), float("-inf")):
            raise ValueError(f"must be a finite number, got {value}")
        if self.minimum is not None:
            if self.exclusive and value <= self.minimum:
                raise ValueError(f"must be greater than {self.minimum:g}, got {value:g}")
            if not self.exclusive and value < self.minimum:
                raise ValueError(f"must be at least {self.minimum:g}, got {value:g}")
        return value


class _Bool(_Kind):
    def text(self, raw: str) -> Any:
        word = raw.strip().lower()
        if word in _TRUE:
            return True
        if word in _FALSE:
            return False
        raise ValueError(f"must be a boolean (1/0, true/false, yes/no, on/off), got {raw!r}")

    def native(self, value: Any) -> Any:
        if not isinstance(value, bool):
            raise ValueError(f"must be a boolean (true/false), got {_show(value)}")
        return value


class _Path(_Kind):
    def native(self, value: Any) -> Any:
        if isinstance(value, Path):
            return value
        if not isinstance(value, str) or not value:
            raise ValueError(f"must be a non-empty path string, got {_show(value)}")
        return Path(value)


class _Transports(_Kind):
    def text(self, raw: str) -> Any:
        return self.native([part.strip() for part in raw.split(",") if part.strip()])

    def native(self, value: Any) -> Any:
        if isinstance(value, str) or not isinstance(value, (list, tuple)):
            raise ValueError(f"must be a list such as [\"udp\", \"tcp\"], got {_show(value)}")
        out: list[str] = []
        for item in value:
            if not isinstance(item, str) or item.lower() not in TRANSPORTS:
                raise ValueError(f"entries must be \"udp\" or \"tcp\", got {_show(item)}")
            if item.lower() not in out:
                out.append(item.lower())
        if not out:
            raise ValueError("must name at least one transport")
        return tuple(out)


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _digits(n: int) -> Callable[[str], None]:
    def check(value: str) -> None:
        if not (len(value) == n and value.isascii() and value.isdigit()):
            raise ValueError(f"must be {n} digits, got {value[:40]!r}")
    return check


def _not_blank(value: str) -> None:
    if not value.strip():
        raise ValueError("must not be empty")


_PORT = _Int(0, 65535)
_POSITIVE_INT = _Int(1)


# -- the option table --------------------------------------------------------------------------------

@dataclass(frozen=True)
class Option:
    """One scalar setting: the :class:`Config` field, where it lives in TOML, its flag, its help."""

    name: str
    toml: tuple[str, ...]
    kind: _Kind
    help: str
    flag: str | None = None
    env: bool = True

    @property
    def env_var(self) -> str | None:
        return ENV_PREFIX + self.name.upper() if self.env else None

    @property
    def toml_key(self) -> str:
        """``sip.id`` style name, as used in error messages and docs."""
        return ".".join(self.toml)


OPTIONS: tuple[Option, ...] = (
    Option("profile", ("profile",), _Str(choices=PROFILES),
           "deployment profile: 'default', or 'hj' (eco-environment: keepalive interval 300 s)",
           flag="--profile"),
    Option("data_dir", ("data_dir",), _Path(),
           "directory for the database and other state (relative to the working directory)",
           flag="--data-dir"),
    Option("sip_id", ("sip", "id"), _Str(check=_digits(20)),
           "20-digit SIP ID of this platform", flag="--sip-id"),
    Option("domain", ("sip", "domain"), _Str(check=_digits(10)),
           "10-digit SIP domain (default: the first 10 digits of the SIP ID)", flag="--domain"),
    Option("sip_host", ("sip", "host"), _Str(), "address the SIP UDP/TCP listeners bind to",
           flag="--sip-host"),
    Option("sip_port", ("sip", "port"), _PORT, "SIP listening port (UDP and TCP)",
           flag="--sip-port"),
    Option("sip_transports", ("sip", "transports"), _Transports(),
           "SIP transports to listen on", env=False),
    Option("external_host", ("sip", "external_host"), _Str(optional=True),
           "address written into Via/Contact/SDP when listening on 0.0.0.0 (default: automatic)",
           flag="--external-host"),
    Option("platform_name", ("sip", "name"), _Str(check=_not_blank),
           "this platform's name as uppers see it (catalog platform node, DeviceInfo DeviceName)",
           flag="--platform-name"),
    Option("register_expires_min", ("register", "expires_min"), _POSITIVE_INT,
           "shortest registration accepted, seconds (shorter requests get 423)"),
    Option("register_expires_max", ("register", "expires_max"), _POSITIVE_INT,
           "longest registration granted, seconds (longer requests are shortened)"),
    Option("register_expires_default", ("register", "expires_default"), _POSITIVE_INT,
           "registration length when the device sends no Expires, seconds"),
    Option("date_header", ("register", "date_header"), _Bool(),
           "send a Date header in REGISTER 200 OK (devices set their clocks from it)"),
    Option("password", ("auth", "password"), _Str(),
           "default device password for digest authentication (prefer the environment or TOML: "
           "command lines are visible to other users)", flag="--password"),
    Option("auth_qop", ("auth", "qop"), _Bool(), "offer qop=auth in digest challenges"),
    Option("nonce_lifetime", ("auth", "nonce_lifetime"), _POSITIVE_INT,
           "seconds a digest nonce stays valid"),
    Option("auth_max_failures", ("auth", "max_failures"), _POSITIVE_INT,
           "failed authentications from one device/address before it is blocked"),
    Option("auth_failure_window", ("auth", "failure_window"), _POSITIVE_INT,
           "seconds over which authentication failures are counted"),
    Option("auth_block_seconds", ("auth", "block_seconds"), _Int(0),
           "seconds a blocked device/address is refused"),
    Option("keepalive_interval", ("keepalive", "interval"), _POSITIVE_INT,
           "expected device keepalive interval, seconds (default 60; 300 with the hj profile)",
           flag="--keepalive-interval"),
    Option("keepalive_count", ("keepalive", "count"), _POSITIVE_INT,
           "missed keepalives before a device is marked offline", flag="--keepalive-count"),
    Option("http_host", ("http", "host"), _Str(), "address the HTTP API binds to",
           flag="--http-host"),
    Option("http_port", ("http", "port"), _PORT, "HTTP API port", flag="--http-port"),
    Option("api_token", ("http", "api_token"), _Str(optional=True),
           "bearer token required by the HTTP API (default: none, the API is open)",
           flag="--api-token"),
    Option("store", ("store", "backend"), _Str(choices=STORES),
           "where the device registry lives: 'sqlite' (in data_dir) or 'memory'", flag="--store"),
    Option("store_flush_interval", ("store", "flush_interval"), _Float(0.0, exclusive=True),
           "seconds between batched writes of live device state to the store"),
    Option("catalog_query_on_register", ("catalog", "query_on_register"), _Bool(),
           "query DeviceInfo and the catalog of a device after it registers"),
    Option("catalog_query_delay", ("catalog", "query_delay"), _Float(0.0),
           "seconds between a registration and the catalog query that follows it"),
    Option("catalog_timeout", ("catalog", "timeout"), _Float(0.0, exclusive=True),
           "seconds a catalog query waits for the first answer packet"),
    Option("catalog_idle_timeout", ("catalog", "idle_timeout"), _Float(0.0, exclusive=True),
           "seconds a catalog answer may pause between packets before it is kept as partial"),
    Option("catalog_notify_status", ("catalog", "notify_status"), _Bool(),
           "apply ON/OFF/VLOST/DEFECT catalog notifications (off for platforms sending bogus ones)"),
    Option("catalog_subscribe", ("catalog", "subscribe"), _Bool(),
           "subscribe to catalog changes of every device that registers"),
    Option("catalog_subscribe_expires", ("catalog", "subscribe_expires"), _Int(30),
           "requested length of catalog subscriptions, seconds (refreshed before expiry)"),
    Option("alarm_respond", ("alarm", "respond"), _Bool(),
           "acknowledge each alarm with a Response MESSAGE (Result OK) besides the SIP 200"),
    Option("alarm_subscribe", ("alarm", "subscribe"), _Bool(),
           "subscribe to the alarms of every device that registers"),
    Option("alarm_subscribe_expires", ("alarm", "subscribe_expires"), _Int(30),
           "requested length of alarm and mobile-position subscriptions, seconds"),
    Option("position_subscribe", ("alarm", "position_subscribe"), _Bool(),
           "subscribe to the mobile positions of every device that registers"),
    Option("position_interval", ("alarm", "position_interval"), _Int(1),
           "position report interval asked for in mobile-position subscriptions, seconds"),
    Option("query_timeout", ("query", "timeout"), _Float(0.0, exclusive=True),
           "seconds a device has to answer a query or a control (DeviceInfo, RecordInfo, PTZ...)"),
    Option("log_level", ("log", "level"), _Str(choices=LOG_LEVELS, upper=True),
           "log level: " + ", ".join(LOG_LEVELS), flag="--log-level"),
    Option("media_host", ("media", "host"), _Str(optional=True),
           "address devices send media to, written into SDP offers (default: the SIP address)",
           flag="--media-host"),
    Option("media_bind", ("media", "bind"), _Str(), "address the media (RTP) ports bind to"),
    Option("media_port_min", ("media", "port_min"), _Int(1, 65535),
           "first port of the media port range (UDP and TCP)", flag="--media-port-min"),
    Option("media_port_max", ("media", "port_max"), _Int(1, 65535),
           "last port of the media port range", flag="--media-port-max"),
    Option("media_single_port", ("media", "single_port"), _Int(0, 65535, optional=True),
           "receive every UDP stream on this one port, told apart by SSRC (0: any free port; "
           "default: one port per stream)"),
    Option("media_transport", ("media", "transport"), _Str(choices=MEDIA_TRANSPORTS),
           "default media transport: udp, tcp-passive (the device connects) or tcp-active "
           "(we connect); per device in [devices]", flag="--media-transport"),
    Option("media_linger", ("media", "linger"), _Float(0.0),
           "seconds a stream stays up after its last viewer left (then BYE)"),
    Option("media_no_media_timeout", ("media", "no_media_timeout"), _Float(0.0, exclusive=True),
           "seconds without RTP after which a stream is ended (BYE, viewers closed)"),
    Option("media_invite_timeout", ("media", "invite_timeout"), _Float(0.0, exclusive=True),
           "seconds to wait for a device to answer an INVITE"),
    Option("media_gop_cache", ("media", "gop_cache"), _Int(0),
           "bytes of the GOP cache per stream (a new viewer starts on its keyframe)"),
    Option("media_viewer_queue", ("media", "viewer_queue"), _Int(1024),
           "bytes queued per viewer before it drops to the next keyframe"),
    Option("hls_segment_seconds", ("hls", "segment_seconds"), _Float(0.0, exclusive=True),
           "target length of an HLS segment (cut at the next keyframe)"),
    Option("hls_list_size", ("hls", "list_size"), _Int(1, 100),
           "segments listed in a live HLS playlist (older ones are deleted)"),
    Option("hls_idle_timeout", ("hls", "idle_timeout"), _Float(0.0, exclusive=True),
           "seconds without an HLS request after which the HLS output stops"),
    Option("cascade_local_control_hold", ("cascade", "local_control_hold"), _Float(0.0),
           "seconds a local PTZ/device control holds its channel against upper platforms' controls"),
    Option("cascade_control_log_days", ("cascade", "control_log_days"), _Float(0.0),
           "days the control log is kept in the store (0: for ever)"),
    Option("cascade_udp_gso", ("cascade", "udp_gso"), _Bool(),
           "send the RTP packets of a frame to an upper with one system call (Linux UDP GSO)"),
)

_BY_NAME = {opt.name: opt for opt in OPTIONS}
_BY_TOML = {opt.toml: opt for opt in OPTIONS}
_TOML_TABLES = sorted({opt.toml[0] for opt in OPTIONS if len(opt.toml) == 2})
_TOML_SPECIAL = ("devices", "upper")


# -- the configuration -------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class DeviceSettings:
    """Per-device settings from ``[devices."<ID>"]``; ``None`` means "use the global value"."""

    password: str | None = field(default=None, repr=False)
    name: str | None = None
    transport: str | None = None
    """Media transport for this device, or for a channel when keyed by a channel ID."""


@dataclass(frozen=True, slots=True)
class Config:
    """Everything the server needs to start. Build it with :meth:`load`, or directly in tests.

    Constructing a ``Config`` validates every field (raising :class:`ConfigError`) and resolves the
    two derived defaults: an empty ``domain`` becomes the first 10 digits of ``sip_id``, and
    ``keepalive_interval=0`` becomes the profile's interval (60 s, or 300 s for ``hj``).
    Use :func:`dataclasses.replace` to change a loaded config.
    """

    # SIP identity and listeners
    sip_id: str = "34020000002000000001"
    """20-digit SIP ID of this platform (the registrar's user part and realm owner)."""
    domain: str = ""
    """10-digit SIP domain (realm); empty means the first 10 digits of ``sip_id``."""
    sip_host: str = "0.0.0.0"
    """Bind address of the SIP UDP/TCP listeners."""
    sip_port: int = 5060
    """SIP listening port, shared by UDP and TCP."""
    sip_transports: tuple[str, ...] = TRANSPORTS
    """Transports to listen on, lower case: ``("udp", "tcp")`` or a subset."""
    external_host: str | None = None
    """Address for Via/Contact/SDP when bound to 0.0.0.0; ``None`` picks one automatically."""
    platform_name: str = "sip28181"
    """This platform's name towards uppers: the Name of our node in the catalog we share and the
    DeviceName of our DeviceInfo answers."""

    # Registration
    register_expires_min: int = 60
    """Shortest registration accepted, seconds; shorter requests are answered 423."""
    register_expires_max: int = 86400
    """Longest registration granted, seconds; longer requests are shortened."""
    register_expires_default: int = 3600
    """Registration length when a device sends neither an Expires header nor parameter."""
    date_header: bool = True
    """Send a ``Date`` header in REGISTER 200 OK (devices set their clocks from it)."""

    # Authentication
    password: str = field(default="12345678", repr=False)
    """Default device password for digest authentication."""
    devices: Mapping[str, DeviceSettings] = field(default_factory=dict)
    """Per-device settings by 20-digit device ID (TOML ``[devices."<ID>"]`` only)."""
    auth_qop: bool = True
    """Offer ``qop=auth`` in challenges (some old devices only handle RFC 2069 digests)."""
    nonce_lifetime: int = 300
    """Seconds a nonce stays valid; older ones are answered ``stale=true``."""
    auth_max_failures: int = 5
    """Failed authentications within ``auth_failure_window`` before the peer is blocked."""
    auth_failure_window: int = 60
    """Seconds over which authentication failures are counted."""
    auth_block_seconds: int = 300
    """Seconds a blocked peer is refused."""

    # Keepalive supervision
    profile: str = "default"
    """``"default"``, or ``"hj"`` (eco-environment devices: keepalive interval 300 s)."""
    keepalive_interval: int = 0
    """Expected keepalive interval, seconds; 0 means the profile's (60, or 300 for ``hj``)."""
    keepalive_count: int = 3
    """Missed keepalives before a device is marked offline."""

    # HTTP API
    http_host: str = "0.0.0.0"
    """Bind address of the HTTP API and HTTP-FLV server."""
    http_port: int = 8080
    """HTTP port."""
    api_token: str | None = field(default=None, repr=False)
    """Bearer token the HTTP API requires; ``None`` leaves it open."""

    # Storage and logging
    data_dir: Path = Path("data")
    """Directory for the database and other state (relative paths: to the working directory)."""
    store: str = "sqlite"
    """Store backend: ``"sqlite"`` or ``"memory"``."""
    store_flush_interval: float = 5.0
    """Seconds between batched writes of live device state (keepalive times) to the store."""
    log_level: str = "INFO"
    """One of :data:`LOG_LEVELS`."""

    # Device management
    catalog_query_on_register: bool = True
    """Query DeviceInfo and the catalog after a device registers (PROTOCOL §3.5)."""
    catalog_query_delay: float = 0.5
    """Seconds between a registration and that query."""
    catalog_timeout: float = 30.0
    """Seconds a catalog query waits for its first answer packet."""
    catalog_idle_timeout: float = 10.0
    """Seconds without a packet after which a catalog answer is kept as partial."""
    catalog_notify_status: bool = True
    """Apply ON/OFF/VLOST/DEFECT catalog notifications to channel status."""
    catalog_subscribe: bool = False
    """SUBSCRIBE to catalog changes of devices when they register."""
    catalog_subscribe_expires: int = 3600
    """Requested catalog subscription length, seconds."""
    alarm_respond: bool = True
    """Answer each alarm MESSAGE with ``Response Alarm Result OK`` (besides the SIP 200)."""
    alarm_subscribe: bool = False
    """SUBSCRIBE to alarms of devices when they register."""
    alarm_subscribe_expires: int = 3600
    """Requested alarm and mobile-position subscription length, seconds."""
    position_subscribe: bool = False
    """SUBSCRIBE to mobile positions of devices when they register."""
    position_interval: int = 5
    """Report interval asked for in mobile-position subscriptions, seconds."""
    query_timeout: float = 10.0
    """Seconds a device has to answer a query or control."""

    # Media
    media_host: str | None = None
    """Address written into SDP offers (where devices send RTP); ``None``: the SIP address."""
    media_bind: str = "0.0.0.0"
    """Bind address of the media ports."""
    media_port_min: int = 30000
    """First port of the media port range."""
    media_port_max: int = 30999
    """Last port of the media port range."""
    media_single_port: int | None = None
    """One UDP port for every stream, demultiplexed by SSRC (0: any free port); ``None``: off."""
    media_transport: str = "udp"
    """Default media transport (:data:`MEDIA_TRANSPORTS`); ``[devices]`` may override it."""
    media_linger: float = 30.0
    """Seconds a stream stays up after its last viewer left; then BYE."""
    media_no_media_timeout: float = 15.0
    """Seconds without RTP after which a stream ends (BYE) and its viewers are closed."""
    media_invite_timeout: float = 10.0
    """Seconds to wait for the answer to an INVITE."""
    media_gop_cache: int = 8 * 1024 * 1024
    """Bytes of the GOP cache per stream."""
    media_viewer_queue: int = 4 * 1024 * 1024
    """Bytes queued per viewer before the drop policy applies (:mod:`media.relay`)."""

    # HLS (files in data_dir/hls)
    hls_segment_seconds: float = 2.0
    """Target length of an HLS segment; segments are cut at the next keyframe."""
    hls_list_size: int = 5
    """Segments in the live playlist."""
    hls_idle_timeout: float = 30.0
    """Seconds without a playlist or segment request after which the HLS output stops."""

    # Cascade
    cascade_local_control_hold: float = 30.0
    """Seconds a local PTZ or device control holds its channel: the uppers' controls on it are
    refused meanwhile (local control takes priority)."""
    cascade_control_log_days: float = 90.0
    """Days control log entries are kept in the store; older ones are pruned (0 keeps them all)."""
    cascade_udp_gso: bool = True
    """Send the RTP packets of a frame to an upper over UDP with one ``sendmsg`` (Linux UDP GSO)
    instead of one ``sendto`` each; off, or where the kernel refuses it, one send per packet."""
    upper: tuple["UpperSettings", ...] = ()
    """Upper platforms we register to (cascade), from TOML ``[[upper]]`` tables; see
    :class:`~sip28181.cascade.settings.UpperSettings` for their keys."""

    config_file: Path | None = None
    """The TOML file this config was loaded from, if any (informational)."""

    def __post_init__(self) -> None:
        for opt in OPTIONS:
            value = getattr(self, opt.name)
            if opt.name == "domain" and value == "":
                value = self.sip_id[:10]
            elif opt.name == "keepalive_interval" and value == 0:
                value = PROFILE_KEEPALIVE_INTERVAL.get(self.profile, 0) or value
            try:
                value = opt.kind.native(value)
            except ValueError as exc:
                raise ConfigError(f"{opt.name}: {exc}") from None
            object.__setattr__(self, opt.name, value)
        object.__setattr__(self, "devices", _check_devices(self.devices, "devices"))
        object.__setattr__(self, "upper", _check_upper(self.upper, "upper"))
        if not (self.register_expires_min <= self.register_expires_default
                <= self.register_expires_max):
            raise ConfigError(
                "registration expiry must satisfy register_expires_min <= register_expires_default"
                f" <= register_expires_max; got {self.register_expires_min} <= "
                f"{self.register_expires_default} <= {self.register_expires_max}")
        if self.media_port_min > self.media_port_max:
            raise ConfigError(f"media port range: media_port_min {self.media_port_min} > "
                              f"media_port_max {self.media_port_max}")

    # -- derived values --------------------------------------------------------------------------

    @property
    def keepalive_timeout(self) -> int:
        """Seconds without a keepalive after which a device is offline (interval × count)."""
        return self.keepalive_interval * self.keepalive_count

    @property
    def db_path(self) -> Path:
        """Path of the SQLite database."""
        return self.data_dir / "sip28181.sqlite3"

    def password_for(self, device_id: str) -> str:
        """The digest password for ``device_id``: its own from ``[devices]``, else the default."""
        settings = self.devices.get(device_id)
        if settings is not None and settings.password is not None:
            return settings.password
        return self.password

    def media_transport_for(self, device_id: str, channel_id: str | None = None) -> str:
        """The media transport for a channel: its own setting, its device's, else the default."""
        for key in (channel_id, device_id):
            settings = self.devices.get(key) if key else None
            if settings is not None and settings.transport is not None:
                return settings.transport
        return self.media_transport

    # -- loading ---------------------------------------------------------------------------------

    @classmethod
    def load(cls, argv: Sequence[str] | None = None,
             environ: Mapping[str, str] | None = None) -> Config:
        """Build a config from defaults, a TOML file, ``SIP28181_*`` variables and flags.

        ``argv`` excludes the program name; ``None`` reads no flags (pass ``sys.argv[1:]`` from a
        ``main``). ``environ`` defaults to :data:`os.environ`. Invalid input of any layer raises
        :class:`ConfigError`, including an unknown or malformed flag; ``--help`` exits as usual.
        """
        env = os.environ if environ is None else environ
        args = build_arg_parser().parse_args(list(argv) if argv is not None else [])

        values: dict[str, Any] = {}
        config_file: Path | None = None
        if args.config is not _UNSET:
            config_file = Path(args.config)
        elif env.get(CONFIG_ENV):
            config_file = Path(env[CONFIG_ENV])
        if config_file is not None:
            values.update(_read_toml(config_file))
            values["config_file"] = config_file

        for opt in OPTIONS:
            var = opt.env_var
            if var is None or var not in env:
                continue
            try:
                values[opt.name] = opt.kind.text(env[var])
            except ValueError as exc:
                raise ConfigError(f"environment variable {var}: {exc}") from None

        for opt in OPTIONS:
            if opt.flag is None:
                continue
            given = getattr(args, opt.name)
            if given is not _UNSET:
                values[opt.name] = given      # already parsed and checked by argparse

        # A domain given in no layer follows the final sip_id, whichever layer set that.
        return cls(**values)


def _check_devices(value: Any, where: str) -> dict[str, DeviceSettings]:
    if not isinstance(value, Mapping):
        raise ConfigError(f"{where}: must be a table of device IDs, got {_show(value)}")
    out: dict[str, DeviceSettings] = {}
    for device_id, settings in value.items():
        name = f'{where}."{device_id}"'
        try:
            _digits(20)(device_id if isinstance(device_id, str) else "")
        except ValueError:
            raise ConfigError(f"{where}: key must be a 20-digit device ID, got {device_id!r}") \
                from None
        if isinstance(settings, DeviceSettings):
            if settings.transport is not None and settings.transport not in MEDIA_TRANSPORTS:
                raise ConfigError(f"{name}.transport: must be one of {', '.join(MEDIA_TRANSPORTS)}; "
                                  f"got {settings.transport!r}")
            out[device_id] = settings
            continue
        if not isinstance(settings, Mapping):
            raise ConfigError(f"{name}: must be a table, got {_show(settings)}")
        for key in settings:
            if key not in ("password", "name", "transport"):
                raise ConfigError(f"{name}: unknown key {key!r} (known: name, password, transport)")
        for key in ("password", "name", "transport"):
            if key in settings and not isinstance(settings[key], str):
                raise ConfigError(f"{name}.{key}: must be a string, got {_show(settings[key])}")
        transport = settings.get("transport")
        if transport is not None and transport not in MEDIA_TRANSPORTS:
            raise ConfigError(f"{name}.transport: must be one of {', '.join(MEDIA_TRANSPORTS)}; "
                              f"got {transport!r}")
        out[device_id] = DeviceSettings(password=settings.get("password"), name=settings.get("name"),
                                        transport=transport)
    return out


def _check_upper(value: Any, where: str) -> tuple["UpperSettings", ...]:
    from .cascade.settings import UpperSettings, parse_upper
    if isinstance(value, Mapping) or not isinstance(value, (list, tuple)):
        raise ConfigError(f"{where}: must be an array of tables ([[upper]]), got {_show(value)}")
    out: list[UpperSettings] = []
    for i, item in enumerate(value):
        if not isinstance(item, (Mapping, UpperSettings)):
            raise ConfigError(f"{where}[{i}]: must be a table, got {_show(item)}")
        settings = parse_upper(item, f"{where}[{i}]")
        if any(u.sip_id == settings.sip_id for u in out):
            raise ConfigError(f"{where}[{i}]: upper {settings.sip_id} appears twice")
        out.append(settings)
    return tuple(out)


def _read_toml(path: Path) -> dict[str, Any]:
    """Read ``path`` into ``Config`` keyword arguments, checking every key and value."""
    try:
        with open(path, "rb") as fh:
            doc = tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"config file {str(path)!r} does not exist") from None
    except OSError as exc:
        raise ConfigError(f"config file {str(path)!r} cannot be read: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {str(path)!r} is not valid TOML: {exc}") from None

    where = str(path)
    values: dict[str, Any] = {}

    def take(opt: Option, raw: Any) -> None:
        try:
            values[opt.name] = opt.kind.native(raw)
        except ValueError as exc:
            raise ConfigError(f"{where}: {opt.toml_key}: {exc}") from None

    for key, raw in doc.items():
        if key == "devices":
            values["devices"] = _check_devices(raw, f"{where}: devices")
        elif key == "upper":
            values["upper"] = _check_upper(raw, f"{where}: upper")
        elif (key,) in _BY_TOML:
            take(_BY_TOML[(key,)], raw)
        elif key in _TOML_TABLES:
            if not isinstance(raw, dict):
                raise ConfigError(f"{where}: {key} must be a table ([{key}]), got {_show(raw)}")
            for sub, sub_raw in raw.items():
                opt = _BY_TOML.get((key, sub))
                if opt is None:
                    known = ", ".join(o.toml[1] for o in OPTIONS if o.toml[0] == key)
                    raise ConfigError(f"{where}: unknown key {key}.{sub} (known in [{key}]: {known})")
                take(opt, sub_raw)
        else:
            known = [o.toml[0] for o in OPTIONS if len(o.toml) == 1]
            known += [f"[{t}]" for t in _TOML_TABLES] + ['[devices."<ID>"]', "[[upper]]"]
            raise ConfigError(f"{where}: unknown key {key!r} (known: {', '.join(known)})")
    return values


# -- command line ------------------------------------------------------------------------------------

class _Unset:
    """Default of every flag: tells "not given" from any real value."""

    def __repr__(self) -> str:
        return "<unset>"


_UNSET: Any = _Unset()


class _ArgumentParser(argparse.ArgumentParser):
    """Raises :class:`ConfigError` instead of exiting, so ``main`` decides how to report it."""

    def error(self, message: str) -> Any:
        raise ConfigError(f"command line: {message}")


def _flag_type(opt: Option) -> Callable[[str], Any]:
    def convert(raw: str) -> Any:
        try:
            return opt.kind.text(raw)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
    convert.__name__ = opt.name
    return convert


def build_arg_parser() -> argparse.ArgumentParser:
    """The ``python -m sip28181.server`` parser. Every flag defaults to an "unset" sentinel.

    Parse errors raise :class:`ConfigError` (message prefixed ``command line:``) rather than exit.
    """
    parser = _ArgumentParser(
        prog="python -m sip28181.server",
        description="GB/T 28181 platform: SIP registrar and signalling, media relay, HTTP API.",
        epilog=(f"Settings are taken from, lowest precedence first: built-in defaults, the TOML "
                f"file (--config or {CONFIG_ENV}), {ENV_PREFIX}* environment variables (e.g. "
                f"{ENV_PREFIX}SIP_PORT, {ENV_PREFIX}KEEPALIVE_INTERVAL; booleans as 1/0, "
                f"true/false, yes/no), then these flags. See examples/sip28181.toml."),
        argument_default=_UNSET,
    )
    parser.add_argument("-c", "--config", metavar="FILE.toml",
                        help=f"TOML configuration file (default: ${CONFIG_ENV}, if set)")
    groups = {
        "SIP": parser.add_argument_group("SIP"),
        "HTTP": parser.add_argument_group("HTTP API"),
        "media": parser.add_argument_group("media"),
        "other": parser.add_argument_group("other"),
    }
    for opt in OPTIONS:
        if opt.flag is None:
            continue
        group = groups["SIP" if opt.toml[0] in ("sip", "auth", "keepalive") else
                       "HTTP" if opt.toml[0] == "http" else
                       "media" if opt.toml[0] == "media" else "other"]
        if isinstance(opt.kind, _Str) and opt.kind.choices and not opt.kind.upper:
            metavar = "|".join(opt.kind.choices)
        else:
            metavar = opt.name.rsplit("_", 1)[-1].upper()
        help_text = opt.help
        if opt.name not in _NO_DEFAULT_IN_HELP:
            help_text += f" (default: {getattr(_DEFAULTS, opt.name)})"
        group.add_argument(opt.flag, dest=opt.name, type=_flag_type(opt), metavar=metavar,
                           help=f"{help_text} [env {opt.env_var}]")
    return parser


_DEFAULTS = Config()
# Their help text already says what happens when they are not given (or must stay secret).
_NO_DEFAULT_IN_HELP = frozenset({"domain", "keepalive_interval", "external_host", "api_token",
                                 "password", "media_host"})
