"""The app factory: ``get_app()`` builds the FastAPI application of the atom."""

from collections.abc import Mapping

from fastapi import FastAPI
from fastapi.datastructures import Default

from .. import __version__, jobs
from ..config import Settings, get_settings
from ..config.logger import configure_logging
from ..lib.load_image import ImageLoader
from ..lib.metrics import Metrics, MetricsMiddleware
from ..lib.scheduler import Job
from .dependencies import ModelLoader, ModelStore
from .interface import metrics as metrics_route
from .interface.docs import install_docs
from .middleware.event import lifespan
from .middleware.http import install_error_handling
from .route import MODEL_LOADERS, include_flat, include_routers
from .schema.response import ORJSONResponse


def get_app(
    settings: Settings | None = None,
    *,
    model_loaders: Mapping[str, ModelLoader] | None = None,
    periodic_jobs: list[Job] | None = None,
) -> FastAPI:
    """Build the app: logging, routes, error envelope, request ids, metrics, docs, lifespan.

    ``settings`` defaults to the process's (environment and ``.env``); ``model_loaders``
    to ``route.MODEL_LOADERS`` and ``periodic_jobs`` to ``jobs.JOBS`` (tests pass fakes).
    """
    settings = settings or get_settings()
    configure_logging(settings)
    app = FastAPI(
        title=settings.atom_title,
        description=settings.atom_desc,
        version=__version__,
        # Default(...) keeps FastAPI's direct Pydantic serialization for typed routes;
        # dicts and error envelopes are rendered by orjson.
        default_response_class=Default(ORJSONResponse),
        openapi_url="/openapi.json" if settings.docs_switch else None,
        docs_url=None,
        redoc_url=None,
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.models = ModelStore(MODEL_LOADERS if model_loaders is None else model_loaders)
    app.state.image_loader = ImageLoader(settings)
    app.state.jobs = jobs.JOBS if periodic_jobs is None else periodic_jobs
    app.state.metrics = Metrics() if settings.metrics_switch else None
    install_error_handling(app, settings.atom_max_body_bytes)
    include_routers(app, settings)
    if app.state.metrics is not None:
        app.add_middleware(MetricsMiddleware, metrics=app.state.metrics)  # outermost
        include_flat(app, metrics_route.router, settings.atom_api_prefix)
    if settings.docs_switch:
        install_docs(app)
    return app
