"""The call log: one line per call of a route, written when the call ends.

The line holds the method, path, client, query, a summary of the body (long strings cut,
bytes counted, secret-looking fields redacted), then the status or the error, and the
duration. At DEBUG a line is also logged when the call arrives, with the headers
(Authorization, Cookie and token-like values redacted). ``LoggedRoute`` is the route class
of ``Router``'s routes (``QuietRoute`` for probes and scrapes: their lines are DEBUG); with
PROFILING on, its calls are profiled too (``api/profiler.py``).
"""

import logging
import re
import time
from typing import Any

import orjson
from fastapi import Request, Response
from fastapi.routing import APIRoute

from ..control.log_safety import SECRET_WORDS, escape_for_log, format_long, redact_headers
from ..control.logs import log_line, ms_since
from . import json_reuse
from .handler import Handler, direct_handler
from .json_reuse import NOT_JSON
from .middleware.http import path_for_log, scope_header
from .profiler import Profiler

logger = logging.getLogger(__name__)

BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# A JSON body this short, on one line, without a secret-looking word or a URL's userinfo,
# is logged as sent: summarising it would change nothing but cost more than the log line.
SHORT_JSON_BYTES = 256
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


def _plain(body: bytes) -> bool:
    """On one line, without a secret-looking word or an ``@`` (a URL's userinfo):
    anything else is summarised, which redacts."""
    return NOT_PLAIN_RE.search(body.lower()) is None


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
            call = await describe_call(request) if logger.isEnabledFor(level) else None
            try:
                if request.app.state.settings.profiling:
                    response = await Profiler.run(handler, request)
                else:
                    response = await handler(request)
            except Exception as exc:
                if call is not None:
                    error = describe_error(exc)
                    log_line(logger, level, f"{call} failed in {ms_since(started):.2f} ms: {error}")
                raise
            if call is not None:
                status = response.status_code
                log_line(logger, level, f"{call} -> {status} in {ms_since(started):.2f} ms")
            return response

        return logged_handler


class QuietRoute(LoggedRoute):
    """A LoggedRoute for probes and scrapes: it logs at DEBUG."""

    log_level = logging.DEBUG


async def describe_call(request: Request) -> str:
    """Method, path, client, query and body summary of a call (its arrival logged at DEBUG).

    A JSON body is parsed once: the value parsed here is the one FastAPI validates
    (``api/json_reuse.py``).
    """
    scope = request.scope
    client = escape_for_log("{}:{}".format(*scope["client"])) if scope.get("client") else "-"
    query = format_long(redact_headers(request.query_params)) if scope["query_string"] else "{}"
    body = "-"
    if scope["method"] in BODY_METHODS:
        content_type = scope_header(scope, b"content-type") or b""  # cheaper than .headers
        body, value = describe_body(await request.body(), content_type.decode("latin-1"))
        json_reuse.reuse(request, value)
    call = f"{scope['method']} {path_for_log(scope)} client={client} query={query} body={body}"
    if logger.isEnabledFor(logging.DEBUG):
        logger.debug("arrived: %s headers=%s", call, format_long(redact_headers(request.headers)))
    return call


def describe_error(exc: Exception) -> str:
    """Name an error for the log without its (possibly long) payload."""
    code = getattr(exc, "code", None) or getattr(exc, "status_code", None)
    return f"{type(exc).__name__}({code})" if code else type(exc).__name__
