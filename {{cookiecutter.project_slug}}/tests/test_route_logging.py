"""Router: what each call logs, what it hides, and when it profiles."""

import json
import re
from collections.abc import Callable, Iterator
from types import SimpleNamespace
from typing import Any

import pytest
from fastapi import FastAPI, Request
from fastapi.testclient import TestClient

from {{ cookiecutter.package_name }}.api import Router, json_body
from {{ cookiecutter.package_name }}.api.app import get_app
from {{ cookiecutter.package_name }}.config import Settings

from .conftest import read_log


def echo_routes() -> Router:
    """A JSON route and a raw-bytes route."""
    router = Router()

    @router.post("/json")
    async def json_route(body: dict) -> dict:
        return {"n": len(body)}

    @router.post("/json-generic")
    async def generic_route(body: dict, n: int) -> dict:  # a query parameter: FastAPI's handler
        return {"n": len(body)}

    @router.post("/raw")
    async def raw_route(request: Request) -> dict:
        return {"n": len(await request.body())}

    return router


def build(make_settings: Callable[..., Settings], **overrides: object) -> FastAPI:
    """The atom's app (no models) with the echo routes under /e."""
    app = get_app(make_settings(**overrides), model_loaders={})
    app.include_router(echo_routes(), prefix="/e")
    return app


@pytest.fixture
def client(make_settings: Callable[..., Settings]) -> Iterator[TestClient]:
    """A client at LOG_LEVEL=DEBUG, so header lines are written too."""
    with TestClient(build(make_settings, log_level="DEBUG")) as test_client:
        yield test_client


def log_lines(settings: Settings, request_id: str) -> list[str]:
    """The messages logged for one request id."""
    return [
        line.split(": ", 1)[1]
        for line in read_log(settings).splitlines()
        if f"[{request_id}]" in line
    ]


def test_call_line_has_method_path_client_query_body_status_and_duration(
    client: TestClient, settings: Settings
) -> None:
    """One line per call names method, path, client, query, body summary, status, duration."""
    client.post("/e/json?page=2", json={"name": "abc"}, headers={"X-Request-ID": "r1"})
    arrived, done = log_lines(settings, "r1")
    call = 'POST /e/json client=testclient:50000 query={"page":"2"}'
    # At DEBUG only, before the body is read: its declared length.
    assert arrived.startswith(f"arrived: {call} body=<14 bytes, application/json> headers=")
    body = ' body={"name":"abc"}'
    assert re.fullmatch(re.escape(call + body) + r" -> 200 in \d+\.\d\d ms", done)


def test_long_strings_are_cut(client: TestClient, settings: Settings) -> None:
    """A long string in the body is logged as its length."""
    long_value = "A" * 10_000
    client.post("/e/json", json={"image": long_value}, headers={"X-Request-ID": "r2"})
    line = log_lines(settings, "r2")[-1]
    assert ' body={"image":"<10000 chars>"} -> 200 in ' in line
    assert long_value not in read_log(settings)
    assert len(line) < 400


def test_wide_integers_are_logged_as_such(client: TestClient, settings: Settings) -> None:
    """orjson writes no integer beyond 64 bits: the summary names it, the rest stays shown."""
    body = b'{"id": 123456789012345678901234567890, "n": [1, 18446744073709551616], "k": 7}'
    headers = {"X-Request-ID": "r9", "Content-Type": "application/json"}
    client.post("/e/json", content=body, headers=headers)
    line = log_lines(settings, "r9")[-1]
    wide = '"<integer beyond 64 bits>"'
    shown = '{"id":%s,"n":[1,%s],"k":7}' % (wide, wide)  # noqa: UP031 - no double braces here
    assert f" body={shown} -> 200 in " in line


def test_bytes_are_summarised(client: TestClient, settings: Settings) -> None:
    """A binary body is logged as its size and type."""
    client.post(
        "/e/raw",
        content=bytes(range(256)) * 40,
        headers={"X-Request-ID": "r3", "content-type": "application/octet-stream"},
    )
    done = log_lines(settings, "r3")[-1]
    assert "body=<10240 bytes, application/octet-stream> -> 200 in " in done


def test_secrets_are_redacted(client: TestClient, settings: Settings) -> None:
    """Authorization, Cookie and token-like headers, and secret query values, are not logged."""
    client.post(
        "/e/json?access_token=qsecret1&page=1",
        json={"password": "bsecret2", "user": "ann"},
        headers={
            "X-Request-ID": "r4",
            "Authorization": "Bearer hsecret3",
            "Cookie": "session=csecret4",
            "X-Api-Token": "tsecret5",
            "X-Trace": "visible",
        },
    )
    log = read_log(settings)
    for secret in ("qsecret1", "bsecret2", "hsecret3", "csecret4", "tsecret5"):
        assert secret not in log
    headers_line = log_lines(settings, "r4")[0].split(" headers=", 1)[1]
    assert '"authorization":"***"' in headers_line
    assert '"cookie":"***"' in headers_line
    assert '"x-api-token":"***"' in headers_line
    assert '"x-trace":"visible"' in headers_line
    assert 'query={"access_token":"***","page":"1"}' in log_lines(settings, "r4")[-1]


def test_failed_call_line(client: TestClient, settings: Settings) -> None:
    """A call that fails validation logs its error instead of a status."""
    headers = {"X-Request-ID": "r5", "content-type": "application/json"}
    client.post("/e/json", content=b"[1, 2", headers=headers)
    done = log_lines(settings, "r5")[-1]
    assert done.startswith("POST /e/json client=testclient:50000 query={} body=<5 bytes, ")
    assert re.search(r" failed in \d+\.\d\d ms: RequestValidationError$", done)


def test_query_cannot_switch_profiling_on(client: TestClient, settings: Settings) -> None:
    """?PROFILING=1 does nothing when the PROFILING setting is off."""
    client.post("/e/json?PROFILING=1", json={}, headers={"X-Request-ID": "r6"})
    assert not any("profile of" in line for line in log_lines(settings, "r6"))


def test_profiling_setting_profiles_calls(make_settings: Callable[..., Settings]) -> None:
    """With PROFILING on, each call logs its cProfile statistics."""
    settings = make_settings(profiling=True)
    with TestClient(build(make_settings, profiling=True)) as client:
        client.post("/e/json", json={"a": 1}, headers={"X-Request-ID": "p1"})
    profile = next(line for line in log_lines(settings, "p1") if "profile of" in line)
    assert profile.startswith("profile of POST /e/json:")
    assert "function calls" in read_log(settings)


def test_health_routes_are_quiet_at_info(make_settings: Callable[..., Settings]) -> None:
    """Probes do not fill the log at INFO."""
    settings = make_settings()
    with TestClient(build(make_settings)) as client:
        client.get(f"{settings.atom_api_prefix}/v1/health/ping", headers={"X-Request-ID": "q1"})
    assert log_lines(settings, "q1") == []


@pytest.fixture
def parses(monkeypatch: pytest.MonkeyPatch) -> Iterator[list]:
    """The parses of a JSON body made while the test runs: orjson's (api/json_body.py) and
    the json module's (Starlette's ``request.json()``), counted through wrappers."""
    calls: list = []
    real_loads, real_orjson_loads = json.loads, json_body.orjson.loads

    def counting(real: Callable[..., Any]) -> Callable[..., Any]:
        def loads(*args: Any, **kwargs: Any) -> Any:
            calls.append(args)
            return real(*args, **kwargs)

        return loads

    monkeypatch.setattr(json, "loads", counting(real_loads))
    monkeypatch.setattr(json_body, "orjson", SimpleNamespace(loads=counting(real_orjson_loads)))
    yield calls


@pytest.mark.parametrize("level", ["INFO", "WARNING"])
@pytest.mark.parametrize("path", ["/e/json", "/e/json-generic?n=1"])
def test_a_json_body_is_parsed_once(
    make_settings: Callable[..., Settings], parses: list, level: str, path: str
) -> None:
    """The route parses its body once, whichever handler serves it (direct or FastAPI's),
    and the call line shows the value it parsed; nothing else parses it again."""
    settings = make_settings(log_level=level)
    with TestClient(build(make_settings, log_level=level)) as client:
        parses.clear()  # the start's own parses
        body = {"a": 1, "b": [2.5, {"c": None}], "d": "x"}
        reply = client.post(path, json=body, headers={"X-Request-ID": "once"})
        calls = len(parses)
    assert reply.status_code == 200
    assert reply.json() == {"n": 3}
    assert calls == 1
    if level == "INFO":
        (line,) = log_lines(settings, "once")
        assert ' body={"a":1,"b":[2.5,{"c":null}],"d":"x"} -> 200 in ' in line


@pytest.mark.parametrize(
    ("literal", "items"),
    [
        (b"123456789012345678901234567890", 0),
        (b"-9223372036854775809", 0),
        (b"18446744073709551616", 0),
        (b"18446744073709551616", 100),  # the last of a long list of numbers
    ],
)
def test_integers_beyond_64_bits_stay_exact(
    make_settings: Callable[..., Settings], literal: bytes, items: int
) -> None:
    """orjson reads integer literals beyond 64 bits as floats: for such a body the route gets
    the json module's exact value, as without the call line."""
    router = Router()

    @router.post("/int")
    async def int_route(body: dict) -> dict:
        n = body["n"][-1] if isinstance(body["n"], list) else body["n"]
        return {"text": str(n), "type": type(n).__name__}

    app = get_app(make_settings(), model_loaders={})
    app.include_router(router, prefix="/e")
    value = b"[" + b"1.5, " * items + literal + b"]" if items else literal
    with TestClient(app) as client:
        body = b'{"n": ' + value + b"}"
        reply = client.post("/e/int", content=body, headers={"Content-Type": "application/json"})
    assert reply.status_code == 200
    assert reply.json() == {"text": literal.decode(), "type": "int"}


def test_a_long_list_of_numbers_is_parsed_once(
    make_settings: Callable[..., Settings], parses: list
) -> None:
    """A tensor's data (a long list of floats, within 64 bits) is parsed once, by orjson."""
    data = [i / 7 for i in range(1000)] + [2.0**62, -(2.0**62), 12345678901234567890]
    with TestClient(build(make_settings)) as client:
        parses.clear()
        reply = client.post("/e/json", json={"data": data})
        calls = len(parses)
    assert reply.status_code == 200
    assert reply.json() == {"n": 1}
    assert calls == 1
