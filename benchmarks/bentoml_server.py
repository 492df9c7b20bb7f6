"""A peer: the face model and the MLP served by BentoML, the way its documentation shows.

Run by bench_peer.py with the Python of BentoML's own virtual environment, never the
atom's, one Service at a time:

    bentoml serve bentoml_server:FaceService --host 127.0.0.1 --port P   POST /d2atom/detect
    bentoml serve bentoml_server:MlpService --host 127.0.0.1 --port P    POST /d2atom/mlp

Each Service is a class: ``__init__`` loads the model, each ``@bentoml.api`` method is a
route whose parameters are the fields of the JSON body (the atom's bodies), PEER_WORKERS
worker processes (``workers``). The MLP batches with BentoML's adaptive batching:
``batchable=True``, at most 16 items (``max_batch_size``), ``max_latency_ms`` 1000 (the
documentation's value: the latency past which a queued request is refused; the batch
window itself BentoML adapts to the traffic). The face route does not batch: a batchable
API takes one parameter, and the documented way to batch a call with several (the image
and its threshold) puts the model in a second Service behind the first, a hop between
processes that the other servers do not make; the cascade runs one image at a time
anyway. Its API is a plain ``def``: BentoML runs it in its thread pool. Logging and
metrics as BentoML sets them by default. The models are face_model.py's and
mlp_model.py's, with MODEL_THREADS threads.
"""

import os
import sys
import time
from typing import Literal

import bentoml
from bentoml.exceptions import InvalidArgument

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from face_model import DEFAULT_THRESHOLD, FaceModel, decode, model_threads
from mlp_model import Mlp

PREFIX = "/d2atom"
WORKERS = int(os.environ.get("PEER_WORKERS", "1"))


@bentoml.service(workers=WORKERS, path_prefix=PREFIX, traffic={"timeout": 60})
class FaceService:
    """The Haar cascade, one request at a time in each worker."""

    def __init__(self) -> None:
        self.model = FaceModel(model_threads())

    @bentoml.api
    def detect(
        self,
        data: list[str],
        src_type: Literal["base64", "stream"],
        threshold: float | None = None,
    ) -> dict:
        """Faces in each image of ``data``, as the atom answers them."""
        started = time.perf_counter()
        try:
            images = [decode(item) for item in data] if src_type == "base64" else []
        except ValueError as exc:
            raise InvalidArgument(str(exc)) from None
        objects = self.model.predict_batch(
            images, DEFAULT_THRESHOLD if threshold is None else threshold
        )
        took = round((time.perf_counter() - started) * 1000, 2)
        return {"code": 200, "msg": "", "took": took, "objects": objects}


@bentoml.service(workers=WORKERS, path_prefix=PREFIX, traffic={"timeout": 60})
class MlpService:
    """The MLP of mlp_model.py; BentoML joins the ``data`` lists of queued requests."""

    def __init__(self) -> None:
        self.model = Mlp(os.environ["MLP_MODEL"], threads=model_threads())

    @bentoml.api(batchable=True, max_batch_size=16, max_latency_ms=1000)
    def mlp(self, data: list[float]) -> list[float]:
        """One answer per number, in order."""
        return self.model.predict_batch(data)
