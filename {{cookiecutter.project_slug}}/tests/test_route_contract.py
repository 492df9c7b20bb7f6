"""Every route module of ``api/route.py`` keeps the atom's contract, without a test of its own.

For each listed module, and for the module ``make route`` writes (``scaffold/``, rendered
here under a probe name): its models load from fakes (``fakes.py``) and the v2 protocol
describes them; each of its routes is in the OpenAPI document, answers a sample request
with a reply its response model accepts (or a stream without an ``error`` event), and
answers a malformed body, or an image it cannot use, with the error envelope.

The sample of a route is the first example of its body model's JSON schema
(``model_config = {"json_schema_extra": {"examples": [...]}}``, which the docs show too);
the atom's own bodies, whose items are images or videos, get one made here (``SAMPLES``).
A model that is not called like the demo detector gets its fake from ``FAKES`` of
``fakes.py``.
"""

import base64
import importlib.util
import json
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, NamedTuple

import cv2
import numpy as np
import pytest
from fastapi import APIRouter, FastAPI
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from pydantic import TypeAdapter

from {{ cookiecutter.package_name }}.api import Model, Router
from {{ cookiecutter.package_name }}.api.app import get_app
from {{ cookiecutter.package_name }}.api.mounting import (
    collect_model_loaders,
    listed_routers,
)
from {{ cookiecutter.package_name }}.api.route import ROUTE_MODULES
from {{ cookiecutter.package_name }}.api.schema import DetectPayload, DetectResponse
from {{ cookiecutter.package_name }}.config import Settings

from .conftest import wait_ready
from .fakes import FakeDetector, fake_loader
from .test_make_route import NEW, scaffold_script
from .videos import shaded_frames, write_video

SCAFFOLD = "make-route"  # the id of the module make route writes, rendered from scaffold/
ENVELOPE = {"code", "msg", "data"}
NOT_BASE64 = "%%%not base64%%%"


class Media(NamedTuple):
    """What the samples point at: an image as base64, a local video and its folder."""

    image_b64: str
    video: Path
    root: Path


def detect_sample(media: Media) -> dict[str, Any]:
    """A body of the detection contract: one small grey image."""
    return {"data": [media.image_b64], "src_type": "base64"}


def video_sample(media: Media) -> dict[str, Any]:
    """A body of the video contract: a local video of two frames."""
    return {"data": str(media.video), "src_type": "local"}


# The atom's own bodies (schema name -> sample): their images are made by the tests.
SAMPLES: dict[str, Callable[[Media], dict[str, Any]]] = {
    "DetectPayload": detect_sample,
    "VideoPayload": video_sample,
}


class Subject(NamedTuple):
    """One route module inside the app it is served by, and the media of its samples."""

    name: str
    router: APIRouter
    app: FastAPI
    client: TestClient
    prefix: str
    media: Media

    def routes(self) -> list[APIRoute]:
        """The module's API routes."""
        return [route for route in self.router.routes if isinstance(route, APIRoute)]

    def operations(self) -> Iterator[tuple[APIRoute, str, str, dict[str, Any]]]:
        """Each route's methods, with the full path and the route's OpenAPI operation."""
        document = self.client.get("/openapi.json").json()
        for route in self.routes():
            path = self.prefix + route.path
            for method in sorted(route.methods - {"HEAD"}):
                operation = document["paths"].get(path, {}).get(method.lower())
                assert operation is not None, f"{method} {path} is not in the OpenAPI document"
                yield route, method, path, {**operation, "components": document["components"]}


def body_schema(operation: dict[str, Any]) -> tuple[str | None, dict[str, Any] | None]:
    """The name and JSON schema of an operation's JSON body (None, None: it has none)."""
    content = operation.get("requestBody", {}).get("content", {})
    schema = content.get("application/json", {}).get("schema")
    if schema is None:
        return None, None
    ref = schema.get("$ref", "")
    if ref:
        name = ref.rsplit("/", 1)[-1]
        return name, operation["components"]["schemas"][name]
    return None, schema


def sample_request(
    subject: Subject, method: str, path: str, operation: dict[str, Any]
) -> dict[str, Any]:
    """The keyword arguments of ``client.request`` for a sample call of an operation."""
    for parameter in operation.get("parameters", []):
        if parameter.get("required"):
            raise AssertionError(
                f"{method} {path}: no sample for its parameter {parameter['name']!r}; "
                "the contract test calls routes whose only input is a JSON body"
            )
    name, schema = body_schema(operation)
    if schema is None:
        return {}
    if name in SAMPLES:
        return {"json": SAMPLES[name](subject.media)}
    examples = schema.get("examples")
    assert examples, (
        f"{method} {path}: no sample for its body {name or 'schema'}: give its model an "
        'example (model_config = {"json_schema_extra": {"examples": [...]}})'
    )
    return {"json": examples[0]}


def stream_events(text: str) -> list[tuple[str, Any]]:
    """(name, data) of each Server-Sent Event of a reply."""
    events = []
    for block in text.split("\n\n"):
        fields: dict[str, str] = {}
        for line in block.splitlines():
            key, _, value = line.partition(":")
            if key in {"event", "data"}:
                fields[key] = fields.get(key, "") + value.strip()
        if "data" in fields:
            events.append((fields.get("event", "message"), json.loads(fields["data"])))
    return events


def is_envelope(reply: Any) -> bool:
    """The reply's body is the error envelope ``{"code", "msg", "data"}``."""
    try:
        body = reply.json()
    except ValueError:
        return False
    return isinstance(body, dict) and set(body) == ENVELOPE and isinstance(body["msg"], str)


def check_answers(subject: Subject) -> None:
    """Each route answers its sample: 200 and a body its response model accepts, or a
    stream of events without an ``error`` event."""
    for route, method, path, operation in subject.operations():
        reply = subject.client.request(
            method, path, **sample_request(subject, method, path, operation)
        )
        assert reply.status_code == 200, (
            f"{method} {path} answered its sample with {reply.status_code}: {reply.text[:500]} "
            "(the captured log has the traceback; a model that is not called like the demo "
            "detector needs its fake in FAKES of tests/fakes.py)"
        )
        if reply.headers["content-type"].startswith("text/event-stream"):
            events = stream_events(reply.text)
            assert events, f"{method} {path} streamed no event"
            errors = [data for name, data in events if name == "error"]
            assert not errors, f"{method} {path} streamed an error: {errors[0]}"
        elif route.response_model is not None:
            TypeAdapter(route.response_model).validate_python(reply.json())


def check_malformed_bodies(subject: Subject) -> None:
    """A body that is not JSON, or not the body's shape, is 422 in the envelope."""
    for _, method, path, operation in subject.operations():
        if body_schema(operation)[1] is None:
            continue
        headers = {"content-type": "application/json"}
        for body in (b"{not json", b"[]"):
            reply = subject.client.request(method, path, content=body, headers=headers)
            assert reply.status_code == 422, f"{method} {path} {body!r}: {reply.status_code}"
            assert is_envelope(reply) and reply.json()["code"] == 422, reply.text


def bad_media(sample: dict[str, Any], schema: dict[str, Any], media: Media) -> dict[str, Any]:
    """The sample with its items replaced by one no image loader can use, of the first
    src_type the body allows among base64, local and url."""
    unusable = {
        "base64": NOT_BASE64,
        "local": str(media.root / "missing.avi"),
        "url": "http://127.0.0.1:9/missing.jpg",  # a loopback address: refused
    }
    allowed = schema["properties"]["src_type"].get("enum", list(unusable))
    src_type = next((kind for kind in unusable if kind in allowed), "base64")
    item = unusable[src_type]
    data = [item] if isinstance(sample["data"], list) else item
    return {**sample, "src_type": src_type, "data": data}


def check_bad_media(subject: Subject) -> int:
    """Each route whose body carries images (``data`` and ``src_type``) answers an image it
    cannot use with a 4xx in the envelope; returns how many routes carry images."""
    checked = 0
    for _, method, path, operation in subject.operations():
        _, schema = body_schema(operation)
        if not schema or not {"data", "src_type"} <= set(schema.get("properties", {})):
            continue
        sample = sample_request(subject, method, path, operation)["json"]
        body = bad_media(sample, schema, subject.media)
        reply = subject.client.request(method, path, json=body)
        assert 400 <= reply.status_code < 500, (
            f"{method} {path} answered an unusable image with {reply.status_code}: "
            f"{reply.text[:300]}"
        )
        assert is_envelope(reply), f"{method} {path}: {reply.text[:300]}"
        checked += 1
    return checked


def render_scaffold(folder: Path) -> APIRouter:
    """The router of the module ``make route`` would write (named ``NEW``)."""
    source = folder / f"{NEW}.py"
    source.write_text(scaffold_script().render(NEW), encoding="utf-8")
    package = Settings.__module__.split(".")[0]
    spec = importlib.util.spec_from_file_location(f"{package}.api.interface.{NEW}", source)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.router


@pytest.fixture
def media(tmp_path: Path) -> Media:
    """A grey image and a two-frame video in a folder of its own."""
    ok, png = cv2.imencode(".png", np.full((32, 32, 3), 180, np.uint8))
    assert ok
    root = tmp_path / "media"
    root.mkdir()
    video = write_video(root / "sample.avi", shaded_frames([200, 0]))
    return Media(base64.b64encode(png.tobytes()).decode(), video, root)


@contextmanager
def serving(
    settings: Settings, routers: Sequence[APIRouter], router: APIRouter, name: str, media: Media
) -> Iterator[Subject]:
    """The app of ``routers`` with every model a fake, started; ``router`` is the subject."""
    loaders = {model: fake_loader(model) for model in collect_model_loaders(routers)}
    app = get_app(settings, routers=routers, model_loaders=loaders)
    with TestClient(app) as client:
        wait_ready(client, settings.atom_api_prefix)
        yield Subject(name, router, app, client, settings.atom_api_prefix, media)


@pytest.fixture(params=[*ROUTE_MODULES, SCAFFOLD])
def subject(
    request: pytest.FixtureRequest,
    make_settings: Callable[..., Settings],
    media: Media,
    tmp_path: Path,
) -> Iterator[Subject]:
    """A listed route module in the atom's app (all of them mounted), or the module make
    route writes, mounted beside them."""
    routers = listed_routers(ROUTE_MODULES)
    if request.param == SCAFFOLD:
        routers.append(render_scaffold(tmp_path))
        router = routers[-1]
    else:
        router = routers[ROUTE_MODULES.index(request.param)]
    settings = make_settings(image_local_roots=str(media.root))
    with serving(settings, routers, router, request.param, media) as subject:
        yield subject


def test_its_models_load_from_fakes(subject: Subject) -> None:
    """The models the module declares load, from fakes, and the atom is ready with them."""
    declared = getattr(subject.router, "model_loaders", {})
    store = subject.app.state.models
    ready = subject.client.get(f"{subject.prefix}/v1/health/ready").json()
    for model, loader in declared.items():
        assert store.loaders[model] is not loader, f"the model {model!r} is not a fake"
        assert ready["models"][model] == "ready"


def test_its_models_are_in_v2_metadata(subject: Subject) -> None:
    """Each model of the module is described and ready in the Open Inference Protocol v2."""
    for model in getattr(subject.router, "model_loaders", {}):
        for base in ("", subject.prefix):
            reply = subject.client.get(f"{base}/v2/models/{model}")
            assert reply.status_code == 200, reply.text
            assert reply.json()["name"] == model and reply.json()["inputs"]
        assert subject.client.get(f"/v2/models/{model}/ready").json()["ready"] is True


def test_each_route_is_in_openapi(subject: Subject) -> None:
    """Every route of the module is an operation of the document, with its error replies."""
    operations = list(subject.operations())
    assert operations, f"{subject.name} serves no route"
    for _, method, path, operation in operations:
        if body_schema(operation)[1] is not None:
            assert "422" in operation["responses"], f"{method} {path}: no 422 documented"


def test_each_route_answers_a_sample(subject: Subject) -> None:
    """Each route answers a sample request with 200 and a reply of its own shape."""
    check_answers(subject)


def test_errors_use_the_envelope(subject: Subject) -> None:
    """A malformed body is 422 and an unusable image a 4xx, both in the error envelope."""
    check_malformed_bodies(subject)
    carrying_images = check_bad_media(subject)
    if subject.name == SCAFFOLD:
        assert carrying_images == 2  # the image route and the video stream


# A route module with a bug, as an owner might write one: the checks above must fail it.


def broken_router(bug: str) -> APIRouter:
    """A router whose one route has ``bug``."""
    router = Router()
    router.model_loader("broken")(lambda _settings: FakeDetector())

    @router.post("/broken", response_model=DetectResponse)
    async def broken(
        payload: DetectPayload, model: Annotated[FakeDetector, Model("broken")]
    ) -> Any:
        if bug == "raises":
            raise ZeroDivisionError("a bug in the route")
        if bug == "wrong shape":
            return {"objects": "none"}
        assert bug == "ignores images"  # answers without loading them
        return DetectResponse(took=0, objects=[[] for _ in payload.data])

    return router


@pytest.mark.parametrize(
    ("bug", "check", "failure"),
    [
        ("raises", check_answers, "answered its sample with 500"),
        ("wrong shape", check_answers, "answered its sample with 500"),
        ("ignores images", check_bad_media, "answered an unusable image with 200"),
    ],
)
def test_a_broken_route_fails_the_contract(
    bug: str,
    check: Callable[[Subject], Any],
    failure: str,
    make_settings: Callable[..., Settings],
    media: Media,
) -> None:
    """A route that raises, answers a shape other than its response model, or never looks
    at its images fails the check that covers it, which says what it saw."""
    router = broken_router(bug)
    settings = make_settings(image_local_roots=str(media.root))
    with (
        serving(settings, [router], router, "broken", media) as subject,
        pytest.raises(AssertionError, match=failure),
    ):
        check(subject)
