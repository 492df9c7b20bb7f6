"""FastAPI dependencies: the settings, and the models loaded in the lifespan."""

import logging
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from fastapi import HTTPException, Request

from ..config import Settings
from ..lib.common import run_in_daemon_thread
from ..lib.load_image import ImageLoader

logger = logging.getLogger(__name__)

ModelLoader = Callable[[Settings], Any]

LOADING, READY, FAILED = "loading", "ready", "failed"
LOADER_THREAD_PREFIX = "load-"  # the threads that load models are named load-<model>


def models_loading() -> bool:
    """True while a thread of this process is still loading a model."""
    return any(t.name.startswith(LOADER_THREAD_PREFIX) for t in threading.enumerate())


class ModelStore:
    """The atom's models: loaded once in the background at start, then shared by requests.

    ``status`` maps each model name to "loading", "ready" or "failed"; the atom is
    ready when every model is. ``load_seconds`` keeps how long each one took.
    """

    def __init__(self, loaders: Mapping[str, ModelLoader]) -> None:
        self.loaders = dict(loaders)
        self.models: dict[str, Any] = {}
        self.status = dict.fromkeys(self.loaders, LOADING)
        self.load_seconds: dict[str, float] = {}

    @property
    def ready(self) -> bool:
        """True once every model is loaded."""
        return all(state == READY for state in self.status.values())

    async def load_all(self, settings: Settings) -> None:
        """Load the models one after the other, each in its own thread.

        A failure is logged with its reason and leaves that model "failed" (the atom
        stays alive but not ready); the other models still load.
        """
        for name, loader in self.loaders.items():
            started, thread = time.perf_counter(), f"{LOADER_THREAD_PREFIX}{name}"
            try:
                model = await run_in_daemon_thread(loader, settings, name=thread)
            except Exception as exc:  # noqa: BLE001 - any failure leaves the model unloaded
                self.status[name] = FAILED
                logger.error("model %r failed to load: %s: %s", name, type(exc).__name__, exc)
                continue
            self.models[name] = model
            self.load_seconds[name] = time.perf_counter() - started
            self.status[name] = READY
            logger.info("model %r loaded in %.3f s", name, self.load_seconds[name])

    def get(self, name: str) -> Any:
        """The loaded model, or a 503 while it is loading or if it failed."""
        model = self.models.get(name)
        if model is None:
            state = self.status.get(name, "unknown")
            raise HTTPException(503, f"model {name!r} is not available ({state})")
        return model

    def close(self) -> None:
        """Release the models that have a ``close()`` method."""
        for name, model in self.models.items():
            close = getattr(model, "close", None)
            if callable(close):
                try:
                    close()
                except Exception:
                    logger.exception("closing model %r failed", name)
        self.models.clear()


def get_settings(request: Request) -> Settings:
    """The settings the app was built with."""
    return request.app.state.settings


def get_image_loader(request: Request) -> ImageLoader:
    """The app's image loader (``lib.load_image``), built with its settings."""
    return request.app.state.image_loader


def get_model_store(request: Request) -> ModelStore:
    """The app's model store."""
    return request.app.state.models


def use_model(name: str) -> Callable[[Request], Any]:
    """A dependency giving the loaded model ``name`` (503 until it is loaded)."""

    def dependency(request: Request) -> Any:
        return request.app.state.models.get(name)

    dependency.__name__ = f"model_{name}"
    return dependency
