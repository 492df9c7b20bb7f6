"""The runtime's shape: helpers that read no settings, the core fenced off from linker_atom's
compatibility package, one public module for route modules, imports without side effects,
one line to register a route module with its models, a model store that knows what loads."""

import ast
import asyncio
import inspect
import json
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import pytest
from fastapi.testclient import TestClient

from {{ cookiecutter.package_name }}.api import Router
from {{ cookiecutter.package_name }}.api.app import get_app
from {{ cookiecutter.package_name }}.api.dependencies import Model
from {{ cookiecutter.package_name }}.api.model_store import ModelStore
from {{ cookiecutter.package_name }}.api.mounting import (
    collect_model_loaders,
    listed_routers,
)
from {{ cookiecutter.package_name }}.api.route import ROUTE_MODULES
from {{ cookiecutter.package_name }}.config import Settings

from .conftest import ROOT, wait_ready

PACKAGE = Settings.__module__.split(".")[0]
HELPERS = ("images", "control", "client")
COMPAT = "lib"  # linker_atom's names: the compatibility package
# The only places outside lib/ that reach into it: linker_atom's old import paths, each
# forwarding its names on first use from inside a function (module, function).
LIB_FORWARDS = {
    ("api/base.py", "__getattr__"),
    ("api/dependencies.py", "__getattr__"),
    ("api/interface/healthcheck.py", "__getattr__"),
    ("api/schema/payload.py", "__getattr__"),
    ("api/schema/response.py", "__getattr__"),
    ("config/__init__.py", "__getattr__"),
    ("config/__init__.py", "resolve_settings"),  # get_app(a dict with linker_atom's names)
    ("config/logger.py", "__getattr__"),
    ("config/serving.py", "__getattr__"),
    ("config/skywalking.py", "__getattr__"),
}


def imported_modules(path: Path, package: str) -> set[str]:
    """The absolute names of the modules a source file imports (relative imports resolved)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    parts = package.split(".")
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = parts[: len(parts) - node.level + 1] if node.level else []
            module = ".".join([*base, node.module] if node.module else base)
            names.add(module)
            names.update(f"{module}.{alias.name}" for alias in node.names)
    return names


def test_no_helper_imports_the_settings_module() -> None:
    """images/, control/ and client/ are passed what they need: none imports config."""
    offenders = []
    for helper in HELPERS:
        for path in sorted((ROOT / PACKAGE / helper).rglob("*.py")):
            relative = path.relative_to(ROOT).with_suffix("")
            package = ".".join(relative.parts[:-1])
            config = f"{PACKAGE}.config"
            hits = [
                name
                for name in imported_modules(path, package)
                if name == config or name.startswith(config + ".")
            ]
            if hits:
                offenders.append(f"{relative}: {sorted(hits)}")
    assert offenders == []


def test_the_helper_scan_sees_a_settings_import(tmp_path: Path) -> None:
    """The scan above resolves relative imports: ``from ..config import X`` is caught."""
    source = tmp_path / "probe.py"
    source.write_text("from ..config import Settings\nfrom . import frames\n")
    found = imported_modules(source, f"{PACKAGE}.images")
    assert f"{PACKAGE}.config.Settings" in found
    assert f"{PACKAGE}.images.frames" in found


def lib_imports(path: Path, package: str) -> list[tuple[str | None, int]]:
    """Each import of the compatibility package in a source file, at any depth (in a
    function, a class, an ``if``), with the top-level function it is in (None: elsewhere)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    compat = f"{PACKAGE}.{COMPAT}"
    found = []
    for top in tree.body:
        function = top.name if isinstance(top, ast.FunctionDef | ast.AsyncFunctionDef) else None
        for node in ast.walk(top):
            names = set()
            if isinstance(node, ast.Import | ast.ImportFrom):
                names = imported_modules_of(node, package)
            elif (
                isinstance(node, ast.Call)
                and getattr(node.func, "attr", getattr(node.func, "id", "")) == "import_module"
                and node.args
                and isinstance(node.args[0], ast.Constant)
            ):
                names = {str(node.args[0].value)}
            if any(name == compat or name.startswith(compat + ".") for name in names):
                found.append((function, node.lineno))
    return found


def imported_modules_of(node: ast.Import | ast.ImportFrom, package: str) -> set[str]:
    """The absolute names one import statement reaches (relative imports resolved)."""
    if isinstance(node, ast.Import):
        return {alias.name for alias in node.names}
    parts = package.split(".")
    base = parts[: len(parts) - node.level + 1] if node.level else []
    module = ".".join([*base, node.module] if node.module else base)
    return {module, *(f"{module}.{alias.name}" for alias in node.names)}


def test_the_core_never_imports_the_compatibility_package() -> None:
    """No module outside lib/ imports it, at any depth, except linker_atom's old import
    paths, each inside the one function that forwards its names (``LIB_FORWARDS``)."""
    offenders, forwards = [], set()
    for path in sorted((ROOT / PACKAGE).rglob("*.py")):
        relative = path.relative_to(ROOT / PACKAGE)
        if relative.parts[0] == COMPAT:
            continue
        package = ".".join((PACKAGE, *relative.parts[:-1]))
        for function, line in lib_imports(path, package):
            if (relative.as_posix(), function) in LIB_FORWARDS:
                forwards.add((relative.as_posix(), function))
            else:
                offenders.append(f"{relative}:{line} (in {function or 'the module body'})")
    assert offenders == []
    assert forwards == LIB_FORWARDS  # each listed forward is still there


def test_the_compat_scan_sees_every_form(tmp_path: Path) -> None:
    """The scan above catches relative and absolute imports, nested ones and import_module."""
    source = tmp_path / "probe.py"
    source.write_text(
        "from ..lib.exception import VqlError\n"
        "import importlib\n"
        "def f():\n"
        "    from .. import lib\n"
        "    if True:\n"
        f"        import {PACKAGE}.lib.common\n"
        f"    return importlib.import_module('{PACKAGE}.lib.log')\n"
        "class C:\n"
        "    from ..lib import api\n"
    )
    found = lib_imports(source, f"{PACKAGE}.api")
    assert found == [(None, 1), ("f", 4), ("f", 6), ("f", 7), (None, 9)]


SERVE_WITHOUT_COMPAT = """
import sys
from fastapi.testclient import TestClient
from PACKAGE.api.app import get_app
from PACKAGE.config import Settings
app = get_app(Settings(_env_file=None, log_root=""), model_loaders=dict())
prefix = app.state.settings.atom_api_prefix
with TestClient(app) as client:
    assert client.get(prefix + "/v1/health/ping").status_code == 200
    assert client.post(prefix + "/detect", json=dict()).status_code == 422
print(sorted(name for name in sys.modules if name.startswith("PACKAGE.lib")))
"""


def test_serving_never_loads_the_compatibility_package() -> None:
    """Building the app, starting it and answering calls leave lib/ unimported."""
    result = subprocess.run(
        [sys.executable, "-c", SERVE_WITHOUT_COMPAT.replace("PACKAGE", PACKAGE)],
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == "[]"


def internal_imports(path: Path, package: str) -> set[str]:
    """The modules of the package that a source file imports from (not the names)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            module = sorted(imported_modules_of(node, package))[0]  # the module itself
            if module == PACKAGE or module.startswith(PACKAGE + "."):
                found.add(module)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith(PACKAGE + "."))
    return found


def test_the_demo_route_module_imports_from_the_public_surface() -> None:
    """detect.py, the module every owner copies, imports from <package>.api and its bodies
    from api.schema, nothing else of the package; every name it takes is in ``__all__``."""
    from {{ cookiecutter.package_name }} import api
    from {{ cookiecutter.package_name }}.api import schema

    path = ROOT / PACKAGE / "api" / "interface" / "detect.py"
    package = f"{PACKAGE}.api.interface"
    assert internal_imports(path, package) == {f"{PACKAGE}.api", f"{PACKAGE}.api.schema"}
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level:
            surface = api if node.module is None else schema
            assert {a.name for a in node.names} <= set(surface.__all__)


def test_a_route_module_of_an_older_atom_still_works(settings: Settings) -> None:
    """The demo route module as older atoms have it (UdfAPIRoute from api.base, the model key
    from dependency.keys, ms_since from lib.common...) imports, loads its model and answers."""
    import importlib.util

    name = f"{PACKAGE}.api.interface.detect_before_router"
    spec = importlib.util.spec_from_file_location(name, ROOT / "tests/data/detect_before_router.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert isinstance(module.router, Router)
    app = get_app(settings, routers=[module.router])
    prefix = settings.atom_api_prefix
    with TestClient(app) as client:
        wait_ready(client, prefix)
        reply = client.post(f"{prefix}/detect", json={"data": [], "src_type": "stream"})
        assert reply.status_code == 200, reply.text
        assert reply.json()["objects"] == []


IMPORT_EVERYTHING = """
import importlib, logging, pkgutil, sys, threading
import {package} as root
names = [m.name for m in pkgutil.walk_packages(root.__path__, root.__name__ + ".")]
for name in names:
    importlib.import_module(name)
from {package}.config import get_settings
from {package}.control import log_handlers
from {package}.images import loader
print(len(names))
print(logging.getLogger().handlers, threading.active_count(), get_settings.cache_info().currsize)
print(log_handlers._fork_hooks_registered, loader._default)
"""


def test_importing_every_module_has_no_side_effect() -> None:
    """No handler, thread, settings read, fork hook or loader comes from importing the package."""
    code = IMPORT_EVERYTHING.format(package=PACKAGE)
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin", "ATOM_PORT": "not-a-port"},  # read: it would fail
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    count, state, hooks = result.stdout.splitlines()
    assert int(count) > 40
    assert state == "[] 1 0"
    assert hooks == "False []"


def plates_router(calls: list[str]) -> Router:
    """A route module as a user writes it: a router, its model loader, a route using it."""
    router = Router(tags=["plates"])

    @router.model_loader("plates")
    def load_plates(settings: Settings) -> str:
        calls.append(settings.atom_title)
        return "plate reader"

    @router.get("/plates")
    def read_plates(model: Annotated[str, Model("plates")]) -> dict:
        return {"model": model}

    return router


def test_listing_a_router_registers_its_routes_and_models(settings: Settings) -> None:
    """One router in the list: its route is served and its model is loaded at start."""
    calls: list[str] = []
    app = get_app(settings, routers=[plates_router(calls)])
    assert set(app.state.models.loaders) == {"plates"}
    prefix = settings.atom_api_prefix
    with TestClient(app) as client:
        wait_ready(client, prefix)
        assert client.get(f"{prefix}/plates").json() == {"model": "plate reader"}
        assert client.get(f"{prefix}/v1/health/ready").json()["models"] == {"plates": "ready"}
    assert calls == [settings.atom_title]


def test_state_dependencies_of_an_async_route_are_read_without_changing_its_interface(
    settings: Settings,
) -> None:
    """An ``async def`` route's ``Model``/``AppSettings``/``ModelIds``/``Store`` are filled
    by the route's wrapper: the same values, the same OpenAPI parameters, 503 while loading."""
    from pydantic import BaseModel

    from {{ cookiecutter.package_name }}.api.dependencies import (
        REQUEST_PARAM,
        AppSettings,
        ModelIds,
        Store,
    )

    class Body(BaseModel):
        n: int

    release = threading.Event()

    def load_slowly(_: Settings) -> str:
        release.wait(10)
        return "plate reader"

    def routes(inline: bool) -> Router:
        router = Router(tags=["plates"])
        router.model_loader("plates")(load_slowly)
        add = router.add_api_route if inline else super(Router, router).add_api_route

        async def read(
            *,
            body: Body,
            model: Annotated[str, Model("plates")],
            conf: AppSettings,
            ids: ModelIds,
            store: Store,
            page: int = 1,
        ) -> dict:
            return {
                "model": model,
                "title": conf.atom_title,
                "ids": list(ids.served),
                "store": type(store).__name__,
                "n": body.n,
                "page": page,
            }

        add("/plates", read, methods=["POST"])
        return router

    inlined = get_app(settings, routers=[routes(True)])
    solved = get_app(settings, routers=[routes(False)])
    prefix = settings.atom_api_prefix
    path = f"{prefix}/plates"
    (endpoint,) = [r.endpoint for r in inlined.routes if getattr(r, "path", "") == path]
    assert REQUEST_PARAM in inspect.signature(endpoint).parameters  # the wrapper is in place
    paths = [app.openapi()["paths"][path] for app in (inlined, solved)]
    assert paths[0] == paths[1]
    assert REQUEST_PARAM not in json.dumps(inlined.openapi())
    with TestClient(inlined) as one, TestClient(solved) as two:
        for client in (one, two):
            early = client.post(f"{path}?page=2", json={"n": 3})
            assert early.status_code == 503, early.text
            assert "'plates' is not available" in early.text
        release.set()
        wait_ready(one, prefix)
        wait_ready(two, prefix)
        answers = [c.post(f"{path}?page=2", json={"n": 3}) for c in (one, two)]
        assert [a.status_code for a in answers] == [200, 200]
        assert answers[0].json() == answers[1].json()
        assert answers[0].json()["model"] == "plate reader"
        assert answers[0].json()["title"] == settings.atom_title
        bad = one.post(path, json={"n": "three"})
        assert bad.status_code == 422, bad.text


def test_two_route_modules_on_one_path_stop_the_start(settings: Settings) -> None:
    """Two listed routers serving one path and method are a conflict, not a replacement."""
    from {{ cookiecutter.package_name }}.api.mounting import RouteConflictError

    first, second = plates_router([]), Router()
    second.get("/plates")(lambda: {"other": True})
    app = get_app(settings, routers=[first, second], model_loaders={})
    with (
        pytest.raises(RouteConflictError, match=r"two route modules of api/route.py"),
        TestClient(app),
    ):
        pass


def test_the_listed_modules_declare_the_demo_model() -> None:
    """The atom's own list declares the face model through detect's router."""
    assert "face" in collect_model_loaders(listed_routers(ROUTE_MODULES))


def test_a_listed_module_that_does_not_exist_is_named() -> None:
    """A name in ROUTE_MODULES without its module, or without a router, stops the start."""
    with pytest.raises(LookupError, match=r"lists 'platez', but there is no api/interface/platez"):
        listed_routers(["platez"])
    with pytest.raises(LookupError, match=r"api/interface/docs.py has no `router`"):
        listed_routers(["docs"])


def test_a_model_name_declared_twice_is_refused() -> None:
    """Two routers with a loader of the same name stop the app's construction."""
    with pytest.raises(ValueError, match="two routers declare a loader for the model 'plates'"):
        collect_model_loaders([plates_router([]), plates_router([])])
    router = Router()
    router.model_loader("x")(lambda settings: 1)
    with pytest.raises(ValueError, match="already has a loader"):
        router.model_loader("x")(lambda settings: 2)


def test_the_store_knows_while_a_loader_runs(settings: Settings) -> None:
    """``loading`` is true exactly while a loader runs, whatever the thread names."""
    started, release = threading.Event(), threading.Event()

    def slow(_: Settings) -> str:
        started.set()
        release.wait(10)
        return "model"

    store = ModelStore({"slow": slow})
    assert not store.loading

    async def scenario() -> None:
        task = asyncio.create_task(store.load_all(settings))
        while not started.is_set():
            await asyncio.sleep(0.01)
        assert store.loading and store.status == {"slow": "loading"}
        release.set()
        await task

    asyncio.run(scenario())
    assert not store.loading and store.ready


def test_health_check_ignores_the_proxy_of_the_environment(
    monkeypatch: pytest.MonkeyPatch, make_settings: Callable[..., Settings]
) -> None:
    """An HTTP_PROXY in the environment does not decide whether a local worker is healthy."""
    import uvicorn

    from {{ cookiecutter.package_name }}.control.health import PING_PATH, answers_ok

    from .conftest import free_port, make_app

    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")  # nothing listens there
    monkeypatch.setenv("http_proxy", "http://127.0.0.1:9")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    settings = make_settings()
    port = free_port()
    config = uvicorn.Config(make_app(settings), port=port, log_config=None, access_log=False)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{port}{settings.atom_api_prefix}{PING_PATH}"
        deadline = time.monotonic() + 10
        while not server.started:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        assert answers_ok(url)
    finally:
        server.should_exit = True
        thread.join(10)
