"""The lifespan: what happens when a server starts and stops."""

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from fastapi import FastAPI

logger = logging.getLogger(__name__)


@contextlib.asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Start loading the models in the background, serve, then release everything.

    The server answers as soon as it starts (``ping`` is 200, ``ready`` is 503 until the
    models are loaded); stopping never waits for a model that is still loading.
    """
    settings, store = app.state.settings, app.state.models
    logger.info(
        "starting %s (prefix %r, models %s)",
        settings.atom_title,
        settings.atom_api_prefix,
        ", ".join(store.loaders) or "none",
    )
    loading = asyncio.create_task(store.load_all(settings), name="load-models")
    try:
        yield
    finally:
        loading.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await loading
        store.close()
        logger.info("stopped")
