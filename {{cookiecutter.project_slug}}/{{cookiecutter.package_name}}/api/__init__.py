"""The HTTP layer, and the one module a route module imports from.

A route module (``api/interface/<name>.py``, listed in ``api/route.py``) takes what it
needs from here, plus its bodies from ``api.schema``::

    from .. import Batching, Model, Router, Settings, load_images, predict

- ``Router``: the module's router; ``@router.model_loader(name)`` declares a model,
  ``@router.post(...)`` a route, ``@router.stream(...)`` a streamed route.
- ``Model(name)``, ``Images``, ``ModelIds``, ``AppSettings``: what a route declares it
  needs (``Annotated[MyModel, Model("name")]``; ``api/dependencies.py``).
- ``load_images``, ``predict``: the blocking work of an ``async def`` route, off the event
  loop (``api/calls.py``); ``Batching``: how a model takes batches (``api/batching.py``).
  A model class may say what one call costs, ``memory_estimate(items) -> int`` (bytes):
  it is held from the worker's ATOM_MEMORY_BYTES while the call runs (``memory.py``).
- ``Event``: one event of a streamed route (``api/streaming.py``); ``open_video``: the
  frames of a video item (``images/video.py``).
- ``VqlError``: an error the caller sees, ``{"code", "msg", "data"}`` (``errors.py``).
- ``Settings``; ``load_protector`` and ``model_path``: the model key and the model files,
  to decrypt a model in memory (``protection/keys.py``).
- ``detector_signature``: how a detector answers the Open Inference Protocol v2
  (``api/v2/signature.py``); ``ms_since``: milliseconds since a ``perf_counter`` reading.

The rest of the package is the runtime: route modules need not import it.
"""

from ..config import Settings
from ..control.logs import ms_since
from ..errors import VqlError
from ..images.video import open_video
from ..protection.keys import load_protector, model_path
from .batching import Batching
from .calls import load_images, predict
from .dependencies import AppSettings, Images, Model, ModelIds
from .router import Router
from .streaming import Event
from .v2.signature import detector_signature

__all__ = [
    "AppSettings",
    "Batching",
    "Event",
    "Images",
    "Model",
    "ModelIds",
    "Router",
    "Settings",
    "VqlError",
    "detector_signature",
    "load_images",
    "load_protector",
    "model_path",
    "ms_since",
    "open_video",
    "predict",
]
