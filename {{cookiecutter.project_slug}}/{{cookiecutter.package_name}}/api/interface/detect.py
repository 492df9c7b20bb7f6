"""The example route: face detection. Copy or edit this module to serve your own model.

1. ``load_model(settings)``, registered with ``@router.model_loader(MODEL_NAME)``, builds
   the model once, in a background thread at start; the atom is ready
   (``/v1/health/ready`` is 200) when it returns. It decrypts ``models/face.enc`` into
   memory with the model key (``load_protector``; ``make model NAME=... SRC=...`` encrypts
   a model file). Replace ``FaceDetector`` with your model.
2. ``detect()`` declares what it needs as typed dependencies (``api/dependencies.py``):
   the model (503 until loaded), the app's image loader (every src_type, RGB arrays) and
   the model ids Serving assigned. It is an ``async def`` that hands the blocking work to
   threads with ``load_images`` and ``predict`` (``api/calls.py``): the images load in the
   thread pool, the model runs in its batch thread (with the images of concurrent
   requests) and a request with nothing to load costs no thread at all; the server keeps
   answering meanwhile. (A plain ``def`` route works too, with ``model.predict_batch``:
   FastAPI runs it in its thread pool, a hop on every call.)
3. Raise ``VqlError(code, msg)`` for errors the caller should see (``errors.py``).
4. ``detect_stream()`` is a route written as a generator (``router.stream``,
   ``api/streaming.py``): each ``yield`` is one event sent at once (Server-Sent Events or
   NDJSON); the caller going away closes it. The model also answers the Open Inference
   Protocol v2 (``/v2/models/face/infer``): ``predict_batch(images, threshold)`` is the
   shape the runtime's default v2 signature calls (``api/v2/signature.py``).

The router is listed in ``api/route.py``; that line registers the route and its model.
Everything the module uses comes from ``<package>.api`` (``api/__init__.py``) and its
bodies from ``api.schema``.
"""

import math
import threading
import time
from collections.abc import Iterator
from typing import Annotated

import cv2
import numpy as np

from .. import (
    Batching,
    Event,
    Images,
    Model,
    ModelIds,
    Router,
    Settings,
    detector_signature,
    load_images,
    load_protector,
    model_path,
    ms_since,
    open_video,
    predict,
)
from ..schema import (
    DetectObject,
    DetectPayload,
    DetectResponse,
    ErrorEnvelope,
    FrameEvent,
    StreamSummary,
    VideoPayload,
)

MODEL_NAME = "face"
ROUTE_PATH = "/detect"  # under ATOM_API_PREFIX; the video route is ROUTE_PATH + "/stream"
DEFAULT_THRESHOLD = 0.5
CASCADE_FILE = "haarcascade_frontalface_default.xml"  # in cv2.data.haarcascades
MODEL_FILE = f"{MODEL_NAME}.enc"  # the cascade, encrypted with the model key (make model)

router = Router(tags=["detect"])


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

    def memory_estimate(self, images: list[np.ndarray]) -> int:
        """The bytes a call allocates, held in the worker's memory while it runs: the
        cascade's pyramid of the largest image, measured at 58 bytes per pixel."""
        return 60 * max((image.shape[0] * image.shape[1] for image in images), default=0)


# Concurrent requests share calls of predict_batch (api/batching.py; ATOM_BATCH__FACE__*
# variables override these numbers, ATOM_BATCH__FACE__MAX_SIZE=1 turns it off).
@router.model_loader(MODEL_NAME, batch=Batching(max_size=16, max_wait_ms=5))
def load_model(settings: Settings) -> FaceDetector:
    """Decrypt the model into memory and build it, once at start (in a background thread)."""
    protector = load_protector(settings)
    cascade = protector.decrypt(model_path(settings, MODEL_FILE), model_id=MODEL_NAME)
    return FaceDetector(cascade.decode("utf-8"))


# How the model answers the Open Inference Protocol v2 (/v2/models/face/infer): an image
# tensor in; boxes, scores, labels and batch_index out (api/v2/signature.py).
router.v2_signature(MODEL_NAME, detector_signature(threshold=DEFAULT_THRESHOLD))


@router.post(
    ROUTE_PATH,
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
    model: Annotated[FaceDetector, Model(MODEL_NAME)],
    images: Images,
    model_ids: ModelIds,
) -> DetectResponse:
    """Detect objects in each image of ``data``; one list of objects per image, in order."""
    started = time.perf_counter()
    model_ids.check(payload.model_id)
    frames = await load_images(images, payload.src_type, payload.data)
    threshold = DEFAULT_THRESHOLD if payload.threshold is None else payload.threshold
    objects = await predict(model, frames, threshold)
    return DetectResponse(took=round(ms_since(started), 2), objects=objects)


@router.stream(
    f"{ROUTE_PATH}/stream",
    events={"frame": FrameEvent, "summary": StreamSummary},
    responses={
        400: {"model": ErrorEnvelope, "description": "the video cannot be used"},
        413: {"model": ErrorEnvelope, "description": "body, video or frame above its limit"},
        415: {"model": ErrorEnvelope, "description": "video format or src_type not supported"},
        503: {"model": ErrorEnvelope, "description": "model not loaded yet"},
    },
    summary="Detect faces in a video, frame by frame",
)
def detect_stream(
    payload: VideoPayload,
    model: Annotated[FaceDetector, Model(MODEL_NAME)],
    images: Images,
    model_ids: ModelIds,
) -> Iterator[Event]:
    """One ``frame`` event per sampled frame as soon as it is done, then a ``summary``."""
    started = time.perf_counter()
    model_ids.check(payload.model_id)
    threshold = DEFAULT_THRESHOLD if payload.threshold is None else payload.threshold
    frames = found = 0
    with open_video(images, payload.src_type, payload.data) as video:
        for frame in video.frames(payload.every, payload.max_frames):
            objects = model.predict_batch([frame.image], threshold)[0]
            frames, found = frames + 1, found + len(objects)
            event = FrameEvent(frame=frame.index, time_ms=frame.time_ms, objects=objects)
            yield Event(event, name="frame")
    summary = StreamSummary(frames=frames, objects=found, took=round(ms_since(started), 2))
    yield Event(summary, name="summary")
