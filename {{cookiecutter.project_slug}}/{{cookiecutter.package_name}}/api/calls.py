"""Blocking work from ``async def`` routes: off the event loop, and only when there is some.

A plain ``def`` route pays a thread-pool hop on every call, even one with nothing to
load or compute. An ``async def`` route that awaits these helpers pays only for what it
does::

    frames = await load_images(images, payload.src_type, payload.data)  # [] at once for "stream"
    objects = await predict(model, frames, threshold)  # [] at once without frames
"""

from collections.abc import Sequence
from typing import Any

from starlette.concurrency import run_in_threadpool

from ..images.loader import ImageLoader
from ..memory import current_account, model_memory
from .batching import BatchedModel


async def load_images(
    images: ImageLoader, src_type: str, data: Sequence[Any], *, bgr: bool = False
) -> list:
    """``images.load(src_type, data)`` in the thread pool; nothing to load, no hop."""
    if src_type == "stream" or not data:
        return images.load(src_type, data, bgr=bgr)  # returns at once
    return await run_in_threadpool(images.load, src_type, data, bgr=bgr)


async def predict(model: Any, items: Sequence, *args: Any, **kwargs: Any) -> list:
    """The model's ``predict_batch(items, ...)``: one result per item, in order.

    A model that batches queues the items with those of other requests (its own thread
    runs the call); any other model runs in the thread pool. Either way the model's
    working set for the items (``memory.model_memory``) is held from the request's
    memory while it runs. No items, no call.
    """
    if not items:
        return []
    if isinstance(model, BatchedModel):
        return await model.batch(items, *args, **kwargs)
    return await run_in_threadpool(_predict_held, model, items, args, kwargs)


def _predict_held(model: Any, items: Sequence, args: tuple, kwargs: dict) -> list:
    """``predict_batch`` with the model's working set held from the request's memory."""
    with current_account().take(model_memory(model, items), "the model's working set"):
        return model.predict_batch(items, *args, **kwargs)
