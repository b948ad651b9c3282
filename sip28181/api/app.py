"""The server's HTTP application: every route area installed on one router."""

from __future__ import annotations

import time

from aiohttp import web

from .. import __version__
from ..platform import Platform
from . import create_app
from .devices import PLATFORM, STARTED, register_routes
from .media import register_routes as register_media_routes
from .metrics import Metrics
from .outputs import register_routes as register_output_routes
from .routing import ApiRouter

DESCRIPTION = ("GB/T 28181 platform API. Authenticate with `Authorization: Bearer <token>` "
               "or `?token=<token>` (for players).")


def build_router(metrics: Metrics | None = None) -> ApiRouter:
    from . import alarms, cascade, channels, control, controllog, events, stats

    api = ApiRouter(prefix="/api/v1", title="sip28181", version=__version__, description=DESCRIPTION)
    register_routes(api)
    for module in (channels, control, controllog, alarms, events, stats, cascade):
        module.register_routes(api)
    register_media_routes(api)
    register_output_routes(api)
    if metrics is not None:
        metrics.register(api)
    return api


def build_app(platform: Platform, *, token: str | None, metrics: Metrics | None = None) -> web.Application:
    app = create_app(build_router(metrics), token=token)
    app[PLATFORM] = platform
    app[STARTED] = time.monotonic()
    from .events import install as install_event_streams
    install_event_streams(app)
    return app
