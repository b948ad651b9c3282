"""Settings of one upper platform (a TOML ``[[upper]]`` table or an API body), checked once.

An upper is the platform we register to as a lower platform (PROTOCOL §11.1). Everything the
cascade needs per upper lives here: where it is, how we authenticate, how often we refresh and
keep alive, what we share with it and how our IDs appear in its scheme.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from ..errors import ConfigError
from ..ids import is_gb_id

__all__ = ["TREE_EDITIONS", "UpperSettings", "parse_upper"]

TREE_EDITIONS = ("2016", "2022")
ID_MODES = ("keep", "map")
CHARSETS = ("GB2312", "GB18030", "UTF-8")
_LABEL = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?")


@dataclass(frozen=True, slots=True)
class UpperSettings:
    """One upper platform. Build with :func:`parse_upper` (validates) or directly in code."""

    sip_id: str
    """The upper's 20-digit SIP ID (Request-URI user of our REGISTER)."""
    host: str
    """Address the upper's SIP service listens on: an IP address, or a DNS name looked up once
    when registering (never a GB domain such as ``4400000000``)."""
    domain: str = ""
    """The upper's SIP domain (never resolved: the address is ``host``); empty means the first
    10 digits of ``sip_id``."""
    port: int = 5060
    transport: str = "udp"
    """Signalling transport to the upper: ``udp`` or ``tcp``."""
    password: str | None = field(default=None, repr=False)
    """Digest password the upper gave us; None when it does not challenge."""
    username: str | None = None
    """Digest username; None means our local ID (the usual case)."""
    local_id: str | None = None
    """The 20-digit ID we present to this upper; None means the platform's own SIP ID."""
    local_domain: str | None = None
    """Our domain as presented to this upper; None means the platform's domain."""
    name: str = ""
    """A display name for the API and logs."""
    enabled: bool = True
    register_interval: int = 3600
    """Expires we ask for; the registration is refreshed before it runs out."""
    keepalive_interval: int = 60
    keepalive_timeout_count: int = 3
    """Keepalives without an answer after which the upper is considered dead."""
    retry_interval: float = 60.0
    """First wait before registering again after a failure (doubles up to ``retry_max``)."""
    retry_max: float = 600.0
    share: str | tuple[str, ...] = "all"
    """``"all"`` or the device and channel IDs shared with this upper (a device ID shares all of
    its channels)."""
    ids: str = "keep"
    """``keep``: the upper sees our IDs; ``map``: IDs are translated (``id_prefix``, ``id_map``)."""
    id_prefix: str | None = None
    """With ``ids = "map"``: the first digits of every shared ID are replaced by this prefix."""
    id_map: Mapping[str, str] = field(default_factory=dict)
    """With ``ids = "map"``: explicit local ID -> upper-side ID (wins over ``id_prefix``)."""
    tree: str = "2016"
    """Catalog tree rules the upper expects (PROTOCOL §11.4): ``2016`` or ``2022``."""
    charset: str = "GB2312"
    """Charset of the MANSCDP bodies sent to this upper."""
    catalog_group: int = 4
    """Items per Catalog response or NOTIFY message sent to this upper."""
    civil_code: str | None = None
    """Civil code for our platform node and groups; None means the first 6 digits of our ID."""
    platform_node: bool = True
    """Put our platform itself (type 200) at the top of the catalog we share."""
    allow_control: bool = True
    """Forward PTZ and device control from this upper (local control still takes priority)."""
    media_host: str | None = None
    """Address we put in SDP answers to this upper; None means the media service's address."""

    @property
    def key(self) -> str:
        """The upper's identity in the API and the store."""
        return self.sip_id

    def to_dict(self) -> dict[str, Any]:
        """A JSON- and TOML-friendly form (the password included: for the store, not the API)."""
        out = asdict(self)
        out["share"] = self.share if isinstance(self.share, str) else list(self.share)
        out["id_map"] = dict(self.id_map)
        return out


_FIELDS = {name for name in UpperSettings.__dataclass_fields__}
_REQUIRED = ("sip_id", "host")


def _host_ok(host: str) -> bool:
    """An IP literal, or a DNS name whose last label is not all digits (``4400000000`` would
    otherwise be handed to the resolver)."""
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        pass
    labels = host.rstrip(".").split(".")
    return (len(host) <= 253 and not labels[-1].isdigit()
            and all(_LABEL.fullmatch(label) for label in labels))


def _fail(where: str, message: str) -> ConfigError:
    return ConfigError(f"{where}: {message}")


def parse_upper(raw: Mapping[str, Any] | UpperSettings, where: str = "upper") -> UpperSettings:
    """Check one upper's settings and return them typed; :class:`ConfigError` names the bad key."""
    if isinstance(raw, UpperSettings):
        raw = raw.to_dict()
    if not isinstance(raw, Mapping):
        raise _fail(where, f"must be a table, got {type(raw).__name__}")
    unknown = sorted(set(raw) - _FIELDS)
    if unknown:
        raise _fail(where, f"unknown key {unknown[0]!r} (known: {', '.join(sorted(_FIELDS))})")
    for key in _REQUIRED:
        if key not in raw:
            raise _fail(where, f"{key} is required")
    values = dict(raw)

    def string(key: str, optional: bool = False) -> None:
        value = values.get(key)
        if value is None and optional:
            return
        if not isinstance(value, str) or (not optional and not value):
            raise _fail(where, f"{key} must be a non-empty string, got {value!r}")

    def integer(key: str, low: int, high: int) -> None:
        if key not in values:
            return
        value = values[key]
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise _fail(where, f"{key} must be an integer in {low}..{high}, got {value!r}")

    def number(key: str, low: float, high: float) -> None:
        if key not in values:
            return
        value = values[key]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
            raise _fail(where, f"{key} must be a number in {low}..{high}, got {value!r}")
        values[key] = float(value)

    def boolean(key: str) -> None:
        if key in values and not isinstance(values[key], bool):
            raise _fail(where, f"{key} must be true or false, got {values[key]!r}")

    def choice(key: str, choices: tuple[str, ...], upper: bool = False) -> None:
        if key not in values:
            return
        value = values[key]
        if isinstance(value, int) and not isinstance(value, bool):
            value = str(value)
        if isinstance(value, str):
            value = value.upper() if upper else value.lower()
        if value not in choices:
            raise _fail(where, f"{key} must be one of {', '.join(choices)}, got {values[key]!r}")
        values[key] = value

    for key in ("sip_id", "local_id"):
        value = values.get(key)
        if value is None and key == "local_id":
            continue
        if not isinstance(value, str) or not is_gb_id(value):
            raise _fail(where, f"{key} must be a 20-digit ID, got {value!r}")
    if not values.get("domain"):
        values["domain"] = values["sip_id"][:10]
    for key in ("domain", "local_domain"):
        value = values.get(key)
        if value is None and key == "local_domain":
            continue
        if not isinstance(value, str) or not value or not value.isascii() or " " in value:
            raise _fail(where, f"{key} must be a SIP domain such as '4400000000', got {value!r}")
    string("host")
    if not _host_ok(values["host"]):
        raise _fail(where, f"host must be an IP address or a DNS name (a GB domain is no address), "
                           f"got {values['host']!r}")
    for key in ("password", "username", "id_prefix", "civil_code", "media_host"):
        string(key, optional=True)
    if "name" in values and not isinstance(values["name"], str):
        raise _fail(where, f"name must be a string, got {values['name']!r}")
    integer("port", 1, 65535)
    choice("transport", ("udp", "tcp"))
    boolean("enabled")
    boolean("platform_node")
    boolean("allow_control")
    integer("register_interval", 60, 86400 * 7)
    integer("keepalive_interval", 1, 86400)
    integer("keepalive_timeout_count", 1, 100)
    integer("catalog_group", 1, 100)
    number("retry_interval", 0.05, 86400)
    number("retry_max", 0.05, 86400)
    choice("ids", ID_MODES)
    choice("tree", TREE_EDITIONS)
    choice("charset", CHARSETS, upper=True)
    if values.get("retry_max", 600.0) < values.get("retry_interval", 60.0):
        raise _fail(where, "retry_max must not be shorter than retry_interval")

    share = values.get("share", "all")
    if isinstance(share, str):
        if share.lower() != "all":
            raise _fail(where, f'share must be "all" or a list of device/channel IDs, got {share!r}')
        values["share"] = "all"
    elif isinstance(share, (list, tuple)):
        for item in share:
            if not isinstance(item, str) or not is_gb_id(item):
                raise _fail(where, f"share: every entry must be a 20-digit ID, got {item!r}")
        values["share"] = tuple(dict.fromkeys(share))
    else:
        raise _fail(where, f'share must be "all" or a list of IDs, got {share!r}')

    id_map = values.get("id_map", {})
    if not isinstance(id_map, Mapping):
        raise _fail(where, f"id_map must be a table of local ID = upper ID, got {id_map!r}")
    seen: dict[str, str] = {}
    for local, remote in id_map.items():
        if not is_gb_id(str(local)) or not isinstance(remote, str) or not is_gb_id(remote):
            raise _fail(where, f"id_map: {local!r} = {remote!r}: both sides must be 20-digit IDs")
        if remote in seen:
            raise _fail(where, f"id_map: {seen[remote]} and {local} both map to {remote}")
        seen[remote] = str(local)
    values["id_map"] = {str(k): v for k, v in id_map.items()}
    prefix = values.get("id_prefix")
    if prefix is not None and (not prefix.isdigit() or not 1 <= len(prefix) <= 13):
        raise _fail(where, f"id_prefix must be 1 to 13 digits, got {prefix!r}")
    if values.get("ids", "keep") == "map" and prefix is None and not id_map:
        raise _fail(where, 'ids = "map" needs id_prefix or id_map')
    civil = values.get("civil_code")
    if civil is not None and (not civil.isdigit() or len(civil) not in (2, 4, 6, 8)):
        raise _fail(where, f"civil_code must be 2, 4, 6 or 8 digits, got {civil!r}")
    return UpperSettings(**values)
