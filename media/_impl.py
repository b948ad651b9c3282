"""Choosing between a compiled stage and its pure-Python twin.

Every hot-path stage exists twice: ``cext/_NAME.pyx`` compiled into ``media._NAME`` and the readable
reference ``media/_NAME_py.py``. ``SIP28181_NO_EXTENSIONS=1`` forces the twins. When extensions are
not disabled but a compiled module is missing, the twin is used and :data:`FALLBACKS` records it, so
tests (and ``python -m media probe``) can tell a real build from a silent fallback.
"""

from __future__ import annotations

import importlib
import os
from types import ModuleType

NO_EXTENSIONS: bool = os.environ.get("SIP28181_NO_EXTENSIONS", "") not in ("", "0")

#: Names of stages whose compiled module could not be imported although extensions were wanted.
FALLBACKS: list[str] = []


def load(name: str) -> tuple[ModuleType, ModuleType]:
    """Return ``(chosen, python_twin)`` for stage ``name`` (e.g. ``"rtp"``)."""
    twin = importlib.import_module(f"media._{name}_py")
    if NO_EXTENSIONS:
        return twin, twin
    try:
        compiled = importlib.import_module(f"media._{name}")
    except ImportError:
        FALLBACKS.append(name)
        return twin, twin
    return compiled, twin


def compiled(name: str) -> ModuleType | None:
    """The compiled module for stage ``name``, or None when it is not built (for parity tests)."""
    try:
        return importlib.import_module(f"media._{name}")
    except ImportError:
        return None
