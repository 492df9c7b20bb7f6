"""The call log: one line per call of a route, written when the call ends.

The line holds the method, path, client, query, a summary of the body, then the status
or the error, and the duration. The log never reads or parses a body of its own: a JSON
body is summarised from the value the route parsed (``api/json_body.py``), bounded in
size (item counts, string lengths, a URL's host, short strings such as ``src_type``,
secret-looking fields redacted), any other body by its declared length and type. At DEBUG
a line is also logged when the call arrives, with the headers (Authorization, Cookie and
token-like values redacted). ``LoggedRoute`` is the route class of ``Router``'s routes
(``QuietRoute`` for probes and scrapes: their lines are DEBUG); with PROFILING on, its
calls are profiled too (``api/profiler.py``).
"""

import functools
import json
import logging
import time
from typing import Any
from urllib.parse import urlsplit

import orjson
from fastapi import Request, Response, params
from fastapi.routing import APIRoute

from ..control.log_safety import (
    REDACTED,
    SECRET_KEY_RE,
    escape_for_log,
    format_long,
    redact_headers,
    redact_url_secrets,
)
from ..control.logs import log_line, ms_since
from .handler import Handler, direct_handler
from .json_body import NOT_PARSED, JsonLimits, JsonRequest
from .middleware.http import path_for_log, scope_header
from .profiler import Profiler

logger = logging.getLogger(__name__)

SHORT_TEXT = 32  # a string this short is logged as sent (src_type, names); longer: its length
SHOWN_ITEMS = 4  # items of a list shown before its count
SHOWN_KEYS = 16  # keys of an object shown
SHOWN_DEPTH = 3  # levels shown; deeper containers by their size
WIDE_INT = 1 << 63


def summarize_json(value: Any, depth: int = SHOWN_DEPTH) -> Any:
    """A log-sized summary of a parsed JSON body: no string longer than ``SHORT_TEXT`` (an
    image in base64 shows as its length), a URL as its host, lists as their first items and
    count, secret-looking fields redacted. It looks at a bounded number of values."""
    kind = type(value)
    if kind is str:
        return value if _plain(value) else _text(value)
    if kind is list:
        if depth == 0:
            return f"<{len(value)} items>"
        head = [summarize_json(item, depth - 1) for item in value[:SHOWN_ITEMS]]
        if len(value) > SHOWN_ITEMS:
            head.append(f"...({len(value)} items)")
        return head
    if kind is dict:
        if depth == 0:
            return f"<{len(value)} keys>"
        out: dict[str, Any] = {}
        for index, (key, item) in enumerate(value.items()):
            if index == SHOWN_KEYS:
                out["..."] = f"({len(value)} keys)"
                break
            name = key if _plain(key) else _text(key)
            out[name] = REDACTED if _is_secret(name) else summarize_json(item, depth - 1)
        return out
    if kind is int and not -WIDE_INT <= value < WIDE_INT:
        return "<integer beyond 64 bits>"  # orjson writes none
    return value  # a number, a boolean or null


def _plain(text: str) -> bool:
    """Short, and nothing of a URL or a credential in it: shown as it is."""
    return len(text) <= SHORT_TEXT and "=" not in text and "@" not in text and "/" not in text


def _text(text: str) -> str:
    """A string as the log shows it: a URL by its scheme and host, a long one by its length."""
    if "://" in text:
        try:
            parts = urlsplit(text)
            return f"{parts.scheme}://{parts.hostname or ''}/...({len(text)} chars)"
        except ValueError:
            return f"<URL, {len(text)} chars>"
    if len(text) <= SHORT_TEXT:
        return redact_url_secrets(text)
    return f"<{len(text)} chars>"


@functools.lru_cache(maxsize=4096)
def _is_secret(name: str) -> bool:
    """Whether a key names a secret (cached: bodies repeat the same few keys)."""
    return SECRET_KEY_RE.search(name) is not None


def describe_body(request: Request) -> str:
    """The body of a call as its line shows it: a summary of the JSON value the route
    parsed, else its length (read, or declared) and content type."""
    if isinstance(request, JsonRequest) and request.parsed is not NOT_PARSED:
        summary = summarize_json(request.parsed)
        try:
            return orjson.dumps(summary).decode()
        except TypeError:  # a lone surrogate, which orjson does not write
            return json.dumps(summary, separators=(",", ":"))
    scope = request.scope
    size = request.body_size if isinstance(request, JsonRequest) else None
    if size is None:
        declared = scope_header(scope, b"content-length")
        if declared is None:
            return "-"
        size = int(declared) if declared.isdigit() else -1
    if size == 0:
        return "-"
    content_type = escape_for_log((scope_header(scope, b"content-type") or b"").decode("latin-1"))
    return f"<{size if size >= 0 else '?'} bytes, {content_type or 'no content-type'}>"


def _takes_json(route: APIRoute) -> bool:
    """The route's endpoint takes a body that FastAPI reads as JSON (not a form)."""
    body = route.dependant.body_params
    return bool(body) and not isinstance(body[0].field_info, params.Form)


class LoggedRoute(APIRoute):
    """An APIRoute that logs its calls at ``log_level``, and reads a JSON body through
    ``JsonRequest`` (parsed once, within ATOM_JSON_MAX_ITEMS and ATOM_JSON_MAX_DEPTH).

    Calls of the common shape are served by ``api/handler.py``'s direct handler, the others
    by FastAPI's; a subclass with ``direct = False`` leaves every call to FastAPI's.
    """

    log_level = logging.INFO
    direct = True

    def get_route_handler(self) -> Handler:
        generic = super().get_route_handler()
        handler = (self.direct and direct_handler(self, generic)) or generic
        level = self.log_level
        takes_json = _takes_json(self)

        async def logged_handler(request: Request) -> Response:
            started = time.perf_counter()
            settings = request.app.state.settings
            if takes_json:
                limits = JsonLimits(settings.atom_json_max_items, settings.atom_json_max_depth)
                request = JsonRequest(request, limits)
                await request.body()  # its errors (413 of a chunked body) as they are
            call = describe_call(request) if logger.isEnabledFor(level) else None
            try:
                if settings.profiling:
                    response = await Profiler.run(handler, request)
                else:
                    response = await handler(request)
            except Exception as exc:
                if call is not None:
                    line = f"{call} body={describe_body(request)} failed in"
                    error = describe_error(exc)
                    log_line(logger, level, f"{line} {ms_since(started):.2f} ms: {error}")
                raise
            if call is not None:
                line = f"{call} body={describe_body(request)} -> {response.status_code} in"
                log_line(logger, level, f"{line} {ms_since(started):.2f} ms")
            return response

        return logged_handler


class QuietRoute(LoggedRoute):
    """A LoggedRoute for probes and scrapes: it logs at DEBUG."""

    log_level = logging.DEBUG


def describe_call(request: Request) -> str:
    """Method, path, client and query of a call (its arrival logged at DEBUG, with the
    headers); the body's summary is added when the call ends."""
    scope = request.scope
    client = escape_for_log("{}:{}".format(*scope["client"])) if scope.get("client") else "-"
    query = format_long(redact_headers(request.query_params)) if scope["query_string"] else "{}"
    call = f"{scope['method']} {path_for_log(scope)} client={client} query={query}"
    if logger.isEnabledFor(logging.DEBUG):
        headers = format_long(redact_headers(request.headers))
        logger.debug("arrived: %s body=%s headers=%s", call, describe_body(request), headers)
    return call


def describe_error(exc: Exception) -> str:
    """Name an error for the log without its (possibly long) payload."""
    code = getattr(exc, "code", None) or getattr(exc, "status_code", None)
    return f"{type(exc).__name__}({code})" if code else type(exc).__name__
