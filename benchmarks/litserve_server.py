"""A peer: the face model and the MLP served by LitServe, the way its documentation shows.

Run by bench_peer.py with the Python of LitServe's own virtual environment, never the
atom's:

    python litserve_server.py face --port P    POST /d2atom/detect, the atom's bodies
    python litserve_server.py mlp --port P     POST /d2atom/mlp (MLP_MODEL names the file)

One ``LitAPI`` per model: ``setup`` loads it, ``decode_request`` takes the request body
(validated by a Pydantic model), ``predict`` runs a batch, ``encode_response`` answers.
Both batch (``max_batch_size`` 16, ``batch_timeout`` 5 ms, as the atom's models declare);
PEER_WORKERS inference workers on the CPU (``workers_per_device``), one API server, and
LitServe's ZeroMQ queue between them (``fast_queue``); its logging as it comes (uvicorn's
access log at ``info``). The models are face_model.py's and mlp_model.py's, with
MODEL_THREADS threads.
"""

import os
import sys
import time
from typing import Any, Literal

import litserve as ls
from fastapi import HTTPException
from pydantic import BaseModel, Field

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from face_model import DEFAULT_THRESHOLD, FaceModel, decode, model_threads

PREFIX = "/d2atom"
MAX_BATCH, BATCH_TIMEOUT = 16, 0.005


class DetectPayload(BaseModel):
    """The atom's request body."""

    data: list[str | dict[str, Any]] = Field(max_length=64)
    src_type: Literal["url", "local", "base64", "mmap", "shm", "stream"]
    threshold: float | None = Field(None, ge=0, le=1)


class FaceAPI(ls.LitAPI):
    """The Haar cascade; a batch is the images of several requests."""

    def setup(self, device: str) -> None:
        self.model = FaceModel(model_threads())

    def decode_request(self, request: DetectPayload) -> tuple:
        if request.src_type not in ("base64", "stream"):
            raise HTTPException(415, "only base64 and stream in this benchmark")
        try:
            images = [decode(item) for item in request.data] if request.src_type == "base64" else []
        except ValueError as exc:
            raise HTTPException(400, str(exc)) from None
        threshold = DEFAULT_THRESHOLD if request.threshold is None else request.threshold
        return images, threshold, time.perf_counter()

    def predict(self, batch: list[tuple]) -> list[tuple]:
        return [
            (self.model.predict_batch(images, threshold), started)
            for images, threshold, started in batch
        ]

    def encode_response(self, output: tuple) -> dict:
        objects, started = output
        took = round((time.perf_counter() - started) * 1000, 2)
        return {"code": 200, "msg": "", "took": took, "objects": objects}


class MlpPayload(BaseModel):
    """batching_server.py's request body."""

    data: list[float] = Field(max_length=64)


class MlpAPI(ls.LitAPI):
    """The MLP of mlp_model.py; a batch is the items of several requests in one run."""

    def setup(self, device: str) -> None:
        from mlp_model import Mlp

        self.model = Mlp(os.environ["MLP_MODEL"], threads=model_threads())

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

    def encode_response(self, output: list[float]) -> dict:
        return {"code": 200, "outputs": output}


def main() -> int:
    """Serve one of the two APIs on --port."""
    kind, port = sys.argv[1], int(sys.argv[sys.argv.index("--port") + 1])
    api_class, path = {"face": (FaceAPI, "/detect"), "mlp": (MlpAPI, "/mlp")}[kind]
    api = api_class(max_batch_size=MAX_BATCH, batch_timeout=BATCH_TIMEOUT, api_path=PREFIX + path)
    server = ls.LitServer(
        api,
        accelerator="cpu",
        workers_per_device=int(os.environ.get("PEER_WORKERS", "1")),
        fast_queue=True,
    )
    server.run(
        host="127.0.0.1",
        port=port,
        num_api_servers=1,
        generate_client_file=False,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
