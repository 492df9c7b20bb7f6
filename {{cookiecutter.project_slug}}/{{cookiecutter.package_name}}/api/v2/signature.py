"""How a model answers the Open Inference Protocol v2: its signature.

A signature names the model's input and output tensors (what ``GET /v2/models/{name}``
describes) and the function from input tensors to output tensors. A route module
declares one next to the model's loader::

    PLATES_V2 = V2Signature(
        inputs=(TensorSpec("image", "UINT8", (-1, -1, -1, 3), accepts=("BYTES",)),),
        outputs=(TensorSpec("text", "BYTES", (-1,)),),
        infer=read_plates_v2,  # (model, inputs: dict of arrays, context) -> dict of arrays
    )
    router.v2_signature("plates", PLATES_V2)

A model without a declared signature gets ``detector_signature()``, made for models shaped
like the demo detector (``predict_batch(images, threshold)`` returning, per image, objects
with ``xmin``, ``ymin``, ``xmax``, ``ymax``, ``conf`` and ``label``):

- input ``image``: ``UINT8`` RGB pixels, ``[H, W, 3]`` (one image) or ``[N, H, W, 3]``;
  or ``BYTES``, shape ``[N]``, each element an encoded image (JPEG, PNG, WebP, BMP): raw
  bytes in binary, base64 text (or a ``data:`` URI) in JSON;
- outputs, one row per object found, over the whole batch: ``boxes`` ``FP32 [M, 4]``
  (xmin, ymin, xmax, ymax in pixels), ``scores`` ``FP32 [M]``, ``labels`` ``BYTES [M]``
  and ``batch_index`` ``INT32 [M]`` (which image of the batch the object is in);
- request parameter ``threshold`` (a number in [0, 1]): the minimum confidence.

Images go through the image pipeline (``ImageLoader.load_encoded``: IMAGE_MAX_BYTES,
IMAGE_MAX_PIXELS, IMAGE_MAX_DECODED_BYTES, the decode slots and the worker's memory
account), and the model's working set is held in the account while it runs.
"""

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from ...errors import VqlError
from ...images.header import check_pixels
from ...images.loader import ImageLoader
from ...memory import model_memory
from .tensors import V2Error

ITEM_RE = re.compile(r"image (\d+): ")  # how the loader names a failing item


@dataclass(frozen=True)
class TensorSpec:
    """An input or output tensor: name, datatype, shape (-1 for a variable dimension).

    ``accepts`` lists other datatypes an input takes (``image`` takes BYTES too).
    """

    name: str
    datatype: str
    shape: tuple[int, ...]
    accepts: tuple[str, ...] = ()

    def metadata(self) -> dict[str, Any]:
        """The ``$metadata_tensor`` object of the protocol."""
        return {"name": self.name, "datatype": self.datatype, "shape": list(self.shape)}


@dataclass(frozen=True)
class InferContext:
    """What an infer function gets besides the model and its inputs."""

    parameters: Mapping[str, Any]
    images: ImageLoader


InferFunction = Callable[[Any, dict[str, np.ndarray], InferContext], Mapping[str, np.ndarray]]


@dataclass(frozen=True)
class V2Signature:
    """A model's tensors and the function from its inputs to its outputs."""

    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    infer: InferFunction
    platform: str = "python"

    def output(self, name: str) -> TensorSpec:
        """The output named ``name`` (400 if there is none)."""
        for spec in self.outputs:
            if spec.name == name:
                return spec
        raise V2Error(f"unknown output {name[:MAX_SHOWN]!r}")


MAX_SHOWN = 64
IMAGE = TensorSpec("image", "UINT8", (-1, -1, -1, 3), accepts=("BYTES",))
DETECTIONS = (
    TensorSpec("boxes", "FP32", (-1, 4)),
    TensorSpec("scores", "FP32", (-1,)),
    TensorSpec("labels", "BYTES", (-1,)),
    TensorSpec("batch_index", "INT32", (-1,)),
)


def images_from_tensor(tensor: np.ndarray, loader: ImageLoader) -> list[np.ndarray]:
    """RGB images from an ``image`` input: UINT8 pixels, or BYTES encoded images."""
    if tensor.dtype == object:
        if tensor.ndim != 1:
            raise V2Error("input 'image': BYTES images must have shape [N]")
        try:
            return loader.load_encoded(list(tensor))
        except VqlError as exc:
            raise _element_error(exc) from None
    if tensor.ndim == 3:
        tensor = tensor[np.newaxis]
    if tensor.ndim != 4 or tensor.shape[3] != 3:
        raise V2Error("input 'image': UINT8 images must have shape [H, W, 3] or [N, H, W, 3]")
    try:
        check_pixels(tensor.shape[2], tensor.shape[1], loader.max_pixels)
    except VqlError as exc:
        raise V2Error(f"input 'image': {exc.msg}", 413) from None
    return list(tensor)


def _element_error(exc: VqlError) -> Exception:
    """The loader's error about one element, in the protocol's words ("input 'image',
    element 3: ..."); a refusal of the whole request (memory, limits) as it is."""
    match = ITEM_RE.match(exc.msg)
    if match is None:
        return exc
    return V2Error(f"input 'image', element {match[1]}: {exc.msg[match.end() :]}", exc.status)


def _field(item: Any, name: str) -> Any:
    return item[name] if isinstance(item, Mapping) else getattr(item, name)


def detections_to_tensors(found: list[list[Any]]) -> dict[str, np.ndarray]:
    """Objects per image (``predict_batch``'s result) as the four detection tensors."""
    rows = [(index, item) for index, items in enumerate(found) for item in items]
    boxes = np.array(
        [[_field(item, key) for key in ("xmin", "ymin", "xmax", "ymax")] for _, item in rows],
        dtype=np.float32,
    ).reshape(-1, 4)
    labels = np.empty(len(rows), dtype=object)
    labels[:] = [str(_field(item, "label")) for _, item in rows]
    return {
        "boxes": boxes,
        "scores": np.array([_field(item, "conf") for _, item in rows], dtype=np.float32),
        "labels": labels,
        "batch_index": np.array([index for index, _ in rows], dtype=np.int32),
    }


def threshold_of(parameters: Mapping[str, Any], default: float) -> float:
    """The ``threshold`` request parameter, checked, or ``default``."""
    value = parameters.get("threshold", default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
        raise V2Error("parameter 'threshold' must be a number between 0 and 1")
    return float(value)


def detector_signature(threshold: float = 0.5) -> V2Signature:
    """The signature of a detector with ``predict_batch(images, threshold)`` (see above)."""

    def infer(model: Any, inputs: dict[str, np.ndarray], context: InferContext) -> dict:
        predict = getattr(model, "predict_batch", None)
        if predict is None:
            raise V2Error("this model declares no v2 signature and has no predict_batch", 501)
        images = images_from_tensor(inputs["image"], context.images)
        threshold_asked = threshold_of(context.parameters, threshold)
        account = context.images.account
        with account.take(model_memory(model, images), "the model's working set"):
            return detections_to_tensors(predict(images, threshold_asked))

    return V2Signature(inputs=(IMAGE,), outputs=DETECTIONS, infer=infer)
