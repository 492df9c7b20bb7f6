"""FastAPI dependencies of the routes: short, typed, and cheap (each reads ``app.state``).

from .. import AppSettings, Images, Model, ModelIds    # in api/interface/<module>.py

@router.post("/detect")
def detect(
    payload: DetectPayload,
    model: Annotated[FaceDetector, Model("face")],   # 503 until it is loaded
    images: Images,                                  # the app's ImageLoader
    model_ids: ModelIds,                             # META modelIds, checked
) -> DetectResponse: ...

``linker_atom``'s ``get_state`` and ``get_engine`` (``app.state.engine``, the model a
startup handler stored there) are forwarded from the compatibility package (``lib/api.py``).
"""

import functools
import inspect
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, get_args, get_origin, get_type_hints

from fastapi import Depends, Request
from fastapi.params import Depends as DependsParam

from ..config import Settings
from ..errors import VqlError
from ..images.loader import ImageLoader
from .batching import BatchedModel
from .model_store import ModelLoader, ModelStore

__all__ = [
    "AppSettings",
    "AssignedModelIds",
    "Images",
    "Model",
    "ModelIds",
    "ModelLoader",
    "ModelStore",
    "Store",
    "get_image_loader",
    "get_model_ids",
    "get_model_store",
    "get_settings",
    "use_model",
]


class AssignedModelIds:
    """The model ids Serving assigned to this atom (META ``modelIds``)."""

    def __init__(self, served: list[str]) -> None:
        self.served = tuple(served)

    def check(self, model_id: str | None) -> None:
        """Refuse a ``model_id`` this atom does not serve (VqlError 513, HTTP 400).

        No id in the request, or no ids in META, means no check.
        """
        if model_id and self.served and model_id not in self.served:
            raise VqlError(513, f"model_id {model_id!r} is not served by this atom")


# The dependencies are ``async def``: FastAPI runs a plain ``def`` dependency in its thread
# pool, a hop that costs more than reading app.state.


StateGetter = Callable[[Request], Any]


def state_dependency(getter: StateGetter) -> Callable[[Request], Awaitable[Any]]:
    """``getter(request)`` as a FastAPI dependency, marked as one that only reads the app's
    state: the routes of ``Router`` call it directly instead of through FastAPI's
    dependency solving, which costs more than the read (``inline_state_dependencies``)."""

    async def dependency(request: Request) -> Any:
        return getter(request)

    dependency.__name__ = getattr(getter, "__name__", "state")
    dependency.__doc__ = getter.__doc__
    dependency.state_getter = getter  # type: ignore[attr-defined]
    return dependency


@state_dependency
def get_settings(request: Request) -> Settings:
    """The settings the app was built with."""
    return request.app.state.settings


@state_dependency
def get_image_loader(request: Request) -> ImageLoader:
    """The app's image loader (``images/loader.py``), built with the settings' limits."""
    return request.app.state.image_loader


@state_dependency
def get_model_store(request: Request) -> ModelStore:
    """The app's model store."""
    return request.app.state.models


@state_dependency
def get_model_ids(request: Request) -> AssignedModelIds:
    """The model ids this atom serves, to check a request's ``model_id``."""
    return request.app.state.model_ids


def use_model(name: str) -> Callable[[Request], Awaitable[Any]]:
    """A dependency giving the loaded model ``name`` (503 until it is loaded).

    When the model batches, it gives the request a ``BatchedModel``: the same methods,
    but its batch method shares the model with concurrent requests (``api/batching.py``).
    """

    def model(request: Request) -> Any:
        store = request.app.state.models
        found = store.get(name)
        batcher = store.batchers.get(name)
        return found if batcher is None else BatchedModel(batcher, request)

    model.__name__ = f"model_{name}"
    return state_dependency(model)


REQUEST_PARAM = "atom_request__"  # the parameter an inlined endpoint gets its request by


def _state_getter(annotation: Any) -> StateGetter | None:
    """The getter of an ``Annotated[X, Depends(state dependency)]`` annotation, or None."""
    if get_origin(annotation) is not Annotated:
        return None
    for meta in get_args(annotation)[1:]:
        if isinstance(meta, DependsParam):
            return getattr(meta.dependency, "state_getter", None)
    return None


def inline_state_dependencies(endpoint: Callable[..., Any]) -> Callable[..., Any]:
    """``endpoint`` (an ``async def``) with its state dependencies (``Images``,
    ``Model(name)``, ``ModelIds``, ``AppSettings``, ``Store``) read by a wrapper instead of
    solved by FastAPI.

    The wrapper takes the request (a parameter FastAPI fills without solving anything) in
    their place and calls each getter, which is what the dependency would do; FastAPI's
    solving of a sub-dependency costs about 10 us a request. The documented signature is
    unchanged; an endpoint without such parameters is returned as it is.
    """
    try:
        hints = get_type_hints(endpoint, include_extras=True)
    except (NameError, TypeError):  # annotations FastAPI resolves its own way: leave them
        return endpoint
    signature = inspect.signature(endpoint)
    getters = {
        name: getter
        for name in signature.parameters
        if (getter := _state_getter(hints.get(name))) is not None
    }
    variadic = (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
    if (
        not getters
        or REQUEST_PARAM in signature.parameters
        or any(param.kind in variadic for param in signature.parameters.values())
    ):
        return endpoint
    if not inspect.iscoroutinefunction(endpoint):
        # A plain ``def`` runs in the thread pool, and some getters need the event loop
        # (a batched model's queue): FastAPI keeps solving them, on the loop.
        return endpoint
    kept = [
        param.replace(annotation=hints.get(name, param.annotation))
        for name, param in signature.parameters.items()
        if name not in getters
    ]
    request = inspect.Parameter(REQUEST_PARAM, inspect.Parameter.KEYWORD_ONLY, annotation=Request)

    def fill(kwargs: dict[str, Any]) -> None:
        incoming = kwargs.pop(REQUEST_PARAM)
        for name, getter in getters.items():
            kwargs[name] = getter(incoming)

    @functools.wraps(endpoint)
    async def inlined(**kwargs: Any) -> Any:
        fill(kwargs)
        return await endpoint(**kwargs)

    returns = hints.get("return", signature.return_annotation)
    inlined.__signature__ = signature.replace(  # type: ignore[attr-defined]
        parameters=[*kept, request], return_annotation=returns
    )
    return inlined


def Model(name: str) -> DependsParam:  # noqa: N802 - reads as a type in Annotated[...]
    """``Annotated[MyModel, Model("name")]``: the loaded model ``name`` (503 until loaded)."""
    return Depends(use_model(name))


AppSettings = Annotated[Settings, Depends(get_settings)]
Images = Annotated[ImageLoader, Depends(get_image_loader)]
Store = Annotated[ModelStore, Depends(get_model_store)]
ModelIds = Annotated[AssignedModelIds, Depends(get_model_ids)]


# linker_atom's names at this path, defined in the compatibility package (lib/api.py).
LEGACY_NAMES = frozenset({"get_engine", "get_state"})


def __getattr__(name: str) -> Any:
    """``get_state`` and ``get_engine``: ``linker_atom``'s, from the compatibility package."""
    if name in LEGACY_NAMES:
        from ..lib import api as legacy  # noqa: PLC0415 - the core never imports lib

        return getattr(legacy, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
