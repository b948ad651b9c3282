"""Choosing between a compiled SIP stage and its pure-Python reference.

The rules of ``media._impl``: ``SIP28181_NO_EXTENSIONS=1`` forces the pure-Python code; when
extensions are not disabled but a compiled module cannot be imported, the Python code is used and
:data:`FALLBACKS` records it, so tests can tell a real build from a silent fallback.
"""

from __future__ import annotations

import importlib
import os
from types import ModuleType

NO_EXTENSIONS: bool = os.environ.get("SIP28181_NO_EXTENSIONS", "") not in ("", "0")

#: Names of compiled modules that could not be imported although extensions were wanted.
FALLBACKS: list[str] = []


def load(module: str) -> ModuleType | None:
    """The compiled ``module`` (e.g. ``"sip28181.sip._sipmsg"``), or None to use the Python code."""
    if NO_EXTENSIONS:
        return None
    try:
        return importlib.import_module(module)
    except ImportError:
        FALLBACKS.append(module)
        return None


def compiled(module: str) -> ModuleType | None:
    """The compiled ``module`` whatever the environment says, or None when not built (parity tests)."""
    try:
        return importlib.import_module(module)
    except ImportError:
        return None
