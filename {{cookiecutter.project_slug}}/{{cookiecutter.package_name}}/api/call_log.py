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
# Values shown as they are: numbers, booleans, null. The second pass of describe_body (when
# orjson cannot write the summary) also replaces integers beyond 64 bits.
SCALARS = frozenset({int, float, bool, type(None)})
NOT_INTS = frozenset({float, bool, type(None)})


def summarize_json(value: Any, depth: int = SHOWN_DEPTH, scalars: frozenset = SCALARS) -> Any:
    """A log-sized summary of a parsed JSON body: no string longer than ``SHORT_TEXT`` (an
    image in base64 shows as its length), a URL as its host, lists as their first items and
    count, secret-looking fields redacted. It looks at a bounded number of values. Values
    of a type in ``scalars`` are kept as they are (``NOT_INTS``: integers are checked)."""
    kind = type(value)
    if kind is dict:
        return _summarize_object(value, depth, scalars)
    if kind is list:
        if depth == 0:
            return f"<{len(value)} items>"
        head = value[:SHOWN_ITEMS]
        if not scalars.issuperset(map(type, head)):  # numbers are the common case
            head = [
                item if type(item) in scalars else summarize_json(item, depth - 1, scalars)
                for item in head
            ]
        if len(value) > SHOWN_ITEMS:
            head.append(f"...({len(value)} items)")
        return head
    if kind is str:
        return value if _plain(value) else _text(value)
    if kind is int and not -WIDE_INT <= value < WIDE_INT:
        return "<integer beyond 64 bits>"  # orjson writes none
    return value  # a number, a boolean or null


def _summarize_object(value: dict, depth: int, scalars: frozenset) -> Any:
    """``summarize_json`` of a JSON object: its first keys, secret-looking ones redacted."""
    if depth == 0:
        return f"<{len(value)} keys>"
    out: dict[str, Any] = {}
    for index, (key, item) in enumerate(value.items()):
        if index == SHOWN_KEYS:
            out["..."] = f"({len(value)} keys)"
            break
        name = key if _plain(key) else _text(key)
        if _is_secret(name):
            out[name] = REDACTED
        elif type(item) in scalars:
            out[name] = item
        elif type(item) is str:
            out[name] = item if _plain(item) else _text(item)
        else:
            out[name] = summarize_json(item, depth - 1, scalars)
    return out


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
        try:
            return orjson.dumps(summarize_json(request.parsed)).decode()
        except TypeError:  # an integer beyond 64 bits or a lone surrogate: orjson writes neither
            summary = summarize_json(request.parsed, scalars=NOT_INTS)
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
            logged = logger.isEnabledFor(level)
            if logged and logger.isEnabledFor(logging.DEBUG):
                log_arrival(request)
            try:
                if settings.profiling:
                    response = await Profiler.run(handler, request)
                else:
                    response = await handler(request)
            except Exception as exc:
                if logged:
                    outcome = f"failed in {ms_since(started):.2f} ms: {describe_error(exc)}"
                    log_line(logger, level, describe_call(request, outcome))
                raise
            if logged:
                outcome = f"-> {response.status_code} in {ms_since(started):.2f} ms"
                log_line(logger, level, describe_call(request, outcome))
            return response

        return logged_handler


class QuietRoute(LoggedRoute):
    """A LoggedRoute for probes and scrapes: it logs at DEBUG."""

    log_level = logging.DEBUG


def describe_call(request: Request, outcome: str) -> str:
    """The call line: method, path, client, query, the body's summary and ``outcome``."""
    scope = request.scope
    client = scope.get("client")
    shown = escape_for_log("{}:{}".format(*client)) if client else "-"
    query = format_long(redact_headers(request.query_params)) if scope["query_string"] else "{}"
    return (
        f"{scope['method']} {path_for_log(scope)} client={shown} query={query}"
        f" body={describe_body(request)} {outcome}"
    )


def log_arrival(request: Request) -> None:
    """At DEBUG: the call as it arrives, with its headers (credentials redacted)."""
    headers = format_long(redact_headers(request.headers))
    logger.debug("arrived: %s", describe_call(request, f"headers={headers}"))


def describe_error(exc: Exception) -> str:
    """Name an error for the log without its (possibly long) payload."""
    code = getattr(exc, "code", None) or getattr(exc, "status_code", None)
    return f"{type(exc).__name__}({code})" if code else type(exc).__name__
