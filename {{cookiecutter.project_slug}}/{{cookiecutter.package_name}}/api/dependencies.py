"""FastAPI dependencies of the routes: short, typed, and cheap (each reads ``app.state``).

from ..dependencies import AppSettings, Images, Model, ModelIds

@router.post("/detect")
def detect(
    payload: DetectPayload,
    model: Annotated[FaceDetector, Model("face")],   # 503 until it is loaded
    images: Images,                                  # the app's ImageLoader
    model_ids: ModelIds,                             # META modelIds, checked
) -> DetectResponse: ...

``get_state`` and ``get_engine`` are ``linker_atom``'s: ``Depends(get_engine)`` gives
``app.state.engine``, the model a startup handler stored there.
"""

from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Request
from fastapi.params import Depends as DependsParam
from starlette.datastructures import State

from ..config import Settings
from ..images.loader import ImageLoader
from ..lib.exception import VqlError
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
    "get_engine",
    "get_image_loader",
    "get_model_ids",
    "get_model_store",
    "get_settings",
    "get_state",
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


async def get_settings(request: Request) -> Settings:
    """The settings the app was built with."""
    return request.app.state.settings


async def get_image_loader(request: Request) -> ImageLoader:
    """The app's image loader (``images/loader.py``), built with the settings' limits."""
    return request.app.state.image_loader


async def get_model_store(request: Request) -> ModelStore:
    """The app's model store."""
    return request.app.state.models


async def get_model_ids(request: Request) -> AssignedModelIds:
    """The model ids this atom serves, to check a request's ``model_id``."""
    return request.app.state.model_ids


def get_state(request: Request) -> State:
    """The app's state (``linker_atom``'s dependency)."""
    return request.app.state


def get_engine(request: Request) -> Any:
    """``app.state.engine`` (``linker_atom``'s dependency); 503 while it is not set."""
    engine = getattr(get_state(request), "engine", None)
    if engine is None:
        raise HTTPException(503, "app.state.engine is not set (a startup handler sets it)")
    return engine


def use_model(name: str) -> Callable[[Request], Awaitable[Any]]:
    """A dependency giving the loaded model ``name`` (503 until it is loaded).

    When the model batches, it gives the request a ``BatchedModel``: the same methods,
    but its batch method shares the model with concurrent requests (``api/batching.py``).
    """

    async def dependency(request: Request) -> Any:
        store = request.app.state.models
        model = store.get(name)
        batcher = store.batchers.get(name)
        return model if batcher is None else BatchedModel(batcher, request)

    dependency.__name__ = f"model_{name}"
    return dependency


def Model(name: str) -> DependsParam:  # noqa: N802 - reads as a type in Annotated[...]
    """``Annotated[MyModel, Model("name")]``: the loaded model ``name`` (503 until loaded)."""
    return Depends(use_model(name))


AppSettings = Annotated[Settings, Depends(get_settings)]
Images = Annotated[ImageLoader, Depends(get_image_loader)]
Store = Annotated[ModelStore, Depends(get_model_store)]
ModelIds = Annotated[AssignedModelIds, Depends(get_model_ids)]
