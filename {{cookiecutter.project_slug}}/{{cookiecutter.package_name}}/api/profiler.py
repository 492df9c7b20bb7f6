"""PROFILING: each call profiled with cProfile, its top functions logged (``api/call_log.py``).

cProfile is per process: overlapping calls are not profiled. A query parameter cannot
switch it on (``linker_atom``'s ``?PROFILING=1`` let any caller do it).
"""

import cProfile
import io
import logging
import pstats

from fastapi import Request, Response

from .handler import Handler
from .middleware.http import path_for_log

logger = logging.getLogger(__name__)

PROFILE_TOP = 25


class Profiler:
    """Profile one call at a time; the others run unprofiled meanwhile."""

    busy = False

    @classmethod
    async def run(cls, handler: Handler, request: Request) -> Response:
        """``await handler(request)``, profiled unless another call is."""
        if cls.busy:
            return await handler(request)
        cls.busy = True
        profiler = cProfile.Profile()
        profiler.enable()
        try:
            return await handler(request)
        finally:
            profiler.disable()
            cls.busy = False
            out = io.StringIO()
            pstats.Stats(profiler, stream=out).sort_stats("cumulative").print_stats(PROFILE_TOP)
            method, path = request.method, path_for_log(request.scope)
            logger.info("profile of %s %s:\n%s", method, path, out.getvalue())
