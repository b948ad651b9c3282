"""API token check for the HTTP server.

When a token is configured, every request must carry it, as ``Authorization: Bearer <token>``
or as the query parameter ``?token=<token>`` (for players that cannot set headers). A missing
or wrong token is answered 401 with ``WWW-Authenticate: Bearer`` and the JSON error body.
Tokens are compared in constant time. With no token (``None`` or ``""``) every request passes.

What is served without the token is decided per route, by ``public=True`` at registration
(:meth:`~sip28181.api.routing.ApiRouter.add`):

* ``GET /api/v1/health`` is registered public, for load balancers and liveness probes;
* ``GET /api/v1/openapi.json`` is public by default (``ApiRouter(openapi_public=...)``): the
  document is the same for every installation and tools fetch it without credentials;
* ``GET /metrics`` is protected by default (``Metrics.register(api, public=...)``): it tells
  what devices are doing, and Prometheus can send the token itself
  (``authorization: {credentials: <token>}`` in the scrape config); set it public to scrape
  without one on a trusted network;
* unknown paths and routes added to the application by other means are protected, so that
  without the token a client cannot tell which paths exist.

A token in the query string ends up in access logs; :class:`RedactingAccessLogger` hides it.
"""

from __future__ import annotations

import hmac
import re
from collections.abc import Awaitable, Callable

from aiohttp import hdrs, web
from aiohttp.web_log import AccessLogger

from .errors import HttpError
from .routing import route_of

__all__ = ["RedactingAccessLogger", "auth_middleware", "request_token"]

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Middleware = Callable[[web.Request, Handler], Awaitable[web.StreamResponse]]

_TOKEN_QS_RE = re.compile(r"([?&]token=)[^&#]*")


def request_token(request: web.Request) -> str | None:
    """The token ``request`` carries: the ``Authorization: Bearer`` header, else ``?token=``."""
    header = request.headers.get(hdrs.AUTHORIZATION, "")
    scheme, _, value = header.strip().partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return request.query.get("token")


def auth_middleware(token: str | None) -> Middleware:
    """Middleware requiring ``token`` on every non-public route (see the module docstring).

    Put it after :func:`~sip28181.api.errors.error_middleware`::

        web.Application(middlewares=[error_middleware, auth_middleware(config.api_token)])
    """
    expected = token.encode() if token else None

    @web.middleware
    async def check_token(request: web.Request, handler: Handler) -> web.StreamResponse:
        if expected is None:
            return await handler(request)
        route = route_of(request)
        if route is not None and route.public:
            return await handler(request)
        given = request_token(request)
        if given is None:
            raise HttpError(401, "authentication required",
                            headers={hdrs.WWW_AUTHENTICATE: 'Bearer realm="sip28181"'})
        if not hmac.compare_digest(given.encode(), expected):
            raise HttpError(401, "invalid token", headers={
                hdrs.WWW_AUTHENTICATE: 'Bearer realm="sip28181", error="invalid_token"'})
        return await handler(request)

    return check_token


def _redacted_request_line(request: web.BaseRequest, response: web.StreamResponse,
                           time: float) -> str:
    if request is None:
        return "-"
    path = _TOKEN_QS_RE.sub(r"\1***", request.path_qs)
    return f"{request.method} {path} HTTP/{request.version.major}.{request.version.minor}"


class RedactingAccessLogger(AccessLogger):
    """aiohttp access logger that writes ``?token=***`` instead of the token.

    ``web.AppRunner(app, access_log_class=RedactingAccessLogger)``
    """

    def compile_format(self, log_format: str) -> tuple[str, list]:  # type: ignore[override]
        fmt, methods = super().compile_format(log_format)
        methods = [m._replace(method=_redacted_request_line)
                   if m.method is AccessLogger._format_r else m for m in methods]
        return fmt, methods
