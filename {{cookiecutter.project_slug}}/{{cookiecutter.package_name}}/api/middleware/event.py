"""The lifespan: what happens when a server process starts and stops."""

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from fastapi import FastAPI

from ...config import Settings
from ...config.serving import serving_agent
from ...config.skywalking import start_agent
from ...control import threads
from ...control.metrics import Metrics
from ...control.scheduler import AtomScheduler
from ...lib.common import run_in_daemon_thread
from ..model_store import ModelStore

logger = logging.getLogger(__name__)


async def load_models(store: ModelStore, settings: Settings, metrics: Metrics | None) -> None:
    """Load the models and report their load times and the readiness as metrics."""
    if metrics is not None:
        metrics.ready.set(0)
    await store.load_all(settings)
    if metrics is not None:
        for name, seconds in store.load_seconds.items():
            metrics.model_load_seconds.labels(name).set(seconds)
        metrics.ready.set(1 if store.ready else 0)


@contextlib.asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Start tracing, the scheduler, Serving registration and the model loading; undo them.

    The server answers as soon as it starts (``ping`` is 200, ``ready`` is 503 until the
    models are loaded); stopping never waits for a model still loading or a stuck job.
    Under nginx_run the launcher registers with Serving; a lone server.py does it here.
    """
    settings, store, metrics = app.state.settings, app.state.models, app.state.metrics
    threads.apply(settings.thread_budget)
    logger.info(
        "starting %s (prefix %r, models %s, %d thread(s) for the numeric libraries)",
        settings.atom_title,
        settings.atom_api_prefix,
        ", ".join(store.loaders) or "none",
        settings.thread_budget,
    )
    stop_tracing = start_agent(settings)
    scheduler = AtomScheduler(app.state.jobs, settings.atom_runtime_dir)
    scheduler.start()
    on_event = metrics.serving.on_serving_event if metrics is not None else None
    serving = None if settings.atom_supervised else serving_agent(settings, on_event)
    if serving is not None:
        serving.start()
    loading = asyncio.create_task(load_models(store, settings, metrics), name="load-models")
    try:
        yield
    finally:
        if serving is not None:
            await run_in_daemon_thread(serving.stop, name="serving-stop")
        loading.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await loading
        scheduler.shutdown()
        store.close()
        app.state.image_loader.close()  # its pooled HTTP connections
        if stop_tracing is not None:  # it flushes to the collector: bounded
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(run_in_daemon_thread(stop_tracing, name="sw-stop"), 2.0)
        logger.info("stopped")
