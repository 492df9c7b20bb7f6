"""``linker_atom``'s bodies: its reply envelopes (``api.schema.response``), its detection
reply and its mmap request body (``api.schema.payload``).

Kept for services that build their replies with them. Errors need none of them: raise
``VqlError`` or ``HTTPException`` and the atom answers with the envelope and a real status.
"""

from typing import Any

from pydantic import BaseModel, Field

__all__ = [
    "BaseJsonResModel",
    "DetectionRes",
    "ExternalInvokeErrorResponse",
    "FailureResponse",
    "Heartbeat",
    "InternalErrorResponse",
    "MmapReadBody",
    "Object",
    "RequestNotFoundErrorResponse",
    "RequestValidErrorResponse",
    "SuccessResponse",
]


class BaseJsonResModel(BaseModel):
    """``{"code", "msg", "data"}``: ``linker_atom``'s reply envelope."""

    code: int = Field(title="状态码")
    msg: str = Field(title="状态值说明")
    data: Any = Field(default_factory=dict)


class SuccessResponse(BaseJsonResModel):
    """A success envelope: code 0, msg "Success"."""

    code: int = Field(default=0, title="状态码")
    msg: str = Field(default="Success", title="状态值说明")


class FailureResponse(BaseJsonResModel):
    """A failure envelope: code 1, msg "Failed"."""

    code: int = Field(default=1, title="状态码")
    msg: str = Field(default="Failed", title="状态值说明")


class ExternalInvokeErrorResponse(FailureResponse):
    """400 "External Invoke Error"."""

    code: int = 400
    msg: str = "External Invoke Error"


class RequestValidErrorResponse(FailureResponse):
    """422 "Request Entity Error" (the atom's 422 envelope has the same code and msg)."""

    code: int = 422
    msg: str = "Request Entity Error"


class RequestNotFoundErrorResponse(FailureResponse):
    """404 "NOT FOUND"."""

    code: int = 404
    msg: str = "NOT FOUND"


class InternalErrorResponse(FailureResponse):
    """500 "Internal Server Error"."""

    code: int = 500
    msg: str = "Internal Server Error"


class Heartbeat(BaseModel):
    """``{"is_alive": bool}``: the ping body."""

    is_alive: bool


class Object(BaseModel):
    """One detected object, its box in pixels (floats, as ``linker_atom`` declared them)."""

    xmin: float
    ymin: float
    xmax: float
    ymax: float
    conf: float
    label: str


class DetectionRes(BaseModel):
    """``linker_atom``'s detection reply: one inner list of objects per image."""

    code: int = 200
    msg: str = ""
    description: str = ""
    kwargs: dict[str, Any] = Field(default_factory=dict)
    took: int
    objects: list[list[Object]] = Field(default_factory=list)


class MmapReadBody(BaseModel):
    """``linker_atom``'s body naming bytes of a file: ``path``, ``position``, ``size``."""

    path: str = Field(default="")
    position: int = Field(default=0)
    size: int = Field(default=0)
