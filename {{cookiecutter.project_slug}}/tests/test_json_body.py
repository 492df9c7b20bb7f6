"""JSON bodies (api/json_body.py): refused by their structure before they grow, large ones
parsed off the event loop, and summarised in the log without their payload."""

import base64
import http.client
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import BaseModel

from {{ cookiecutter.package_name }}.api import Router, json_body
from {{ cookiecutter.package_name }}.api.app import get_app
from {{ cookiecutter.package_name }}.config import Settings

from .conftest import PREFIX, Server, read_log


class Tensor(BaseModel):
    data: list[Any]


def routes(called: list[str]) -> Router:
    """A route served by the direct handler, one served by FastAPI's (a query parameter)."""
    router = Router()

    @router.post("/direct")
    async def direct(body: Tensor) -> dict:
        called.append("direct")
        return {"n": len(body.data)}

    @router.post("/generic")
    async def generic(body: Tensor, q: int = 0) -> dict:
        called.append("generic")
        return {"n": len(body.data)}

    return router


@pytest.fixture
def called() -> list[str]:
    return []


@pytest.fixture
def client(make_settings: Callable[..., Settings], called: list[str]) -> TestClient:
    """The atom with both routes under /j, ATOM_JSON_MAX_ITEMS 1000, ATOM_JSON_MAX_DEPTH 8."""
    settings = make_settings(atom_json_max_items=1000, atom_json_max_depth=8)
    app = get_app(settings, model_loaders={})
    app.include_router(routes(called), prefix="/j")
    return TestClient(app)


def post(client: TestClient, path: str, body: bytes) -> Any:
    return client.post(path, content=body, headers={"Content-Type": "application/json"})


@pytest.mark.parametrize("path", ["/j/direct", "/j/generic"])
def test_too_many_items_is_413_before_the_route(
    client: TestClient, called: list[str], path: str
) -> None:
    """Inflated JSON (a list of empty lists) is refused with 413 in the envelope, whichever
    handler serves the route, and the route never runs."""
    reply = post(client, path, b'{"data":[' + b"[]," * 2000 + b"[]]}")
    assert reply.status_code == 413
    assert reply.json() == {
        "code": 413,
        "msg": "the JSON body holds more than 1000 items (ATOM_JSON_MAX_ITEMS)",
        "data": None,
    }
    assert called == []
    assert post(client, path, b'{"data":[' + b"[]," * 400 + b"[]]}").json() == {"n": 401}


@pytest.mark.parametrize("path", ["/j/direct", "/j/generic"])
def test_too_deep_is_422(client: TestClient, called: list[str], path: str) -> None:
    """Nesting deeper than ATOM_JSON_MAX_DEPTH is refused with 422 in the envelope; as deep
    as allowed passes, and brackets side by side are not depth."""
    reply = post(client, path, b'{"data":' + b"[" * 8 + b"]" * 8 + b"}")
    assert reply.status_code == 422
    assert reply.json()["msg"] == "the JSON body nests deeper than 8 (ATOM_JSON_MAX_DEPTH)"
    assert called == []
    assert post(client, path, b'{"data":' + b"[" * 7 + b"]" * 7 + b"}").json() == {"n": 1}
    assert post(client, path, b'{"data":[' + b"[[]]," * 50 + b"[]]}").json() == {"n": 51}


def test_nesting_counts_brackets_across_slices(monkeypatch: pytest.MonkeyPatch) -> None:
    """The depth is carried from one slice of the body to the next."""
    monkeypatch.setattr(json_body, "SLICE", 3)
    assert json_body.nesting(b'[{"a":[[1],[2]]}]') == 4
    assert json_body.nesting(b"[]" * 10) == 1


def test_invalid_json_is_fastapis_422(client: TestClient) -> None:
    """A body that is not JSON gets FastAPI's json_invalid error, in the envelope."""
    reply = post(client, "/j/direct", b'{"data": [1, 2')
    assert reply.status_code == 422
    assert reply.json()["data"][0]["type"] == "json_invalid"


def test_a_large_body_is_parsed_off_the_event_loop(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A body above SMALL_BODY is checked and parsed in a worker thread, a small one on the
    event loop's."""
    threads: list[str] = []
    loads = json_body.loads

    def recording(body: bytes, limits: json_body.JsonLimits) -> Any:
        threads.append(threading.current_thread().name)
        return loads(body, limits)

    monkeypatch.setattr(json_body, "loads", recording)
    with client:
        large = b'{"data":["' + b"A" * json_body.SMALL_BODY + b'"]}'
        assert post(client, "/j/direct", large).json() == {"n": 1}
        loop_thread = client.portal.call(lambda: threading.current_thread().name)  # type: ignore[union-attr]
        assert post(client, "/j/direct", b'{"data":[1]}').json() == {"n": 1}
    assert threads[0] != loop_thread
    assert threads[1] == loop_thread


def test_no_image_bytes_reach_the_log_at_info(
    client: TestClient, settings: Settings, photo_b64: str
) -> None:
    """The call line gives an image's length, a URL's host, short fields as sent: no
    base64 of the image, no URL path, query or userinfo."""
    url = "https://user:pw@images.example.com/private/cat.jpg?token=abc"
    data_url = "data:image/jpeg;base64," + photo_b64[:1000]
    tiny_png = base64.b64encode(bytes.fromhex("89504e470d0a1a0a") + bytes(60)).decode()
    body = {"data": [photo_b64, url, data_url, tiny_png], "src_type": "base64"}
    with client:
        reply = client.post("/j/direct", json=body, headers={"X-Request-ID": "img"})
    assert reply.status_code == 200
    log = read_log(settings)
    (line,) = [line for line in log.splitlines() if "[img]" in line]
    shown = f'"<{len(photo_b64)} chars>","https://images.example.com/...({len(url)} chars)"'
    assert 'body={"data":[' + shown + ',"<1023 chars>","<92 chars>"],"src_type":"base64"}' in line
    for secret in ("user", "pw@", "private", "cat.jpg", "token", "abc"):
        assert secret not in line
    for text in (photo_b64, tiny_png):
        windows = {text[i : i + 12] for i in range(0, len(text) - 12, 6)}
        assert not any(window in log for window in windows)


@pytest.mark.slow
def test_ping_answers_while_a_worker_refuses_inflated_json(tmp_path: Any, start: Any) -> None:
    """While server.py refuses 60 MiB of ``[],`` (the largest body ATOM_MAX_BODY_BYTES
    allows, with the default limits), ping keeps answering: every ping within a generous
    bound (the measurement, printed, is in the 100 ms range on a quiet machine)."""
    server: Server = start()
    server.wait_ready()
    body = b'{"data":[' + b"[]," * (20 << 20) + b"[]]}"
    replies: list[int] = []

    def refuse() -> None:
        connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
        headers = {"Content-Type": "application/json"}
        connection.request("POST", f"{PREFIX}/detect", body=body, headers=headers)
        replies.append(connection.getresponse().status)
        connection.close()

    sender = threading.Thread(target=refuse)
    sender.start()
    pings = []
    ping = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    while sender.is_alive():
        started = time.monotonic()
        ping.request("GET", f"{PREFIX}/v1/health/ping")
        assert ping.getresponse().read()
        pings.append(time.monotonic() - started)
        time.sleep(0.01)
    sender.join(60)
    slowest = f"{len(pings)} pings, slowest {max(pings) * 1000:.0f} ms"
    sys.stdout.write(f"\nping while refusing: {slowest}\n")  # seen with -s
    assert replies == [413]
    assert len(pings) > 5
    assert max(pings) < 1.0
