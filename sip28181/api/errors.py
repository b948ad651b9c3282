"""One JSON error shape for every failed REST request, and the middleware that produces it.

Every error response, whoever raised it, has the body::

    {"error": {"status": 404, "message": "device not found", "detail": null}}

:func:`error_middleware` maps exceptions to that shape (it must be the outermost middleware, so
that the 401 of the auth middleware and aiohttp's own 404/405 go through it too):

=================================================  ===================================================
exception                                          response
=================================================  ===================================================
:class:`HttpError`                                 its ``status``, ``message``, ``detail``, ``headers``
``web.HTTPException`` with status >= 400           same status; headers kept (``Allow``, ``WWW-Authenticate``)
``web.HTTPException`` with status < 400            passed through (redirects)
``pydantic.ValidationError``                       400, the field errors in ``detail``
:class:`~sip28181.errors.NotFoundError`            404
:class:`~sip28181.errors.RemoteProtocolError`      ``status_hint`` when it is an HTTP 4xx/5xx status, else 400
:class:`~sip28181.errors.LocalProtocolError`,
:class:`~sip28181.errors.ConfigError`              400
:class:`~sip28181.errors.TransactionError`,
``TimeoutError``                                   504 (the device did not answer in time)
other :class:`~sip28181.errors.Sip28181Error`      500 with the exception's message, logged
anything else                                      500 ``internal error``, logged with traceback
=================================================  ===================================================

Tracebacks are logged, never sent. Once a streaming response has started, no error body can be
sent any more: the exception is logged and re-raised so aiohttp closes the connection.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from http import HTTPStatus
from typing import Any

from aiohttp import hdrs, web
from pydantic import BaseModel, ValidationError
from pydantic_core import to_jsonable_python

from ..errors import (ConfigError, LocalProtocolError, NotFoundError, RemoteProtocolError,
                      Sip28181Error, TransactionError)

__all__ = ["ApiError", "ApiErrorBody", "HttpError", "error_middleware", "error_response",
           "validation_detail"]

log = logging.getLogger("sip28181.api")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

#: Headers of an ``HTTPException`` that describe its own (text) body and must not be copied.
_BODY_HEADERS = frozenset({hdrs.CONTENT_TYPE, hdrs.CONTENT_LENGTH, hdrs.CONTENT_ENCODING})


class ApiErrorBody(BaseModel):
    """The `error` member of every error response."""

    status: int
    message: str
    detail: Any = None


class ApiError(BaseModel):
    """Body of every error response."""

    error: ApiErrorBody


class HttpError(Exception):
    """Raise from a handler to answer with an error of any status.

    ``raise HttpError(409, "device busy", detail={"session": sid})``
    """

    def __init__(self, status: int, message: str, detail: Any = None, *,
                 headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.detail = detail
        self.headers = dict(headers or {})


def dumps(value: Any) -> str:
    """JSON text for a response body: UTF-8 kept readable (device names are often Chinese)."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def error_response(status: int, message: str, detail: Any = None, *,
                   headers: Mapping[str, str] | None = None) -> web.Response:
    """A JSON error response in the shape of :class:`ApiError`."""
    body = {"error": {"status": status, "message": message,
                      "detail": to_jsonable_python(detail, fallback=str, inf_nan_mode="null")}}
    return web.json_response(body, status=status, headers=headers, dumps=dumps)


def validation_detail(exc: ValidationError, where: str | None = None) -> list[dict[str, Any]]:
    """The field errors of ``exc`` as JSON values, each ``loc`` prefixed with ``where``.

    The rejected input is left out: it may be large, and it is what the client just sent.
    """
    out = []
    for err in exc.errors(include_url=False, include_input=False):
        item = to_jsonable_python(err, fallback=str, inf_nan_mode="null")
        if where is not None:
            item["loc"] = [where, *item.get("loc", ())]
        out.append(item)
    return out


def _status_of_hint(hint: int) -> int:
    try:
        HTTPStatus(hint)
    except ValueError:  # SIP-only codes such as 481 or 488
        return 400
    return hint if 400 <= hint < 600 else 400


def _from_http_exception(exc: web.HTTPException) -> web.Response:
    reason = exc.reason or HTTPStatus(exc.status).phrase
    text = exc.text
    message = text if text and text != f"{exc.status}: {reason}" else reason
    detail: Any = None
    if isinstance(exc, web.HTTPMethodNotAllowed):
        detail = {"method": exc.method, "allowed": sorted(exc.allowed_methods)}
    headers = {k: v for k, v in exc.headers.items() if k not in _BODY_HEADERS}
    return error_response(exc.status, message, detail, headers=headers)


def response_for_exception(exc: Exception) -> web.Response:
    """Map ``exc`` to a JSON error response (the table in this module's docstring)."""
    if isinstance(exc, HttpError):
        return error_response(exc.status, exc.message, exc.detail, headers=exc.headers)
    if isinstance(exc, web.HTTPException):
        return _from_http_exception(exc)
    if isinstance(exc, ValidationError):
        return error_response(400, "validation failed", validation_detail(exc))
    if isinstance(exc, NotFoundError):
        return error_response(404, str(exc) or "not found")
    if isinstance(exc, RemoteProtocolError):
        return error_response(_status_of_hint(exc.status_hint), exc.reason)
    if isinstance(exc, (LocalProtocolError, ConfigError)):
        return error_response(400, str(exc))
    if isinstance(exc, TransactionError):
        return error_response(504, str(exc) or "no response from device")
    if isinstance(exc, TimeoutError):
        return error_response(504, "timed out")
    if isinstance(exc, Sip28181Error):
        log.error("request failed: %s", exc, exc_info=exc)
        return error_response(500, str(exc) or type(exc).__name__)
    log.error("unexpected error while handling a request", exc_info=exc)
    return error_response(500, "internal error")


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Turn every exception a handler raises into a JSON error response."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        response: Exception = exc
    except Exception as exc:  # noqa: BLE001 - mapped, and logged when unexpected
        response = exc
    if request.writer is not None and request.writer.output_size > 0:
        # A stream was already being sent: an error body cannot follow it.
        if isinstance(response, ConnectionError):
            log.debug("client went away during %s %s", request.method, request.path)
        else:
            log.error("error after the response started: %s %s", request.method, request.path,
                      exc_info=response)
        raise response
    return response_for_exception(response)
