"""The servers of bench_choices.py: the atom built with one runtime choice or its alternative.

Copied into a bake of the default atom by bench_choices.py (not part of the atom):

    python choice_servers.py VARIANT --port P

    detect-shipped   the example detect as shipped: ``async def``, the images loaded in the
                     thread pool and the model run by its batch thread, only when there are some
    detect-def       the same route as a plain ``def`` (a thread hop on every call)
    log-batched      the atom's logging: batched console and file handlers
    log-queue        the standard library's QueueHandler, writes by a QueueListener thread
    routes-flat      routes copied into the app's own list (``mounting.include_flat``)
    routes-included  routes mounted with FastAPI's ``include_router``

Every variant also serves ``POST {prefix}/bench/echo`` (a small logged JSON route).
"""

import logging
import logging.handlers
import queue
import sys
import time
from typing import Annotated

import server
from fastapi import APIRouter, FastAPI
from my_atom.api import Router, mounting, route
from my_atom.api.app import get_app
from my_atom.api.dependencies import Images, Model, ModelIds
from my_atom.api.interface import detect
from my_atom.api.schema.payload import DetectPayload
from my_atom.api.schema.response import DetectResponse
from my_atom.control import log_handlers
from my_atom.control.logs import ms_since
from pydantic import BaseModel


class Item(BaseModel):
    """A small JSON body (bench_stack's)."""

    name: str
    values: list[int]


def echo_router() -> APIRouter:
    """A logged echo route, as users add routes."""
    router = Router()

    @router.post("/bench/echo")
    async def echo(item: Item) -> dict:
        return {"name": item.name, "count": len(item.values)}

    return router


def def_detect_router() -> APIRouter:
    """The example detect written as a plain ``def``: FastAPI runs it in its thread pool."""
    router = Router(tags=["detect"])
    router.model_loaders.update(detect.router.model_loaders)
    router.batching.update(detect.router.batching)
    FaceModel = Annotated[detect.FaceDetector, Model(detect.MODEL_NAME)]  # noqa: N806

    @router.post("/detect", response_model=DetectResponse)
    def detect_def(
        payload: DetectPayload, model: FaceModel, images: Images, model_ids: ModelIds
    ) -> DetectResponse:
        started = time.perf_counter()
        model_ids.check(payload.model_id)
        frames = images.load(payload.src_type, payload.data)
        threshold = detect.DEFAULT_THRESHOLD if payload.threshold is None else payload.threshold
        objects = model.predict_batch(frames, threshold)
        return DetectResponse(took=round(ms_since(started), 2), objects=objects)

    return router


class LineFile(log_handlers.SharedRotatingFileHandler):
    """The shared file handler writing each line as it comes (the listener thread batches)."""

    def emit(self, record: logging.LogRecord) -> None:
        self.write_lines([self.format(record)])


def use_queue_logging() -> None:
    """Replace the atom's batched handlers by QueueHandler -> QueueListener -> plain handlers."""
    root = logging.getLogger()
    atom_handlers = list(root.handlers)
    stamp = atom_handlers[0].filters[0]
    line_format = atom_handlers[0].formatter
    outputs = [o for h in atom_handlers for o in getattr(h, "outputs", [h])]
    file_handler = next(o for o in outputs if isinstance(o, log_handlers.SharedRotatingFileHandler))
    for handler in atom_handlers:
        root.removeHandler(handler)
    plain = logging.Formatter("%(message)s")  # QueueHandler.prepare formatted the line
    console = logging.StreamHandler(sys.stderr)
    line_file = LineFile(file_handler.path, file_handler.max_bytes, file_handler.backup_count)
    for handler in (console, line_file):
        handler.setFormatter(plain)
    records: queue.SimpleQueue[logging.LogRecord] = queue.SimpleQueue()
    queued = logging.handlers.QueueHandler(records)
    queued.addFilter(stamp)
    queued.setFormatter(line_format)
    root.addHandler(queued)
    listener = logging.handlers.QueueListener(records, console, line_file)
    listener.start()


def factory(variant: str):
    """The app factory of a variant."""

    def build(settings: object) -> FastAPI:
        routers = [*mounting.listed_routers(route.ROUTE_MODULES), echo_router()]
        if variant == "detect-def":
            routers = [def_detect_router(), echo_router()]
        if variant == "routes-included":
            mounting.include_flat = lambda app, router, prefix: app.include_router(
                router, prefix=prefix
            )
        app = get_app(settings, routers=routers)
        if variant == "log-queue":
            use_queue_logging()
        return app

    return build


VARIANTS = (
    "detect-shipped",
    "detect-def",
    "log-batched",
    "log-queue",
    "routes-flat",
    "routes-included",
)


def main() -> int:
    """Run one variant with server.py's uvicorn settings."""
    variant, argv = sys.argv[1], sys.argv[2:]
    if variant not in VARIANTS:
        sys.stderr.write(f"unknown variant {variant!r}: {', '.join(VARIANTS)}\n")
        return 2
    return server.main(argv, app_factory=factory(variant))


if __name__ == "__main__":
    raise SystemExit(main())
