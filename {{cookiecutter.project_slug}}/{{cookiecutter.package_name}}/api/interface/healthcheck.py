"""Health routes: ``ping`` for liveness, ``ready`` for readiness (models loaded)."""

from typing import Annotated

from fastapi import Depends

from ..base import UdfAPIRoute
from ..dependencies import ModelStore, get_model_store
from ..schema.response import ErrorEnvelope, PingResponse, ReadyResponse, envelope_response

PING_PATH = "/v1/health/ping"
READY_PATH = "/v1/health/ready"

router = UdfAPIRoute(tags=["health"], quiet=True)


@router.get(PING_PATH, response_model=PingResponse, summary="Liveness")
async def ping() -> PingResponse:
    """200 ``{"is_alive": true}`` while the process serves."""
    return PingResponse()


@router.get(
    READY_PATH,
    response_model=ReadyResponse,
    responses={503: {"model": ErrorEnvelope, "description": "models not loaded yet"}},
    summary="Readiness",
)
async def ready(store: Annotated[ModelStore, Depends(get_model_store)]) -> object:
    """200 once every model is loaded; 503 with each model's state before."""
    if store.ready:
        return ReadyResponse(is_ready=True, models=store.status)
    return envelope_response(503, 503, "models are not loaded", {"models": store.status})
