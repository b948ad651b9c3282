"""Fixtures shared by media tests: every stage is tested as its compiled module and its twin."""

from __future__ import annotations

import pathlib

import pytest

from media import _impl

SHARED_DATA = pathlib.Path(__file__).resolve().parents[3] / "shared" / "data"
DATA = pathlib.Path(__file__).resolve().parents[1] / "data"


def stage_params(name: str) -> list:
    """pytest params ``[python, compiled]`` for stage ``name``.

    The compiled module is required unless ``SIP28181_NO_EXTENSIONS=1``: a missing build is a
    failing test, never a silent skip.
    """
    import importlib

    params = [pytest.param(importlib.import_module(f"media._{name}_py"), id="py")]
    if not _impl.NO_EXTENSIONS:
        params.append(pytest.param(name, id="cy", marks=()))
    return params


def resolve(mod_or_name):
    """Turn a param from :func:`stage_params` into a module (import the compiled one lazily)."""
    if isinstance(mod_or_name, str):
        compiled = _impl.compiled(mod_or_name)
        assert compiled is not None, f"media._{mod_or_name} is not built (run pip install -e .)"
        return compiled
    return mod_or_name
