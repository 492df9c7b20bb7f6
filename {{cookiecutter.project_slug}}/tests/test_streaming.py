"""Streamed routes (api/streaming.py): a generator becomes SSE or NDJSON, with keep-alives,
error events, metrics, and a generator closed soon after the caller goes away."""

import asyncio
import json
import socket
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest
from fastapi.sse import ServerSentEvent
from fastapi.testclient import TestClient
from pydantic import BaseModel

from {{ cookiecutter.package_name }}.api import Router
from {{ cookiecutter.package_name }}.api.app import get_app
from {{ cookiecutter.package_name }}.api.streaming import Event
from {{ cookiecutter.package_name }}.config import Settings
from {{ cookiecutter.package_name }}.errors import VqlError

from .conftest import PREFIX
from .live_server import serve_in_thread

STEP = 0.01  # seconds per step of the endless generators


class Number(BaseModel):
    """One number."""

    n: int


class Recorder:
    """What the endless generators did: steps taken, and when they were closed."""

    def __init__(self) -> None:
        self.steps = 0
        self.closed_at: float | None = None
        self.closed = threading.Event()

    def close(self) -> None:
        self.closed_at = time.monotonic()
        self.closed.set()


def streams_router(recorder: Recorder) -> Router:
    """Stream routes as a user writes them: sync and async, good, failing and endless."""
    router = Router(tags=["streams"])
    add_finite_streams(router)
    add_endless_streams(router, recorder)
    return router


def add_finite_streams(router: Router) -> None:
    """Streams that end: counting (def and async def), refusing, failing, pausing."""

    @router.stream("/count", events={"number": Number, "done": Number})
    def count(up_to: int = 3) -> Iterator[Any]:
        for n in range(up_to):
            yield Event(Number(n=n), name="number", id=str(n))
        yield Event({"n": up_to}, name="done")

    @router.stream("/acount")
    async def acount(up_to: int = 3) -> AsyncIterator[Any]:
        for n in range(up_to):
            await asyncio.sleep(0)
            yield {"n": n}

    @router.stream("/refuse")
    def refuse() -> Iterator[Any]:
        raise VqlError(501, "image 0: invalid base64")
        yield {}  # a generator all the same

    @router.stream("/fail-later")
    def fail_later(kind: str = "vql") -> Iterator[Any]:
        yield {"n": 0}
        if kind == "vql":
            raise VqlError(511, "the model gave up", data={"frame": 1})
        raise RuntimeError("secret detail of a bug")

    @router.stream("/fastapi-events")
    def fastapi_events() -> Iterator[Any]:
        yield ServerSentEvent(data={"n": 0}, event="number", id="0", retry=500)
        yield ServerSentEvent(comment="a comment")
        yield ServerSentEvent(raw_data="plain text", event="note")

    @router.stream("/slow")
    def slow(pause: float = 0.3) -> Iterator[Any]:
        yield {"n": 0}
        time.sleep(pause)
        yield {"n": 1}


def add_endless_streams(router: Router, recorder: Recorder) -> None:
    """Streams that never end unless closed, recording their steps and their closing."""

    @router.stream("/endless")
    def endless() -> Iterator[Any]:
        try:
            while True:
                time.sleep(STEP)
                recorder.steps += 1
                yield {"n": recorder.steps}
        finally:
            recorder.close()

    @router.stream("/aendless")
    async def aendless() -> AsyncIterator[Any]:
        try:
            while True:
                await asyncio.sleep(STEP)
                recorder.steps += 1
                yield {"n": recorder.steps}
        finally:
            recorder.close()


@pytest.fixture
def recorder() -> Recorder:
    """A fresh record of the endless generators."""
    return Recorder()


@pytest.fixture
def make_streams(make_settings: Callable[..., Settings], recorder: Recorder) -> Callable[..., Any]:
    """An app serving the stream routes above (and nothing else), with these settings."""

    def make(**overrides: Any) -> Any:
        settings = make_settings(**overrides)
        return get_app(settings, routers=[streams_router(recorder)], model_loaders={})

    return make


def sse_events(text: str) -> list[dict[str, str]]:
    """Parse an SSE body: one dict of fields per event; comments under ":"."""
    events = []
    for block in text.split("\n\n"):
        fields: dict[str, str] = {}
        for line in block.splitlines():
            name, _, value = line.partition(":")
            fields[name] = value.removeprefix(" ")
        if fields:
            events.append(fields)
    return events


def test_sse_events_and_headers(make_streams: Callable[..., Any]) -> None:
    """Each yield is one SSE event (name, id, JSON data), with the no-buffering headers."""
    with TestClient(make_streams()) as client:
        reply = client.post(f"{PREFIX}/count", params={"up_to": 2})
    assert reply.status_code == 200
    assert reply.headers["content-type"].startswith("text/event-stream")
    assert reply.headers["x-accel-buffering"] == "no"
    assert reply.headers["cache-control"] == "no-cache"
    assert sse_events(reply.text) == [
        {"event": "number", "id": "0", "data": '{"n":0}'},
        {"event": "number", "id": "1", "data": '{"n":1}'},
        {"event": "done", "data": '{"n":2}'},
    ]


def test_ndjson_when_accept_asks(make_streams: Callable[..., Any]) -> None:
    """Accept: application/x-ndjson gives one JSON object per line: event, data (and id)."""
    with TestClient(make_streams()) as client:
        reply = client.post(
            f"{PREFIX}/count", params={"up_to": 1}, headers={"accept": "application/x-ndjson"}
        )
    assert reply.headers["content-type"].startswith("application/x-ndjson")
    assert [json.loads(line) for line in reply.text.splitlines()] == [
        {"event": "number", "data": {"n": 0}, "id": "0"},
        {"event": "done", "data": {"n": 1}},
    ]


def test_fastapi_server_sent_events_may_be_yielded(make_streams: Callable[..., Any]) -> None:
    """FastAPI's ``ServerSentEvent`` (retry, comment, raw data) goes out as FastAPI writes
    it in SSE; in NDJSON its comment is a blank line and its raw data a string."""
    with TestClient(make_streams()) as client:
        sse = client.post(f"{PREFIX}/fastapi-events").text
        ndjson = client.post(
            f"{PREFIX}/fastapi-events", headers={"accept": "application/x-ndjson"}
        ).text
    assert sse_events(sse) == [
        {"event": "number", "data": '{"n":0}', "id": "0", "retry": "500"},
        {"": "a comment"},
        {"event": "note", "data": "plain text"},
    ]
    assert ndjson.split("\n") == [
        '{"event":"number","data":{"n":0},"id":"0"}',
        "",
        '{"event":"note","data":"plain text"}',
        "",
    ]


def test_async_generators_stream_too(make_streams: Callable[..., Any]) -> None:
    """An ``async def`` generator streams the same way; plain values are "message" events."""
    with TestClient(make_streams()) as client:
        reply = client.post(f"{PREFIX}/acount", headers={"accept": "application/jsonl"})
    lines = [json.loads(line) for line in reply.text.splitlines()]
    assert lines == [{"event": "message", "data": {"n": n}} for n in range(3)]


def test_error_before_the_first_event_is_an_ordinary_reply(
    make_streams: Callable[..., Any],
) -> None:
    """A VqlError raised before the first yield is the envelope with its HTTP status."""
    with TestClient(make_streams()) as client:
        reply = client.post(f"{PREFIX}/refuse")
    assert reply.status_code == 400
    assert reply.json() == {"code": 501, "msg": "image 0: invalid base64", "data": None}


@pytest.mark.parametrize(
    ("kind", "envelope"),
    [
        ("vql", {"code": 511, "msg": "the model gave up", "data": {"frame": 1}}),
        ("bug", {"code": 500, "msg": "Internal Server Error", "data": None}),
    ],
)
def test_error_in_the_middle_ends_with_an_error_event(
    make_streams: Callable[..., Any], kind: str, envelope: dict
) -> None:
    """An error after the first event ends the stream with an ``error`` event (the envelope)."""
    with TestClient(make_streams()) as client:
        reply = client.post(f"{PREFIX}/fail-later", params={"kind": kind})
    assert reply.status_code == 200
    events = sse_events(reply.text)
    assert events[0] == {"data": '{"n":0}'}
    assert events[1:] == [{"event": "error", "data": json.dumps(envelope, separators=(",", ":"))}]
    assert "secret detail" not in reply.text


def test_idle_streams_get_keepalive_comments(make_streams: Callable[..., Any]) -> None:
    """Without an event for ATOM_STREAM_KEEPALIVE seconds, a comment (SSE: FastAPI's
    ``: ping``) or a blank line (NDJSON) goes out; the events around it are intact."""
    with TestClient(make_streams(atom_stream_keepalive=0.05)) as client:
        sse = client.post(f"{PREFIX}/slow").text
        ndjson = client.post(f"{PREFIX}/slow", headers={"accept": "application/x-ndjson"}).text
    comments = [event for event in sse_events(sse) if set(event) == {""}]
    assert comments and all(event == {"": "ping"} for event in comments)
    assert [event for event in sse_events(sse) if "data" in event] == [
        {"data": '{"n":0}'},
        {"data": '{"n":1}'},
    ]
    lines = ndjson.split("\n")
    assert "" in lines[1:-2]  # a blank line between the two events
    assert [json.loads(line)["data"] for line in lines if line] == [{"n": 0}, {"n": 1}]


def test_stream_metrics(make_streams: Callable[..., Any]) -> None:
    """Streams open goes back to 0 and each stream's time to first event is observed."""
    app = make_streams()
    with TestClient(app) as client:
        client.post(f"{PREFIX}/count")
        client.post(f"{PREFIX}/count")
    registry = app.state.metrics.registry
    labels = {"route": f"{PREFIX}/count"}
    assert registry.get_sample_value("atom_streams_open", labels) == 0
    assert registry.get_sample_value("atom_stream_first_event_seconds_count", labels) == 2


def test_a_stream_route_must_be_a_generator() -> None:
    """Registering a plain function as a stream is refused at import, with its name."""
    router = Router()
    with pytest.raises(TypeError, match="not_a_generator must be a generator function"):

        @router.stream("/x")
        def not_a_generator() -> dict:
            return {}


def read_first_event_then_hang_up(base: str, path: str) -> float:
    """POST to a stream over a raw socket, read up to the first event, close; return when."""
    url = urlsplit(base)
    with socket.create_connection((url.hostname, url.port), timeout=5) as sock:
        request = f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n"
        sock.sendall(request.encode())
        received = b""
        while b"\n\n" not in received.partition(b"\r\n\r\n")[2]:
            chunk = sock.recv(4096)
            assert chunk, received
            received += chunk
        assert received.startswith(b"HTTP/1.1 200"), received
        sock.shutdown(socket.SHUT_RDWR)
    return time.monotonic()


@pytest.mark.parametrize("path", [f"{PREFIX}/endless", f"{PREFIX}/aendless"])
def test_disconnect_closes_the_generator_within_100_ms(
    make_streams: Callable[..., Any], recorder: Recorder, path: str
) -> None:
    """The caller hangs up: the generator (def or async def) is closed within 100 ms, and
    it takes no step after that."""
    with serve_in_thread(make_streams()) as base:
        hung_up = read_first_event_then_hang_up(base, path)
        assert recorder.closed.wait(5), "the generator was never closed"
        assert recorder.closed_at is not None
        assert recorder.closed_at - hung_up < 0.1
        steps = recorder.steps
        time.sleep(10 * STEP)
        assert recorder.steps == steps


async def hang_up_while_writing(app: Any, path: str) -> list[bytes]:
    """Call a stream as an ASGI 2.4 server would, whose ``send`` raises OSError once the
    caller is gone (here: at the body message after the first event); return the bodies
    sent before that."""
    sent: list[bytes] = []
    requests = [{"type": "http.request", "body": b"", "more_body": False}]

    async def receive() -> dict[str, Any]:
        if requests:
            return requests.pop()
        await asyncio.Event().wait()  # the server has not seen the caller leave
        raise AssertionError("unreachable")

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.body":
            if sent:
                raise OSError("the caller went away")
            sent.append(message["body"])

    scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.4"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"x"), (b"content-length", b"0")],
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 80),
    }
    await app(scope, receive, send)
    return sent


@pytest.mark.parametrize("path", [f"{PREFIX}/endless", f"{PREFIX}/aendless"])
def test_a_failed_write_closes_the_generator(
    make_streams: Callable[..., Any], recorder: Recorder, path: str
) -> None:
    """Under ASGI 2.4 a write to a caller who left raises OSError: the reply ends quietly
    (no error escapes to the server), the generator is closed, no stream stays open."""
    app = make_streams()
    with TestClient(app) as client:
        sent = client.portal.call(hang_up_while_writing, app, path)
        assert recorder.closed.wait(5), "the generator was never closed"
    assert sent == [b'data: {"n":1}\n\n']
    labels = {"route": path}
    assert app.state.metrics.registry.get_sample_value("atom_streams_open", labels) == 0
