"""The example route: face detection. Edit this module to serve your own model.

1. ``load_model(settings)`` builds the model once, in a background thread at start; the
   atom is ready (``/v1/health/ready`` is 200) when it returns. It decrypts the model
   file (``models/face.enc``) into memory with the model key (``dependency/keys.py``).
   Replace ``FaceDetector`` with your model and keep the ``predict_batch`` shape, or
   change the route below.
2. ``detect()`` loads the images of the request with the app's ``ImageLoader``
   (``lib.load_image``: every src_type, RGB arrays), runs the model in a worker thread so
   the server keeps answering, and replies with the detection contract
   (``schema.response.DetectResponse``).
3. Raise ``VqlError(code, msg)`` for errors the caller should see (see ``lib/exception.py``).
"""

import math
import threading
import time
from typing import Annotated

import cv2
import numpy as np
from fastapi import Depends
from starlette.concurrency import run_in_threadpool

from ...config import Settings
from ...dependency.keys import load_protector, model_path
from ...lib.common import ms_since
from ...lib.exception import VqlError
from ...lib.load_image import ImageLoader
from ..base import UdfAPIRoute
from ..dependencies import get_image_loader, get_settings, use_model
from ..schema.payload import DetectPayload
from ..schema.response import DetectObject, DetectResponse, ErrorEnvelope

MODEL_NAME = "face"
DEFAULT_THRESHOLD = 0.5
CASCADE_FILE = "haarcascade_frontalface_default.xml"  # in cv2.data.haarcascades
MODEL_FILE = "face.enc"  # the cascade, encrypted with the model key (make model)


class FaceDetector:
    """The demo model: OpenCV's frontal-face Haar cascade.

    ``conf`` is the cascade's last-stage weight squashed into (0, 1) by a logistic
    function: it ranks boxes, it is not a calibrated probability.
    """

    label = "face"

    def __init__(self, cascade_xml: str) -> None:
        storage = cv2.FileStorage(cascade_xml, cv2.FILE_STORAGE_READ | cv2.FILE_STORAGE_MEMORY)
        self._cascade = cv2.CascadeClassifier()
        if not self._cascade.read(storage.getFirstTopLevelNode()):
            raise RuntimeError("the decrypted model is not a cascade OpenCV can read")
        storage.release()
        self._lock = threading.Lock()  # one detection at a time per cascade object

    def predict(self, image: np.ndarray, threshold: float) -> list[DetectObject]:
        """Faces in one RGB image with a confidence of at least ``threshold``."""
        gray = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
        with self._lock:
            boxes, _, weights = self._cascade.detectMultiScale3(
                gray, scaleFactor=1.1, minNeighbors=5, minSize=(24, 24), outputRejectLevels=True
            )
        found = []
        for (x, y, w, h), weight in zip(boxes, np.ravel(weights), strict=True):
            conf = 1.0 / (1.0 + math.exp(-float(weight)))
            if conf >= threshold:
                found.append(
                    DetectObject(
                        xmin=int(x),
                        ymin=int(y),
                        xmax=int(x + w),
                        ymax=int(y + h),
                        conf=round(conf, 4),
                        label=self.label,
                    )
                )
        return found

    def predict_batch(self, images: list[np.ndarray], threshold: float) -> list[list[DetectObject]]:
        """``predict`` for each image, in order."""
        return [self.predict(image, threshold) for image in images]


def load_model(settings: Settings) -> FaceDetector:
    """Decrypt the model into memory and build it, once at start (in a background thread)."""
    protector = load_protector(settings)
    cascade = protector.decrypt(model_path(settings, MODEL_FILE), model_id=MODEL_NAME)
    return FaceDetector(cascade.decode("utf-8"))


router = UdfAPIRoute(tags=["detect"])


@router.post(
    "/detect",
    response_model=DetectResponse,
    responses={
        400: {"model": ErrorEnvelope, "description": "an image cannot be used"},
        413: {"model": ErrorEnvelope, "description": "body or an image above its limit"},
        415: {"model": ErrorEnvelope, "description": "image format not supported"},
        503: {"model": ErrorEnvelope, "description": "model not loaded yet"},
    },
    summary="Detect faces",
)
async def detect(
    payload: DetectPayload,
    model: Annotated[FaceDetector, Depends(use_model(MODEL_NAME))],
    settings: Annotated[Settings, Depends(get_settings)],
    loader: Annotated[ImageLoader, Depends(get_image_loader)],
) -> DetectResponse:
    """Detect objects in each image of ``data``; one list of objects per image, in order."""
    started = time.perf_counter()
    served = settings.model_id_list
    if payload.model_id and served and payload.model_id not in served:
        raise VqlError(513, f"model_id {payload.model_id!r} is not served by this atom")
    images = await run_in_threadpool(loader.load, payload.src_type, payload.data)
    threshold = DEFAULT_THRESHOLD if payload.threshold is None else payload.threshold
    objects = await run_in_threadpool(model.predict_batch, images, threshold)
    return DetectResponse(took=round(ms_since(started), 2), objects=objects)
