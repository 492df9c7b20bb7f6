"""Mounting: how the route modules of ``api/route.py`` become the app's routes and models.

``listed_routers`` imports the modules ``ROUTE_MODULES`` names and takes their ``router``;
``install_routers`` mounts the built-in health routes and those routers under
ATOM_API_PREFIX, plus META's ``k8sHealthcheckUrl`` as another ping;
``collect_model_loaders`` gathers the loaders the routers carry
(``Router.model_loader``). ``replace_shadowed_routes`` runs when the server starts:
a route added after ``get_app()`` at a path and method the atom already serves (a
``linker_atom`` service's ``app.include_router(route, prefix=...)`` with its own
``POST /detect``) replaces the atom's, and the log says so.
"""

import importlib
import inspect
import logging
from collections.abc import Iterable

from fastapi import APIRouter, FastAPI
from fastapi.routing import APIRoute, RouteContext, iter_route_contexts
from starlette.routing import BaseRoute

from ..config import Settings
from .batching import Batching
from .interface import healthcheck
from .model_store import ModelLoader

logger = logging.getLogger(__name__)

INTERFACE = f"{__package__}.interface"


class RouteConflictError(RuntimeError):
    """Two routes serve the same path and method and neither can simply replace the other."""


def listed_routers(names: Iterable[str]) -> list[APIRouter]:
    """The ``router`` of each module of ``api/interface/`` named in ``names``, in order."""
    routers = []
    for name in names:
        module_name = f"{INTERFACE}.{name}"
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name != module_name:
                raise
            raise LookupError(
                f"api/route.py lists {name!r}, but there is no api/interface/{name}.py"
            ) from None
        router = getattr(module, "router", None)
        if not isinstance(router, APIRouter):
            raise LookupError(f"api/interface/{name}.py has no `router` (a Router)")
        routers.append(router)
    return routers


def collect_model_loaders(routers: Iterable[APIRouter]) -> dict[str, ModelLoader]:
    """Every model loader the routers carry; a model name given twice is an error."""
    loaders: dict[str, ModelLoader] = {}
    for router in routers:
        for name, loader in getattr(router, "model_loaders", {}).items():
            if name in loaders:
                raise ValueError(f"two routers declare a loader for the model {name!r}")
            loaders[name] = loader
    return loaders


def collect_batching(routers: Iterable[APIRouter], settings: Settings) -> dict[str, Batching]:
    """The batching of each model: as the routers declare it, overridden by ATOM_BATCH.

    A model named in ATOM_BATCH but declared without batching batches with the defaults of
    ``Batching`` and the overrides; ``max_size`` 1 turns batching off. Names are compared
    case-insensitively (environment variables are).
    """
    declared: dict[str, Batching] = {}
    names: dict[str, str] = {}
    for router in routers:
        declared.update(getattr(router, "batching", {}))
        names.update({name.lower(): name for name in getattr(router, "model_loaders", {})})
    for key, override in settings.atom_batch.items():
        name = names.get(key.lower())
        if name is None:
            raise ValueError(f"ATOM_BATCH names the model {key!r}, which no router declares")
        base = declared.get(name, Batching())
        declared[name] = base.overridden(**override.model_dump())
    return {name: config for name, config in declared.items() if config.max_size > 1}


def install_routers(app: FastAPI, routers: Iterable[APIRouter], settings: Settings) -> None:
    """Mount the health routes and ``routers`` under ATOM_API_PREFIX, and META's extra ping."""
    prefix = settings.atom_api_prefix
    for router in (healthcheck.router, *routers):
        include_flat(app, router, prefix)
    extra_ping = settings.serving.k8s_healthcheck_url
    if extra_ping and extra_ping != prefix + healthcheck.PING_PATH:
        app.add_api_route(extra_ping, healthcheck.ping, methods=["GET"], include_in_schema=False)


# The add_api_route arguments a route keeps as attributes of the same name.
_ROUTE_ARGS = tuple(
    name
    for name in inspect.signature(APIRouter.add_api_route).parameters
    if name not in {"self", "path", "endpoint", "route_class_override"}
)


def include_flat(app: FastAPI, router: APIRouter, prefix: str) -> None:
    """Add a router's routes to the app's own route list, under ``prefix``.

    The same routes, docs and behaviour as ``app.include_router(router, prefix=prefix)``,
    but FastAPI no longer walks the included router on every request (a ping made 392
    Python calls through included routers, 306 through flat routes). A router with
    anything else than plain API routes, or with start-up hooks, is included as usual.
    """
    routes = [route for route in router.routes if isinstance(route, APIRoute)]
    if len(routes) < len(router.routes) or router.on_startup or router.on_shutdown:
        app.include_router(router, prefix=prefix)
        return
    for route in routes:
        kwargs = {name: getattr(route, name) for name in _ROUTE_ARGS if hasattr(route, name)}
        app.router.add_api_route(
            prefix + route.path, route.endpoint, route_class_override=type(route), **kwargs
        )


def _methods(context: RouteContext) -> set[str]:
    """The methods a route serves; HEAD, which Starlette adds to GET routes, left out."""
    return set(context.methods or ()) - {"HEAD"}


def _describe(context: RouteContext) -> str:
    """A route's endpoint, for the log: ``module.function``."""
    endpoint = context.endpoint
    if endpoint is None:
        return type(context.route).__name__
    return f"{endpoint.__module__}.{endpoint.__qualname__}"


def replace_shadowed_routes(app: FastAPI) -> list[str]:
    """Let a route added later win over the app's own route at the same path and method.

    Starlette answers with the first matching route, so without this the atom's route
    (the demo ``detect``) would silently shadow the service's. The earlier route is
    removed when it is one of the app's own (not inside a router a service included) and
    the later one serves all of its methods; otherwise ``RouteConflictError`` stops the
    start with both names. Two routes that ``get_app`` itself added (two route modules of
    ``api/route.py`` on one path) are a conflict too: neither was "added later". Returns
    the replacements made, as logged.
    """
    own: set[int] = getattr(app.state, "atom_routes", set())  # ids of what get_app added
    seen: dict[tuple[str | None, str], RouteContext] = {}
    doomed: dict[int, tuple[BaseRoute, str]] = {}
    for context in iter_route_contexts(app.router.routes):
        methods = _methods(context)
        for method in sorted(methods):
            earlier = seen.get((context.path, method))
            seen[(context.path, method)] = context
            if earlier is None or earlier.route is context.route:
                continue
            later, first = _describe(context), _describe(earlier)
            where = f"{method} {context.path}"
            if {id(earlier.route), id(context.route)} <= own:
                raise RouteConflictError(
                    f"{where} is served by {first} and by {later}, two route modules of "
                    "api/route.py: give one of them another path"
                )
            if not any(route is earlier.route for route in app.router.routes):
                raise RouteConflictError(
                    f"{where} is served by {first} and by {later}, both in included "
                    "routers: remove one"
                )
            if not _methods(earlier) <= methods:
                raise RouteConflictError(
                    f"{where} is served by {first} and by {later}, which does not serve all "
                    f"of {sorted(_methods(earlier))}: give it these methods or another path"
                )
            note = f"{where}: {later}, added later, replaces {first}"
            doomed[id(earlier.route)] = (earlier.route, note)
    for route, note in doomed.values():
        app.router.routes.remove(route)
        logger.warning("%s", note)
    if doomed:
        app.openapi_schema = None  # the documentation follows
    return [note for _, note in doomed.values()]
