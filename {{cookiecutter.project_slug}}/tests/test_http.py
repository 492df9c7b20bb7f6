"""The error envelope, the body limit and the request id."""

import logging
import re
from collections.abc import Callable, Iterator

import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from fastapi.testclient import TestClient
from pydantic import BaseModel, field_validator
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException

from {{ cookiecutter.package_name }}.api import Router
from {{ cookiecutter.package_name }}.config import Settings
from {{ cookiecutter.package_name }}.errors import ERRORS, VqlError

from .conftest import make_app, read_log, wait_ready

logger = logging.getLogger("tests.http")


class Strict(BaseModel):
    """A body whose validator raises ValueError, as users' validators do."""

    name: str

    @field_validator("name")
    @classmethod
    def no_digits(cls, value: str) -> str:
        if any(char.isdigit() for char in value):
            raise ValueError("digits are not allowed")
        return value


def extra_routes() -> Router:
    """Routes that misbehave on purpose."""
    router = Router()

    @router.get("/boom")
    async def boom() -> dict:
        raise RuntimeError("secret detail from deep inside")

    @router.get("/vql/{code}")
    async def vql(code: int) -> dict:
        raise VqlError(code, data={"hint": "x" * 500})

    @router.post("/strict")
    async def strict(body: Strict) -> dict:
        return {"name": body.name}

    @router.post("/echo")
    async def echo(body: dict) -> dict:
        return {"keys": sorted(body)}

    @router.get("/chatty")
    async def chatty() -> dict:
        logger.info("inside the handler")
        await run_in_threadpool(logger.info, "inside a worker thread")
        return {"ok": True}

    return router


@pytest.fixture
def app(make_settings: Callable[..., Settings]) -> FastAPI:
    """The atom's app with a small body limit and the misbehaving routes."""
    application = make_app(make_settings(atom_max_body_bytes=2048))
    application.include_router(extra_routes(), prefix="/t")
    return application


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    """A client that sees 500 responses instead of exceptions."""
    with TestClient(app, raise_server_exceptions=False) as test_client:
        wait_ready(test_client, app.state.settings.atom_api_prefix)
        yield test_client


def test_404_envelope(client: TestClient) -> None:
    """An unknown path is 404 with the envelope."""
    response = client.get("/no/such/path")
    assert response.status_code == 404
    assert response.json() == {"code": 404, "msg": "Not Found", "data": None}


def test_405_envelope(client: TestClient, prefix: str) -> None:
    """A wrong method is 405 with the envelope and the Allow header."""
    response = client.delete(f"{prefix}/v1/health/ping")
    assert response.status_code == 405
    assert response.json() == {"code": 405, "msg": "Method Not Allowed", "data": None}
    assert response.headers["allow"] == "GET"


def test_422_envelope(client: TestClient, prefix: str) -> None:
    """A body that does not validate is 422, msg "Request Entity Error", errors in data."""
    response = client.post(f"{prefix}/detect", json={"data": "not a list"})
    assert response.status_code == 422
    body = response.json()
    assert (body["code"], body["msg"]) == (422, "Request Entity Error")
    assert {tuple(error["loc"]) for error in body["data"]} == {
        ("body", "data"),
        ("body", "src_type"),
    }


def test_422_when_a_validator_raises_value_error(client: TestClient) -> None:
    """A ValueError from a custom validator still gives a JSON-safe 422."""
    response = client.post("/t/strict", json={"name": "abc1"})
    assert response.status_code == 422
    (error,) = response.json()["data"]
    assert error["loc"] == ["body", "name"]
    assert error["msg"] == "Value error, digits are not allowed"
    assert error["ctx"] == {"error": "digits are not allowed"}


def test_422_on_malformed_json(client: TestClient) -> None:
    """A body that is not JSON is a 422 envelope, not a 500."""
    response = client.post(
        "/t/echo", content=b'{"a": ', headers={"content-type": "application/json"}
    )
    assert response.status_code == 422
    assert response.json()["data"][0]["type"] == "json_invalid"


def test_422_echoes_a_lone_surrogate_as_text(client: TestClient, prefix: str) -> None:
    """A lone surrogate escape (valid JSON) echoed by a 422 is text, not a 500 (fuzz lane)."""
    body = b'{"data": [], "src_type": "\\udc80", "model_id": "\\ud800"}'
    response = client.post(
        f"{prefix}/detect", content=body, headers={"content-type": "application/json"}
    )
    assert response.status_code == 422
    inputs = {error["loc"][-1]: error["input"] for error in response.json()["data"]}
    assert inputs == {"src_type": "\\udc80", "model_id": "\\ud800"}


def test_422_echoes_an_integer_beyond_64_bits_as_text(client: TestClient, prefix: str) -> None:
    """An integer orjson cannot encode, echoed by a 422, is its digits, not a 500 (fuzz lane)."""
    big = 2**65
    response = client.post(f"{prefix}/detect", json={"data": [big], "src_type": "url"})
    assert response.status_code == 422
    errors = response.json()["data"]
    assert errors and {error["input"] for error in errors} == {str(big)}


def test_413_with_content_length(client: TestClient) -> None:
    """A body declared above ATOM_MAX_BODY_BYTES is refused with 413 before it is read."""
    response = client.post("/t/echo", json={"a": "x" * 4000})
    assert response.status_code == 413
    assert response.json() == {
        "code": 413,
        "msg": "Request Entity Too Large (limit 2048 bytes)",
        "data": None,
    }


def test_413_with_chunked_body(client: TestClient) -> None:
    """A chunked body (no Content-Length) is counted and refused past the limit."""

    def chunks() -> Iterator[bytes]:
        yield b'{"a": "'
        for _ in range(10):
            yield b"x" * 500
        yield b'"}'

    response = client.post(
        "/t/echo", content=chunks(), headers={"content-type": "application/json"}
    )
    assert response.status_code == 413
    assert response.json()["code"] == 413
    assert client.post("/t/echo", json={"a": 1}).json() == {"keys": ["a"]}


def test_fastapi_body_limit_still_answers_plain_text() -> None:
    """Why the atom keeps its own body limit: FastAPI's ``max_body_size`` (0.165, Starlette
    1.10) answers a body declared above it with ``text/plain`` "Content Too Large",
    replacing the app's own 413 (the envelope, or v2's ``{"error"}``). When this fails, a
    newer FastAPI keeps the app's reply: move the limit to ``FastAPI(max_body_size=...)``."""
    bare = FastAPI(max_body_size=10)

    @bare.exception_handler(HTTPException)
    async def envelope(request: Request, exc: HTTPException) -> JSONResponse:
        return JSONResponse({"code": exc.status_code}, status_code=exc.status_code)

    @bare.post("/echo")
    async def echo(body: dict) -> dict:
        return body

    with TestClient(bare) as client:
        declared = client.post("/echo", json={"a": "x" * 20})
    assert declared.status_code == 413
    assert declared.headers["content-type"].startswith("text/plain")
    assert declared.text == "Content Too Large"


def test_500_is_generic_and_the_traceback_goes_to_the_log(
    client: TestClient, settings: Settings
) -> None:
    """An unhandled exception is a generic 500; the detail is only in the log."""
    response = client.get("/t/boom", headers={"X-Request-ID": "boom-1"})
    assert response.status_code == 500
    assert response.json() == {"code": 500, "msg": "Internal Server Error", "data": None}
    assert "secret" not in response.text
    assert response.headers["x-request-id"] == "boom-1"
    log = read_log(settings)
    assert "[boom-1]" in log
    assert "Traceback (most recent call last)" in log
    assert "RuntimeError: secret detail from deep inside" in log
    assert client.get("/t/chatty").status_code == 200  # still serving


@pytest.mark.parametrize(
    ("code", "status"),
    [(501, 400), (502, 400), (503, 400), (504, 415), (512, 503), (515, 502), (521, 507)],
)
def test_vql_error_codes_and_statuses(client: TestClient, code: int, status: int) -> None:
    """VqlError keeps the business code and message in the body and sends a real HTTP status."""
    response = client.get(f"/t/vql/{code}")
    assert response.status_code == status
    body = response.json()
    assert (body["code"], body["msg"]) == (code, ERRORS[code].msg)
    assert body["data"]["hint"].endswith("...(500 chars)")


def test_every_business_code_has_a_real_status() -> None:
    """No business code is sent as an HTTP status outside 4xx/5xx."""
    for code, kind in ERRORS.items():
        assert 400 <= kind.status < 600, code
        assert VqlError(code).status == kind.status


def test_unknown_vql_code(client: TestClient) -> None:
    """An unknown business code is kept, with the generic message and status 500."""
    response = client.get("/t/vql/777")
    assert response.status_code == 500
    assert response.json()["code"] == 777


def test_request_id_is_kept(client: TestClient) -> None:
    """A plain X-Request-ID from the caller is echoed."""
    response = client.get("/t/chatty", headers={"X-Request-ID": "caller-id_42.a:b"})
    assert response.headers["x-request-id"] == "caller-id_42.a:b"


@pytest.mark.parametrize("sent", [None, "", "x" * 200, "bad id", "a\u00e9b"])
def test_request_id_is_generated(client: TestClient, sent: str | None) -> None:
    """Without a usable X-Request-ID, a new one is generated (32 hex characters)."""
    headers = {} if sent is None else {"X-Request-ID": sent.encode("utf-8")}
    response = client.get("/t/chatty", headers=headers)
    assert re.fullmatch(r"[0-9a-f]{32}", response.headers["x-request-id"])


def test_error_responses_carry_the_request_id(client: TestClient) -> None:
    """404, 422, 413 and VqlError responses carry X-Request-ID too."""
    for response in (
        client.get("/nope"),
        client.post("/t/strict", json={}),
        client.post("/t/echo", json={"a": "x" * 4000}),
        client.get("/t/vql/501"),
    ):
        assert re.fullmatch(r"[0-9a-f]{32}", response.headers["x-request-id"])


def test_every_log_line_of_a_request_carries_its_id(client: TestClient, settings: Settings) -> None:
    """Lines logged by the route class, the handler and a worker thread carry the request id."""
    client.get("/t/chatty", headers={"X-Request-ID": "trace-me-7"})
    lines = [line for line in read_log(settings).splitlines() if "[trace-me-7]" in line]
    messages = [line.split(": ", 1)[1] for line in lines]
    assert "inside the handler" in messages
    assert "inside a worker thread" in messages
    assert any(
        message.startswith("GET /t/chatty client=") and " -> 200 in " in message
        for message in messages
    )
    other = [line for line in read_log(settings).splitlines() if "inside the handler" in line]
    assert len(other) == 1
