"""A peer: the face model and the MLP served by Ray Serve, the way its documentation shows.

Run by bench_peer.py with the Python of Ray's own virtual environment, never the atom's:

    python ray_server.py face --port P    POST /d2atom/detect, the atom's bodies
    python ray_server.py mlp --port P     POST /d2atom/mlp (MLP_MODEL names the file)

It starts a local Ray instance with as many CPUs as the process may use (``taskset``), then
Serve's HTTP proxy on 127.0.0.1:P and one application: a deployment with a FastAPI ingress
(``@serve.ingress``), whose routes take the atom's bodies as Pydantic models and hand the
work to a ``@serve.batch`` method (16 requests at most, 5 ms wait, as the atom's models
declare). PEER_WORKERS replicas of MODEL_THREADS CPUs each (``num_replicas``,
``ray_actor_options``); ``max_ongoing_requests`` 64, raised from Serve's default of 5 as
its performance guide says for async methods, so that a replica can hold the 32 requests
of the loaded runs and fill its batches. Ray's defaults otherwise (dashboard, logs, the
request path options of Ray 2.60). SIGTERM shuts Serve and Ray down. The models are
face_model.py's and mlp_model.py's, with MODEL_THREADS threads.
"""

import os
import signal
import sys
import time
from typing import Any, Literal

import ray
from fastapi import FastAPI, HTTPException
from pydantic import BaseModel, Field
from ray import serve

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from face_model import DEFAULT_THRESHOLD, FaceModel, decode, model_threads

PREFIX = "/d2atom"
WORKERS = int(os.environ.get("PEER_WORKERS", "1"))
MAX_BATCH, BATCH_WAIT_S = 16, 0.005
MAX_ONGOING = 64
# The replica's environment: what the model modules read.
RUNTIME_ENV = {
    "env_vars": {
        name: os.environ[name]
        for name in ("MODEL_THREADS", "MLP_MODEL", "MLP_BATCH_LOG")
        if name in os.environ
    }
}


class DetectPayload(BaseModel):
    """The atom's request body."""

    data: list[str | dict[str, Any]] = Field(max_length=64)
    src_type: Literal["url", "local", "base64", "mmap", "shm", "stream"]
    threshold: float | None = Field(None, ge=0, le=1)


class MlpPayload(BaseModel):
    """batching_server.py's request body."""

    data: list[float] = Field(max_length=64)


face_app = FastAPI()


@serve.deployment(
    num_replicas=WORKERS,
    max_ongoing_requests=MAX_ONGOING,
    ray_actor_options={"num_cpus": model_threads(), "runtime_env": RUNTIME_ENV},
)
@serve.ingress(face_app)
class FaceDeployment:
    """The Haar cascade; a batch is the images of several requests."""

    def __init__(self) -> None:
        self.model = FaceModel(model_threads())

    @face_app.post("/detect")
    async def detect(self, payload: DetectPayload) -> dict:
        """Faces in each image of ``data``, as the atom answers them."""
        started = time.perf_counter()
        if payload.src_type not in ("base64", "stream"):
            raise HTTPException(415, "only base64 and stream in this benchmark")
        try:
            images = [decode(item) for item in payload.data] if payload.src_type == "base64" else []
        except ValueError as exc:
            raise HTTPException(400, str(exc)) from None
        threshold = DEFAULT_THRESHOLD if payload.threshold is None else payload.threshold
        objects = await self.run((images, threshold))
        took = round((time.perf_counter() - started) * 1000, 2)
        return {"code": 200, "msg": "", "took": took, "objects": objects}

    @serve.batch(max_batch_size=MAX_BATCH, batch_wait_timeout_s=BATCH_WAIT_S)
    async def run(self, requests: list[tuple]) -> list[list]:
        return [self.model.predict_batch(images, threshold) for images, threshold in requests]


mlp_app = FastAPI()


@serve.deployment(
    num_replicas=WORKERS,
    max_ongoing_requests=MAX_ONGOING,
    ray_actor_options={"num_cpus": model_threads(), "runtime_env": RUNTIME_ENV},
)
@serve.ingress(mlp_app)
class MlpDeployment:
    """The MLP of mlp_model.py; a batch is the items of several requests in one run."""

    def __init__(self) -> None:
        from mlp_model import Mlp

        self.model = Mlp(os.environ["MLP_MODEL"], threads=model_threads())

    @mlp_app.post("/mlp")
    async def mlp(self, payload: MlpPayload) -> dict:
        """One answer per number, in order."""
        return {"code": 200, "outputs": await self.run(payload.data)}

    @serve.batch(max_batch_size=MAX_BATCH, batch_wait_timeout_s=BATCH_WAIT_S)
    async def run(self, requests: list[list[float]]) -> list[list[float]]:
        flat = [item for items in requests for item in items]
        outputs = self.model.predict_batch(flat) if flat else []
        results, offset = [], 0
        for items in requests:
            results.append(outputs[offset : offset + len(items)])
            offset += len(items)
        return results


def main() -> int:
    """Start Ray and Serve, run one application on --port until SIGTERM."""
    kind, port = sys.argv[1], int(sys.argv[sys.argv.index("--port") + 1])
    deployment = {"face": FaceDeployment, "mlp": MlpDeployment}[kind]
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    ray.init(address="local", num_cpus=len(os.sched_getaffinity(0)))
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        serve.run(deployment.bind(), name=kind, route_prefix=PREFIX)
        while True:
            time.sleep(3600)
    finally:
        serve.shutdown()
        ray.shutdown()


if __name__ == "__main__":
    raise SystemExit(main())
