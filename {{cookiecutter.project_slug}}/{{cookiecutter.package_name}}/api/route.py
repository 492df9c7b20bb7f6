"""The atom's route modules: add yours to ``ROUTE_MODULES`` (one line per module).

A route module under ``api/interface/`` declares its router and the loaders of the
models it uses, together (see ``interface/detect.py``)::

    router = Router(tags=["plates"])  # from .. import Router, Model, Settings

    @router.model_loader("plates")
    def load_model(settings: Settings) -> PlateReader: ...

    @router.post("/plates")
    def read_plates(payload: ..., model: Annotated[PlateReader, Model("plates")]) -> ...: ...

Listing the module below (``"plates"`` for ``api/interface/plates.py``) mounts its routes
under ATOM_API_PREFIX, in this order, and loads its models at start. The health, metrics
and docs routes are the runtime's and need no line here.
"""

ROUTE_MODULES = [
    "detect",
]
