"""Response bodies: the error envelope, the health replies and the detection contract."""

from collections.abc import Mapping
from typing import Any

import orjson
from pydantic import BaseModel, Field
from starlette.responses import JSONResponse

ORJSON_OPTIONS = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS
INT_MIN, UINT_MAX = -(2**63), 2**64 - 1  # the integers orjson encodes


def orjson_safe(value: Any) -> Any:
    """``value`` with what orjson cannot encode, but a caller's JSON can hold, as text.

    A lone surrogate (``"\\ud800"`` is valid JSON) becomes ``\\ud800`` text, an integer
    beyond 64 bits its decimal digits: a validation error echoing them must not be a 500.
    """
    if isinstance(value, str):
        return value.encode("utf-8", "backslashreplace").decode("utf-8")
    if isinstance(value, int) and not INT_MIN <= value <= UINT_MAX:
        return str(value)
    if isinstance(value, dict):
        return {orjson_safe(key): orjson_safe(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [orjson_safe(item) for item in value]
    return value


class ORJSONResponse(JSONResponse):
    """JSON rendered by orjson (numpy arrays and non-string keys included)."""

    def render(self, content: Any) -> bytes:
        try:
            return orjson.dumps(content, option=ORJSON_OPTIONS)
        except orjson.JSONEncodeError:
            return orjson.dumps(orjson_safe(content), option=ORJSON_OPTIONS)


class ErrorEnvelope(BaseModel):
    """Every error: ``code`` (HTTP or business code), ``msg``, and ``data`` (details or null)."""

    code: int
    msg: str
    data: Any = None


def envelope_response(
    status: int, code: int, msg: str, data: Any = None, headers: Mapping[str, str] | None = None
) -> ORJSONResponse:
    """The error envelope with its HTTP status."""
    return ORJSONResponse({"code": code, "msg": msg, "data": data}, status, headers=headers)


def json_error(description: str) -> dict[str, Any]:
    """An error documented as the JSON envelope on a route whose own replies are not JSON.

    FastAPI documents a ``model`` in the route's media type (``text/plain`` for metrics),
    but errors are always the JSON envelope.
    """
    schema = ErrorEnvelope.model_json_schema()
    return {"description": description, "content": {"application/json": {"schema": schema}}}


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    422: {"model": ErrorEnvelope, "description": "Request Entity Error"},
    500: {"model": ErrorEnvelope, "description": "Internal Server Error"},
}


class PingResponse(BaseModel):
    """Liveness: the bare body of ``linker_atom``."""

    is_alive: bool = True


class TemplateInfo(BaseModel):
    """The atom-template release of the atom's runtime (``about.py``; make upgrade moves it)."""

    version: str
    commit: str = Field(description="the template's git commit; empty when not recorded")


class ReadyResponse(BaseModel):
    """Readiness: every model is loaded; and the template release the runtime comes from."""

    is_ready: bool
    models: dict[str, str]
    template: TemplateInfo


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


class FrameEvent(BaseModel):
    """The objects found in one sampled frame of a video."""

    frame: int = Field(description="index of the frame in the video, from 0")
    time_ms: float = Field(description="time of the frame in the video, in milliseconds")
    objects: list[DetectObject]


class StreamSummary(BaseModel):
    """The end of a video: frames detected in, objects found, time taken."""

    code: int = 200
    msg: str = ""
    frames: int = Field(description="frames detected in")
    objects: int = Field(description="objects found in all of them")
    took: float = Field(description="milliseconds from the call to the end")


# linker_atom's names at this path, defined in the compatibility package (lib/schema.py).
LEGACY_NAMES = frozenset(
    {
        "BaseJsonResModel",
        "DetectionRes",
        "ExternalInvokeErrorResponse",
        "FailureResponse",
        "Heartbeat",
        "InternalErrorResponse",
        "Object",
        "RequestNotFoundErrorResponse",
        "RequestValidErrorResponse",
        "SuccessResponse",
    }
)


def __getattr__(name: str) -> Any:
    """``linker_atom``'s reply bodies, from the compatibility package on first use."""
    if name in LEGACY_NAMES:
        from ...lib import schema as legacy  # noqa: PLC0415 - the core never imports lib

        return getattr(legacy, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
