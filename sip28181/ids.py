"""20-digit GB/T 28181 IDs (coding rule A): validation and field access.

Validation is deliberately loose about the meaning of digits (field devices and platforms use
arbitrary type and industry codes, PROTOCOL §14.12): an ID is 20 ASCII digits, nothing more.
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import RemoteProtocolError


def is_gb_id(value: str) -> bool:
    return len(value) == 20 and value.isascii() and value.isdigit()


def validate_id(value: str, what: str = "ID") -> str:
    """Return ``value`` when it is a 20-digit ID, else raise a 400-class error naming ``what``."""
    if not is_gb_id(value):
        raise RemoteProtocolError(f"{what} must be 20 digits, got {value[:40]!r}", 400)
    return value


@dataclass(frozen=True, slots=True)
class GbId:
    value: str

    def __post_init__(self) -> None:
        validate_id(self.value)

    @property
    def center(self) -> str:
        return self.value[0:8]

    @property
    def domain(self) -> str:
        """The SIP domain: centre code plus industry code (first 10 digits)."""
        return self.value[0:10]

    @property
    def industry(self) -> str:
        return self.value[8:10]

    @property
    def type_code(self) -> int:
        return int(self.value[10:13])

    @property
    def network(self) -> int:
        return int(self.value[13])

    @property
    def serial(self) -> str:
        return self.value[14:20]

    @property
    def is_platform(self) -> bool:
        return self.type_code == 200

    def __str__(self) -> str:
        return self.value
