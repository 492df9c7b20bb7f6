"""The atom's own routers: list yours in ``ROUTERS`` (one line per route module).

A route module under ``api/interface/`` declares its router and the loaders of the
models it uses, together (see ``interface/detect.py``)::

    router = UdfAPIRoute(tags=["plates"])

    @router.model_loader("plates")
    def load_model(settings: Settings) -> PlateReader: ...

    @router.post("/plates")
    def read_plates(payload: ..., model: Annotated[PlateReader, Model("plates")]) -> ...: ...

Listing the router below mounts its routes under ATOM_API_PREFIX and loads its models at
start. The health, metrics and docs routes are the runtime's and need no line here.
"""

from .interface import detect

ROUTERS = [detect.router]
