"""Fake models: the tests that are not about a real model use them, so adding a model to the
atom (a router with its own ``model_loader``) breaks none of them.

``FakeDetector`` answers like the demo detector: per image that is not all black, one object
covering the whole image, whose ``conf`` comes from the image's red channel (same pixels,
same ``conf``; channels swapped, another one). It lets image-input tests see what reached
the model. An all-black image has no object, and ``threshold=1.0`` filters out all but
pure red images.
"""

from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

from {{ cookiecutter.package_name }}.api.mounting import (
    collect_model_loaders,
    listed_routers,
)
from {{ cookiecutter.package_name }}.api.route import ROUTE_MODULES
from {{ cookiecutter.package_name }}.api.schema.response import DetectObject


class FakeDetector:
    """A model with the demo's ``predict_batch`` that looks at nothing but the pixels' sum."""

    label = "fake"

    def predict(self, image: np.ndarray, threshold: float) -> list[DetectObject]:
        """One object over the whole image, unless it is black or below ``threshold``."""
        height, width = image.shape[:2]
        if not image.any():
            return []
        conf = round(0.5 + float(image[..., 0].mean()) / 510, 4)
        if conf < threshold:
            return []
        return [DetectObject(xmin=0, ymin=0, xmax=width, ymax=height, conf=conf, label=self.label)]

    def predict_batch(self, images: list[np.ndarray], threshold: float) -> list[list[DetectObject]]:
        """``predict`` for each image, in order."""
        return [self.predict(image, threshold) for image in images]


def model_names() -> list[str]:
    """The models the atom's routers declare."""
    return list(collect_model_loaders(listed_routers(ROUTE_MODULES)))


def loaders(real: Iterable[str] = ()) -> dict[str, Callable[[Any], Any]]:
    """A loader for every model of the atom: the real one for the names in ``real``."""
    declared = collect_model_loaders(listed_routers(ROUTE_MODULES))
    wanted = set(real)
    missing = wanted - set(declared)
    if missing:
        raise KeyError(f"no router declares the model(s) {sorted(missing)}")
    return {
        name: loader if name in wanted else (lambda _settings: FakeDetector())
        for name, loader in declared.items()
    }
