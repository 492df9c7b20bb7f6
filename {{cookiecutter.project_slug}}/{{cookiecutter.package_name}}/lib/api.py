"""``linker_atom``'s names of the HTTP layer: ``api.base.UdfAPIRoute`` and
``ContextAPIRoute``, ``api.dependencies.get_state`` and ``get_engine``,
``api.interface.healthcheck.healthcheck_route``.

``UdfAPIRoute`` is the atom's ``Router`` (``api/router.py``) and ``ContextAPIRoute`` its
route class (``api/call_log.LoggedRoute``); ``healthcheck_route`` is the router of the
health routes. ``Depends(get_engine)`` gives ``app.state.engine``, the model a startup
handler stored there (503 while it is not set).
"""

from typing import Any

from fastapi import HTTPException, Request
from starlette.datastructures import State

from ..api.call_log import LoggedRoute
from ..api.interface.healthcheck import router as healthcheck_route
from ..api.router import Router

__all__ = ["ContextAPIRoute", "UdfAPIRoute", "get_engine", "get_state", "healthcheck_route"]

UdfAPIRoute = Router
ContextAPIRoute = LoggedRoute


def get_state(request: Request) -> State:
    """The app's state (``linker_atom``'s dependency)."""
    return request.app.state


def get_engine(request: Request) -> Any:
    """``app.state.engine`` (``linker_atom``'s dependency); 503 while it is not set."""
    engine = getattr(get_state(request), "engine", None)
    if engine is None:
        raise HTTPException(503, "app.state.engine is not set (a startup handler sets it)")
    return engine
