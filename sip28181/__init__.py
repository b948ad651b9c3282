"""GB/T 28181 signalling: SIP core, registrar, MANSCDP, media sessions, cascade, server."""

from .errors import (AuthError, ConfigError, LocalProtocolError, ManscdpError, NotFoundError,
                     RemoteProtocolError, Sip28181Error, TransactionError)

__version__ = "0.1.0"

__all__ = [
    "AuthError", "ConfigError", "LocalProtocolError", "ManscdpError", "NotFoundError",
    "RemoteProtocolError", "Sip28181Error", "TransactionError", "__version__",
]
