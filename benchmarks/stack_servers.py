"""The two servers of the stack-overhead benchmark, with the same routes and uvicorn settings.

Copied into a bake of the default atom by bench_stack.py (not part of the atom):

    python stack_servers.py atom --port P    the full atom stack (request id, route logging,
                                             error envelope, metrics) plus an echo route
    python stack_servers.py bare --port P    a bare FastAPI app with the same two routes, and
                                             the atom's detect written by hand with the same
                                             payload and response models (as a plain def at
                                             the atom's path, as an async def at
                                             /bench/detect-async)
    python stack_servers.py bare-logged --port P
                                             the bare app as uvicorn runs it by default: its
                                             access log on, one line per call on stderr
"""

import sys
import time

import uvicorn
from fastapi import FastAPI
from pydantic import BaseModel


class Item(BaseModel):
    """A small JSON body."""

    name: str
    values: list[int]


class Echo(BaseModel):
    """The reply: how many values came."""

    name: str
    count: int


def echo(item: Item) -> Echo:
    """The echo route's work, the same for both apps."""
    return Echo(name=item.name, count=len(item.values))


def bare_app() -> FastAPI:
    """A bare FastAPI app: ping and echo, nothing else."""
    app = FastAPI()

    @app.get("/d2atom/v1/health/ping")
    async def ping() -> dict[str, bool]:
        return {"is_alive": True}

    @app.get("/d2atom/v1/health/ready")
    async def ready() -> dict[str, bool]:
        return {"is_ready": True}

    @app.post("/d2atom/bench/echo")
    async def bare_echo(item: Item) -> Echo:
        return echo(item)

    from my_atom.api.schema.payload import DetectPayload
    from my_atom.api.schema.response import DetectResponse

    def hand_written_detect(payload: DetectPayload) -> DetectResponse:
        # The atom's detect written by hand with the same bodies: nothing to load for
        # "stream", so the model gets no image.
        started = time.perf_counter()
        frames: list = [] if payload.src_type == "stream" else list(payload.data)
        objects = [[] for _ in frames]
        return DetectResponse(
            took=round((time.perf_counter() - started) * 1000, 2), objects=objects
        )

    @app.post("/d2atom/detect", response_model=DetectResponse)
    def bare_detect(payload: DetectPayload) -> DetectResponse:
        return hand_written_detect(payload)

    @app.post("/d2atom/bench/detect-async", response_model=DetectResponse)
    async def bare_detect_async(payload: DetectPayload) -> DetectResponse:
        return hand_written_detect(payload)

    return app


def atom_factory(settings: object) -> FastAPI:
    """The atom's app (its model included) plus the echo route, added as users add routes:
    a Router beside those of ``api/route.py``'s ROUTE_MODULES."""
    from my_atom.api import Router, mounting, route
    from my_atom.api.app import get_app

    router = Router()

    @router.post("/bench/echo")
    async def atom_echo(item: Item) -> Echo:
        return echo(item)

    return get_app(settings, routers=[*mounting.listed_routers(route.ROUTE_MODULES), router])


def main() -> int:
    """Run one of the two apps with server.py's uvicorn settings."""
    kind, argv = sys.argv[1], sys.argv[2:]
    if kind == "atom":
        import server

        return server.main(argv, app_factory=atom_factory)
    port = int(argv[argv.index("--port") + 1])
    # bare: no log line at all; bare-logged: uvicorn's defaults (log_config and access_log
    # left alone), what a FastAPI app run by uvicorn logs for each call.
    quiet = {} if kind == "bare-logged" else {"log_config": None, "access_log": False}
    uvicorn.run(bare_app(), host="127.0.0.1", port=port, server_header=False, **quiet)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
