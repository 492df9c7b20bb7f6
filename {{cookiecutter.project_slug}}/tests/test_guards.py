"""The private names of FastAPI behind their guards (api/guards.py): each check
passes on the pinned versions, and when a name is gone or behaves otherwise, the app takes
the public path, answers the same, and says so in one WARNING line."""

import logging
from collections.abc import Iterator
from contextvars import ContextVar
from types import SimpleNamespace
from typing import Any

import pytest
from fastapi import routing as fastapi_routing
from fastapi.testclient import TestClient
from pydantic import BaseModel

from {{ cookiecutter.package_name }}.api import Router, call_log, guards
from {{ cookiecutter.package_name }}.api.app import get_app
from {{ cookiecutter.package_name }}.config import Settings


class Item(BaseModel):
    n: int


def echo_router() -> Router:
    """A route of the direct handler's shape: one JSON body, an async def."""
    router = Router()

    @router.post("/echo")
    async def echo(item: Item) -> dict:
        return {"n": item.n}

    return router


@pytest.fixture
def fresh_guards() -> Iterator[None]:
    """Each guard checks again in this test, and again after it (the library is restored)."""
    for guard in guards.GUARDS:
        guard.reset()
    yield
    for guard in guards.GUARDS:
        guard.reset()


@pytest.fixture
def direct_calls(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """For each route built from now on: whether the direct handler serves it."""
    built: list[bool] = []
    direct_handler = call_log.direct_handler

    def recording(route: Any, generic: Any) -> Any:
        handler = direct_handler(route, generic)
        built.append(handler is not None)
        return handler

    monkeypatch.setattr(call_log, "direct_handler", recording)
    return built


def warnings_of(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == guards.__name__]


def serve(settings: Settings) -> list[Any]:
    """Build the app twice with the echo route; the answers of a few calls."""
    answers = []
    for _ in range(2):
        app = get_app(settings, routers=[echo_router()], model_loaders={})
        path = settings.atom_api_prefix + "/echo"
        with TestClient(app) as client:
            for body in ({"n": 1}, {"n": "x"}, [1]):
                reply = client.post(path, json=body)
                answers.append((reply.status_code, reply.json()))
    return answers


def test_every_guard_passes_on_the_pinned_versions(
    fresh_guards: None, settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    """Every name exists and behaves as the code expects: no warning, the direct path."""
    assert [guard.ok for guard in guards.GUARDS] == [True] * len(guards.GUARDS)
    with caplog.at_level(logging.WARNING):
        get_app(settings, model_loaders={})
    assert warnings_of(caplog) == []


def test_without_the_route_context_every_call_goes_to_fastapi(
    fresh_guards: None,
    direct_calls: list[bool],
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """FastAPI without ``_effective_route_context_var``: FastAPI's handler for every route,
    the same answers, and one WARNING line however many apps are built."""
    expected = serve(settings)
    assert any(direct_calls)  # the echo route, at least
    direct_calls.clear()
    guards.ROUTE_CONTEXT.reset()
    # A FastAPI that renamed it: the guard's view of fastapi.routing lacks the name.
    monkeypatch.setattr(guards, "fastapi_routing", SimpleNamespace())
    with caplog.at_level(logging.WARNING):
        assert serve(settings) == expected
    assert direct_calls and not any(direct_calls)
    (warning,) = warnings_of(caplog)
    assert warning.startswith("fastapi.routing._effective_route_context_var does not behave")
    assert "FastAPI's own handler" in warning


def test_a_route_context_that_behaves_otherwise_is_refused(
    fresh_guards: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A variable that exists but is never set while a handler is built fails the check."""
    unused: ContextVar[Any] = ContextVar("unused", default=None)
    never_set = SimpleNamespace(_effective_route_context_var=unused)
    monkeypatch.setattr(guards, "fastapi_routing", never_set)
    assert fastapi_routing._effective_route_context_var is not unused
    assert not guards.ROUTE_CONTEXT.ok
    assert guards.ROUTE_CONTEXT.error is not None
    assert "no context was set" in guards.ROUTE_CONTEXT.error


def test_without_uvicorns_callbacks_headers_have_no_time_limit(
    fresh_guards: None, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """uvicorn's HttpToolsProtocol without a callback the header timeout extends: server.py
    gets uvicorn's own protocol, and one WARNING line says headers have no time limit."""
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    from {{ cookiecutter.package_name }}.deploy.header_timeout import (
        HeaderTimeout,
        http_protocol,
    )

    protocol = http_protocol(3)
    assert isinstance(protocol, type) and issubclass(protocol, HeaderTimeout)
    assert issubclass(protocol, HttpToolsProtocol) and protocol.header_timeout == 3
    guards.HEADER_TIMEOUT.reset()
    monkeypatch.delattr(HttpToolsProtocol, "on_message_begin")
    with caplog.at_level(logging.WARNING):
        assert http_protocol(3) == "auto"
    (warning,) = warnings_of(caplog)
    assert warning.startswith("uvicorn.protocols.http.httptools_impl.HttpToolsProtocol does not")
    assert "ATOM_HEADER_TIMEOUT" in warning
