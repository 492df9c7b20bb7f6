"""The request handler of ``Router``'s routes of the common shape, cheaper than FastAPI's.

FastAPI's handler serves every kind of route (forms, dependencies with ``yield``, path,
query and header parameters, streams, OpenTelemetry spans) and pays for that generality on
every call. Most of an atom's calls are simpler: an ``async def`` taking one JSON body
model (or nothing but the request), answering JSON. For a route of that shape
``direct_handler`` reads the body, validates it, calls the endpoint and serialises its
answer with the route's own fields: the same Pydantic validation and serialisation as
FastAPI, without solving dependencies (the template's ``bench_choices`` measures it).

It hands the call to FastAPI's handler, untouched, whenever it could differ from it:

- a route of another shape (``direct_handler`` returns None);
- a body that is not ``application/json``, is empty, or is not valid JSON;
- a body that fails validation: FastAPI makes the 422, so it is FastAPI's to the byte;
- a request that FastAPI's OpenTelemetry instrumentation follows (its spans stay whole).

The body is read and parsed once either way: both handlers get the route class's
``JsonRequest`` (``api/json_body.py``), which keeps it and its JSON value.

It reads the route's public attributes as FastAPI's handler does. The context of a route
that a router includes (prefix, dependencies and response class merged in) is only in a
private variable of FastAPI's: ``api/guards.py`` checks it once, and without it every call
goes to FastAPI's handler. ``tests/test_handler.py`` compares both handlers' answers byte
for byte, so a FastAPI upgrade that changes either shows there.
"""

import inspect
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import HTTPException, Request, Response, params
from fastapi.datastructures import DefaultPlaceholder
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import EndpointContext, ResponseValidationError
from fastapi.routing import APIRoute
from fastapi.utils import is_body_allowed_for_status_code
from starlette.responses import StreamingResponse
from starlette.types import Scope

from .guards import ROUTE_CONTEXT, route_context_var
from .middleware.http import scope_header

Handler = Callable[[Request], Coroutine[Any, Any, Response]]
BODY_LOC = ("body",)
RESPONSE_LOC = ("response",)
JSON_TYPE = b"application/json"
TELEMETRY_KEY = "fastapi.telemetry"  # in the scope while FastAPI's instrumentation runs
# Dependant attributes that each mean work only FastAPI's handler does.
UNSUPPORTED_PARAMS = (
    "path_params",
    "query_params",
    "header_params",
    "cookie_params",
    "dependencies",
    "websocket_param_name",
    "http_connection_param_name",
    "response_param_name",
    "background_tasks_param_name",
    "security_scopes_param_name",
)


def as_built(route: APIRoute) -> Any:
    """``route`` as FastAPI builds its handler: for a route that a router includes, the
    inclusion's context (prefix, dependencies and response class merged in), which FastAPI
    holds in a context variable while ``get_route_handler`` runs; None when that variable
    does not behave as expected (``guards.ROUTE_CONTEXT``)."""
    if not ROUTE_CONTEXT.ok:
        return None
    context = route_context_var().get()
    if context is not None and context.original_route is route:
        return context
    return route


def unsupported_because(route: Any) -> str | None:
    """Why ``route`` (``as_built``) needs FastAPI's handler, or None when
    ``direct_handler`` serves it."""
    dependant = route.dependant
    for name in UNSUPPORTED_PARAMS:
        if getattr(dependant, name):
            return f"it has {name.replace('_', ' ')}"
    body = dependant.body_params
    status = route.status_code
    checks = (
        (not inspect.iscoroutinefunction(dependant.call), "its endpoint is not an async def"),
        (bool(body) and isinstance(body[0].field_info, params.Form), "its body is a form"),
        (_embedded(body), "its body is embedded"),
        (route.is_json_stream or route.stream_item_field is not None, "it streams"),
        (issubclass(_response_class(route), StreamingResponse), "it streams"),
        (status is not None and not is_body_allowed_for_status_code(status), "no body"),
        (getattr(route, "max_body_size", None) is not None, "it has FastAPI's max_body_size"),
    )
    return next((reason for failed, reason in checks if failed), None)


def direct_handler(route: APIRoute, generic: Handler) -> Handler | None:
    """A handler for ``route`` that serves its common calls itself and hands the others to
    ``generic`` (FastAPI's handler of the same route); None when the route's shape needs
    FastAPI's handler for every call (``unsupported_because``).

    Call it where FastAPI builds the route's handler (``APIRoute.get_route_handler``)."""
    route = as_built(route)
    if route is None or unsupported_because(route) is not None:
        return None
    dependant = route.dependant
    call = dependant.call
    assert call is not None  # unsupported_because checked it is a coroutine function
    body_field = dependant.body_params[0] if dependant.body_params else None
    request_name = dependant.request_param_name
    respond = _responder(route)

    async def handle(request: Request) -> Response:
        scope = request.scope
        if scope.get(TELEMETRY_KEY) is not None:
            return await generic(request)
        values: dict[str, Any] = {}
        if body_field is not None:
            if not _is_json(scope) or not await _read_body(request):
                return await generic(request)
            try:
                value = await request.json()
            except ValueError:  # FastAPI's handler answers it (json_invalid)
                return await generic(request)
            valid, errors = body_field.validate(value, {}, loc=BODY_LOC)
            if errors:
                return await generic(request)
            values[body_field.name] = valid
        if request_name is not None:
            values[request_name] = request
        answer = await call(**values)
        if isinstance(answer, Response):
            return answer
        return respond(request, answer)

    return handle


def _embedded(body: list[Any]) -> bool:
    """FastAPI reads the body as ``{name: value}``: several body parameters, or one declared
    with ``Body(embed=True)`` (its rule for a route without dependencies or forms)."""
    return len(body) > 1 or bool(body and getattr(body[0].field_info, "embed", None))


async def _read_body(request: Request) -> bytes:
    """The request's body, a failure to read it made FastAPI's 400 as its handler does."""
    try:
        return await request.body()
    except HTTPException:
        raise
    except Exception as exc:
        raise HTTPException(status_code=400, detail="There was an error parsing the body") from exc


def _is_json(scope: Scope) -> bool:
    """The request's content type is ``application/json`` (parameters aside)."""
    content_type = scope_header(scope, b"content-type")
    return content_type is not None and content_type.partition(b";")[0].strip().lower() == JSON_TYPE


def _response_class(route: Any) -> type[Response]:
    """The class of the route's responses (the default's value when it keeps the default)."""
    response_class = route.response_class
    if isinstance(response_class, DefaultPlaceholder):
        return response_class.value
    return response_class


def _responder(route: Any) -> Callable[[Request, Any], Response]:
    """``respond(request, answer)``: the response FastAPI's handler makes of an endpoint's
    answer on ``route`` (validated against the response model, then serialised)."""
    field = route.response_field
    options = {
        "include": route.response_model_include,
        "exclude": route.response_model_exclude,
        "by_alias": route.response_model_by_alias,
        "exclude_unset": route.response_model_exclude_unset,
        "exclude_defaults": route.response_model_exclude_defaults,
        "exclude_none": route.response_model_exclude_none,
    }
    status = {} if route.status_code is None else {"status_code": route.status_code}
    response_class = _response_class(route)
    # As FastAPI: Pydantic writes the JSON bytes when the route keeps the default class.
    dump_json = field is not None and isinstance(route.response_class, DefaultPlaceholder)

    def respond(request: Request, answer: Any) -> Response:
        if field is None:
            return response_class(jsonable_encoder(answer), **status)
        value, errors = field.validate(answer, {}, loc=RESPONSE_LOC)
        if errors:
            context = _endpoint_context(route, request)
            raise ResponseValidationError(errors=errors, body=answer, endpoint_ctx=context)
        if dump_json:
            content = field.serialize_json(value, **options)
            return Response(content=content, media_type="application/json", **status)
        return response_class(field.serialize(value, **options), **status)

    return respond


def _endpoint_context(route: Any, request: Request) -> EndpointContext:
    """Where the endpoint is, for the error of an answer its response model refuses."""
    call = route.dependant.call
    context = EndpointContext(function=getattr(call, "__name__", repr(call)))
    try:
        context["file"] = inspect.getsourcefile(call) or "?"
        context["line"] = inspect.getsourcelines(call)[1]
    except (OSError, TypeError):
        pass
    root = request.scope.get("root_path", "").rstrip("/")
    context["path"] = f"{request.method} {root}{route.path}"
    return context
