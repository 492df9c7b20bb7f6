"""Streamed replies: a route written as a generator, sent as Server-Sent Events or NDJSON.

A route module writes its route as a generator (``def`` or ``async def``) and registers
it with ``router.stream`` instead of ``router.post``::

    @router.stream("/count", events={"number": Number})
    def count(payload: CountPayload, model: Annotated[Counter, Model("counter")]):
        for n in model.count(payload.up_to):
            yield Event(Number(n=n), name="number")  # or plainly: yield {"n": n}

The runtime does the rest:

- **format**: SSE (``text/event-stream``, FastAPI's ``EventSourceResponse`` and wire
  format) by default; NDJSON (``application/x-ndjson``, one ``{"event": name, "data":
  ...}`` per line) when the caller's Accept header asks for ``application/x-ndjson`` or
  ``application/jsonl``. Each item is one event: an ``Event`` (FastAPI's
  ``ServerSentEvent``, which may be yielded too) or any JSON value, named "message".
- **errors**: what the generator raises before its first event is an ordinary error reply
  (the envelope with its HTTP status: a bad input is still a 4xx); once the stream has
  started, an error ends it with an ``error`` event carrying the envelope
  ``{"code", "msg", "data"}`` (a ``VqlError``'s code and message, 500 and a generic
  message otherwise, the traceback in the log).
- **proxies**: ``X-Accel-Buffering: no`` and ``Cache-Control: no-cache`` make nginx pass
  each event on at once; a keep-alive (an SSE comment, an empty NDJSON line) is sent
  after ATOM_STREAM_KEEPALIVE seconds without an event, so an idle stream never meets
  nginx's read timeout.
- **disconnects**: when the caller goes away (Starlette's ``StreamingResponse`` notices)
  the generator is closed (``GeneratorExit`` at its ``yield``, its ``finally`` runs): a
  ``def`` generator after the step it is in, an ``async def`` one at once
  (``CancelledError`` at its ``await``). Keep each step short and the work stops within
  one step.
- **metrics**: ``atom_streams_open`` and ``atom_stream_first_event_seconds`` by route.

A ``def`` generator runs each step in the thread pool, like a ``def`` route; an ``async
def`` one runs in the event loop and must not block.

Why not FastAPI's own generator routes (``response_class=EventSourceResponse`` on a
generator): FastAPI 0.165 sends 200 before the first step (a refused input becomes an
empty 200 stream), ends a failing stream without a word, picks SSE or JSONL per route (not
by Accept), has a fixed, private keep-alive interval, and leaves a ``def`` generator
unclosed after a disconnect until the garbage collector finds it. The endpoint here is a
plain ``async def`` that takes the first step, then returns the response.
"""

import inspect
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from http import HTTPStatus
from typing import Any

import anyio
import orjson
from fastapi import APIRouter, Request
from fastapi.sse import KEEPALIVE_COMMENT, EventSourceResponse, ServerSentEvent, format_sse_event
from pydantic import BaseModel
from starlette.concurrency import iterate_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect
from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from ..control.log_safety import summarize
from ..control.metrics import route_template
from ..errors import VqlError
from .schema.response import ORJSON_OPTIONS

logger = logging.getLogger(__name__)

SSE = EventSourceResponse.media_type
NDJSON = "application/x-ndjson"
NDJSON_ACCEPT = (b"application/x-ndjson", b"application/jsonl", b"application/json-lines")
DEFAULT_KEEPALIVE = 15.0
INTERNAL_MSG = "Internal Server Error"
_END = object()  # the generator is exhausted


class Event(ServerSentEvent):
    """One event of a stream: FastAPI's ``ServerSentEvent``, written ``Event(data,
    name=..., id=...)``; its data is any JSON value or Pydantic model."""

    def __init__(
        self, data: Any = None, name: str = "message", id: str | None = None, **fields: Any
    ) -> None:
        event = None if name == "message" else name
        super().__init__(data=data, event=event, id=id, **fields)

    @property
    def name(self) -> str:
        """The event's name ("message" unless named)."""
        return self.event or "message"


def _default(value: Any) -> Any:
    """What orjson cannot encode by itself: Pydantic models."""
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def _json(value: Any) -> bytes:
    return orjson.dumps(value, default=_default, option=ORJSON_OPTIONS)


def encode_sse(event: ServerSentEvent) -> bytes:
    """One event in SSE's wire format (FastAPI's), its data as JSON unless ``raw_data``."""
    data = event.raw_data
    if data is None and (event.data is not None or event.comment is None):
        data = _json(event.data).decode()
    return format_sse_event(
        data_str=data, event=event.event, id=event.id, retry=event.retry, comment=event.comment
    )


def encode_ndjson(event: ServerSentEvent) -> bytes:
    """One event as an NDJSON line: ``{"event", "data"}`` and ``id`` when it has one."""
    if event.data is None and event.raw_data is None and event.comment is not None:
        return b"\n"  # a comment: a blank line, like a keep-alive
    data = event.data if event.raw_data is None else event.raw_data
    line: dict[str, Any] = {"event": event.event or "message", "data": data}
    if event.id is not None:
        line["id"] = event.id
    return _json(line) + b"\n"


def error_event(exc: BaseException) -> Event:
    """The ``error`` event that ends a stream: the envelope of the error."""
    if isinstance(exc, VqlError):
        envelope = {"code": exc.code, "msg": exc.msg, "data": summarize(exc.data)}
    elif isinstance(exc, HTTPException):
        detail = exc.detail if isinstance(exc.detail, str) else HTTPStatus(exc.status_code).phrase
        envelope = {"code": exc.status_code, "msg": detail, "data": None}
    else:
        envelope = {"code": 500, "msg": INTERNAL_MSG, "data": None}
    return Event(envelope, name="error")


def as_event(item: Any) -> ServerSentEvent:
    """An item the generator yielded, as an event."""
    return item if isinstance(item, ServerSentEvent) else Event(item)


def negotiate(scope: Scope) -> str:
    """NDJSON when the Accept header asks for it, SSE otherwise."""
    for key, value in scope["headers"]:
        if key == b"accept" and any(kind in value.lower() for kind in NDJSON_ACCEPT):
            return NDJSON
    return SSE


class EventSource:
    """A generator, sync or async, stepped from the event loop and closed exactly once.

    A ``def`` generator steps in the thread pool (Starlette's ``iterate_in_threadpool``)
    and a step is never abandoned (anyio's ``run_sync`` without ``abandon_on_cancel``):
    closing it while a thread runs its ``next()`` would raise "generator already
    executing". The disconnect tests of tests/test_streaming.py see it if that changes.
    """

    def __init__(self, generator: Iterator[Any] | AsyncIterator[Any]) -> None:
        self.generator = generator
        self.items: AsyncIterator[Any] = (
            generator if isinstance(generator, AsyncIterator) else iterate_in_threadpool(generator)
        )
        self.is_async = self.items is generator
        self.closed = False

    async def next(self) -> Any:
        """The next item, or ``_END``."""
        return await anext(self.items, _END)

    async def close(self) -> None:
        """Close the generator (its ``finally`` runs); shielded from cancellation."""
        if self.closed:
            return
        self.closed = True
        with anyio.CancelScope(shield=True):
            try:
                if self.is_async:
                    await self.generator.aclose()  # type: ignore[union-attr]
                else:
                    await anyio.to_thread.run_sync(self.generator.close)  # type: ignore[union-attr]
            except Exception:
                logger.exception("closing a stream's generator failed")


class EventStream(StreamingResponse):
    """A stream route's reply: its first event already made, the rest as the generator
    makes them, a keep-alive when none comes in time.

    Starlette's ``StreamingResponse`` sends the body and stops when the caller goes away;
    a producer task steps the generator beside it, so that waiting for a slow step never
    holds back a keep-alive, and the generator is closed once the producer has stopped.
    """

    media_type = SSE  # the route's response class: what its OpenAPI entry says first
    keepalive_bytes: bytes  # and ``encode``: NdjsonStream's and SseStream's

    def __init__(self, source: EventSource, first: Any, started: float, keepalive: float) -> None:
        self.source, self.started, self.keepalive = source, started, keepalive
        self.sender, self.receiver = anyio.create_memory_object_stream[Any](0)
        self.first_event_seconds: Any = None  # the metric, per route, when metrics are on
        super().__init__(self._body(first), headers={"cache-control": "no-cache"})
        self.headers["x-accel-buffering"] = "no"

    @staticmethod
    def encode(event: ServerSentEvent) -> bytes:
        raise NotImplementedError

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        metrics = getattr(scope["app"].state, "metrics", None)
        route = route_template(scope)
        if metrics is not None:
            metrics.streams_open.labels(route).inc()
            self.first_event_seconds = metrics.stream_first_event_seconds.labels(route)
        try:
            async with anyio.create_task_group() as group:
                group.start_soon(self._produce)
                await super().__call__(scope, receive, send)
                group.cancel_scope.cancel()  # the reply ended before the producer
        except* ClientDisconnect:  # the caller went away while we wrote (ASGI spec 2.4)
            logger.info("%s: the caller went away", route)
        finally:
            self.receiver.close()
            await self.source.close()
            if metrics is not None:
                metrics.streams_open.labels(route).dec()

    async def _body(self, first: Any) -> AsyncIterator[bytes]:
        """The encoded events, the first one first, a keep-alive when none comes in time."""
        if first is _END:
            return
        yield self.encode(as_event(first))
        if self.first_event_seconds is not None:
            self.first_event_seconds.observe(time.perf_counter() - self.started)
        while True:
            with anyio.move_on_after(self.keepalive) as waited:
                try:
                    event, last = await self.receiver.receive()
                except anyio.EndOfStream:
                    return
            if waited.cancelled_caught:
                yield self.keepalive_bytes
                continue
            yield self.encode(event)
            if last:
                return

    async def _produce(self) -> None:
        """Step the generator: (event, is_last) pairs; an error becomes the last event."""
        async with self.sender:
            while True:
                try:
                    item = await self.source.next()
                except Exception as exc:  # noqa: BLE001 - sent to the caller as the error event
                    _log_error(exc)
                    await self.sender.send((error_event(exc), True))
                    return
                if item is _END:
                    return
                await self.sender.send((as_event(item), False))


class NdjsonStream(EventStream):
    """A stream in NDJSON: one JSON object per line, a blank line to keep alive."""

    media_type = NDJSON
    keepalive_bytes = b"\n"

    @staticmethod
    def encode(event: ServerSentEvent) -> bytes:
        return encode_ndjson(event)


class SseStream(EventStream, EventSourceResponse):
    """A stream in Server-Sent Events: FastAPI's response class, wire format and ping."""

    keepalive_bytes = KEEPALIVE_COMMENT

    @staticmethod
    def encode(event: ServerSentEvent) -> bytes:
        return encode_sse(event)


def _log_error(exc: Exception) -> None:
    if isinstance(exc, VqlError | HTTPException):
        logger.info("stream ended by %r", exc)
    else:
        logger.error("stream ended by an error", exc_info=exc)


def _stream_settings(request: Request) -> float:
    settings = getattr(request.app.state, "settings", None)
    return getattr(settings, "atom_stream_keepalive", DEFAULT_KEEPALIVE)


def events_doc(events: Mapping[str, type[BaseModel]] | None) -> str:
    """A Markdown description of a stream's events, for the OpenAPI document."""
    lines = [
        "A stream of events: Server-Sent Events (`text/event-stream`), or NDJSON"
        ' (`application/x-ndjson`, one `{"event": name, "data": ...}` per line) when'
        " Accept asks for it. An error after the first event ends the stream with an"
        " `error` event whose data is the envelope `{code, msg, data}`.",
    ]
    for name, model in (events or {}).items():
        fields = ", ".join(f"`{field}`" for field in model.model_fields)
        lines.append(f"- `{name}`: {model.__doc__ or model.__name__} ({fields})")
    return "\n".join(lines)


def stream_route(
    router: APIRouter,
    path: str,
    *,
    methods: Sequence[str] = ("POST",),
    events: Mapping[str, type[BaseModel]] | None = None,
    **kwargs: Any,
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register a generator function as a streamed route (see the module's docstring).

    Its parameters are resolved like a route's (body, typed dependencies); ``events``
    maps event names to the models of their data, for the documentation.
    """

    def register(func: Callable[..., Any]) -> Callable[..., Any]:
        if not (inspect.isgeneratorfunction(func) or inspect.isasyncgenfunction(func)):
            raise TypeError(f"{func.__name__} must be a generator function (it must yield)")
        endpoint = _endpoint(func)
        responses = _json_errors({**router.responses, **kwargs.pop("responses", {})})
        text = {"schema": {"type": "string"}}
        responses[200] = {"content": {SSE: text, NDJSON: text}}
        kwargs.setdefault("response_description", events_doc(events))
        router.add_api_route(
            path,
            endpoint,
            methods=list(methods),
            status_code=200,
            # Not EventSourceResponse: FastAPI would take the endpoint for a generator.
            response_class=EventStream,
            responses=responses,
            **kwargs,
        )
        return func

    return register


def _json_errors(responses: Mapping[int | str, dict[str, Any]]) -> dict[int | str, Any]:
    """Error replies documented as JSON (FastAPI would put a ``model`` in the stream's type)."""
    documented: dict[int | str, Any] = {}
    for status, response in responses.items():
        model = response.get("model")
        if model is None:
            documented[status] = response
            continue
        schema = {"schema": model.model_json_schema()}
        rest = {key: value for key, value in response.items() if key != "model"}
        documented[status] = {**rest, "content": {"application/json": schema}}
    return documented


def _endpoint(func: Callable[..., Any]) -> Callable[..., Any]:
    """The route's endpoint: FastAPI sees ``func``'s parameters (plus the request). A plain
    ``async def`` (no ``__wrapped__``): FastAPI would stream a generator function itself."""
    signature = inspect.signature(func, eval_str=True)
    request_param = inspect.Parameter(
        "stream_request__", inspect.Parameter.KEYWORD_ONLY, annotation=Request
    )

    async def endpoint(stream_request__: Request, **values: Any) -> EventStream:
        started = time.perf_counter()
        source = EventSource(func(**values))
        try:
            first = await source.next()
        except BaseException:
            await source.close()
            raise
        stream = NdjsonStream if negotiate(stream_request__.scope) == NDJSON else SseStream
        return stream(source, first, started, _stream_settings(stream_request__))

    endpoint.__signature__ = signature.replace(  # type: ignore[attr-defined]
        parameters=[*signature.parameters.values(), request_param],
        return_annotation=EventStream,
    )
    endpoint.__name__ = func.__name__
    endpoint.__qualname__ = func.__qualname__
    endpoint.__doc__ = func.__doc__
    endpoint.__module__ = func.__module__
    return endpoint
