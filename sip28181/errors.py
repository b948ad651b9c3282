"""Exception hierarchy: one root, split by who is at fault.

A :class:`RemoteProtocolError` carries the status the SIP layer answers with (and the REST layer maps
to an HTTP status), so a parser deep in the stack decides the reply without knowing about sockets.
"""

from __future__ import annotations


class Sip28181Error(Exception):
    """Root of every error this package raises on purpose."""


class RemoteProtocolError(Sip28181Error):
    """The peer sent something we cannot accept; answer with ``status_hint`` and ``reason``."""

    def __init__(self, reason: str, status_hint: int = 400) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status_hint = status_hint


class LocalProtocolError(Sip28181Error):
    """Our caller asked for something the protocol does not allow (API misuse)."""


class ManscdpError(RemoteProtocolError):
    """A MANSCDP XML body could not be decoded."""


class AuthError(RemoteProtocolError):
    """Digest authentication failed; ``status_hint`` is 401 (challenge) or 403 (refused)."""


class TransactionError(Sip28181Error):
    """A transaction ended without a final response (timeout or transport error)."""


class NotFoundError(Sip28181Error):
    """An unknown device, channel or stream was named."""


class ConfigError(Sip28181Error, ValueError):
    """The configuration (TOML, environment or flags) is invalid."""
