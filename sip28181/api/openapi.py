"""OpenAPI 3.1 document generated from an :class:`~sip28181.api.routing.ApiRouter`.

All schemas come from pydantic in one generation pass, so every model is named once under
``components/schemas`` and referenced with ``$ref``. Query models are expanded into one
``parameter`` per field. Every operation documents its error responses with the
:class:`~sip28181.api.errors.ApiError` schema: the ``errors`` given at registration, plus 400 for
path or query parameters, 400/422 for a body, and 401 unless the route is public.

Security: ``bearerAuth`` (``Authorization: Bearer <token>``) or ``tokenQuery`` (``?token=``) on
every operation, public ones excepted (``security: []``). It applies when the server is
configured with a token.
"""

from __future__ import annotations

import json
from http import HTTPStatus
from typing import TYPE_CHECKING, Any

from pydantic import TypeAdapter

from .errors import ApiError

if TYPE_CHECKING:
    from .routing import ApiRouter, Route

__all__ = ["build_openapi", "SECURITY_SCHEMES"]

REF_PREFIX = "#/components/schemas/"

SECURITY_SCHEMES: dict[str, dict[str, Any]] = {
    "bearerAuth": {"type": "http", "scheme": "bearer",
                   "description": "API token in `Authorization: Bearer <token>`"},
    "tokenQuery": {"type": "apiKey", "in": "query", "name": "token",
                   "description": "API token as a query parameter (for players)"},
}


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Response"


def _error_response(description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _default_schema(route: Route) -> dict[str, Any]:
    if route.is_json:
        return {}
    if route.content_type.startswith("text/"):
        return {"type": "string"}
    return {"type": "string", "contentMediaType": route.content_type}


def _query_parameters(model_schema: dict[str, Any]) -> list[dict[str, Any]]:
    required = set(model_schema.get("required", ()))
    params = []
    for name, prop in model_schema.get("properties", {}).items():
        schema = {k: v for k, v in prop.items() if k not in ("title", "description")}
        param: dict[str, Any] = {"name": name, "in": "query", "required": name in required,
                                 "schema": schema}
        if "description" in prop:
            param["description"] = prop["description"]
        params.append(param)
    return params


def build_openapi(router: ApiRouter) -> dict[str, Any]:
    """The OpenAPI 3.1 document (a JSON-ready dict) of ``router``'s routes."""
    routes = [r for r in router.routes if r.include_in_schema]

    inputs: list[tuple[Any, Any, TypeAdapter[Any]]] = [
        (("error",), "serialization", TypeAdapter(ApiError))]
    for i, route in enumerate(routes):
        if route.response is not None and not isinstance(route.response, dict):
            inputs.append(((i, "response"), "serialization", TypeAdapter(route.response)))
        if route.query is not None:
            inputs.append(((i, "query"), "validation", TypeAdapter(route.query)))
        if route.body is not None:
            inputs.append(((i, "body"), "validation", TypeAdapter(route.body)))
    schemas, definitions = TypeAdapter.json_schemas(
        inputs, ref_template=REF_PREFIX + "{model}")
    components: dict[str, Any] = dict(definitions.get("$defs", {}))

    def schema_of(key: Any, mode: str) -> dict[str, Any]:
        return schemas[(key, mode)]

    error_schema = schema_of(("error",), "serialization")

    query_models: set[str] = set()
    paths: dict[str, dict[str, Any]] = {}
    tags: list[str] = []
    for i, route in enumerate(routes):
        op: dict[str, Any] = {"operationId": route.operation_id}
        if route.summary:
            op["summary"] = route.summary
        if route.description:
            op["description"] = route.description
        if route.tags:
            op["tags"] = list(route.tags)
            tags.extend(t for t in route.tags if t not in tags)
        if route.deprecated:
            op["deprecated"] = True

        params: list[dict[str, Any]] = []
        for name, p in route.path_params.items():
            param: dict[str, Any] = {"name": name, "in": "path", "required": True,
                                     "schema": p.schema()}
            if p.description:
                param["description"] = p.description
            params.append(param)
        if route.query is not None:
            ref = schema_of((i, "query"), "validation")["$ref"][len(REF_PREFIX):]
            query_models.add(ref)
            params.extend(_query_parameters(components[ref]))
        if params:
            op["parameters"] = params

        if route.body is not None:
            op["requestBody"] = {"required": True, "content": {
                "application/json": {"schema": schema_of((i, "body"), "validation")}}}

        responses: dict[str, Any] = {}
        if route.status == 204:
            responses["204"] = {"description": _phrase(204)}
        else:
            if isinstance(route.response, dict):
                schema = route.response
            elif route.response is not None:
                schema = schema_of((i, "response"), "serialization")
            else:
                schema = _default_schema(route)
            responses[str(route.status)] = {"description": _phrase(route.status),
                                            "content": {route.content_type: {"schema": schema}}}
        errors: dict[int, str] = {}
        if any(p.pattern for p in route.path_params.values()) or route.query is not None:
            errors[400] = "invalid path or query parameters"
        if route.body is not None:
            errors[400] = "invalid parameters or malformed JSON body" if 400 in errors \
                else "malformed JSON body"
            errors[422] = "the request body does not match its schema"
        if not route.public:
            errors[401] = "missing or wrong API token"
        errors.update(route.errors)
        for status in sorted(errors):
            responses[str(status)] = _error_response(errors[status], error_schema)
        op["responses"] = responses
        if route.public:
            op["security"] = []

        paths.setdefault(route.path, {})[route.method.lower()] = op

    # Query models are documented as parameters: drop their schema unless something else uses it.
    for name in query_models:
        others = {k: v for k, v in components.items() if k != name}
        if f'"{REF_PREFIX}{name}"' not in json.dumps({"paths": paths, "components": others}):
            del components[name]

    doc: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {"title": router.title, "version": router.version or "0"},
        "paths": dict(sorted(paths.items())),
        "components": {"schemas": dict(sorted(components.items())),
                       "securitySchemes": SECURITY_SCHEMES},
        "security": [{"bearerAuth": []}, {"tokenQuery": []}],
    }
    if router.description:
        doc["info"]["description"] = router.description
    if tags:
        doc["tags"] = [{"name": t} for t in tags]
    return doc
