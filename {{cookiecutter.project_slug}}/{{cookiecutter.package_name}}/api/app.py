"""The app factory: ``get_app()`` builds the FastAPI application of the atom."""

from collections.abc import Mapping, Sequence
from typing import Any

from fastapi import APIRouter, FastAPI
from fastapi.datastructures import Default
from fastapi.telemetry import TelemetryConfig

from .. import __version__, about, jobs
from ..config import Settings, resolve_settings
from ..config.logger import configure_logging
from ..control.metrics import Metrics
from ..control.scheduler import Job
from ..images.loader import ImageLoader, set_default_loader
from ..memory import MemoryAccount, set_default_account
from . import guards, route
from .batching import Batching
from .dependencies import AssignedModelIds
from .interface import metrics as metrics_route
from .interface.docs import install_docs
from .lifespan import lifespan
from .middleware.http import install_error_handling
from .model_store import ModelLoader, ModelStore
from .mounting import (
    collect_batching,
    collect_model_loaders,
    include_flat,
    install_routers,
    listed_routers,
)
from .schema.response import ORJSONResponse
from .v2.routes import install_v2

# FastAPI's OpenTelemetry instrumentation off (ATOM_OTEL turns it on): otherwise it looks
# for configured providers at every request, even where there are none.
NO_TELEMETRY: TelemetryConfig = {"tracing": False, "metrics": False, "logs": False}


def openapi_version() -> str:
    """The atom's version with the template version of its runtime as semver build metadata
    (which has no "+" of its own): ``0.1.0+atom-template.0.2.0``, between template releases
    ``0.1.0+atom-template.0.2.0.dev0.1a2b3c4d5e6f``."""
    return f"{__version__}+atom-template.{about.TEMPLATE_VERSION.replace('+', '.')}"


def get_app(
    config: Settings | Mapping[str, Any] | None = None,
    *,
    routers: Sequence[APIRouter] | None = None,
    model_loaders: Mapping[str, ModelLoader] | None = None,
    batching: Mapping[str, Batching] | None = None,
    periodic_jobs: list[Job] | None = None,
) -> FastAPI:
    """Build the app: logging, routes, error envelope, request ids, metrics, docs, lifespan.

    ``config`` is the settings: the process's (environment and ``.env``) by default, or a
    dict of values to use instead, as ``linker_atom`` took it (its names accepted).
    ``routers`` default to those of ``route.ROUTE_MODULES`` and ``periodic_jobs`` to
    ``jobs.JOBS``. The models are those the routers declare; tests pass ``model_loaders``
    to load fakes instead. Routes added to the app afterwards (``app.include_router``) win
    over the atom's at the same path and method (``mounting.replace_shadowed_routes``), and
    ``@app.on_event`` handlers run (``lifespan.py``). ``batching`` defaults to
    what the routers declare, with ATOM_BATCH's overrides.
    """
    settings = resolve_settings(config)
    configure_logging(settings)
    guards.report()  # a private name of FastAPI or Starlette that changed: one WARNING line
    routers = listed_routers(route.ROUTE_MODULES) if routers is None else list(routers)
    app = FastAPI(
        title=settings.atom_title,
        description=settings.atom_desc,
        version=openapi_version(),
        # Default(...) keeps FastAPI's direct Pydantic serialization for typed routes;
        # dicts and error envelopes are rendered by orjson.
        default_response_class=Default(ORJSONResponse),
        openapi_url="/openapi.json" if settings.docs_switch else None,
        docs_url=None,
        redoc_url=None,
        lifespan=lifespan,
        telemetry=None if settings.atom_otel else NO_TELEMETRY,
    )
    if model_loaders is None:
        model_loaders = collect_model_loaders(routers)
    if batching is None:
        batching = collect_batching(routers, settings)
    app.state.settings = settings
    template = {"version": about.TEMPLATE_VERSION, "commit": about.TEMPLATE_COMMIT}
    app.state.metrics = Metrics(template) if settings.metrics_switch else None
    app.state.models = ModelStore(
        model_loaders,
        batching,
        batch_timeout=settings.atom_batch_timeout,
        observer=app.state.metrics.batches if app.state.metrics is not None else None,
    )
    app.state.model_ids = AssignedModelIds(settings.model_id_list)
    app.state.memory = MemoryAccount(settings.atom_memory_bytes)
    set_default_account(app.state.memory)  # for code outside a request (lib.load_image)
    app.state.image_loader = ImageLoader(settings.image_limits(), app.state.memory)
    set_default_loader(app.state.image_loader)  # for code outside a request (lib.load_image)
    app.state.jobs = jobs.JOBS if periodic_jobs is None else periodic_jobs
    app.state.owns_process = False  # server.py sets it: see lifespan.settle_startup_objects
    recorder = app.state.metrics.recorder if app.state.metrics is not None else None
    install_error_handling(app, settings.atom_max_body_bytes, recorder, app.state.memory)
    install_routers(app, routers, settings)
    if settings.v2_switch:
        install_v2(app, routers, settings)  # Open Inference Protocol v2, for every model
    if app.state.metrics is not None:
        include_flat(app, metrics_route.router, settings.atom_api_prefix)
    if settings.docs_switch:
        install_docs(app)
    app.state.atom_routes = {id(route) for route in app.router.routes}  # before any service's
    return app
