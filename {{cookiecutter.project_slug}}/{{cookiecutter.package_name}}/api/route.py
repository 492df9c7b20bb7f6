"""The built-in routers and models, collected in one place.

Add a route module: create it under ``api/interface/``, then list its router in
``ROUTERS`` and its model loader (if any) in ``MODEL_LOADERS``.
"""

from fastapi import FastAPI

from ..config import Settings
from .dependencies import ModelLoader
from .interface import detect, healthcheck

ROUTERS = (healthcheck.router, detect.router)

# name -> function(settings) returning the loaded model; loaded in the background at start.
MODEL_LOADERS: dict[str, ModelLoader] = {detect.MODEL_NAME: detect.load_model}


def include_routers(app: FastAPI, settings: Settings) -> None:
    """Mount every router under ATOM_API_PREFIX, and META's k8sHealthcheckUrl as a ping."""
    for router in ROUTERS:
        app.include_router(router, prefix=settings.atom_api_prefix)
    extra_ping = settings.serving.k8s_healthcheck_url
    if extra_ping and extra_ping != settings.atom_api_prefix + healthcheck.PING_PATH:
        app.add_api_route(extra_ping, healthcheck.ping, methods=["GET"], include_in_schema=False)
