"""Route registry: declare a REST route once, get validation, JSON rendering and OpenAPI from it.

::

    api = ApiRouter(prefix="/api/v1", title="sip28181", version=__version__)

    @api.get("/devices/{device_id}", response=DeviceOut, tags=["devices"],
             path_params={"device_id": PathParam(pattern=r"^\\d{20}$", description="20-digit ID")},
             errors={404: "device not found"})
    async def get_device(request: web.Request, device_id: str) -> DeviceOut:
        \"\"\"Get one device.\"\"\"            # first docstring line = OpenAPI summary
        return request.app[SERVICE].device(device_id)

    app = web.Application(middlewares=[error_middleware, auth_middleware(token)])
    api.install(app)                        # routes + GET /api/v1/openapi.json

The handler is called as ``handler(request, **path_params, query=..., body=...)``: each path
parameter by name (a ``str``, checked against its ``PathParam.pattern``), ``query`` when the route
declares a ``query`` model, ``body`` when it declares a ``body`` type. Failures answer before the
handler runs:

* a path parameter not matching its pattern, or query parameters the ``query`` model rejects: 400;
* a missing or malformed JSON body: 400; a well-formed body the ``body`` type rejects: 422.

The request body is read as JSON whatever its ``Content-Type`` (``curl -d`` sends a form type).
Query parameters: the first value is used, except for fields typed as a list, which take every
repeated value (``?status=ON&status=OFF``); ``token`` (the auth query parameter) is dropped
unless the model has a field of that name.

A handler returns a pydantic model, a list or dict (of models or JSON values), ``None``, or a
``web.StreamResponse`` (HTTP-FLV, event streams), which is passed through untouched. Values are
rendered as with ``model_dump(mode="json", by_alias=True)``, with the route's ``status``. The
declared ``response`` documents the result; it is not used to validate it.
"""

from __future__ import annotations

import inspect
import json
import re
import typing
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from types import UnionType
from typing import Any, Generic, TypeVar

from aiohttp import web
from multidict import MultiMapping
from pydantic import BaseModel, Field, TypeAdapter, ValidationError
from pydantic_core import to_jsonable_python

from .errors import HttpError, dumps, error_middleware, validation_detail

__all__ = ["ApiRouter", "Page", "PageQuery", "PathParam", "Route", "route_of"]

T = TypeVar("T")

Endpoint = Callable[..., Awaitable[Any]]

_TEMPLATE_RE = re.compile(r"\{([^{}]*)\}")
_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE"})
_RESERVED = frozenset({"request", "query", "body"})
_ROUTE_ATTR = "__sip28181_route__"


class Page(BaseModel, Generic[T]):
    """One page of a list: ``response=Page[DeviceOut]``."""

    items: list[T]
    total: int = Field(description="number of items matching, over all pages")
    offset: int = Field(description="index of the first item of this page")
    limit: int = Field(description="largest number of items a page holds")


class PageQuery(BaseModel):
    """Query parameters of a paged list; subclass it to add filters."""

    offset: int = Field(0, ge=0, description="index of the first item to return")
    limit: int = Field(100, ge=1, le=1000, description="largest number of items to return")


@dataclass(frozen=True, slots=True)
class PathParam:
    """Documentation and check of one path parameter (always a string)."""

    pattern: str | None = None
    """Regular expression the value must match (``re.search``, as in JSON Schema)."""
    description: str = ""
    example: str | None = None

    def schema(self) -> dict[str, Any]:
        schema: dict[str, Any] = {"type": "string"}
        if self.pattern is not None:
            schema["pattern"] = self.pattern
        if self.example is not None:
            schema["examples"] = [self.example]
        return schema


@dataclass(frozen=True, slots=True)
class Route:
    """One registered route, as served and as documented."""

    method: str
    path: str
    """Full path as served, the router prefix included when ``prefixed``."""
    handler: Endpoint
    operation_id: str
    summary: str = ""
    description: str = ""
    tags: tuple[str, ...] = ()
    path_params: Mapping[str, PathParam] = field(default_factory=dict)
    """Every parameter of the path template, those not declared with a default ``PathParam()``."""
    query: type[BaseModel] | None = None
    body: Any = None
    response: Any = None
    """A type for pydantic (model, ``list[Model]``, ``Page[Model]``), a raw JSON schema dict, or None."""
    status: int = 200
    errors: Mapping[int, str] = field(default_factory=dict)
    public: bool = False
    """Served without the API token (health, and /metrics when configured so)."""
    content_type: str = "application/json"
    include_in_schema: bool = True
    deprecated: bool = False

    @property
    def is_json(self) -> bool:
        return self.content_type == "application/json"


def route_of(request: web.Request) -> Route | None:
    """The :class:`Route` that matched ``request``, None for unknown paths and foreign routes."""
    return getattr(request.match_info.route.handler, _ROUTE_ATTR, None)


def _list_fields(model: type[BaseModel]) -> frozenset[str]:
    """Query keys of ``model`` whose field takes every repeated value."""
    names = set()
    for name, info in model.model_fields.items():
        annotation = info.annotation
        args = typing.get_args(annotation) if typing.get_origin(annotation) in (
            typing.Union, UnionType) else (annotation,)
        if any(typing.get_origin(a) in (list, set, frozenset, tuple) or a in (list, set, frozenset, tuple)
               for a in args):
            names.add(name)
            if isinstance(info.alias, str):
                names.add(info.alias)
            if isinstance(info.validation_alias, str):
                names.add(info.validation_alias)
    return frozenset(names)


def _query_input(model: type[BaseModel], lists: frozenset[str],
                 query: MultiMapping[str]) -> dict[str, Any]:
    data: dict[str, Any] = {}
    for key in query.keys():
        if key in data:
            continue
        data[key] = query.getall(key) if key in lists else query[key]
    if "token" not in model.model_fields:
        data.pop("token", None)
    return data


def _render(route: Route, result: Any) -> web.StreamResponse:
    if isinstance(result, web.StreamResponse):
        return result
    if result is None and route.status == 204:
        return web.Response(status=204)
    payload = to_jsonable_python(result, by_alias=True, inf_nan_mode="null")
    return web.json_response(payload, status=route.status, dumps=dumps)


def _endpoint(route: Route) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """The aiohttp handler that validates the request, calls ``route.handler`` and renders."""
    checks = [(name, re.compile(p.pattern), p.pattern)
              for name, p in route.path_params.items() if p.pattern is not None]
    names = tuple(route.path_params)
    query_lists = _list_fields(route.query) if route.query is not None else frozenset()
    body_adapter = TypeAdapter(route.body) if route.body is not None else None

    async def endpoint(request: web.Request) -> web.StreamResponse:
        kwargs: dict[str, Any] = {name: request.match_info[name] for name in names}
        bad = [{"loc": ["path", name], "msg": f"String should match pattern '{pattern}'",
                "type": "string_pattern_mismatch"}
               for name, regex, pattern in checks if not regex.search(kwargs[name])]
        if bad:
            raise HttpError(400, "invalid path parameter", bad)
        if route.query is not None:
            data = _query_input(route.query, query_lists, request.query)
            try:
                kwargs["query"] = route.query.model_validate(data)
            except ValidationError as exc:
                raise HttpError(400, "invalid query parameters",
                                validation_detail(exc, "query")) from None
        if body_adapter is not None:
            raw = await request.read()
            if not raw.strip():
                raise HttpError(400, "a JSON request body is required")
            try:
                value = json.loads(raw)
            except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError
                raise HttpError(400, "malformed JSON body", str(exc)) from None
            try:
                kwargs["body"] = body_adapter.validate_python(value)
            except ValidationError as exc:
                raise HttpError(422, "invalid request body",
                                validation_detail(exc, "body")) from None
        return _render(route, await route.handler(request, **kwargs))

    setattr(endpoint, _ROUTE_ATTR, route)
    endpoint.__name__ = endpoint.__qualname__ = route.operation_id
    endpoint.__doc__ = route.handler.__doc__
    return endpoint


def _check_signature(handler: Endpoint, names: Iterable[str]) -> None:
    if not inspect.iscoroutinefunction(handler):
        raise TypeError(f"{handler!r} must be an async function")
    params = inspect.signature(handler).parameters
    if any(p.kind is p.VAR_KEYWORD for p in params.values()):
        return
    for name in names:
        p = params.get(name)
        if p is None or p.kind not in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY):
            raise TypeError(f"{handler.__qualname__} must accept the keyword argument {name!r}")


class ApiRouter:
    """Registry of REST routes, installed on an aiohttp application, documented as OpenAPI 3.1.

    Register with the decorators :meth:`get`, :meth:`post`, :meth:`put`, :meth:`patch`,
    :meth:`delete` (or :meth:`add`), then call :meth:`install` once per application. Routes
    cannot be added after the first install.
    """

    def __init__(self, prefix: str = "/api/v1", *, title: str = "sip28181", version: str = "",
                 description: str = "", openapi_path: str = "/openapi.json",
                 openapi_public: bool = True) -> None:
        """``openapi_public``: serve the OpenAPI document without the API token. It is the same
        for every installation (it is generated from the code), and tools such as Swagger UI
        fetch it without credentials."""
        if prefix and (not prefix.startswith("/") or prefix.endswith("/")):
            raise ValueError(f"prefix must start with '/' and not end with it: {prefix!r}")
        self.prefix = prefix
        self.title = title
        self.version = version
        self.description = description
        self._routes: list[Route] = []
        self._installed = False
        self._openapi: dict[str, Any] | None = None
        self.openapi_route = self.add("GET", openapi_path, self._serve_openapi,
                                      operation_id="openapi", public=openapi_public,
                                      include_in_schema=False, response={"type": "object"})

    @property
    def routes(self) -> tuple[Route, ...]:
        return tuple(self._routes)

    def add(self, method: str, path: str, handler: Endpoint, *, response: Any = None,
            status: int = 200, summary: str | None = None, description: str | None = None,
            tags: Iterable[str] = (), path_params: Mapping[str, PathParam] | None = None,
            query: type[BaseModel] | None = None, body: Any = None,
            errors: Mapping[int, str] | None = None, public: bool = False, prefixed: bool = True,
            content_type: str = "application/json", operation_id: str | None = None,
            include_in_schema: bool = True, deprecated: bool = False) -> Route:
        """Register ``handler`` for ``method`` ``path`` (see the module docstring).

        ``path`` is below the router prefix unless ``prefixed=False`` (``/metrics``,
        ``/live/{device_id}/{channel_id}.flv``). ``summary`` and ``description`` default to the
        first line and the rest of the handler's docstring. ``errors`` documents the error
        statuses the handler itself may answer; 400/401/422 are documented automatically.
        """
        method = method.upper()
        if method not in _METHODS:
            raise ValueError(f"unsupported method {method!r}")
        if self._installed:
            raise RuntimeError("routes cannot be added after ApiRouter.install()")
        if not path.startswith("/"):
            raise ValueError(f"path must start with '/': {path!r}")
        full = (self.prefix if prefixed else "") + path
        names = _TEMPLATE_RE.findall(full)
        for name in names:
            if not _NAME_RE.match(name):
                raise ValueError(f"bad path parameter {{{name}}} in {full!r} "
                                 "(regular expressions go in PathParam.pattern)")
            if name in _RESERVED:
                raise ValueError(f"path parameter name {name!r} is reserved")
        if len(set(names)) != len(names):
            raise ValueError(f"repeated path parameter in {full!r}")
        declared = dict(path_params or {})
        unknown = set(declared) - set(names)
        if unknown:
            raise ValueError(f"path_params {sorted(unknown)} are not in {full!r}")
        if query is not None and not (isinstance(query, type) and issubclass(query, BaseModel)):
            raise TypeError("query must be a pydantic model class")
        for pattern in (p.pattern for p in declared.values() if p.pattern is not None):
            re.compile(pattern)
        expected = [*names, *(["query"] if query is not None else []),
                    *(["body"] if body is not None else [])]
        _check_signature(handler, expected)

        doc = inspect.getdoc(handler) or ""
        first, _, rest = doc.partition("\n")
        route = Route(
            method=method, path=full, handler=handler,
            operation_id=operation_id or handler.__name__,
            summary=first.strip() if summary is None else summary,
            description=rest.strip() if description is None else description,
            tags=tuple(tags), path_params={n: declared.get(n, PathParam()) for n in names},
            query=query, body=body, response=response, status=status, errors=dict(errors or {}),
            public=public, content_type=content_type, include_in_schema=include_in_schema,
            deprecated=deprecated)
        for other in self._routes:
            if other.operation_id == route.operation_id:
                raise ValueError(f"duplicate operation id {route.operation_id!r} "
                                 "(name the handler differently or pass operation_id=)")
            if (other.method, other.path) == (method, full):
                raise ValueError(f"{method} {full} is already registered")
        self._routes.append(route)
        self._openapi = None
        return route

    def route(self, method: str, path: str, **options: Any) -> Callable[[Endpoint], Endpoint]:
        """Decorator form of :meth:`add`; returns the handler unchanged."""
        def decorate(handler: Endpoint) -> Endpoint:
            self.add(method, path, handler, **options)
            return handler
        return decorate

    def get(self, path: str, **options: Any) -> Callable[[Endpoint], Endpoint]:
        return self.route("GET", path, **options)

    def post(self, path: str, **options: Any) -> Callable[[Endpoint], Endpoint]:
        return self.route("POST", path, **options)

    def put(self, path: str, **options: Any) -> Callable[[Endpoint], Endpoint]:
        return self.route("PUT", path, **options)

    def patch(self, path: str, **options: Any) -> Callable[[Endpoint], Endpoint]:
        return self.route("PATCH", path, **options)

    def delete(self, path: str, **options: Any) -> Callable[[Endpoint], Endpoint]:
        return self.route("DELETE", path, **options)

    def install(self, app: web.Application) -> None:
        """Add every route (and the OpenAPI document) to ``app``.

        :func:`~sip28181.api.errors.error_middleware` is put first in ``app.middlewares`` when
        it is not there yet, so that every answer of these routes is JSON.
        """
        if error_middleware not in app.middlewares:
            app.middlewares.insert(0, error_middleware)
        self._installed = True
        for route in self._routes:
            app.router.add_route(route.method, route.path, _endpoint(route),
                                 name=route.operation_id)

    def openapi(self) -> dict[str, Any]:
        """The OpenAPI 3.1 document of the registered routes (built once, then cached)."""
        if self._openapi is None:
            from .openapi import build_openapi
            self._openapi = build_openapi(self)
        return self._openapi

    async def _serve_openapi(self, request: web.Request) -> dict[str, Any]:
        """The OpenAPI 3.1 document of this API."""
        return self.openapi()
