"""The peer: the atom's face model and the batching benchmark's MLP served by LitServe.

Run by bench_peer.py with the Python of its own virtual environment (LitServe and its
dependencies, OpenCV 4.x, ONNX Runtime), never with the atom's:

    python litserve_server.py face --port P    POST /d2atom/detect, the atom's bodies
    python litserve_server.py mlp --port P     POST /d2atom/mlp (MLP_MODEL names the file)

Both batch (max_batch_size 16, batch_timeout 5 ms, as the atom's models declare), with
one inference worker on the CPU and one API server. The request and reply bodies are the
atom's, validated by the same Pydantic models: the detection contract for ``face``,
batching_server.py's for ``mlp``.
"""

import base64
import binascii
import math
import os
import sys
import time
from typing import Any, Literal

import cv2
import litserve as ls
import numpy as np
from fastapi import HTTPException
from pydantic import BaseModel, Field

PREFIX = "/d2atom"
MAX_BATCH, BATCH_TIMEOUT = 16, 0.005
CASCADE_FILE = "haarcascade_frontalface_default.xml"


class DetectPayload(BaseModel):
    """The atom's request body."""

    data: list[str | dict[str, Any]] = Field(max_length=64)
    src_type: Literal["url", "local", "base64", "mmap", "shm", "stream"]
    threshold: float | None = Field(None, ge=0, le=1)
    model_id: str | None = Field(None, max_length=256)


class DetectObject(BaseModel):
    """One face, as the atom answers it."""

    xmin: int
    ymin: int
    xmax: int
    ymax: int
    conf: float = Field(ge=0, le=1)
    label: str


class DetectResponse(BaseModel):
    """The atom's reply body."""

    code: int = 200
    msg: str = ""
    took: float
    objects: list[list[DetectObject]]


def decode(item: str) -> np.ndarray:
    """A base64 JPEG or PNG as a BGR array (400 when it is not one)."""
    try:
        data = base64.b64decode(item.split(",", 1)[-1], validate=True)
    except (binascii.Error, ValueError):
        raise HTTPException(400, "invalid base64") from None
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        raise HTTPException(400, "not an image")
    return image


class FaceAPI(ls.LitAPI):
    """The Haar cascade with the atom's parameters and confidence."""

    def setup(self, device: str) -> None:
        self.cascade = cv2.CascadeClassifier(os.path.join(cv2.data.haarcascades, CASCADE_FILE))

    def decode_request(self, request: DetectPayload) -> tuple:
        if request.src_type not in ("base64", "stream"):
            raise HTTPException(415, "only base64 and stream in this benchmark")
        images = [] if request.src_type == "stream" else [decode(item) for item in request.data]
        threshold = 0.5 if request.threshold is None else request.threshold
        return images, threshold, time.perf_counter()

    def predict(self, batch: list[tuple]) -> list[tuple]:
        return [
            ([self.detect(image, threshold) for image in images], started)
            for images, threshold, started in batch
        ]

    def detect(self, image: np.ndarray, threshold: float) -> list[DetectObject]:
        gray = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
        boxes, _, weights = self.cascade.detectMultiScale3(
            gray, scaleFactor=1.1, minNeighbors=5, minSize=(24, 24), outputRejectLevels=True
        )
        found = []
        for (x, y, w, h), weight in zip(boxes, np.ravel(weights), strict=True):
            conf = 1.0 / (1.0 + math.exp(-float(weight)))
            if conf >= threshold:
                box = {"xmin": int(x), "ymin": int(y), "xmax": int(x + w), "ymax": int(y + h)}
                found.append(DetectObject(**box, conf=round(conf, 4), label="face"))
        return found

    def encode_response(self, output: tuple) -> DetectResponse:
        objects, started = output
        took = round((time.perf_counter() - started) * 1000, 2)
        return DetectResponse(took=took, objects=objects)


class MlpPayload(BaseModel):
    """batching_server.py's request body."""

    data: list[float] = Field(max_length=64)


class MlpResponse(BaseModel):
    """batching_server.py's reply body."""

    code: int = 200
    outputs: list[float]


class MlpAPI(ls.LitAPI):
    """The MLP of mlp_model.py; a batch is the items of several requests in one run."""

    def setup(self, device: str) -> None:
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        from mlp_model import Mlp

        self.model = Mlp(os.environ["MLP_MODEL"], threads=int(os.environ.get("MLP_THREADS", "1")))

    def decode_request(self, request: MlpPayload) -> list[float]:
        return request.data

    def predict(self, batch: list[list[float]]) -> list[list[float]]:
        flat = [item for items in batch for item in items]
        outputs = self.model.predict_batch(flat) if flat else []
        results, offset = [], 0
        for items in batch:
            results.append(outputs[offset : offset + len(items)])
            offset += len(items)
        return results

    def encode_response(self, output: list[float]) -> MlpResponse:
        return MlpResponse(outputs=output)


def main() -> int:
    """Serve one of the two APIs on --port."""
    kind, port = sys.argv[1], int(sys.argv[sys.argv.index("--port") + 1])
    api_class, path = {"face": (FaceAPI, "/detect"), "mlp": (MlpAPI, "/mlp")}[kind]
    api = api_class(max_batch_size=MAX_BATCH, batch_timeout=BATCH_TIMEOUT, api_path=PREFIX + path)
    server = ls.LitServer(
        api,
        accelerator="cpu",
        workers_per_device=1,
        fast_queue=os.environ.get("LITSERVE_FAST_QUEUE", "1") == "1",
    )
    server.run(
        host="127.0.0.1",
        port=port,
        num_api_servers=1,
        log_level="warning",
        generate_client_file=False,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
