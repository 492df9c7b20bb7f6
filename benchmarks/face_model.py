"""The face model of the peer benchmark, for every server that is not the atom.

The atom's demo model as its ``detect`` route runs it: OpenCV's frontal-face Haar cascade
with the same parameters (scale 1.1, 5 neighbours, faces of 24 px and more) and the same
confidence (the last-stage weight through a logistic function). The atom reads the cascade
from its encrypted model file and detects in RGB images; this module reads OpenCV's copy of
the same XML file and detects in the BGR images ``cv2.imdecode`` gives, which comes to the
same grey image.

Shared by litserve_server.py, bentoml_server.py and ray_server.py (each with the Python of
its own virtual environment) and by model_limit.py, which measures the model alone.
"""

import base64
import binascii
import math
import os

import cv2
import numpy as np

CASCADE_FILE = "haarcascade_frontalface_default.xml"  # in cv2.data.haarcascades
SCALE_FACTOR, MIN_NEIGHBORS, MIN_SIZE = 1.1, 5, (24, 24)
DEFAULT_THRESHOLD = 0.5


def model_threads() -> int:
    """The threads each worker's model may use (MODEL_THREADS, set by bench_peer.py)."""
    return int(os.environ.get("MODEL_THREADS", "1"))


def decode(item: str) -> np.ndarray:
    """A base64 JPEG or PNG as a BGR array; ValueError when it is not one."""
    try:
        data = base64.b64decode(item.split(",", 1)[-1], validate=True)
    except binascii.Error:
        raise ValueError("invalid base64") from None
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        raise ValueError("not an image")
    return image


class FaceModel:
    """The cascade, with OpenCV held to ``threads`` threads in this process."""

    label = "face"

    def __init__(self, threads: int = 1) -> None:
        cv2.setNumThreads(threads)
        self.cascade = cv2.CascadeClassifier(os.path.join(cv2.data.haarcascades, CASCADE_FILE))
        if self.cascade.empty():
            raise RuntimeError(f"OpenCV cannot read {CASCADE_FILE}")

    def predict(self, image: np.ndarray, threshold: float) -> list[dict]:
        """Faces in one BGR image with a confidence of at least ``threshold``."""
        gray = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
        boxes, _, weights = self.cascade.detectMultiScale3(
            gray,
            scaleFactor=SCALE_FACTOR,
            minNeighbors=MIN_NEIGHBORS,
            minSize=MIN_SIZE,
            outputRejectLevels=True,
        )
        found = []
        for (x, y, w, h), weight in zip(boxes, np.ravel(weights), strict=True):
            conf = 1.0 / (1.0 + math.exp(-float(weight)))
            if conf >= threshold:
                box = {"xmin": int(x), "ymin": int(y), "xmax": int(x + w), "ymax": int(y + h)}
                found.append({**box, "conf": round(conf, 4), "label": self.label})
        return found

    def predict_batch(self, images: list[np.ndarray], threshold: float) -> list[list[dict]]:
        """``predict`` for each image, in order."""
        return [self.predict(image, threshold) for image in images]
