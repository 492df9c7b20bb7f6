"""The servers of bench_choices.py: the atom as shipped, or with one choice switched off.

Copied into a bake of the default atom by bench_choices.py (not part of the atom):

    python choice_servers.py VARIANT --port P

    shipped            the atom as it is
    detect-def         the example detect written as a plain ``def`` (a thread hop a call)
    no-direct-handler  every call through FastAPI's handler (``LoggedRoute.direct = False``)
    no-inline          state dependencies solved by FastAPI (no ``inline_state_dependencies``)
    routes-included    routes mounted with FastAPI's ``include_router`` (no ``include_flat``)
    json-module        JSON bodies parsed by the json module instead of orjson
    log-queue          the standard library's QueueHandler, written by a QueueListener thread
    no-log-line        call lines through ``logger.log`` (``logs.log_line`` without its queue)
    otel-on            FastAPI's OpenTelemetry instrumentation on (ATOM_OTEL=true; no
                       provider is configured, as in an atom that does not use it)
    no-gc-freeze       startup's objects left to the cyclic garbage collector (no
                       ``gc.freeze`` once the models are loaded)

Every variant also serves ``POST {prefix}/bench/echo`` (a small logged JSON route) and
``POST {prefix}/bench/tensor`` (a JSON list of numbers); with MLP_MODEL set, also
batching_server.py's ``POST {prefix}/mlp`` (the batched MLP of mlp_model.py).
"""

import json
import logging
import logging.handlers
import os
import queue
import sys
import time
from collections.abc import Callable
from typing import Annotated, Any

import server
from fastapi import APIRouter, FastAPI
from pydantic import BaseModel


class Item(BaseModel):
    """A small JSON body (bench_stack's)."""

    name: str
    values: list[int]


class Tensor(BaseModel):
    """A tensor's data, as a JSON list of numbers."""

    data: list[float]


def bench_router() -> APIRouter:
    """Logged routes as users add them: a small echo and a tensor."""
    from my_atom.api import Router

    router = Router()

    @router.post("/bench/echo")
    async def echo(item: Item) -> dict:
        return {"name": item.name, "count": len(item.values)}

    @router.post("/bench/tensor")
    async def tensor(body: Tensor) -> dict:
        return {"count": len(body.data)}

    return router


def def_detect_router() -> APIRouter:
    """The example detect written as a plain ``def``: FastAPI runs it in its thread pool."""
    from my_atom.api import Router
    from my_atom.api.dependencies import Images, Model, ModelIds
    from my_atom.api.interface import detect
    from my_atom.api.schema.payload import DetectPayload
    from my_atom.api.schema.response import DetectResponse
    from my_atom.control.logs import ms_since

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


def use_queue_logging() -> None:
    """Replace the atom's batched handlers by QueueHandler -> QueueListener -> plain handlers."""
    from my_atom.control import log_handlers

    class LineFile(log_handlers.SharedRotatingFileHandler):
        """The shared file handler writing each line as it comes."""

        def emit(self, record: logging.LogRecord) -> None:
            self.write_lines([self.format(record)])

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
    logging.handlers.QueueListener(records, console, line_file).start()


def switch_off(variant: str) -> None:
    """Patch the atom for ``variant``, before any route module is imported."""
    from my_atom.api import call_log, json_body, lifespan, mounting, router
    from my_atom.control import logs

    if variant == "no-direct-handler":
        call_log.LoggedRoute.direct = False
    elif variant == "no-inline":
        router.inline_state_dependencies = lambda endpoint: endpoint
    elif variant == "routes-included":
        mounting.include_flat = lambda app, router, prefix: app.include_router(
            router, prefix=prefix
        )
    elif variant == "json-module":

        def loads(body: bytes, limits: Any) -> Any:
            json_body.check_structure(body, limits)
            return json.loads(body)

        json_body.loads = loads
    elif variant == "no-log-line":
        logs._Direct.reaches_only_ours = lambda self, logger, level: False
    elif variant == "no-gc-freeze":
        lifespan.settle_startup_objects = lambda: None


def factory(variant: str) -> Callable[[object], FastAPI]:
    """The app factory of a variant."""

    def build(settings: object) -> FastAPI:
        from my_atom.api import mounting, route
        from my_atom.api.app import get_app

        switch_off(variant)
        if variant == "otel-on":
            settings = settings.model_copy(update={"atom_otel": True})  # type: ignore[attr-defined]
        routers = [*mounting.listed_routers(route.ROUTE_MODULES), bench_router()]
        if variant == "detect-def":
            routers = [def_detect_router(), bench_router()]
        if os.environ.get("MLP_MODEL"):
            import batching_server

            routers.append(batching_server.router)
        app = get_app(settings, routers=routers)
        if variant == "log-queue":
            use_queue_logging()
        return app

    return build


VARIANTS = (
    "shipped",
    "detect-def",
    "no-direct-handler",
    "no-inline",
    "routes-included",
    "json-module",
    "log-queue",
    "no-log-line",
    "otel-on",
    "no-gc-freeze",
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
