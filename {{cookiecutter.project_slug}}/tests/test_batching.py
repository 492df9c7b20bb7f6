"""Dynamic batching: concurrent requests share model calls, and no request pays for another's
failure, waits past its deadline or stays queued once its client left (api/batching.py)."""

import socket
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Annotated

import pytest
import uvicorn
from fastapi import FastAPI
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from pydantic import BaseModel

from {{ cookiecutter.package_name }}.api import Router
from {{ cookiecutter.package_name }}.api.app import get_app
from {{ cookiecutter.package_name }}.api.batching import Batcher, Batching
from {{ cookiecutter.package_name }}.api.calls import predict
from {{ cookiecutter.package_name }}.api.dependencies import Model
from {{ cookiecutter.package_name }}.api.mounting import collect_batching
from {{ cookiecutter.package_name }}.config import Settings, SettingsError, load_settings
from {{ cookiecutter.package_name }}.errors import VqlError

from .conftest import free_port, wait_ready

POISON = -1
EXIT = -2


class Items(BaseModel):
    """A request: numbers, and the factor the model multiplies them by."""

    items: list[int]
    factor: int = 10


class Gated:
    """A batch model that records its calls, fails on a poisoned item and can be held.

    ``hold`` makes the first call wait until ``release`` is set, so that the other
    requests queue up meanwhile and meet in the next call.
    """

    def __init__(self, *, hold: bool = False, delay: float = 0.0) -> None:
        self.calls: list[list[int]] = []
        self.entered = threading.Event()
        self.release = threading.Event()
        self.hold = hold
        self.delay = delay
        self.label = "gated"

    def predict_batch(self, items: list[int], factor: int) -> list[int]:
        """Each item times ``factor``; raises if an item is POISON (with its business code)."""
        self.calls.append(list(items))
        if self.hold and len(self.calls) == 1:
            self.entered.set()
            self.release.wait(10)
        time.sleep(self.delay)
        if POISON in items:
            raise VqlError(511, "poisoned item")
        if EXIT in items:
            raise SystemExit(3)  # a BaseException, not an Exception
        return [item * factor for item in items]


def gated_router(batching: Batching) -> Router:
    """A route module as a user writes it, with a batching model named "gated"."""
    router = Router()

    @router.model_loader("gated", batch=batching)
    def load(settings: Settings) -> Gated:  # replaced by the test's own model
        return Gated()

    @router.post("/gated")
    def gated(payload: Items, model: Annotated[Gated, Model("gated")]) -> dict:
        return {"out": model.predict_batch(payload.items, payload.factor), "label": model.label}

    @router.post("/gated-async")
    async def gated_async(payload: Items, model: Annotated[Gated, Model("gated")]) -> dict:
        return {"out": await predict(model, payload.items, payload.factor)}

    return router


@pytest.fixture
def build(settings: Settings) -> Iterator[Callable[..., tuple[TestClient, Gated]]]:
    """Start the app with a Gated model (and this batching); the client is ready."""
    clients: list[TestClient] = []

    def make(model: Gated, batching: Batching, app_settings: Settings = settings):
        app = get_app(
            app_settings,
            routers=[gated_router(batching)],
            model_loaders={"gated": lambda _settings: model},
        )
        client = TestClient(app)
        client.__enter__()
        clients.append(client)
        wait_ready(client, app_settings.atom_api_prefix)
        return client, model

    yield make
    for client in clients:
        client.__exit__(None, None, None)


def batcher_of(client: TestClient) -> Batcher:
    """The batcher of the "gated" model."""
    return client.app.state.models.batchers["gated"]


def wait_until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    """Poll until ``condition()`` holds."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.005)


def post(client: TestClient, prefix: str, items: list[int], route: str = "gated", **extra: int):
    """POST /gated (or another route); the reply."""
    return client.post(f"{prefix}/{route}", json={"items": items, **extra})


def behind_a_held_call(client: TestClient, model: Gated, prefix: str, bodies: list[list[int]]):
    """Hold the model on a first request, queue ``bodies`` behind it until all their items
    wait, then release it: the first reply, and the replies to ``bodies`` in order."""
    with ThreadPoolExecutor(len(bodies) + 1) as pool:
        first = pool.submit(post, client, prefix, [0])
        assert model.entered.wait(5)
        futures = [pool.submit(post, client, prefix, body) for body in bodies]
        items = sum(len(body) for body in bodies)
        wait_until(lambda: batcher_of(client).depth == items)
        model.release.set()
        return first.result(10), [future.result(10) for future in futures]


def test_concurrent_requests_share_a_call_and_get_their_own_results(build, prefix) -> None:
    """Requests queued while the model is busy go in one call, each gets its results in order."""
    client, model = build(Gated(hold=True), Batching(max_size=16, max_wait_ms=0))
    bodies = [[n, n + 100] for n in range(1, 7)]
    first, replies = behind_a_held_call(client, model, prefix, bodies)
    assert first.json() == {"out": [0], "label": "gated"}
    for n, reply in enumerate(replies, 1):
        assert reply.status_code == 200
        assert reply.json()["out"] == [n * 10, (n + 100) * 10]
    assert len(model.calls) == 2
    assert sorted(model.calls[1]) == sorted(i for n in range(1, 7) for i in (n, n + 100))


def test_a_poisoned_item_fails_only_its_request(build, prefix) -> None:
    """One poisoned request among concurrent ones: it gets the error, the others their results."""
    client, model = build(Gated(hold=True), Batching(max_size=16, max_wait_ms=0))
    bodies = [[n] for n in range(1, 8)]
    bodies[4] = [5, POISON]
    first, replies = behind_a_held_call(client, model, prefix, bodies)
    assert first.status_code == 200
    for body, reply in zip(bodies, replies, strict=True):
        if POISON in body:
            assert reply.status_code == 500
            assert reply.json() == {"code": 511, "msg": "poisoned item", "data": None}
        else:
            assert reply.status_code == 200, reply.text
            assert reply.json()["out"] == [body[0] * 10]
    assert len(model.calls[1]) == 8  # the whole batch was tried first, then split
    assert all(POISON not in call for call in model.calls if len(call) == 1)


def test_a_base_exception_fails_only_its_request(build, prefix) -> None:
    """A model raising SystemExit fails its own request (500), not its neighbours, and the
    batch thread lives on."""
    client, model = build(Gated(hold=True), Batching(max_size=16, max_wait_ms=0))
    bodies = [[1], [2, EXIT], [3]]
    first, replies = behind_a_held_call(client, model, prefix, bodies)
    assert first.status_code == 200
    assert [reply.status_code for reply in replies] == [200, 500, 200]
    assert replies[1].json()["msg"] == "Internal Server Error"
    assert [replies[0].json()["out"], replies[2].json()["out"]] == [[10], [30]]
    assert post(client, prefix, [4]).json()["out"] == [40]  # the thread is alive


class Item:
    """An item whose life a test can watch (a weak reference)."""


def test_the_batch_thread_keeps_nothing_between_batches() -> None:
    """Once a request has its results, neither its items nor its results stay alive in the
    idle batch thread."""

    class Model:
        def predict_batch(self, items: list[Item]) -> list[Item]:
            return [Item() for _ in items]

    batcher = Batcher("watched", Model(), Batching(max_size=4, max_wait_ms=0), timeout=5)
    batcher.start()
    try:
        items = [Item(), Item()]
        pending = batcher.submit(items, (), {}, announced=False)
        results = batcher.wait(pending)
        watched = [weakref.ref(obj) for obj in (*items, *results)]
        del items, pending, results
        assert [ref() for ref in watched] == [None] * 4
    finally:
        batcher.stop()


def test_requests_with_other_arguments_are_not_mixed(build, prefix) -> None:
    """Requests whose other arguments differ (the factor) never share a call."""
    client, model = build(Gated(hold=True), Batching(max_size=16, max_wait_ms=0))
    with ThreadPoolExecutor(6) as pool:
        first = pool.submit(post, client, prefix, [0])
        assert model.entered.wait(5)
        tens = [pool.submit(post, client, prefix, [n]) for n in (1, 2)]
        twos = [pool.submit(post, client, prefix, [n], factor=2) for n in (3, 4)]
        wait_until(lambda: batcher_of(client).depth == 4)
        model.release.set()
        assert [f.result(10).json()["out"] for f in tens] == [[10], [20]]
        assert [f.result(10).json()["out"] for f in twos] == [[6], [8]]
    assert first.result().status_code == 200
    assert sorted(sorted(call) for call in model.calls[1:]) == [[1, 2], [3, 4]]


def test_a_full_queue_answers_503_at_once(build, prefix) -> None:
    """Beyond queue_size items waiting, a request gets 503, the envelope and Retry-After."""
    client, model = build(Gated(hold=True), Batching(max_size=4, queue_size=2))
    with ThreadPoolExecutor(4) as pool:
        first = pool.submit(post, client, prefix, [0])
        assert model.entered.wait(5)
        queued = pool.submit(post, client, prefix, [1, 2])
        wait_until(lambda: batcher_of(client).depth == 2)
        started = time.monotonic()
        refused = post(client, prefix, [3])
        took = time.monotonic() - started
        model.release.set()
        assert queued.result(10).json()["out"] == [10, 20]
    assert first.result().status_code == 200
    assert refused.status_code == 503
    assert refused.headers["retry-after"] == "1"
    assert refused.json() == {
        "code": 503,
        "msg": "model 'gated' is busy: its queue is full",
        "data": None,
    }
    assert took < 1.0


@pytest.mark.parametrize("route", ["gated", "gated-async"])
def test_no_request_waits_past_its_deadline(build, prefix, make_settings, route) -> None:
    """With ATOM_BATCH_TIMEOUT=0.3 and a model that takes 3 s, the reply is a 503 at 0.3 s,
    from a ``def`` route and from an ``async def`` one."""
    settings = make_settings(atom_batch_timeout=0.3)
    client, _ = build(Gated(delay=3.0), Batching(max_size=4), settings)
    started = time.monotonic()
    reply = post(client, prefix, [1], route)
    took = time.monotonic() - started
    assert reply.status_code == 503
    assert reply.headers["retry-after"] == "1"
    assert reply.json()["msg"] == "model 'gated' did not answer within 0.3 s"
    assert 0.25 < took < 2.0


def test_a_lone_request_does_not_wait_for_a_batch(build, prefix) -> None:
    """With nobody else on the way, a batch starts at once, whatever max_wait_ms says."""
    client, _ = build(Gated(), Batching(max_size=16, max_wait_ms=3000))
    post(client, prefix, [1])  # warm-up
    started = time.monotonic()
    assert post(client, prefix, [2]).json()["out"] == [20]
    assert time.monotonic() - started < 1.0


def test_a_batch_waits_for_requests_on_their_way(build, prefix) -> None:
    """A request that got the model but has not submitted yet holds the batch (max_wait_ms)."""
    client, _ = build(Gated(), Batching(max_size=16, max_wait_ms=3000))
    batcher = batcher_of(client)
    batcher.announce()  # a request on its way
    started = time.monotonic()
    threading.Timer(0.3, batcher.withdraw).start()
    assert post(client, prefix, [2]).json()["out"] == [20]
    assert 0.25 < time.monotonic() - started < 2.5


def test_unbatched_models_are_called_directly(make_settings, prefix: str) -> None:
    """ATOM_BATCH__GATED__MAX_SIZE=1 turns batching off: the route gets the model itself."""
    model = Gated()
    app = get_app(
        make_settings(atom_batch={"gated": {"max_size": 1}}),
        routers=[gated_router(Batching(max_size=8))],
        model_loaders={"gated": lambda _settings: model},
    )
    with TestClient(app) as client:
        wait_ready(client, prefix)
        assert client.app.state.models.batchers == {}
        assert post(client, prefix, [3]).json()["out"] == [30]


def test_environment_overrides_the_declared_batching(monkeypatch: pytest.MonkeyPatch) -> None:
    """ATOM_BATCH__<MODEL>__<FIELD> variables override the code's Batching, per model."""
    monkeypatch.setenv("ATOM_BATCH__GATED__MAX_SIZE", "32")
    monkeypatch.setenv("ATOM_BATCH__GATED__MAX_WAIT_MS", "2.5")
    settings = load_settings(_env_file=None)
    found = collect_batching([gated_router(Batching(max_size=8, queue_size=64))], settings)
    assert found == {"gated": Batching(max_size=32, max_wait_ms=2.5, queue_size=64)}
    monkeypatch.setenv("ATOM_BATCH__GATED__MAX_SIZE", "many")
    with pytest.raises(SettingsError, match=r"ATOM_BATCH__GATED__MAX_SIZE='many'"):
        load_settings(_env_file=None)
    monkeypatch.delenv("ATOM_BATCH__GATED__MAX_SIZE")
    monkeypatch.setenv("ATOM_BATCH__GATD__MAX_SIZE", "4")
    with pytest.raises(ValueError, match="ATOM_BATCH names the model 'gatd'"):
        collect_batching([gated_router(Batching())], load_settings(_env_file=None))


def test_batch_metrics_by_model(build, prefix) -> None:
    """Batch sizes, waits and the queue depth are in /metrics, labelled by model."""
    client, model = build(Gated(hold=True), Batching(max_size=16, max_wait_ms=0))
    first, rest = behind_a_held_call(client, model, prefix, [[n, n] for n in (1, 2, 3)])
    assert all(reply.status_code == 200 for reply in [first, *rest])
    text = client.get(f"{prefix}/metrics").text
    found = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }
    by_model = (("model", "gated"),)
    assert found[("atom_batch_size_count", by_model)] == 2
    assert found[("atom_batch_size_sum", by_model)] == 7
    assert found[("atom_batch_wait_seconds_count", by_model)] == 4
    assert found[("atom_batch_queue_depth", by_model)] == 0


@pytest.mark.parametrize("route", ["gated", "gated-async"])
def test_a_request_whose_client_left_is_dropped(make_settings, route) -> None:
    """A client that disconnects while its request is queued: its items never reach the model
    (``def`` and ``async def`` routes)."""
    settings = make_settings(log_root="")
    model = Gated(hold=True)
    app: FastAPI = get_app(
        settings,
        routers=[gated_router(Batching(max_size=16, max_wait_ms=0))],
        model_loaders={"gated": lambda _settings: model},
    )
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, port=port, log_config=None, access_log=False))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        wait_until(lambda: server.started, 10)
        wait_until(lambda: bool(app.state.models.batchers), 10)
        batcher = app.state.models.batchers["gated"]
        path = f"{settings.atom_api_prefix}/{route}"
        with ThreadPoolExecutor(2) as pool:
            first = pool.submit(raw_post, port, path, b'{"items": [0]}', True)
            assert model.entered.wait(5)
            raw_post(port, path, b'{"items": [7]}', False)  # sent, then the socket closes
            wait_until(lambda: batcher.depth == 1)
            time.sleep(0.3)  # the server notices the closed connection
            kept = pool.submit(raw_post, port, path, b'{"items": [8]}', True)
            wait_until(lambda: batcher.depth == 2)
            model.release.set()
            assert b'"out":[0]' in first.result(10)
            assert b'"out":[80]' in kept.result(10)
        assert model.calls == [[0], [8]]
    finally:
        server.should_exit = True
        thread.join(10)


def raw_post(port: int, path: str, body: bytes, wait: bool) -> bytes:
    """POST a JSON body on a raw socket; read the reply, or close at once when not ``wait``."""
    head = (
        f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(head + body)
        if not wait:
            return b""
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
        return b"".join(chunks)
