"""SSRC allocation (PROTOCOL §8.3): ``D DDDDD DDDD`` = live/history, domain digits, serial.

The first digit is ``0`` for live and ``1`` for history (playback/download); digits 2–6 are digits
4–8 of the platform's 20-digit ID (``id[3:8]``); the last four are a serial unique among the
sessions alive now. Single-port receivers demultiplex streams by SSRC, so two live sessions never
share one. Sans-IO: a set and a counter.
"""

from __future__ import annotations

from ..errors import Sip28181Error
from ..sdp import normalize_ssrc

__all__ = ["SsrcAllocator", "SsrcExhausted", "SERIALS"]

#: Serials per prefix (four decimal digits).
SERIALS = 10_000


class SsrcExhausted(Sip28181Error):
    """All 10,000 SSRCs of one kind are in use."""


class SsrcAllocator:
    def __init__(self, server_id: str) -> None:
        digits = "".join(c for c in server_id if c.isdigit())
        if len(digits) < 8:
            raise ValueError("the server ID needs at least 8 digits (PROTOCOL §8.3 uses id[3:8])")
        self.domain_digits = digits[3:8]
        self._in_use: set[str] = set()
        self._next = {False: 1, True: 1}     # serial 0000 skipped: a zero serial reads as "unset"

    def allocate(self, history: bool = False) -> str:
        """A 10-digit SSRC not in use; :class:`SsrcExhausted` when all 10,000 are taken."""
        prefix = ("1" if history else "0") + self.domain_digits
        serial = self._next[history]
        for _ in range(SERIALS):
            candidate = f"{prefix}{serial:04d}"
            serial = serial + 1 if serial + 1 < SERIALS else 1
            if candidate not in self._in_use:
                self._next[history] = serial
                self._in_use.add(candidate)
                return candidate
        raise SsrcExhausted(f"no free {'history' if history else 'live'} SSRC")

    def reserve(self, ssrc: str) -> str | None:
        """Mark an SSRC chosen elsewhere (an offer's, a device's own) as in use; its normalised
        form, or None when it is not a usable SSRC."""
        normal = normalize_ssrc(ssrc)
        if normal is not None:
            self._in_use.add(normal)
        return normal

    def release(self, ssrc: str | None) -> None:
        """Free ``ssrc`` (idempotent; unknown values are ignored)."""
        normal = normalize_ssrc(ssrc)
        if normal is not None:
            self._in_use.discard(normal)

    def in_use(self, ssrc: str) -> bool:
        normal = normalize_ssrc(ssrc)
        return normal is not None and normal in self._in_use

    def __len__(self) -> int:
        return len(self._in_use)
