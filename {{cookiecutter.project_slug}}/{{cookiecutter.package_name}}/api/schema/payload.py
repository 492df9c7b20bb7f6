"""Request bodies."""

from typing import Any, Literal

from pydantic import BaseModel, Field

SrcType = Literal["url", "local", "base64", "mmap", "shm", "stream"]
MAX_IMAGES = 64


class DetectPayload(BaseModel):
    """The detection contract of the vendor's detectors: items of one ``src_type``, an
    optional threshold and model id; one list of objects per item comes back."""

    data: list[str | dict[str, Any]] = Field(
        max_length=MAX_IMAGES,
        description=(
            "one item per image, its form given by src_type: a URL, an absolute path, base64,"
            " or an mmap or shm descriptor (an object or its JSON text)"
        ),
    )
    src_type: SrcType = Field(description="how the items carry the images")
    threshold: float | None = Field(
        None, ge=0, le=1, description="minimum confidence; the model's default if absent"
    )
    model_id: str | None = Field(None, max_length=256, description="which model to use")


class VideoPayload(BaseModel):
    """A video to detect in, frame by frame (``POST /detect/stream``)."""

    data: str = Field(
        min_length=1,
        max_length=4096,
        description="the video (AVI, MP4, QuickTime, Matroska or WebM): an absolute path"
        " under IMAGE_LOCAL_ROOTS for local, a URL for url",
    )
    src_type: Literal["local", "url"] = Field(description="how data names the video")
    threshold: float | None = Field(
        None, ge=0, le=1, description="minimum confidence; the model's default if absent"
    )
    model_id: str | None = Field(None, max_length=256, description="which model to use")
    every: int = Field(1, ge=1, le=10000, description="detect in every n-th frame (1: all)")
    max_frames: int | None = Field(
        None, ge=1, le=1000000, description="stop after this many detected frames"
    )


# linker_atom's names at this path, defined in the compatibility package (lib/schema.py).
LEGACY_NAMES = frozenset({"MmapReadBody"})


def __getattr__(name: str) -> Any:
    """``MmapReadBody``: ``linker_atom``'s, from the compatibility package on first use."""
    if name in LEGACY_NAMES:
        from ...lib import schema as legacy  # noqa: PLC0415 - the core never imports lib

        return getattr(legacy, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
