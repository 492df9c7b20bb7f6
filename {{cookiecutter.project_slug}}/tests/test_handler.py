"""The direct handler (api/handler.py): FastAPI's answers, to the byte, without its handler."""

from collections.abc import Callable, Iterator
from typing import Annotated, Any

import pytest
from fastapi import Depends, FastAPI, Form, HTTPException, Request, Response
from fastapi.dependencies import utils as dependency_utils
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from opentelemetry import trace
from pydantic import BaseModel
from starlette.types import Receive, Scope, Send

from {{ cookiecutter.package_name }}.api import Router, call_log
from {{ cookiecutter.package_name }}.api.app import get_app
from {{ cookiecutter.package_name }}.api.call_log import LoggedRoute
from {{ cookiecutter.package_name }}.api.handler import as_built, unsupported_because
from {{ cookiecutter.package_name }}.config import Settings

from .conftest import make_app, wait_ready


class Item(BaseModel):
    """A body model."""

    name: str
    values: list[int]
    note: str | None = None


class Count(BaseModel):
    """A response model."""

    name: str
    count: int
    note: str | None = None


class FastAPIHandlerRoute(LoggedRoute):
    """The atom's route class with FastAPI's handler for every call."""

    direct = False


def direct_routes(route_class: type[LoggedRoute]) -> Router:
    """Routes of the shape the direct handler serves, one per way of answering."""
    router = Router(route_class=route_class)
    add_model_routes(router)
    add_other_answers(router)
    return router


def add_model_routes(router: Router) -> None:
    """Routes answering with a response model."""

    @router.post("/count")
    async def count(item: Item) -> Count:
        return Count(name=item.name, count=len(item.values), note=item.note)

    @router.post("/dict", response_model=Count, response_model_exclude_none=True)
    async def as_dict(item: Item) -> Any:
        return {"name": item.name, "count": len(item.values), "extra": "dropped"}

    @router.post("/created", status_code=201)
    async def created(item: Item) -> dict:
        return {"name": item.name}

    @router.post("/wrong-answer")
    async def wrong_answer(item: Item) -> Count:
        return {"name": item.name}  # type: ignore[return-value]  # no count: a 500

    @router.post("/refused")
    async def refused(item: Item) -> Count:
        raise HTTPException(status_code=409, detail=f"{item.name} exists")


def add_other_answers(router: Router) -> None:
    """Routes answering a Response, a dict, or something for ``jsonable_encoder``."""

    @router.post("/response")
    async def response(item: Item) -> Response:
        return Response(content=item.name, media_type="text/plain", status_code=202)

    @router.post("/request")
    async def with_request(item: Item, request: Request) -> dict:
        return {"name": item.name, "path": request.url.path}

    @router.get("/plain")
    async def plain() -> dict[str, bool]:
        return {"is_alive": True}

    @router.get("/untyped", response_model=None)  # no response model: jsonable_encoder
    async def untyped() -> dict:
        return {"values": (1, 2), "nothing": None, "count": Count(name="u", count=1)}

    @router.post("/any")
    async def any_json(body: dict) -> dict:
        return {"body": body}


def build(
    settings: Settings, route_class: type[LoggedRoute] = LoggedRoute, **include: Any
) -> FastAPI:
    """The atom's app with the direct routes included under /x."""
    app = get_app(settings, model_loaders={})
    app.include_router(direct_routes(route_class), prefix="/x", **include)
    return app


@pytest.fixture
def clients(make_settings: Callable[..., Settings]) -> Iterator[tuple[TestClient, TestClient]]:
    """The app with the direct handler, and the same app served by FastAPI's handler only."""
    direct = build(make_settings())
    generic = build(make_settings(), FastAPIHandlerRoute)
    with TestClient(direct) as direct_client, TestClient(generic) as generic_client:
        yield direct_client, generic_client


@pytest.fixture
def generic_calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The paths of the calls that FastAPI's handler served, in apps built from now on."""
    paths: list[str] = []
    direct_handler = call_log.direct_handler

    def counting(route: Any, generic: Any) -> Any:
        async def counted(request: Request) -> Response:
            paths.append(request.url.path)
            return await generic(request)

        return direct_handler(route, counted) or counted

    monkeypatch.setattr(call_log, "direct_handler", counting)
    return paths


JSON = {"content-type": "application/json"}
BODY = b'{"name":"a","values":[1,2,3]}'
CALLS = [
    ("post", "/x/count", BODY, JSON),
    ("post", "/x/count", b'{"name":"a","values":[1],"note":"n"}', JSON),
    ("post", "/x/count", BODY, {"content-type": "Application/JSON; charset=utf-8"}),
    ("post", "/x/dict", BODY, JSON),
    ("post", "/x/created", BODY, JSON),
    ("post", "/x/wrong-answer", BODY, JSON),
    ("post", "/x/refused", BODY, JSON),
    ("post", "/x/response", BODY, JSON),
    ("post", "/x/request", BODY, JSON),
    ("get", "/x/plain", b"", {}),
    ("get", "/x/untyped", b"", {}),
    ("post", "/x/any", b'{"big":123456789012345678901234567890,"f":1.5}', JSON),
    # What FastAPI's handler answers: each is handed to it.
    ("post", "/x/count", b'{"name":"a","values":["x"]}', JSON),
    ("post", "/x/count", b'{"name":"a"}', JSON),
    ("post", "/x/count", b"[1, 2]", JSON),
    ("post", "/x/count", b'{"name":', JSON),
    ("post", "/x/count", b"", JSON),
    ("post", "/x/count", BODY, {}),
    ("post", "/x/count", BODY, {"content-type": "text/plain"}),
    ("post", "/x/count", BODY, {"content-type": "application/vnd.atom+json"}),
]
KEPT_HEADERS = ("content-type", "content-length", "retry-after")


def answer(client: TestClient, method: str, path: str, body: bytes, headers: dict) -> tuple:
    """Status, the headers that describe the body, and the body of one call."""
    reply = client.request(method, path, content=body, headers=headers)
    kept = {name: reply.headers.get(name) for name in KEPT_HEADERS}
    return reply.status_code, kept, reply.content


@pytest.mark.parametrize(("method", "path", "body", "headers"), CALLS)
def test_answers_are_fastapis_to_the_byte(
    clients: tuple[TestClient, TestClient], method: str, path: str, body: bytes, headers: dict
) -> None:
    """Every call gets the status, headers and body that FastAPI's handler gives it."""
    direct, generic = clients
    assert answer(direct, method, path, body, headers) == answer(
        generic, method, path, body, headers
    )


def test_common_calls_skip_fastapis_handler(
    make_settings: Callable[..., Settings], generic_calls: list[str]
) -> None:
    """Valid calls of the common shape are served without FastAPI's handler; the others
    (a body that fails validation, is not JSON, or has another content type) go to it."""
    with TestClient(build(make_settings())) as client:
        for path in ("/x/count", "/x/dict", "/x/request", "/x/response"):
            assert client.post(path, content=BODY, headers=JSON).status_code in (200, 202)
        assert client.get("/x/plain").json() == {"is_alive": True}
        assert generic_calls == []
        for body, headers in (
            (b'{"name":"a"}', JSON),
            (b"{", JSON),
            (BODY, {"content-type": "text/plain"}),
            (b"", JSON),
        ):
            assert client.post("/x/count", content=body, headers=headers).status_code == 422
    assert generic_calls == ["/x/count"] * 4


def test_the_probes_skip_fastapis_handler(settings: Settings, generic_calls: list[str]) -> None:
    """The health routes, which probes call every few seconds, are served directly."""
    prefix = settings.atom_api_prefix
    with TestClient(make_app(settings)) as client:
        wait_ready(client, prefix)
        assert client.get(f"{prefix}/v1/health/ping").json() == {"is_alive": True}
        assert client.get(f"{prefix}/v1/health/ready").json()["is_ready"] is True
        assert client.get("/v2/health/live").status_code == 200
    assert generic_calls == []


def test_a_traced_call_goes_to_fastapis_handler(
    make_settings: Callable[..., Settings], generic_calls: list[str]
) -> None:
    """A call that FastAPI's OpenTelemetry instrumentation follows keeps FastAPI's handler
    (and so its spans)."""
    app = build(make_settings())
    inner = app.build_middleware_stack()

    async def traced(scope: Scope, receive: Receive, send: Send) -> None:
        scope["fastapi.telemetry"] = object()  # what FastAPI's instrumentation sets
        await inner(scope, receive, send)

    app.middleware_stack = traced
    with TestClient(app) as client:
        assert client.post("/x/count", content=BODY, headers=JSON).json()["count"] == 3
    assert generic_calls == ["/x/count"]


@pytest.mark.parametrize("otel", [False, True])
def test_fastapi_telemetry_follows_atom_otel(
    make_settings: Callable[..., Settings], monkeypatch: pytest.MonkeyPatch, otel: bool
) -> None:
    """FastAPI's OpenTelemetry instrumentation looks for a tracer provider at every request
    only with ATOM_OTEL on; off (the default), a request does not ask."""
    asked: list[int] = []
    provider = trace.get_tracer_provider

    def counting_provider() -> Any:
        asked.append(1)
        return provider()

    app = build(make_settings(atom_otel=otel))
    with TestClient(app) as client:
        monkeypatch.setattr(trace, "get_tracer_provider", counting_provider)
        assert client.post("/x/count", content=BODY, headers=JSON).json()["count"] == 3
    assert bool(asked) is otel


def test_dependencies_of_an_inclusion_run(make_settings: Callable[..., Settings]) -> None:
    """Dependencies given to ``include_router`` run: their routes keep FastAPI's handler."""

    def key_required(request: Request) -> None:
        if request.headers.get("x-key") != "k":
            raise HTTPException(status_code=401, detail="no key")

    app = build(make_settings(), dependencies=[Depends(key_required)])
    with TestClient(app) as client:
        assert client.post("/x/count", content=BODY, headers=JSON).status_code == 401
        reply = client.post("/x/count", content=BODY, headers={**JSON, "x-key": "k"})
        assert reply.json() == {"name": "a", "count": 3, "note": None}


def other_shapes() -> Router:
    """Routes of shapes only FastAPI's handler serves."""
    router = Router()

    @router.post("/sync")
    def sync(item: Item) -> dict:
        return {"name": item.name}

    @router.get("/query")
    async def query(page: int = 1) -> dict:
        return {"page": page}

    @router.get("/path/{name}")
    async def path(name: str) -> dict:
        return {"name": name}

    @router.post("/two")
    async def two(item: Item, other: Item) -> dict:
        return {"names": [item.name, other.name]}

    @router.post("/depends")
    async def depends(item: Item, page: int = Depends(lambda: 7)) -> dict:
        return {"page": page}

    @router.post("/empty", status_code=204)
    async def empty(item: Item) -> None:
        return None

    return router


REASONS = {
    "/sync": "its endpoint is not an async def",
    "/query": "it has query params",
    "/path/{name}": "it has path params",
    "/two": "its body is embedded",
    "/depends": "it has dependencies",
    "/empty": "no body",
}


def test_other_shapes_keep_fastapis_handler(
    make_settings: Callable[..., Settings], generic_calls: list[str]
) -> None:
    """Routes with query, path or embedded body parameters, dependencies, a ``def``
    endpoint or a status without a body are left to FastAPI's handler, and work."""
    router = other_shapes()
    routes = [route for route in router.routes if isinstance(route, APIRoute)]
    assert {route.path: unsupported_because(route) for route in routes} == REASONS
    app = get_app(make_settings(), model_loaders={})
    app.include_router(router, prefix="/o")
    with TestClient(app) as client:
        assert client.post("/o/sync", json={"name": "a", "values": []}).json() == {"name": "a"}
        assert client.get("/o/query?page=3").json() == {"page": 3}
        assert client.get("/o/path/b").json() == {"name": "b"}
        two = {"item": {"name": "d", "values": []}, "other": {"name": "e", "values": []}}
        assert client.post("/o/two", json=two).json() == {"names": ["d", "e"]}
        assert client.post("/o/depends", json={"name": "f", "values": []}).json() == {"page": 7}
        empty = client.post("/o/empty", json={"name": "g", "values": []})
        assert (empty.status_code, empty.content) == (204, b"")
    assert sorted(generic_calls) == sorted("/o" + path.replace("{name}", "b") for path in REASONS)


def test_a_form_keeps_fastapis_handler(monkeypatch: pytest.MonkeyPatch) -> None:
    """A route reading a form is left to FastAPI's handler (the atom does not ship
    python-multipart, so the route is only built here, not called)."""
    monkeypatch.setattr(dependency_utils, "ensure_multipart_is_installed", lambda: None)
    router = Router()

    @router.post("/form")
    async def form(name: Annotated[str, Form()]) -> dict:
        return {"name": name}

    (route,) = router.routes
    assert isinstance(route, APIRoute)
    assert unsupported_because(as_built(route)) == "its body is a form"
