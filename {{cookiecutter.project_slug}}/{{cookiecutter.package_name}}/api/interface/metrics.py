"""``GET {prefix}/metrics``: Prometheus metrics of the whole atom (METRICS_SWITCH)."""

from fastapi import Request
from fastapi.responses import PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST

from ...control.health import METRICS_PATH
from ..router import Router
from ..schema.response import json_error

# No 422 (the route takes no input); a 500 is the JSON envelope, not text.
router = Router(tags=["metrics"], quiet=True, responses={500: json_error("Internal Server Error")})


@router.get(METRICS_PATH, response_class=PlainTextResponse, summary="Prometheus metrics")
async def metrics(request: Request) -> PlainTextResponse:
    """The Prometheus text format; under nginx_run, the sum over every worker."""
    body = request.app.state.metrics.render()
    return PlainTextResponse(body, media_type=CONTENT_TYPE_LATEST)
