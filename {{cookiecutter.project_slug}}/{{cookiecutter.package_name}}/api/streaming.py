"""Streamed replies: a route written as a generator, sent as Server-Sent Events or NDJSON.

A route module writes its route as a generator (``def`` or ``async def``) and registers
it with ``router.stream`` instead of ``router.post``::

    @router.stream("/count", events={"number": Number})
    def count(payload: CountPayload, model: Annotated[Counter, Model("counter")]):
        for n in model.count(payload.up_to):
            yield Event(Number(n=n), name="number")  # or plainly: yield {"n": n}

The runtime does the rest:

- **format**: SSE (``text/event-stream``) by default; NDJSON (``application/x-ndjson``,
  one ``{"event": name, "data": ...}`` per line) when the caller's Accept header asks for
  ``application/x-ndjson`` or ``application/jsonl``. Each item is one event: an
  ``Event`` or any JSON value (a dict, a Pydantic model, a list...), named "message".
- **errors**: what the generator raises before its first event is an ordinary error reply
  (the envelope with its HTTP status: a bad input is still a 4xx); once the stream has
  started, an error ends it with an ``error`` event carrying the envelope
  ``{"code", "msg", "data"}`` (a ``VqlError``'s code and message, 500 and a generic
  message otherwise, the traceback in the log).
- **proxies**: ``X-Accel-Buffering: no`` and ``Cache-Control: no-cache`` make nginx pass
  each event on at once; a keep-alive (an SSE comment, an empty NDJSON line) is sent
  after ATOM_STREAM_KEEPALIVE seconds without an event, so an idle stream never meets
  nginx's read timeout.
- **disconnects**: when the caller goes away the generator is closed (``GeneratorExit``
  at its ``yield``, its ``finally`` runs): a ``def`` generator after the step it is in,
  an ``async def`` one at once (``CancelledError`` at its ``await``). Keep each step
  short and the work stops within one step.
- **metrics**: ``atom_streams_open`` and ``atom_stream_first_event_seconds`` by route.

A ``def`` generator runs each step in the thread pool, like a ``def`` route; an ``async
def`` one runs in the event loop and must not block.
"""

import inspect
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any, cast

import anyio
import orjson
from fastapi import APIRouter, Request
from pydantic import BaseModel
from starlette.exceptions import HTTPException
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from ..control.log_safety import summarize
from ..control.metrics import route_template
from ..errors import VqlError
from .schema.response import ORJSON_OPTIONS

logger = logging.getLogger(__name__)

SSE = "text/event-stream"
NDJSON = "application/x-ndjson"
NDJSON_ACCEPT = (b"application/x-ndjson", b"application/jsonl", b"application/json-lines")
DEFAULT_KEEPALIVE = 15.0
KEEPALIVE = {SSE: b": keep-alive\n\n", NDJSON: b"\n"}
INTERNAL_MSG = "Internal Server Error"
_END = object()  # the generator is exhausted


@dataclass(frozen=True, slots=True)
class Event:
    """One event of a stream: its data (any JSON value or Pydantic model) and its name."""

    data: Any
    name: str = "message"
    id: str | None = None

    def __post_init__(self) -> None:
        for value in (self.name, self.id or ""):
            if "\n" in value or "\r" in value:
                raise ValueError("an event's name and id must be one line each")


def _default(value: Any) -> Any:
    """What orjson cannot encode by itself: Pydantic models."""
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def _json(value: Any) -> bytes:
    return orjson.dumps(value, default=_default, option=ORJSON_OPTIONS)


def encode(event: Event, media_type: str) -> bytes:
    """The bytes of one event on the wire, in SSE or NDJSON."""
    if media_type == NDJSON:
        line: dict[str, Any] = {"event": event.name, "data": event.data}
        if event.id is not None:
            line["id"] = event.id
        return _json(line) + b"\n"
    head = b"" if event.name == "message" else b"event: " + event.name.encode() + b"\n"
    if event.id is not None:
        head += b"id: " + event.id.encode() + b"\n"
    return head + b"data: " + _json(event.data) + b"\n\n"  # orjson writes one line


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


def as_event(item: Any) -> Event:
    """An item the generator yielded, as an event."""
    return item if isinstance(item, Event) else Event(item)


def negotiate(scope: Scope) -> str:
    """NDJSON when the Accept header asks for it, SSE otherwise."""
    for key, value in scope["headers"]:
        if key == b"accept" and any(kind in value.lower() for kind in NDJSON_ACCEPT):
            return NDJSON
    return SSE


def _next_or_end(iterator: Iterator[Any]) -> Any:
    """``next(iterator)``, or ``_END`` (StopIteration cannot cross a thread's future)."""
    return next(iterator, _END)


class EventSource:
    """A generator, sync or async, stepped from the event loop and closed exactly once."""

    def __init__(self, generator: Iterator[Any] | AsyncIterator[Any]) -> None:
        self.generator = generator
        self.is_async = inspect.isasyncgen(generator)
        self.closed_at: float | None = None

    async def next(self) -> Any:
        """The next item, or ``_END``; a ``def`` generator steps in the thread pool."""
        if self.is_async:
            try:
                return await self.generator.__anext__()  # type: ignore[union-attr]
            except StopAsyncIteration:
                return _END
        return await anyio.to_thread.run_sync(_next_or_end, cast(Iterator[Any], self.generator))

    async def close(self) -> None:
        """Close the generator (its ``finally`` runs); shielded from cancellation."""
        if self.closed_at is not None:
            return
        with anyio.CancelScope(shield=True):
            try:
                if self.is_async:
                    await self.generator.aclose()  # type: ignore[union-attr]
                else:
                    await anyio.to_thread.run_sync(self.generator.close)  # type: ignore[union-attr]
            except Exception:
                logger.exception("closing a stream's generator failed")
        self.closed_at = time.perf_counter()


class EventStreamResponse(Response):
    """The reply of a stream route: its first event already made, the rest as they come."""

    media_type = SSE

    def __init__(
        self, source: EventSource, first: Any, media_type: str, started: float, keepalive: float
    ) -> None:
        # No body and so no Content-Length (what Response.__init__ would set): chunked.
        self.status_code = 200
        self.media_type = media_type
        self.background = None
        self.init_headers({"cache-control": "no-cache", "x-accel-buffering": "no"})
        self.source = source
        self.first = first
        self.started = started
        self.keepalive = keepalive

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        metrics = getattr(scope["app"].state, "metrics", None)
        route = route_template(scope)
        if metrics is not None:
            metrics.streams_open.labels(route).inc()
        try:
            await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
            if self.first is not _END:
                await self._send(send, as_event(self.first))
                if metrics is not None:
                    seconds = time.perf_counter() - self.started
                    metrics.stream_first_event_seconds.labels(route).observe(seconds)
                async with anyio.create_task_group() as group:
                    group.start_soon(_cancel_on_disconnect, receive, group.cancel_scope)
                    await self._pump(send)
                    group.cancel_scope.cancel()
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        except* OSError:  # the caller went away while we wrote (ASGI spec 2.4 servers)
            logger.info("%s: the caller went away", route)
        finally:
            await self.source.close()
            if metrics is not None:
                metrics.streams_open.labels(route).dec()

    async def _send(self, send: Send, event: Event) -> None:
        body = encode(event, self.media_type or SSE)
        await send({"type": "http.response.body", "body": body, "more_body": True})

    async def _pump(self, send: Send) -> None:
        """Send the events as the producer makes them, a keep-alive when none comes in time."""
        sender, receiver = anyio.create_memory_object_stream[Any](0)
        keepalive = KEEPALIVE[self.media_type or SSE]
        async with anyio.create_task_group() as group, receiver:
            group.start_soon(self._produce, sender)
            while True:
                with anyio.move_on_after(self.keepalive) as waited:
                    try:
                        item = await receiver.receive()
                    except anyio.EndOfStream:
                        return
                if waited.cancelled_caught:
                    await send({"type": "http.response.body", "body": keepalive, "more_body": True})
                    continue
                event, last = item
                await self._send(send, event)
                if last:
                    return

    async def _produce(self, sender: Any) -> None:
        """Step the generator: (event, is_last) pairs; an error becomes the last event."""
        async with sender:
            while True:
                try:
                    item = await self.source.next()
                except Exception as exc:  # noqa: BLE001 - sent to the caller as the error event
                    _log_error(exc)
                    await sender.send((error_event(exc), True))
                    return
                if item is _END:
                    return
                await sender.send((as_event(item), False))


def _log_error(exc: Exception) -> None:
    if isinstance(exc, VqlError | HTTPException):
        logger.info("stream ended by %r", exc)
    else:
        logger.error("stream ended by an error", exc_info=exc)


async def _cancel_on_disconnect(receive: Receive, scope: anyio.CancelScope) -> None:
    """Cancel ``scope`` when the caller disconnects."""
    while (await receive())["type"] != "http.disconnect":
        pass
    scope.cancel()


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
            response_class=EventStreamResponse,
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
    """The route's endpoint: FastAPI sees ``func``'s parameters (plus the request)."""
    signature = inspect.signature(func, eval_str=True)
    request_param = inspect.Parameter(
        "stream_request__", inspect.Parameter.KEYWORD_ONLY, annotation=Request
    )

    async def endpoint(stream_request__: Request, **values: Any) -> EventStreamResponse:
        started = time.perf_counter()
        source = EventSource(func(**values))
        try:
            first = await source.next()
        except BaseException:
            await source.close()
            raise
        media_type = negotiate(stream_request__.scope)
        keepalive = _stream_settings(stream_request__)
        return EventStreamResponse(source, first, media_type, started, keepalive)

    endpoint.__signature__ = signature.replace(  # type: ignore[attr-defined]
        parameters=[*signature.parameters.values(), request_param],
        return_annotation=EventStreamResponse,
    )
    endpoint.__name__ = func.__name__
    endpoint.__qualname__ = func.__qualname__
    endpoint.__doc__ = func.__doc__
    endpoint.__module__ = func.__module__
    return endpoint
