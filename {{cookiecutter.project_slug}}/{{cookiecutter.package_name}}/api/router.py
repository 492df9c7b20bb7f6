"""``UdfAPIRoute``: a router whose routes log each call.

Usage is unchanged from ``linker_atom``::

    route = UdfAPIRoute()

    @route.post("/detect")
    async def detect(...): ...

    app.include_router(route, prefix=settings.atom_api_prefix)

Routers also carry the loaders of their models (``model_loader``). Each call logs one
line when it ends: method, path, client, query, a summary of the body (long strings
cut, bytes counted, secret-looking fields redacted), then the status or the error, and
the duration. At DEBUG a line is also logged when the call arrives,
with the headers (Authorization, Cookie and token-like values redacted). With PROFILING
on, calls are profiled with cProfile and the top functions logged; a query parameter
cannot switch it on.
"""

import cProfile
import io
import logging
import pstats
import re
import time
from collections.abc import Callable
from typing import Any

import orjson
from fastapi import APIRouter, Request, Response
from fastapi.routing import APIRoute

from ..control.logs import log_line
from ..lib.common import SECRET_WORDS, escape_for_log, format_long, ms_since, redact_headers
from .batching import Batching
from .dependencies import inline_state_dependencies
from .handler import Handler, direct_handler
from .middleware.http import path_for_log, scope_header
from .schema.response import ERROR_RESPONSES
from .streaming import stream_route

logger = logging.getLogger(__name__)

BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
PROFILE_TOP = 25
# A JSON body this short, on one line, without a secret-looking word or a URL's userinfo,
# is logged as sent: summarising it would change nothing but cost more than the log line.
SHORT_JSON_BYTES = 256
NOT_JSON = object()  # a body that is not JSON (or not read as JSON)
WIDE_INT = 2.0**63  # orjson reads integer literals from -2**63 to 2**64 - 1 exactly
NESTED = frozenset({float, dict, list})  # what as_json_module_reads looks into
NUMBERS = frozenset({int, float, bool})
LONG_LIST = 64  # items from which a list of numbers is checked by its bounds
# A control character (the body spans lines), an @ or a secret-looking word, in a
# lower-cased body: one search (measured 2.3x faster than a substring test per word).
NOT_PLAIN_RE = re.compile(rb"[\x00-\x1f\x7f@]|" + b"|".join(re.escape(w) for w in SECRET_WORDS))


def describe_body(body: bytes, content_type: str) -> tuple[str, Any]:
    """A log-sized summary of a request body, and its JSON value (``NOT_JSON`` unless it
    parsed as JSON)."""
    if not body:
        return "-", NOT_JSON
    if "json" in content_type:
        try:
            value = orjson.loads(body)
        except orjson.JSONDecodeError:
            return f"<{len(body)} bytes, invalid JSON>", NOT_JSON
        if len(body) <= SHORT_JSON_BYTES and _plain(body):
            return body.decode(), value
        return format_long(value), value
    return f"<{len(body)} bytes, {escape_for_log(content_type) or 'no content-type'}>", NOT_JSON


def as_json_module_reads(value: Any) -> bool:
    """True when ``value``, from ``orjson.loads``, is what ``json.loads`` makes of the same
    body. orjson reads an integer literal beyond 64 bits as a float (the json module keeps it
    exact): any integral float that large may be one, and makes this False.

    A long list of numbers (a tensor's data) is checked by its minimum and maximum,
    found in C, instead of a loop over its items.
    """
    pending = [value]
    while pending:
        item = pending.pop()
        kind = type(item)
        if kind is float:
            if _wide(item):
                return False
            continue
        if kind is not dict and kind is not list:
            continue
        values = item.values() if kind is dict else item
        if NESTED.isdisjoint(map(type, values)):
            continue  # strings, integers...: nothing orjson reads otherwise
        if kind is list and len(item) > LONG_LIST and set(map(type, item)) <= NUMBERS:
            if min(item) > -WIDE_INT and max(item) < WIDE_INT:
                continue
            if any(type(number) is float and _wide(number) for number in item):
                return False
            continue
        pending.extend(v for v in values if type(v) in NESTED)
    return True


def _wide(number: float) -> bool:
    """An integral float beyond what orjson reads as an integer."""
    return abs(number) >= WIDE_INT and number.is_integer()


def _plain(body: bytes) -> bool:
    """On one line, without a secret-looking word or an ``@`` (a URL's userinfo):
    anything else is summarised, which redacts."""
    return NOT_PLAIN_RE.search(body.lower()) is None


class _Profiler:
    """Profile one call at a time (cProfile is per process; overlapping calls are not profiled)."""

    busy = False

    @classmethod
    async def run(cls, handler: Handler, request: Request) -> Response:
        if cls.busy:
            return await handler(request)
        cls.busy = True
        profiler = cProfile.Profile()
        profiler.enable()
        try:
            return await handler(request)
        finally:
            profiler.disable()
            cls.busy = False
            out = io.StringIO()
            pstats.Stats(profiler, stream=out).sort_stats("cumulative").print_stats(PROFILE_TOP)
            method, path = request.method, path_for_log(request.scope)
            logger.info("profile of %s %s:\n%s", method, path, out.getvalue())


class LoggedRoute(APIRoute):
    """An APIRoute that logs its calls at ``log_level``.

    Calls of the common shape are served by ``api/handler.py``'s direct handler, the others
    by FastAPI's; a subclass with ``direct = False`` leaves every call to FastAPI's.
    """

    log_level = logging.INFO
    direct = True

    def get_route_handler(self) -> Handler:
        generic = super().get_route_handler()
        handler = (self.direct and direct_handler(self, generic)) or generic
        level = self.log_level

        async def logged_handler(request: Request) -> Response:
            started = time.perf_counter()
            call = await _describe_call(request) if logger.isEnabledFor(level) else None
            try:
                if request.app.state.settings.profiling:
                    response = await _Profiler.run(handler, request)
                else:
                    response = await handler(request)
            except Exception as exc:
                if call is not None:
                    error = _describe_error(exc)
                    log_line(logger, level, f"{call} failed in {ms_since(started):.2f} ms: {error}")
                raise
            if call is not None:
                status = response.status_code
                log_line(logger, level, f"{call} -> {status} in {ms_since(started):.2f} ms")
            return response

        return logged_handler


ContextAPIRoute = LoggedRoute  # linker_atom's name of the route class of UdfAPIRoute


class QuietRoute(LoggedRoute):
    """A LoggedRoute for probes and scrapes: it logs at DEBUG."""

    log_level = logging.DEBUG


async def _describe_call(request: Request) -> str:
    """Method, path, client, query and body summary of a call (its arrival logged at DEBUG).

    A JSON body is parsed once: FastAPI's ``await request.json()`` gets the value parsed
    here (Starlette keeps it in ``request._json``), when it is the one the json module
    would make of the body (``as_json_module_reads``).
    """
    scope = request.scope
    client = escape_for_log("{}:{}".format(*scope["client"])) if scope.get("client") else "-"
    query = format_long(redact_headers(request.query_params)) if scope["query_string"] else "{}"
    body = "-"
    if scope["method"] in BODY_METHODS:
        content_type = scope_header(scope, b"content-type") or b""  # cheaper than .headers
        body, value = describe_body(await request.body(), content_type.decode("latin-1"))
        if value is not NOT_JSON and as_json_module_reads(value):
            request._json = value
    call = f"{scope['method']} {path_for_log(scope)} client={client} query={query} body={body}"
    if logger.isEnabledFor(logging.DEBUG):
        logger.debug("arrived: %s headers=%s", call, format_long(redact_headers(request.headers)))
    return call


def _describe_error(exc: Exception) -> str:
    """Name an error for the log without its (possibly long) payload."""
    code = getattr(exc, "code", None) or getattr(exc, "status_code", None)
    return f"{type(exc).__name__}({code})" if code else type(exc).__name__


ModelLoader = Callable[[Any], Any]  # settings -> the loaded model


class UdfAPIRoute(APIRouter):
    """An APIRouter whose routes log their calls; ``quiet=True`` logs them at DEBUG.

    It also carries the loaders of the models its routes use, so that listing the router
    in ``api/route.py`` registers both::

        router = UdfAPIRoute(tags=["plates"])

        @router.model_loader("plates")
        def load_plates(settings: Settings) -> PlateReader: ...
    """

    def __init__(self, *args: Any, quiet: bool = False, **kwargs: Any) -> None:
        kwargs.setdefault("route_class", QuietRoute if quiet else LoggedRoute)
        kwargs.setdefault("responses", ERROR_RESPONSES)
        super().__init__(*args, **kwargs)
        self.model_loaders: dict[str, ModelLoader] = {}
        self.batching: dict[str, Batching] = {}
        self.v2_signatures: dict[str, Any] = {}

    def add_api_route(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        """APIRouter's, with the endpoint's state dependencies (``Images``, ``Model(name)``...)
        read by a wrapper instead of solved by FastAPI at every request (the same values,
        about 10 us less each: ``dependencies.inline_state_dependencies``)."""
        super().add_api_route(path, inline_state_dependencies(endpoint), **kwargs)

    def model_loader(
        self, name: str, *, batch: Batching | None = None
    ) -> Callable[[ModelLoader], ModelLoader]:
        """Register ``function(settings) -> model`` as the loader of the model ``name``.

        The atom calls it once at start, in a background thread; routes get the model
        with ``Annotated[..., Model(name)]`` (``api/dependencies.py``). With ``batch``,
        the model's ``predict_batch`` gets the items of concurrent requests together
        (``api/batching.py``).
        """

        def register(loader: ModelLoader) -> ModelLoader:
            if name in self.model_loaders:
                raise ValueError(f"model {name!r} already has a loader on this router")
            self.model_loaders[name] = loader
            if batch is not None:
                self.batching[name] = batch
            return loader

        return register

    def v2_signature(self, name: str, signature: Any) -> None:
        """Declare how the model ``name`` answers the Open Inference Protocol v2.

        ``signature`` is an ``api/v2/signature.V2Signature``; a model without one gets
        ``detector_signature()`` (models with the demo's ``predict_batch``).
        """
        if name in self.v2_signatures:
            raise ValueError(f"model {name!r} already has a v2 signature on this router")
        self.v2_signatures[name] = signature

    def stream(
        self, path: str, **kwargs: Any
    ) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        """Register a generator function as a streamed route (SSE or NDJSON, ``POST``).

        See ``api/streaming.py``: the route yields events, the runtime sends them.
        """
        return stream_route(self, path, **kwargs)
