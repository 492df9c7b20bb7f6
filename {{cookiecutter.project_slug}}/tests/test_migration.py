"""Moving in from linker_atom 0.0.43: every public name it had imports and accepts every call
it accepted (signatures compared with a table of the original's), and the app-level names
behave as before: get_app(config), settings, response bodies, dependencies, on_event
handlers, a service's route replacing the atom's."""

import importlib
import inspect
import logging
import mmap
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import APIRouter, Depends, FastAPI
from fastapi.testclient import TestClient

from {{ cookiecutter.package_name }}.api.app import get_app
from {{ cookiecutter.package_name }}.api.base import UdfAPIRoute
from {{ cookiecutter.package_name }}.api.dependencies import get_engine, get_state
from {{ cookiecutter.package_name }}.api.mounting import RouteConflictError
from {{ cookiecutter.package_name }}.api.schema import payload, response
from {{ cookiecutter.package_name }}.config import Settings, get_settings
from {{ cookiecutter.package_name }}.lib.exception import VQL_MESSAGE_MAP, VqlError

from .conftest import make_app

# linker_atom services register their handlers with app.on_event, which FastAPI deprecates.
pytestmark = pytest.mark.filterwarnings("ignore:(?s).*on_event is deprecated:DeprecationWarning")

PACKAGE = Settings.__module__.split(".")[0]
ANY = object()  # in the table: "has a default" (the original's was an internal object)

# linker_atom 0.0.43's public callables and their signatures, read from its wheel. A class
# stands for its constructor (without self), "Class.method" for a method (with self).
ORIGINAL: dict[str, str] = {
    "api.app.get_app": "(config=None)",
    "api.base.UdfAPIRoute": "(*args, **kwargs)",
    "api.dependencies.get_state": "(request)",
    "api.dependencies.get_engine": "(request)",
    "api.interface.healthcheck.ping": "()",
    "lib.common.catch_exc": "(calc_time=False, default_data=None)",
    "lib.common.record_duration": "(func)",
    "lib.common.format_long_val": "(data)",
    "lib.common.LRUCache": "(capacity)",
    "lib.common.LRUCache.has": "(self, key)",
    "lib.common.LRUCache.get": "(self, key)",
    "lib.common.LRUCache.put": "(self, key, value)",
    "lib.common.LRUCache.pop": "(self, key)",
    "lib.load_image.load_image": "(src_type, data, func_map=None)",
    "lib.load_image.load_np_image": "(src_type, data, *, func_map=ANY)",
    "lib.load_image.load_pil_image": "(src_type, data, *, func_map=ANY)",
    "lib.load_image.url_to_np": "(url)",
    "lib.load_image.local_to_np": "(path)",
    "lib.load_image.base64_to_np": "(data)",
    "lib.load_image.mmap_to_np": "(value)",
    "lib.load_image.url_to_pil": "(url)",
    "lib.load_image.local_to_pil": "(path)",
    "lib.load_image.base64_to_pil": "(b64_str)",
    "lib.load_image.mmap_to_pil": "(value)",
    "lib.load_image.async_url_to_np": "(data)",
    "lib.load_image.async_url_to_pil": "(data)",
    "lib.load_image.video_to_np": "(path)",
    "lib.load_image.file_to_base64": "(path, mode='rb')",
    "lib.load_image.chunked": "(it, n)",
    "lib.share_memory.MmapManager": (
        "(path, length=0, flags=mmap.MAP_SHARED, prot=mmap.PROT_READ, period=600)"
    ),
    "lib.share_memory.MmapManager.read": "(self, position, size)",
    "lib.share_memory.CacheManager": "(period=60)",
    "lib.share_memory.CacheManager.set": "(self, name, value)",
    "lib.share_memory.CacheManager.get": "(self, name, default=None)",
    "lib.share_memory.CacheManager.expire": "(self)",
    "lib.share_memory.FileManager": "(*, connect_time, fn)",
    "lib.requests.request": "(url, method, **kwargs)",
    "lib.requests.get": "(url, **kwargs)",
    "lib.requests.post": "(url, **kwargs)",
    "lib.log.truncate_msg": "(msg)",
    "lib.log.build_current_date_str": "()",
    "lib.exception.VqlError": "(status_code, detail=None)",
    "dependency.model_protector.ModelProtector.decrypt_model": (
        "(self, source_dir, out_path='/tmp')"
    ),
    "dependency.model_protector.ModelProtector.encrypt_model": "(self, source_dir, out_path='.')",
    "dependency.model_protector.ModelProtector.encrypt_model_legacy": (
        "(self, source_dir, out_path='.')"
    ),
    "dependency.model_protector.ModelProtector.remove_model": "(self, source_dir)",
    "deploy.nginx_run": "()",
}
# Where the atom names a parameter otherwise, it takes the original's name as a keyword
# too; the positions keep their meaning (the behaviour tests check it).
RENAMED = {"lib.exception.VqlError": {"status_code": "code", "detail": "msg"}}

# Names that are not callables, with what each must be.
VALUES: dict[str, Callable[[Any], bool]] = {
    "api.base.ContextAPIRoute": inspect.isclass,
    "api.interface.healthcheck.healthcheck_route": lambda v: isinstance(v, APIRouter),
    "config.settings": lambda v: isinstance(v, Settings),
    "config.Settings": inspect.isclass,
    "config.LoggerConfig": inspect.isclass,
    "config.ServingConfig": inspect.isclass,
    "config.SkyWalkingConfig": inspect.isclass,
    "config.logger.LoggerConfig": inspect.isclass,
    "config.serving.ServingConfig": inspect.isclass,
    "config.skywalking.SkyWalkingConfig": inspect.isclass,
    "lib.load_image.FETCH_TIMEOUT": lambda v: v == 15,
    "lib.load_image.SRC_TYPE_MAP": lambda v: set(v) == {"url", "local", "base64", "mmap"},
    "lib.log.logger": lambda v: isinstance(v, logging.Logger),
    "lib.exception.SUCCESS": lambda v: v == 200,
    "lib.exception.FAIL": lambda v: v == 1,
    "lib.exception.VQL_MESSAGE_MAP": lambda v: len(v) == 28 and v[517].endswith("错误的请求格式"),
    "dependency.model_protector.ModelProtector": inspect.isclass,
}


def resolve(dotted: str) -> Any:
    """The atom's object at ``<package>.<dotted>`` (a module attribute, or a class's member)."""
    parts = dotted.split(".")
    for cut in range(len(parts) - 1, 0, -1):
        try:
            target = importlib.import_module(".".join([PACKAGE, *parts[:cut]]))
        except ModuleNotFoundError:
            continue
        for name in parts[cut:]:
            target = getattr(target, name)
        return target
    raise LookupError(dotted)


def original(text: str) -> inspect.Signature:
    """The signature written in the table."""
    return inspect.signature(eval(f"lambda {text[1:-1]}: None", {"mmap": mmap, "ANY": ANY}))


def call_forms(signature: inspect.Signature) -> Iterator[tuple[tuple[str, ...], dict[str, str]]]:
    """Calls the original accepted: positional with each count, by keyword, with extras."""
    params = list(signature.parameters.values())
    kinds = {p.kind for p in params}
    positional = [p for p in params if p.kind == p.POSITIONAL_OR_KEYWORD]
    named = [p for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    required_named = {p.name: p.name for p in named if p.default is p.empty}
    first = len([p for p in positional if p.default is p.empty])
    keyword_only = {p.name: p.name for p in params if p.kind == p.KEYWORD_ONLY}
    required_keyword_only = {k: v for k, v in keyword_only.items() if k in required_named}
    for count in range(first, len(positional) + 1):
        yield tuple(p.name for p in positional[:count]), required_keyword_only
    yield (), {p.name: p.name for p in named}
    yield (), required_named
    if inspect.Parameter.VAR_POSITIONAL in kinds:
        yield (*(p.name for p in positional), "extra", "more"), required_keyword_only
    if inspect.Parameter.VAR_KEYWORD in kinds:
        yield (), {**required_named, "extra_option": "x"}


@pytest.mark.parametrize("dotted", sorted(ORIGINAL))
def test_every_call_of_the_original_binds(dotted: str) -> None:
    """Each call form the original accepted binds to the atom's callable, defaults included."""
    old = original(ORIGINAL[dotted])
    new = inspect.signature(resolve(dotted))
    for args, kwargs in call_forms(old):
        new.bind(*args, **kwargs)  # TypeError if the atom refuses it
    aliases = RENAMED.get(dotted, {})
    for param in old.parameters.values():
        if param.default is param.empty:
            continue
        mine = new.parameters[param.name]
        assert mine.default is not mine.empty, (dotted, param.name)
        if param.default is not ANY:
            assert mine.default == param.default, (dotted, param.name)
        position = list(old.parameters).index(param.name)
        if param.kind == param.POSITIONAL_OR_KEYWORD:
            at_position = list(new.parameters.values())[position]
            assert at_position.default == param.default, (dotted, param.name)
            assert aliases.get(param.name, param.name) == at_position.name, (dotted, param.name)


@pytest.mark.parametrize("dotted", sorted(VALUES))
def test_every_other_name_is_there(dotted: str) -> None:
    """Constants, classes, the logger and the lazy settings import and are what they were."""
    get_settings.cache_clear()
    try:
        assert VALUES[dotted](resolve(dotted)), dotted
    finally:
        get_settings.cache_clear()


def test_model_protector_takes_the_original_calls(tmp_path: Path) -> None:
    """ModelProtector(xor_key, user_id, model_version=0): each call form builds a legacy one."""
    module = importlib.import_module(f"{PACKAGE}.dependency.model_protector")
    calls: list[tuple[tuple[Any, ...], dict[str, Any]]] = [
        ((12, "omchat"), {}),
        ((12, "omchat", 3), {}),
        ((12,), {"user_id": "omchat", "model_version": 3}),
        ((), {"xor_key": 12, "user_id": "omchat"}),
        ((), {"xor_key": 12, "user_id": "omchat", "model_version": 3}),
    ]
    for args, kwargs in calls:
        with pytest.warns(DeprecationWarning, match="docs/migration.md"):
            protector = module.ModelProtector(*args, **kwargs)
        expected_version = kwargs.get("model_version", args[2] if len(args) > 2 else 0)
        assert (protector.xor_key, protector.user_id) == (12, "omchat")
        assert protector.model_version == expected_version


# get_app(config) and the settings ------------------------------------------------------


def test_get_app_takes_the_original_config_dict(tmp_path: Path) -> None:
    """A dict of settings, with linker_atom's names and nested groups, configures the app."""
    app = get_app(
        {
            "atom_title": "Legacy",
            "atom_description": "moved in",
            "atom_api_prefix": "/legacy",
            "log_config": {"log_dir": "legacy-logs", "log_backup_count": 3},
            "sw_config": {"sw_agent_backend": "collector:11800", "sw_agent_name": "svc"},
            "log_root": str(tmp_path),
        }
    )
    settings = app.state.settings
    assert (app.title, app.description) == ("Legacy", "moved in")
    assert (settings.log_dir, settings.log_backup_count) == ("legacy-logs", 3)
    assert settings.sw_agent_collector_backend_services == "collector:11800"
    assert settings.sw_config.sw_agent_backend == "collector:11800"
    with TestClient(app) as client:
        assert client.get("/legacy/v1/health/ping").json() == {"is_alive": True}
    with pytest.raises(TypeError, match="config must be Settings"):
        get_app(["not", "settings"])  # type: ignore[arg-type]


META = (
    '{"servingHost": "10.0.0.9", "servingPort": "0", "modelIds": "m1,,m2",'
    ' "svcAddress": "http://svc:8000", "atomProcessUrl": "/d/run",'
    ' "k8sHealthcheckUrl": "/k8s/ping", "abilityDependAtomCodes": ["a"], "host_node_name": "n"}'
)


def test_settings_keep_every_field_and_property(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """``from <package>.config import settings`` reads the environment with the old names."""
    env = {
        "ATOM_WORKERS": "3",
        "ATOM_PORT": "8100",
        "ATOM_INNER_START_PORT": "9100",
        "ATOM_TITLE": "T",
        "ATOM_DESC": "D",
        "ATOM_API_PREFIX": "/p",
        "LOG_BACKUP_COUNT": "4",
        "LOG_DIR": "ld",
        "LOG_FILE_MAX_BYTES": "2048",
        "SW_SWITCH": "False",
        "SW_AGENT_COLLECTOR_BACKEND_SERVICES": "c:1",
        "SW_AGENT_NAME": "n",
        "SW_AGENT_INSTANCE_NAME": "i",
        "SW_AGENT_LOG_REPORTER_ACTIVE": "false",
        "SW_AGENT_LOG_REPORTER_LEVEL": "info",
        "META": META,
        "DOCS_SWITCH": "0",
        "PROFILING": "no",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.chdir(tmp_path)  # no .env of the checkout
    config = importlib.import_module(f"{PACKAGE}.config")
    get_settings.cache_clear()
    try:
        settings = config.settings
    finally:
        get_settings.cache_clear()
    assert (settings.atom_workers, settings.atom_port, settings.atom_inner_start_port) == (
        3,
        8100,
        9100,
    )
    assert (settings.atom_title, settings.atom_description, settings.atom_api_prefix) == (
        "T",
        "D",
        "/p",
    )
    assert settings.log_config.model_dump() == {
        "log_backup_count": 4,
        "log_dir": "ld",
        "log_file_max_bytes": 2048,
    }
    assert settings.sw_config.model_dump() == {
        "sw_switch": False,
        "sw_agent_backend": "c:1",
        "sw_agent_name": "n",
        "sw_agent_instance_name": "i",
        "sw_agent_log_reporter_active": False,
        "sw_agent_log_reporter_level": "INFO",
    }
    assert settings.serving_meta_raw == META
    assert (settings.docs_switch, settings.profiling) == (False, False)
    assert settings.model_id_list == ["m1", "m2"]
    assert settings.healthcheck_url == "/k8s/ping"
    serving = settings.serving_config
    assert (serving.serving_host, serving.serving_port, serving.model_ids) == (
        "10.0.0.9",
        0,
        "m1,,m2",
    )
    assert serving.serving_domain == "http://10.0.0.9:80"  # linker_atom built port 0 into it
    assert serving.atom_uri == "http://svc:8000/d/run"
    assert (serving.host_node_name, serving.ability_depend_atom_codes) == ("n", ["a"])
    assert serving.atom_healthcheck_url == "/k8s/ping"


def test_settings_defaults_of_the_old_names(make_settings: Callable[..., Settings]) -> None:
    """Without META: no model ids, the ping under the prefix, Serving config defaults."""
    from {{ cookiecutter.package_name }}.lib.settings import legacy_settings

    settings = legacy_settings(make_settings(atom_api_prefix="/p"))
    assert settings.model_id_list == []
    assert settings.healthcheck_url == "/p/v1/health/ping"
    assert settings.serving_config.atom_process_url == "/atom/process"
    assert settings.serving_config.atom_healthcheck_url == "/v1/health/ping"
    assert settings.log_config.log_file_max_bytes == 100 << 20


# Response and request bodies ------------------------------------------------------------

BODIES = {
    "SuccessResponse": {"code": 0, "msg": "Success", "data": {}},
    "FailureResponse": {"code": 1, "msg": "Failed", "data": {}},
    "ExternalInvokeErrorResponse": {"code": 400, "msg": "External Invoke Error", "data": {}},
    "RequestValidErrorResponse": {"code": 422, "msg": "Request Entity Error", "data": {}},
    "RequestNotFoundErrorResponse": {"code": 404, "msg": "NOT FOUND", "data": {}},
    "InternalErrorResponse": {"code": 500, "msg": "Internal Server Error", "data": {}},
}


@pytest.mark.parametrize("name", sorted(BODIES))
def test_envelope_classes_keep_their_defaults(name: str) -> None:
    """Each envelope class of api.schema.response has the original's code and msg."""
    assert getattr(response, name)().model_dump() == BODIES[name]
    assert getattr(response, name)(data=[1]).model_dump()["data"] == [1]


def test_detection_bodies() -> None:
    """Heartbeat, Object, DetectionRes and MmapReadBody keep their fields and defaults."""
    assert response.Heartbeat(is_alive=True).model_dump() == {"is_alive": True}
    box = response.Object(xmin=1, ymin=2, xmax=3, ymax=4, conf=0.5, label="face")
    reply = response.DetectionRes(took=12, objects=[[box]])
    assert reply.model_dump() == {
        "code": 200,
        "msg": "",
        "description": "",
        "kwargs": {},
        "took": 12,
        "objects": [
            [{"xmin": 1.0, "ymin": 2.0, "xmax": 3.0, "ymax": 4.0, "conf": 0.5, "label": "face"}]
        ],
    }
    assert response.BaseJsonResModel(code=3, msg="m").data == {}
    assert payload.MmapReadBody().model_dump() == {"path": "", "position": 0, "size": 0}


# The app: a service's routes, startup handlers, dependencies, errors ---------------------


def legacy_service(app: FastAPI, calls: list[str]) -> UdfAPIRoute:
    """A service written for linker_atom: a startup handler, its own /detect, errors."""

    @app.on_event("startup")
    async def load() -> None:
        calls.append("startup")
        app.state.engine = {"name": "legacy-engine"}

    @app.on_event("shutdown")
    def unload() -> None:
        calls.append("shutdown")

    route = UdfAPIRoute()

    @route.post("/detect", name="detect")
    async def detect(engine: Any = Depends(get_engine)) -> dict:  # noqa: B008 - linker_atom's style
        return {"code": 200, "engine": engine["name"]}

    @route.get("/state")
    def state(app_state: Any = Depends(get_state)) -> dict:  # noqa: B008
        return {"engine": app_state.engine["name"]}

    @route.get("/bad/{code}")
    def bad(code: int) -> dict:
        raise VqlError(code)

    return route


def test_a_service_route_replaces_the_atom_one(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    """The service's POST {prefix}/detect answers, the log says it replaced the demo's."""
    calls: list[str] = []
    app = make_app(settings)
    app.include_router(router=legacy_service(app, calls), prefix=settings.atom_api_prefix)
    prefix = settings.atom_api_prefix
    with caplog.at_level(logging.WARNING), TestClient(app) as client:
        assert client.post(f"{prefix}/detect").json() == {"code": 200, "engine": "legacy-engine"}
        assert client.get(f"{prefix}/state").json() == {"engine": "legacy-engine"}
        paths = client.get("/openapi.json").json()["paths"]
        assert "requestBody" not in paths[f"{prefix}/detect"]["post"]  # the service's, no body
    assert calls == ["startup", "shutdown"]
    (note,) = [r.getMessage() for r in caplog.records if "replaces" in r.getMessage()]
    assert note.startswith(f"POST {prefix}/detect: ")
    assert note.endswith(".api.interface.detect.detect")


def test_vql_errors_keep_code_and_message(settings: Settings) -> None:
    """VqlError(517) is the envelope with code 517 and a real 400; 701 is a 403."""
    app = make_app(settings)
    app.include_router(legacy_service(app, []), prefix=settings.atom_api_prefix)
    with TestClient(app) as client:
        reply = client.get(f"{settings.atom_api_prefix}/bad/517")
        assert (reply.status_code, reply.json()["code"]) == (400, 517)
        assert client.get(f"{settings.atom_api_prefix}/bad/701").status_code == 403
    error = VqlError(status_code=517, detail=VQL_MESSAGE_MAP[517])
    assert (error.code, error.status_code, error.detail, error.status) == (
        517,
        517,
        "算子错误：错误的请求格式",
        400,
    )
    assert VqlError(504).detail == "image type is not supported"


def test_a_startup_handler_schedules_a_job(settings: Settings) -> None:
    """``app.state.schedulers`` is a running APScheduler a startup handler adds jobs to."""
    app = make_app(settings)
    ran = threading.Event()

    @app.on_event("startup")
    def schedule() -> None:
        app.state.schedulers.add_job(ran.set, "interval", seconds=0.05, id="tick")

    with TestClient(app):
        assert ran.wait(5)


def test_engine_not_set_is_503(settings: Settings) -> None:
    """get_engine before a startup handler set app.state.engine: 503, not a 500."""
    app = make_app(settings)
    route = UdfAPIRoute()

    @route.get("/engine")
    def engine(value: Any = Depends(get_engine)) -> dict:  # noqa: B008
        return {"engine": value}

    app.include_router(route)
    with TestClient(app) as client:
        reply = client.get("/engine")
    assert (reply.status_code, reply.json()["code"]) == (503, 503)


def test_a_failing_startup_handler_stops_the_start(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    """A startup handler that raises fails the start, and the log names it."""
    app = make_app(settings)

    @app.on_event("startup")
    def broken() -> None:
        raise RuntimeError("model file missing")

    with pytest.raises(RuntimeError, match="model file missing"), TestClient(app):
        pass
    (record,) = [r for r in caplog.records if "startup handler" in r.getMessage()]
    assert record.levelno == logging.ERROR
    assert "broken failed" in record.getMessage()


def test_a_route_serving_fewer_methods_stops_the_start(settings: Settings) -> None:
    """A later route that would replace only some methods of the atom's is refused at start."""
    app = make_app(settings)
    app.router.add_api_route(
        f"{settings.atom_api_prefix}/both", lambda: {}, methods=["GET", "POST"]
    )
    app.router.add_api_route(f"{settings.atom_api_prefix}/both", lambda: {}, methods=["GET"])
    with pytest.raises(RouteConflictError, match="which does not serve all of"), TestClient(app):
        pass


def test_two_included_routers_on_one_path_stop_the_start(settings: Settings) -> None:
    """Two routers a service included, serving one path and method: the start names both."""
    app = make_app(settings)
    for answer in (1, 2):
        router = APIRouter()
        router.add_api_route("/same", lambda answer=answer: answer, methods=["GET"])
        app.include_router(router)
    with pytest.raises(RouteConflictError, match="both in included routers"), TestClient(app):
        pass
