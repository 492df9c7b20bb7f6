"""Response bodies: the error envelope, the health replies and the detection contract."""

from typing import Any

import orjson
from pydantic import BaseModel, Field
from starlette.responses import JSONResponse


class ORJSONResponse(JSONResponse):
    """JSON rendered by orjson (numpy arrays and non-string keys included)."""

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content, option=orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS)


class ErrorEnvelope(BaseModel):
    """Every error: ``code`` (HTTP or business code), ``msg``, and ``data`` (details or null)."""

    code: int
    msg: str
    data: Any = None


def envelope_response(
    status: int, code: int, msg: str, data: Any = None, headers: dict[str, str] | None = None
) -> ORJSONResponse:
    """The error envelope with its HTTP status."""
    return ORJSONResponse({"code": code, "msg": msg, "data": data}, status, headers=headers)


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    422: {"model": ErrorEnvelope, "description": "Request Entity Error"},
    500: {"model": ErrorEnvelope, "description": "Internal Server Error"},
}


class PingResponse(BaseModel):
    """Liveness: the bare body of ``linker_atom``."""

    is_alive: bool = True


class ReadyResponse(BaseModel):
    """Readiness: every model is loaded."""

    is_ready: bool
    models: dict[str, str]


class DetectObject(BaseModel):
    """One detected object: a box in pixels of the input image, its confidence and label."""

    xmin: int
    ymin: int
    xmax: int
    ymax: int
    conf: float = Field(ge=0, le=1)
    label: str


class DetectResponse(BaseModel):
    """The detection contract: one inner list of objects per input image, in order."""

    code: int = 200
    msg: str = ""
    took: float = Field(description="milliseconds spent in the route")
    objects: list[list[DetectObject]]
