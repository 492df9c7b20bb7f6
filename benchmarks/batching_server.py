"""The atom serving the batching benchmark's MLP (``mlp_model.py``) at ``POST {prefix}/mlp``.

Copied with mlp_model.py into a bake of the default atom by bench_batching.py and
bench_peer.py (not part of the atom); MLP_MODEL names the model file. The route is written
as a user writes one: a router with its model loader, batching declared next to it
(ATOM_BATCH__MLP__MAX_SIZE=1 serves it unbatched), and an ``async def`` route like the
example detect's (``api/calls.predict``).

    MLP_MODEL=mlp.onnx python batching_server.py --port P
"""

import os
from typing import Annotated

import server
from fastapi import FastAPI
from mlp_model import Mlp
from my_atom.api import Router, mounting, route
from my_atom.api.app import get_app
from my_atom.api.batching import Batching
from my_atom.api.calls import predict
from my_atom.api.dependencies import Model
from my_atom.config import Settings
from pydantic import BaseModel, Field


class MlpPayload(BaseModel):
    """Numbers, one per model input."""

    data: list[float] = Field(max_length=64)


class MlpResponse(BaseModel):
    """One answer per number, in order."""

    code: int = 200
    outputs: list[float]


router = Router(tags=["mlp"])


@router.model_loader("mlp", batch=Batching(max_size=16, max_wait_ms=5))
def load_mlp(settings: Settings) -> Mlp:
    """The MLP, with the server's thread budget (ATOM_THREADS)."""
    return Mlp(os.environ["MLP_MODEL"], threads=settings.thread_budget)


@router.post("/mlp")
async def mlp(payload: MlpPayload, model: Annotated[Mlp, Model("mlp")]) -> MlpResponse:
    """Run the MLP on the numbers (queued with other requests' when it batches)."""
    return MlpResponse(outputs=await predict(model, payload.data))


def factory(settings: Settings) -> FastAPI:
    """The atom's app plus the MLP route."""
    return get_app(settings, routers=[*mounting.listed_routers(route.ROUTE_MODULES), router])


if __name__ == "__main__":
    raise SystemExit(server.main(app_factory=factory))
