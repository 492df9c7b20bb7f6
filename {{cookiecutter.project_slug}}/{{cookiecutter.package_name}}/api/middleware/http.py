"""The request context and the error envelope (DESIGN.md section 5).

``RequestContextMiddleware`` is a pure ASGI middleware placed around the whole app:
it keeps or creates the request id (``X-Request-ID``) and exposes it to the logs,
answers 404 to a path holding control characters (``check_path``), refuses bodies above
the limit with 413, and turns any unhandled exception into a generic 500 whose traceback
goes only to the log. The exception handlers render 404, 405, 413, 422 and ``VqlError``
with the same envelope. Paths are logged raw (as sent, percent-encoded) and escaped
(``path_for_log``).
"""

import logging
import os
import re
from collections.abc import Awaitable, Callable
from http import HTTPStatus
from typing import Any, TypeGuard, cast

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ...control.logs import request_id_ctx
from ...lib.common import LOG_UNSAFE_RE, escape_for_log, summarize
from ...lib.exception import VqlError
from ..schema.response import ORJSONResponse, envelope_response

logger = logging.getLogger(__name__)

REQUEST_ID_HEADER = b"x-request-id"
# An incoming id is kept only if it is short and plain (it goes into every log line).
# fullmatch: a "$" would also match before a final newline.
REQUEST_ID_RE = re.compile(rb"[A-Za-z0-9._:-]{1,128}")
VALIDATION_MSG = "Request Entity Error"
ExceptionHandler = Callable[[Request, Exception], Awaitable[ORJSONResponse]]
INTERNAL_MSG = "Internal Server Error"


def scope_header(scope: Scope, name: bytes) -> bytes | None:
    """The first value of a request header (``name`` in lower case), or None."""
    for key, value in scope["headers"]:
        if key == name:
            return value
    return None


def valid_request_id(value: bytes | None) -> TypeGuard[bytes]:
    """True for a request id worth keeping: 1 to 128 letters, digits and ``._:-``."""
    return value is not None and REQUEST_ID_RE.fullmatch(value) is not None


def check_path(scope: Scope) -> bool:
    """False when the decoded path holds a control character.

    Such a path matches no route, except that Starlette's path patterns end in ``$``,
    which also matches before a final newline: ``/detect%0a`` would reach ``/detect``.
    """
    return LOG_UNSAFE_RE.search(scope["path"]) is None


def path_for_log(scope: Scope) -> str:
    """The path as the client sent it (percent-encoded), escaped for a log line."""
    raw = scope.get("raw_path")
    path = raw.decode("latin-1") if raw else scope["path"]
    return escape_for_log(path)


def _content_length(scope: Scope) -> int | None:
    """The declared body length, or None when absent or unreadable."""
    value = scope_header(scope, b"content-length")
    return int(value) if value is not None and value.isdigit() else None


class RequestContextMiddleware:
    """Request id, body limit and last-resort 500 for every HTTP request."""

    def __init__(self, app: ASGIApp, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = scope_header(scope, REQUEST_ID_HEADER)
        # A new id has 32 hex digits, like a uuid4's hex.
        request_id = incoming.decode() if valid_request_id(incoming) else os.urandom(16).hex()
        token = request_id_ctx.set(request_id)
        started = False

        async def send_with_id(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                headers = list(message.get("headers", ()))
                headers.append((REQUEST_ID_HEADER, request_id.encode()))
                message["headers"] = headers
            await send(message)

        try:
            if not check_path(scope):
                logger.info("%s %s: control character in the path", *_call(scope))
                await self._reply(scope, send_with_id, envelope_response(404, 404, "Not Found"))
                return
            length = _content_length(scope)
            if length is not None and length > self.max_body_bytes:
                logger.info("%s %s: body of %d bytes refused", *_call(scope), length)
                await self._reply(scope, send_with_id, _too_large(self.max_body_bytes))
                return
            if length is None:
                receive = self._limit(receive)
            await self.app(scope, receive, send_with_id)
        except Exception:
            logger.exception("unhandled error in %s %s", *_call(scope))
            if started:
                raise
            await self._reply(scope, send_with_id, envelope_response(500, 500, INTERNAL_MSG))
        finally:
            request_id_ctx.reset(token)

    @staticmethod
    async def _reply(scope: Scope, send: Send, response: ORJSONResponse) -> None:
        async def no_body() -> Message:
            return {"type": "http.disconnect"}

        await response(scope, no_body, send)

    def _limit(self, receive: Receive) -> Receive:
        """Count the bytes of a body sent without Content-Length; 413 past the limit."""
        received = 0
        limit = self.max_body_bytes

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise HTTPException(413, _too_large_msg(limit))
            return message

        return limited_receive


def _call(scope: Scope) -> tuple[str, str]:
    """Method and path of a request, as logged."""
    return escape_for_log(scope["method"]), path_for_log(scope)


def _too_large_msg(limit: int) -> str:
    return f"Request Entity Too Large (limit {limit} bytes)"


def _too_large(limit: int) -> ORJSONResponse:
    return envelope_response(413, 413, _too_large_msg(limit))


def json_safe_errors(errors: Any) -> Any:
    """Validation errors made JSON-safe: exceptions as text, long inputs cut, bytes counted."""
    return summarize(errors, max_chars=200, max_items=50, depth=6)


async def http_error(request: Request, exc: HTTPException) -> ORJSONResponse:
    """404, 405, 413, 503... as the envelope, keeping headers such as Allow."""
    if isinstance(exc.detail, str):
        msg, data = exc.detail, None
    else:
        msg, data = HTTPStatus(exc.status_code).phrase, summarize(exc.detail)
    logger.info("%s %s -> %d %s", *_call(request.scope), exc.status_code, escape_for_log(msg))
    return envelope_response(exc.status_code, exc.status_code, msg, data, headers=exc.headers)


async def validation_error(request: Request, exc: RequestValidationError) -> ORJSONResponse:
    """422 with the error list in ``data``, JSON-safe whatever a validator raised."""
    return envelope_response(422, 422, VALIDATION_MSG, json_safe_errors(exc.errors()))


async def vql_error(request: Request, exc: VqlError) -> ORJSONResponse:
    """A business error: its code and message in the body, a real HTTP status."""
    log = logger.error if exc.status >= 500 else logger.info
    log("%s %s -> %d code=%d %s", *_call(request.scope), exc.status, exc.code, exc.msg)
    return envelope_response(exc.status, exc.code, exc.msg, summarize(exc.data))


def install_error_handling(app: FastAPI, max_body_bytes: int) -> None:
    """Add the envelope handlers and the request-context middleware to an app."""
    # Starlette calls each handler with the exception class it is registered for.
    app.add_exception_handler(HTTPException, cast(ExceptionHandler, http_error))
    app.add_exception_handler(RequestValidationError, cast(ExceptionHandler, validation_error))
    app.add_exception_handler(VqlError, cast(ExceptionHandler, vql_error))
    app.add_middleware(RequestContextMiddleware, max_body_bytes=max_body_bytes)
