"""HTTP layer of the server: route registry with OpenAPI, JSON errors, token auth, metrics.

::

    from aiohttp import web
    from sip28181.api import ApiRouter, Metrics, PathParam, create_app

    api = ApiRouter(prefix="/api/v1", title="sip28181", version=__version__)

    @api.get("/health", public=True)
    async def health(request: web.Request) -> dict:
        \"\"\"Liveness probe.\"\"\"
        return {"status": "ok"}

    metrics = Metrics()
    metrics.register(api)                      # GET /metrics, token required by default
    app = create_app(api, token=config.api_token)

Handlers stay thin: parse (done by the router), call a service, return its result; errors of
the services (:mod:`sip28181.errors`) become JSON error responses (:mod:`.errors`).
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from .auth import RedactingAccessLogger, auth_middleware, request_token
from .errors import ApiError, ApiErrorBody, HttpError, error_middleware, error_response
from .metrics import Metrics
from .routing import ApiRouter, Page, PageQuery, PathParam, Route, route_of

__all__ = [
    "ApiError", "ApiErrorBody", "ApiRouter", "HttpError", "Metrics", "Page", "PageQuery",
    "PathParam", "RedactingAccessLogger", "Route", "auth_middleware", "create_app",
    "error_middleware", "error_response", "request_token", "route_of",
]


def create_app(router: ApiRouter, *, token: str | None = None, **app_options: Any) -> web.Application:
    """An application serving ``router``'s routes behind the error and auth middlewares.

    ``app_options`` go to ``web.Application`` (``client_max_size``...). More routers can be
    installed on the result with :meth:`ApiRouter.install`.
    """
    app = web.Application(middlewares=[error_middleware, auth_middleware(token)], **app_options)
    router.install(app)
    return app
