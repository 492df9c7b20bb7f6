"""``Router``: the router of a route module, which also declares the module's models.

::

    router = Router(tags=["plates"])

    @router.model_loader("plates")
    def load_plates(settings: Settings) -> PlateReader: ...

    @router.post("/plates")
    async def read_plates(payload: ..., model: Annotated[PlateReader, Model("plates")]): ...

Listing the module in ``api/route.py`` mounts its routes and loads its models
(``api/mounting.py``). Each call of its routes is logged (``api/call_log.py``);
``Router(quiet=True)`` logs them at DEBUG. ``linker_atom`` called it ``UdfAPIRoute``
(``lib/api.py``), and ``app.include_router(route, prefix=...)`` still works.
"""

from collections.abc import Callable
from typing import Any

from fastapi import APIRouter

from .batching import Batching
from .call_log import LoggedRoute, QuietRoute
from .dependencies import inline_state_dependencies
from .model_store import ModelLoader
from .schema.response import ERROR_RESPONSES
from .streaming import stream_route


class Router(APIRouter):
    """An APIRouter whose routes log their calls, carrying the loaders of the models its
    routes use (``model_loader``), their batching and their v2 signatures."""

    def __init__(self, *args: Any, quiet: bool = False, **kwargs: Any) -> None:
        kwargs.setdefault("route_class", QuietRoute if quiet else LoggedRoute)
        kwargs.setdefault("responses", ERROR_RESPONSES)
        super().__init__(*args, **kwargs)
        self.model_loaders: dict[str, ModelLoader] = {}
        self.batching: dict[str, Batching] = {}
        self.v2_signatures: dict[str, Any] = {}

    def add_api_route(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        """APIRouter's, with the endpoint's state dependencies (``Images``, ``Model(name)``...)
        read by a wrapper instead of solved by FastAPI at every request (the same values,
        about 10 us less each: ``dependencies.inline_state_dependencies``)."""
        super().add_api_route(path, inline_state_dependencies(endpoint), **kwargs)

    def model_loader(
        self, name: str, *, batch: Batching | None = None
    ) -> Callable[[ModelLoader], ModelLoader]:
        """Register ``function(settings) -> model`` as the loader of the model ``name``.

        The atom calls it once at start, in a background thread; routes get the model
        with ``Annotated[..., Model(name)]`` (``api/dependencies.py``). With ``batch``,
        the model's ``predict_batch`` gets the items of concurrent requests together
        (``api/batching.py``).
        """

        def register(loader: ModelLoader) -> ModelLoader:
            if name in self.model_loaders:
                raise ValueError(f"model {name!r} already has a loader on this router")
            self.model_loaders[name] = loader
            if batch is not None:
                self.batching[name] = batch
            return loader

        return register

    def v2_signature(self, name: str, signature: Any) -> None:
        """Declare how the model ``name`` answers the Open Inference Protocol v2.

        ``signature`` is an ``api/v2/signature.V2Signature``; a model without one gets
        ``detector_signature()`` (models with the demo's ``predict_batch``).
        """
        if name in self.v2_signatures:
            raise ValueError(f"model {name!r} already has a v2 signature on this router")
        self.v2_signatures[name] = signature

    def stream(
        self, path: str, **kwargs: Any
    ) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        """Register a generator function as a streamed route (SSE or NDJSON, ``POST``).

        See ``api/streaming.py``: the route yields events, the runtime sends them.
        """
        return stream_route(self, path, **kwargs)
