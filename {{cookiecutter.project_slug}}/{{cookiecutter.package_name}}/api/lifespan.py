"""The lifespan: what happens when a server process starts and stops.

It also runs the handlers of ``@app.on_event("startup")`` and ``("shutdown")``, the way
``linker_atom`` services load their models: FastAPI skips them for an app that has a
lifespan. A startup handler runs before the server accepts requests (as before); if one
raises, the error is logged and the start fails.
"""

import asyncio
import contextlib
import gc
import inspect
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

from fastapi import FastAPI

from ..config import Settings
from ..config.serving import serving_agent
from ..config.skywalking import start_agent
from ..control import threads
from ..control.daemon import run_in_daemon_thread
from ..control.metrics import Metrics
from ..control.scheduler import AtomScheduler
from .model_store import ModelStore
from .mounting import replace_shadowed_routes

logger = logging.getLogger(__name__)


async def load_models(
    store: ModelStore, settings: Settings, metrics: Metrics | None, settle: bool = False
) -> None:
    """Load the models and report their load times and the readiness as metrics; with
    ``settle``, then ``settle_startup_objects``."""
    if metrics is not None:
        metrics.ready.set(0)
    await store.load_all(settings)
    if settle:
        settle_startup_objects()
    if metrics is not None:
        for name, seconds in store.load_seconds.items():
            metrics.model_load_seconds.labels(name).set(seconds)
        metrics.ready.set(1 if store.ready else 0)


def settle_startup_objects() -> None:
    """Take what startup made (the framework, the routes, the models) out of the cyclic
    garbage collector's way (Python's ``gc.freeze``): it lives as long as the process, and
    every full collection would otherwise walk all of it again, a pause of tens of
    milliseconds in the middle of requests (bench_choices: p99 of the batched MLP). The
    collections then walk only what requests made.

    Only for an app that owns its process (``app.state.owns_process``: server.py's, one
    per worker): an app embedded elsewhere (a test client, another server) leaves the
    host's heap alone. Called once the models are loaded and once the startup handlers
    have run (linker_atom's way of loading); the lifespan's end undoes it."""
    gc.collect()  # startup's garbage is not kept forever
    gc.freeze()


def _name(handler: Callable[[], Any]) -> str:
    return f"{getattr(handler, '__module__', '?')}.{getattr(handler, '__qualname__', handler)}"


async def run_event_handlers(handlers: Sequence[Callable[[], Any]], event: str) -> None:
    """Call each ``on_event(event)`` handler in order. A failing startup handler is logged and
    raised (the server does not start); a failing shutdown handler is logged, the others
    still run."""
    for handler in handlers:
        try:
            result = handler()
            if inspect.isawaitable(result):
                await result
        except Exception:
            if event == "startup":
                logger.exception("startup handler %s failed: no start", _name(handler))
                raise
            logger.exception("%s handler %s failed", event, _name(handler))


@contextlib.asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Start tracing, the scheduler, Serving registration and the model loading; undo them.

    The server answers as soon as it starts (``ping`` is 200, ``ready`` is 503 until the
    models are loaded); stopping never waits for a model still loading or a stuck job.
    Under nginx_run the launcher registers with Serving; a lone server.py does it here.
    """
    replace_shadowed_routes(app)  # a route the service added wins over the atom's
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
    app.state.schedulers = scheduler.scheduler  # linker_atom's name: services add jobs to it
    on_event = metrics.serving.on_serving_event if metrics is not None else None
    serving = None if settings.atom_supervised else serving_agent(settings, on_event)
    if serving is not None:
        serving.start()
    settle = app.state.owns_process
    loading = asyncio.create_task(load_models(store, settings, metrics, settle), name="load-models")
    started = False
    try:
        await run_event_handlers(app.router.on_startup, "startup")
        started = True
        if settle and app.router.on_startup:
            settle_startup_objects()
        yield
    finally:
        if settle:
            gc.unfreeze()
        if started:
            await run_event_handlers(app.router.on_shutdown, "shutdown")
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
