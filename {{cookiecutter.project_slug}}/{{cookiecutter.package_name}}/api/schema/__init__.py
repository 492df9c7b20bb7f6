"""Request (``payload.py``) and response (``response.py``) bodies.

A route module imports its bodies from here::

    from ..schema import DetectPayload, DetectResponse, ErrorEnvelope
"""

from .payload import MAX_IMAGES, DetectPayload, SrcType, VideoPayload
from .response import (
    DetectObject,
    DetectResponse,
    ErrorEnvelope,
    FrameEvent,
    PingResponse,
    ReadyResponse,
    StreamSummary,
)

__all__ = [
    "MAX_IMAGES",
    "DetectObject",
    "DetectPayload",
    "DetectResponse",
    "ErrorEnvelope",
    "FrameEvent",
    "PingResponse",
    "ReadyResponse",
    "SrcType",
    "StreamSummary",
    "VideoPayload",
]
