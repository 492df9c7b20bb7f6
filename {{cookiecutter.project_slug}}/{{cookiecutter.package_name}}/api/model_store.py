"""The atom's models: loaded once in the background at start, then shared by requests."""

import logging
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from fastapi import HTTPException

from ..config import Settings
from ..control.daemon import run_in_daemon_thread
from .batching import Batcher, Batching, BatchObserver

logger = logging.getLogger(__name__)

ModelLoader = Callable[[Settings], Any]

LOADING, READY, FAILED = "loading", "ready", "failed"


class ModelStore:
    """The models of the atom, by name, and the state of each.

    ``status`` maps each model name to "loading", "ready" or "failed"; the atom is
    ready when every model is. ``load_seconds`` keeps how long each one took, and
    ``loading`` tells whether a loader is running right now (its thread may be inside a
    C++ library: the process must not run interpreter exit then). A model with a
    ``Batching`` gets its ``Batcher`` (``batchers``) once loaded.
    """

    def __init__(
        self,
        loaders: Mapping[str, ModelLoader],
        batching: Mapping[str, Batching] | None = None,
        *,
        batch_timeout: float = 30.0,
        observer: BatchObserver | None = None,
    ) -> None:
        self.loaders = dict(loaders)
        self.batching = {name: config for name, config in (batching or {}).items()}
        self.batch_timeout = batch_timeout
        self.observer = observer
        self.models: dict[str, Any] = {}
        self.batchers: dict[str, Batcher] = {}
        self.status = dict.fromkeys(self.loaders, LOADING)
        self.load_seconds: dict[str, float] = {}
        self._running: set[str] = set()
        self._lock = threading.Lock()

    @property
    def ready(self) -> bool:
        """True once every model is loaded."""
        return all(state == READY for state in self.status.values())

    @property
    def loading(self) -> bool:
        """True while a loader runs in this process."""
        with self._lock:
            return bool(self._running)

    async def load_all(self, settings: Settings) -> None:
        """Load the models one after the other, each in a daemon thread of its own.

        A failure is logged with its reason and leaves that model "failed" (the atom
        stays alive but not ready); the other models still load.
        """
        for name, loader in self.loaders.items():
            started = time.perf_counter()
            try:
                model = await run_in_daemon_thread(
                    self._run_loader, name, loader, settings, name=f"load-{name}"
                )
                self._start_batcher(name, model)  # before the model is seen by requests
            except Exception as exc:  # noqa: BLE001 - any failure leaves the model unloaded
                self.status[name] = FAILED
                logger.error("model %r failed to load: %s: %s", name, type(exc).__name__, exc)
                continue
            self.models[name] = model
            self.load_seconds[name] = time.perf_counter() - started
            self.status[name] = READY
            logger.info("model %r loaded in %.3f s", name, self.load_seconds[name])

    def _start_batcher(self, name: str, model: Any) -> None:
        """Start the batcher of a model that takes batches."""
        config = self.batching.get(name)
        if config is None:
            return
        if not callable(getattr(model, config.method, None)):
            raise TypeError(f"model {name!r} batches but has no method {config.method!r}")
        batcher = Batcher(name, model, config, self.batch_timeout, self.observer)
        batcher.start()
        self.batchers[name] = batcher
        logger.info(
            "model %r batches: up to %d items, waiting up to %g ms",
            name,
            config.max_size,
            config.max_wait_ms,
        )

    def _run_loader(self, name: str, loader: ModelLoader, settings: Settings) -> Any:
        """Call one loader (in its thread), marking it as running meanwhile."""
        with self._lock:
            self._running.add(name)
        try:
            return loader(settings)
        finally:
            with self._lock:
                self._running.discard(name)

    def get(self, name: str) -> Any:
        """The loaded model, or a 503 while it is loading or if it failed."""
        model = self.models.get(name)
        if model is None:
            state = self.status.get(name, "unknown")
            raise HTTPException(503, f"model {name!r} is not available ({state})")
        return model

    def close(self) -> None:
        """Stop the batchers; release the models that have a ``close()`` method."""
        for batcher in self.batchers.values():
            batcher.stop()
        self.batchers.clear()
        for name, model in self.models.items():
            close = getattr(model, "close", None)
            if callable(close):
                try:
                    close()
                except Exception:
                    logger.exception("closing model %r failed", name)
        self.models.clear()
