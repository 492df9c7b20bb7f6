"""``UdfAPIRoute``: a router whose routes log each call.

Usage is unchanged from ``linker_atom``::

    route = UdfAPIRoute()

    @route.post("/detect")
    async def detect(...): ...

    app.include_router(route, prefix=settings.atom_api_prefix)

Each call logs one line when it arrives (method, path, client, query, a summary of the
body with long strings cut and bytes counted) and one when it ends (status or error,
duration). Headers are logged at DEBUG with Authorization, Cookie and token-like
values redacted. With PROFILING on, calls are profiled with cProfile and the top
functions logged; a query parameter cannot switch it on.
"""

import cProfile
import io
import logging
import pstats
import time
from collections.abc import Callable, Coroutine
from typing import Any

import orjson
from fastapi import APIRouter, Request, Response
from fastapi.routing import APIRoute

from ..lib.common import format_long, ms_since, redact_headers
from .schema.response import ERROR_RESPONSES

logger = logging.getLogger(__name__)

Handler = Callable[[Request], Coroutine[Any, Any, Response]]
BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
PROFILE_TOP = 25


def describe_body(body: bytes, content_type: str) -> str:
    """A log-sized summary of a request body."""
    if not body:
        return "-"
    if "json" in content_type:
        try:
            return format_long(orjson.loads(body))
        except orjson.JSONDecodeError:
            return f"<{len(body)} bytes, invalid JSON>"
    return f"<{len(body)} bytes, {content_type or 'no content-type'}>"


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
            logger.info("profile of %s %s:\n%s", request.method, request.url.path, out.getvalue())


class LoggedRoute(APIRoute):
    """An APIRoute that logs its calls at ``log_level``."""

    log_level = logging.INFO

    def get_route_handler(self) -> Handler:
        handler = super().get_route_handler()
        level = self.log_level

        async def logged_handler(request: Request) -> Response:
            started = time.perf_counter()
            if logger.isEnabledFor(level):
                await _log_arrival(request, level)
            try:
                if request.app.state.settings.profiling:
                    response = await _Profiler.run(handler, request)
                else:
                    response = await handler(request)
            except Exception as exc:
                logger.log(
                    level,
                    "%s %s failed in %.2f ms: %s",
                    request.method,
                    request.url.path,
                    ms_since(started),
                    _describe_error(exc),
                )
                raise
            logger.log(
                level,
                "%s %s -> %d in %.2f ms",
                request.method,
                request.url.path,
                response.status_code,
                ms_since(started),
            )
            return response

        return logged_handler


class QuietRoute(LoggedRoute):
    """A LoggedRoute for probes and scrapes: it logs at DEBUG."""

    log_level = logging.DEBUG


async def _log_arrival(request: Request, level: int) -> None:
    """Log the call's method, path, client, query and body summary (headers at DEBUG)."""
    client = f"{request.client.host}:{request.client.port}" if request.client else "-"
    body = "-"
    if request.method in BODY_METHODS:
        body = describe_body(await request.body(), request.headers.get("content-type", ""))
    logger.log(
        level,
        "%s %s client=%s query=%s body=%s",
        request.method,
        request.url.path,
        client,
        format_long(redact_headers(request.query_params)),
        body,
    )
    if logger.isEnabledFor(logging.DEBUG):
        logger.debug("headers: %s", format_long(redact_headers(request.headers)))


def _describe_error(exc: Exception) -> str:
    """Name an error for the log without its (possibly long) payload."""
    code = getattr(exc, "code", None) or getattr(exc, "status_code", None)
    return f"{type(exc).__name__}({code})" if code else type(exc).__name__


class UdfAPIRoute(APIRouter):
    """An APIRouter whose routes log their calls; ``quiet=True`` logs them at DEBUG."""

    def __init__(self, *args: Any, quiet: bool = False, **kwargs: Any) -> None:
        kwargs.setdefault("route_class", QuietRoute if quiet else LoggedRoute)
        kwargs.setdefault("responses", ERROR_RESPONSES)
        super().__init__(*args, **kwargs)
