"""Health routes: ``ping`` for liveness, ``ready`` for readiness (models loaded).

Their paths are ``control/health.py``'s, shared with the launcher, the image's
HEALTHCHECK, Serving registration and the Kubernetes probes.
"""

from typing import Any

from ... import about
from ...control.health import PING_PATH, READY_PATH
from ..dependencies import Store
from ..router import Router
from ..schema.response import (
    ErrorEnvelope,
    PingResponse,
    ReadyResponse,
    TemplateInfo,
    envelope_response,
)

__all__ = ["PING_PATH", "READY_PATH", "ping", "ready", "router"]

router = Router(tags=["health"], quiet=True)
TEMPLATE = TemplateInfo(version=about.TEMPLATE_VERSION, commit=about.TEMPLATE_COMMIT)


ALIVE = PingResponse()  # the same reply every time: built once


@router.get(PING_PATH, response_model=PingResponse, summary="Liveness")
async def ping() -> PingResponse:
    """200 ``{"is_alive": true}`` while the process serves."""
    return ALIVE


@router.get(
    READY_PATH,
    response_model=ReadyResponse,
    responses={503: {"model": ErrorEnvelope, "description": "models not loaded yet"}},
    summary="Readiness",
)
async def ready(store: Store) -> object:
    """200 once every model is loaded (with the template release of the runtime); 503 with
    each model's state before."""
    if store.ready:
        return ReadyResponse(is_ready=True, models=store.status, template=TEMPLATE)
    return envelope_response(503, 503, "models are not loaded", {"models": store.status})


def __getattr__(name: str) -> Any:
    """``healthcheck_route``: ``linker_atom``'s name of ``router`` (``lib/api.py``)."""
    if name == "healthcheck_route":
        from ...lib import api as legacy  # noqa: PLC0415 - the core never imports lib

        return legacy.healthcheck_route
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
