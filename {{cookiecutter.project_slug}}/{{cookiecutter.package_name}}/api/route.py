"""The built-in routers and models, collected in one place.

Add a route module: create it under ``api/interface/``, then list its router in
``ROUTERS`` and its model loader (if any) in ``MODEL_LOADERS``.
"""

import inspect

from fastapi import APIRouter, FastAPI
from fastapi.routing import APIRoute

from ..config import Settings
from .dependencies import ModelLoader
from .interface import detect, healthcheck

ROUTERS = (healthcheck.router, detect.router)

# name -> function(settings) returning the loaded model; loaded in the background at start.
MODEL_LOADERS: dict[str, ModelLoader] = {detect.MODEL_NAME: detect.load_model}


def include_routers(app: FastAPI, settings: Settings) -> None:
    """Mount every router under ATOM_API_PREFIX, and META's k8sHealthcheckUrl as a ping."""
    for router in ROUTERS:
        include_flat(app, router, settings.atom_api_prefix)
    extra_ping = settings.serving.k8s_healthcheck_url
    if extra_ping and extra_ping != settings.atom_api_prefix + healthcheck.PING_PATH:
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
    plain = all(isinstance(route, APIRoute) for route in router.routes)
    if not plain or router.on_startup or router.on_shutdown:
        app.include_router(router, prefix=prefix)
        return
    for route in router.routes:
        kwargs = {name: getattr(route, name) for name in _ROUTE_ARGS if hasattr(route, name)}
        app.router.add_api_route(
            prefix + route.path, route.endpoint, route_class_override=type(route), **kwargs
        )
