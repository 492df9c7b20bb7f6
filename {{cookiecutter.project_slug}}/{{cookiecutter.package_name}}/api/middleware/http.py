"""The request context and the error envelope ``{"code", "msg", "data"}``.

``RequestContextMiddleware`` is the one middleware of the atom, pure ASGI, around the
whole app: it keeps or creates the request id (``X-Request-ID``) and exposes it to the
logs, answers 404 to a path holding control characters (``check_path``), refuses bodies
above the limit with 413, counts and times each request for the metrics
(``control/metrics.RequestRecorder``), and turns any unhandled exception into a generic
500 whose traceback goes only to the log. One middleware instead of one per concern: each
layer costs a coroutine and a ``send`` wrapper per request. The exception handlers render
404, 405, 413, 422 and ``VqlError`` with the same envelope. Paths are logged raw (as
sent, percent-encoded) and escaped (``path_for_log``).
"""

import itertools
import logging
import os
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from http import HTTPStatus
from typing import Any, TypeGuard, cast

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ...control.log_safety import LOG_UNSAFE_RE, escape_for_log, redact_url_secrets, summarize
from ...control.logs import request_id_ctx
from ...control.metrics import RequestRecorder, route_template
from ...errors import VqlError
from ...memory import MemoryAccount
from ..schema.response import ORJSONResponse, envelope_response

logger = logging.getLogger(__name__)

REQUEST_ID_HEADER = b"x-request-id"
# An incoming id is kept only if it is short and plain (it goes into every log line).
# fullmatch: a "$" would also match before a final newline.
REQUEST_ID_RE = re.compile(rb"[A-Za-z0-9._:-]{1,128}")
VALIDATION_MSG = "Request Entity Error"
ExceptionHandler = Callable[[Request, Exception], Awaitable[ORJSONResponse]]
INTERNAL_MSG = "Internal Server Error"
# Methods whose requests carry no body unless chunked (a body needs Content-Length or
# Transfer-Encoding in HTTP/1.1): their receive is not wrapped to count one.
BODYLESS = frozenset({"GET", "HEAD", "OPTIONS"})
HEADERS_KEY = "atom.headers"  # the scope key of scope_headers()


def scope_headers(scope: Scope) -> dict[bytes, bytes]:
    """The request headers by name (lower case), each with its first value.

    Made once per request (the middleware makes it first) and kept in the scope: ``dict``
    over the reversed header list runs in C, where a loop over the list ran in Python for
    each header looked up.
    """
    headers = scope.get(HEADERS_KEY)
    if headers is None:
        raw = scope["headers"]
        headers = dict(reversed(raw if isinstance(raw, list) else list(raw)))
        scope[HEADERS_KEY] = headers
    return headers


def scope_header(scope: Scope, name: bytes) -> bytes | None:
    """The first value of a request header (``name`` in lower case), or None."""
    return scope_headers(scope).get(name)


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
    """The path as the client sent it (percent-encoded), escaped for a log line, with any
    credential it carries hidden (a fragment's ``#access_token=``)."""
    raw = scope.get("raw_path")
    path = raw.decode("latin-1") if raw else scope["path"]
    return escape_for_log(redact_url_secrets(path))


class _NewIds:
    """New request ids: 32 hex digits, a random half per process and a counter.

    Unique across processes and restarts like a uuid4's hex, without a system call per
    request (``os.urandom`` was one); a forked child draws its own random half.
    """

    def __init__(self) -> None:
        self._reset()
        os.register_at_fork(after_in_child=self._reset)

    def _reset(self) -> None:
        self._prefix = os.urandom(8).hex()
        self._count = itertools.count(int.from_bytes(os.urandom(4), "big"))

    def next(self) -> str:
        return f"{self._prefix}{next(self._count) & 0xFFFFFFFFFFFFFFFF:016x}"


_new_ids: _NewIds | None = None


def _read_head(scope: Scope) -> tuple[bytes | None, int | None, bool]:
    """X-Request-ID, the declared body length (None when absent or unreadable) and whether
    the body is chunked."""
    headers = scope_headers(scope)
    declared = headers.get(b"content-length")
    length = int(declared) if declared is not None and declared.isdigit() else None
    return headers.get(REQUEST_ID_HEADER), length, b"transfer-encoding" in headers


def _request_id(incoming: bytes | None) -> str:
    """The caller's X-Request-ID if it is short and plain, otherwise a new one."""
    global _new_ids  # noqa: PLW0603 - made on first use: no fork hook at import
    if valid_request_id(incoming):
        return incoming.decode()
    if _new_ids is None:
        _new_ids = _NewIds()
    return _new_ids.next()


class RequestContextMiddleware:
    """Request id, body limit, metrics and last-resort 500 for every HTTP request."""

    def __init__(
        self,
        app: ASGIApp,
        max_body_bytes: int,
        recorder: RequestRecorder | None = None,
        account: MemoryAccount | None = None,
    ) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.recorder = recorder
        self.account = account or MemoryAccount()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        recorder = self.recorder
        if recorder is not None:
            recorder.started()
        began = time.perf_counter()
        incoming, length, chunked = _read_head(scope)
        request_id = _request_id(incoming)
        token = request_id_ctx.set(request_id)
        id_header = (REQUEST_ID_HEADER, request_id.encode())
        started = False
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal started, status
            if message["type"] == "http.response.start":
                started = True
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), id_header]
            await send(message)

        try:
            refusal = self._refusal(scope, length)
            if refusal is not None:
                await self._reply(scope, send_with_id, refusal)
                return
            if chunked or scope["method"] not in BODYLESS:
                await self._with_body(scope, receive, send_with_id, length)
            else:
                await self.app(scope, receive, send_with_id)
        except Exception:
            logger.exception("unhandled error in %s %s", *_call(scope))
            if started:
                raise
            await self._reply(scope, send_with_id, error_reply(scope, 500, INTERNAL_MSG))
        finally:
            request_id_ctx.reset(token)
            if recorder is not None:
                seconds = time.perf_counter() - began
                recorder.finished(route_template(scope), scope["method"], status, seconds)

    def _refusal(self, scope: Scope, length: int | None) -> ORJSONResponse | None:
        """The reply to a request refused before the app sees it, or None.

        The body limit is the atom's, not ``FastAPI(max_body_size=...)``: FastAPI 0.165
        answers a body declared above its limit with a plain-text 413 in place of whatever
        the app replies, the envelope included (tests/test_http.py checks it still does).
        """
        if not check_path(scope):
            logger.info("%s %s: control character in the path", *_call(scope))
            return error_reply(scope, 404, "Not Found")
        if length is not None and length > self.max_body_bytes:
            logger.info("%s %s: body of %d bytes refused", *_call(scope), length)
            return error_reply(scope, 413, _too_large_msg(self.max_body_bytes))
        return None

    async def _with_body(
        self, scope: Scope, receive: Receive, send: Send, length: int | None
    ) -> None:
        """Serve a request that may carry a body in its own memory scope (``memory.py``):
        the body is held as it comes, twice its size (its bytes and their parse), and what
        the request's doors hold is given back when it ends."""
        with self.account.request():
            if length is None:
                receive = self._limit(receive)  # a body without Content-Length: count it
            elif length:
                try:
                    self.account.keep(2 * length, "the request body")
                except VqlError as exc:
                    logger.info("%s %s: %s", *_call(scope), exc.msg)
                    reply = error_reply(
                        scope, exc.status, exc.msg, code=exc.code, headers=exc.headers
                    )
                    await self._reply(scope, send, reply)
                    return
            await self.app(scope, receive, send)

    @staticmethod
    async def _reply(scope: Scope, send: Send, response: ORJSONResponse) -> None:
        async def no_body() -> Message:
            return {"type": "http.disconnect"}

        await response(scope, no_body, send)

    def _limit(self, receive: Receive) -> Receive:
        """Count and hold the bytes of a body sent without Content-Length; 413 past the
        limit."""
        received = 0
        limit, account = self.max_body_bytes, self.account

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                size = len(message.get("body", b""))
                received += size
                if received > limit:
                    raise HTTPException(413, _too_large_msg(limit))
                if size:
                    account.keep(2 * size, "the request body")
            return message

        return limited_receive


def _call(scope: Scope) -> tuple[str, str]:
    """Method and path of a request, as logged."""
    return escape_for_log(scope["method"]), path_for_log(scope)


def _too_large_msg(limit: int) -> str:
    return f"Request Entity Too Large (limit {limit} bytes)"


def json_safe_errors(errors: Any) -> Any:
    """Validation errors made JSON-safe: exceptions as text, long inputs cut, bytes counted."""
    return summarize(errors, max_chars=200, max_items=50, depth=6)


# A protocol whose paths answer errors with a body of their own (the Open Inference
# Protocol's ``{"error": ...}``): (path roots, function(status, msg, headers) -> reply),
# listed in ``app.state.error_bodies`` by whoever installs its routes.
ErrorBody = Callable[[int, str, Mapping[str, str] | None], ORJSONResponse]


def error_reply(
    scope: Scope,
    status: int,
    msg: str,
    *,
    code: int | None = None,
    data: Any = None,
    headers: Mapping[str, str] | None = None,
) -> ORJSONResponse:
    """An error answered outside a route's own code: the envelope, or the error body of the
    protocol the path belongs to (every error of ``/v2/...`` is ``{"error": msg}``)."""
    state = getattr(scope.get("app"), "state", None)
    path = scope["path"]
    for roots, body in getattr(state, "error_bodies", ()):
        if any(path == root or path.startswith(root + "/") for root in roots):
            return body(status, msg, headers)
    return envelope_response(status, status if code is None else code, msg, data, headers)


async def http_error(request: Request, exc: HTTPException) -> ORJSONResponse:
    """404, 405, 413, 503... as the envelope, keeping headers such as Allow."""
    if isinstance(exc.detail, str):
        msg, data = exc.detail, None
    else:
        msg, data = HTTPStatus(exc.status_code).phrase, summarize(exc.detail)
    logger.info("%s %s -> %d %s", *_call(request.scope), exc.status_code, escape_for_log(msg))
    return error_reply(request.scope, exc.status_code, msg, data=data, headers=exc.headers)


async def validation_error(request: Request, exc: RequestValidationError) -> ORJSONResponse:
    """422 with the error list in ``data``, JSON-safe whatever a validator raised."""
    return envelope_response(422, 422, VALIDATION_MSG, json_safe_errors(exc.errors()))


async def vql_error(request: Request, exc: VqlError) -> ORJSONResponse:
    """A business error: its code and message in the body, a real HTTP status."""
    log = logger.error if exc.status >= 500 else logger.info
    log("%s %s -> %d code=%d %s", *_call(request.scope), exc.status, exc.code, exc.msg)
    data = summarize(exc.data)
    return envelope_response(exc.status, exc.code, exc.msg, data, exc.headers)


def install_error_handling(
    app: FastAPI,
    max_body_bytes: int,
    recorder: RequestRecorder | None = None,
    account: MemoryAccount | None = None,
) -> None:
    """Add the envelope handlers and the request-context middleware to an app
    (counting requests into ``recorder`` when metrics are on, bodies into ``account``)."""
    # Starlette calls each handler with the exception class it is registered for.
    app.add_exception_handler(HTTPException, cast(ExceptionHandler, http_error))
    app.add_exception_handler(RequestValidationError, cast(ExceptionHandler, validation_error))
    app.add_exception_handler(VqlError, cast(ExceptionHandler, vql_error))
    app.add_middleware(
        RequestContextMiddleware, max_body_bytes=max_body_bytes, recorder=recorder, account=account
    )
