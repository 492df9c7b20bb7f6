"""``linker_atom``'s ``lib.load_image``: ``load_image(src_type, data)``.

The pipeline is in ``images/`` (``images/loader.py``). Routes use the app's loader
(``api.dependencies.Images``), which holds the limits of the settings and keeps its HTTP
connections; ``load_image`` uses that same loader once an app is built in the process,
and a loader with the default limits before.
"""

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..images.limits import ImageLimits
from ..images.loader import (
    SRC_TYPES,
    ImageLoader,
    decode_base64,
    decode_image,
    default_loader,
    set_default_loader,
)

__all__ = [
    "SRC_TYPES",
    "ImageLimits",
    "ImageLoader",
    "decode_base64",
    "decode_image",
    "default_loader",
    "load_image",
    "set_default_loader",
]


def load_image(
    src_type: str, data: Sequence[Any], *, bgr: bool = False, loader: ImageLoader | None = None
) -> list[np.ndarray]:
    """Load every item of ``data`` as ``src_type``: one RGB array per item, in order."""
    return (loader or default_loader()).load(src_type, data, bgr=bgr)
