"""Triton's own client (tritonclient[http]) against the atom with its demo model: health,
metadata, and inference in JSON and in binary tensors, finding the faces ``detect`` finds."""

import base64
import json
import time
import urllib.request
from collections.abc import Iterator
from urllib.parse import urlsplit

import cv2
import numpy as np
import pytest
import tritonclient.http as triton

from {{ cookiecutter.package_name }}.config import Settings

from .conftest import PHOTO, PREFIX, make_app
from .live_server import serve_in_thread

KEYS = ("xmin", "ymin", "xmax", "ymax")


@pytest.fixture
def live(settings: Settings) -> Iterator[str]:
    """The atom with the real demo model, served on a socket; its base URL once ready."""
    with serve_in_thread(make_app(settings, real=("face",))) as base:
        client = triton.InferenceServerClient(urlsplit(base).netloc)
        deadline = time.monotonic() + 30
        while not client.is_server_ready():
            assert time.monotonic() < deadline, "the demo model did not load"
            time.sleep(0.05)
        client.close()
        yield base


def detect_faces(base: str) -> list[list[float]]:
    """The boxes ``POST /detect`` finds on the photograph."""
    body = {"data": [base64.b64encode(PHOTO.read_bytes()).decode()], "src_type": "base64"}
    request = urllib.request.Request(
        f"{base}{PREFIX}/detect", json.dumps(body).encode(), {"content-type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=30) as reply:
        objects = json.load(reply)["objects"][0]
    return [[float(item[key]) for key in KEYS] for item in objects]


@pytest.mark.parametrize("path", ["", PREFIX])
def test_health_and_metadata(live: str, path: str) -> None:
    """Live, ready, model ready and the model's tensors, at the root and under the prefix."""
    client = triton.InferenceServerClient(urlsplit(live).netloc + path)
    try:
        assert client.is_server_live() and client.is_server_ready()
        assert client.is_model_ready("face") and not client.is_model_ready("no-such-model")
        assert client.get_server_metadata()["extensions"] == ["binary_tensor_data"]
        meta = client.get_model_metadata("face")
        assert [tensor["name"] for tensor in meta["inputs"]] == ["image"]
        assert [tensor["name"] for tensor in meta["outputs"]] == [
            "boxes",
            "scores",
            "labels",
            "batch_index",
        ]
        with pytest.raises(triton.InferenceServerException, match="unknown model 'no-such-model'"):
            client.get_model_metadata("no-such-model")
    finally:
        client.close()


def json_input() -> tuple[list[triton.InferInput], list[triton.InferRequestedOutput]]:
    """The photograph as a BYTES element in JSON (base64 text), outputs asked for in JSON."""
    image = triton.InferInput("image", [1], "BYTES")
    text = base64.b64encode(PHOTO.read_bytes()).decode()
    image.set_data_from_numpy(np.array([text], dtype=object), binary_data=False)
    names = ("boxes", "scores", "labels", "batch_index")
    return [image], [triton.InferRequestedOutput(name, binary_data=False) for name in names]


def binary_pixels() -> tuple[list[triton.InferInput], None]:
    """The photograph's RGB pixels as a binary UINT8 [1, H, W, 3] tensor, binary outputs."""
    pixels = cv2.cvtColor(cv2.imread(str(PHOTO)), cv2.COLOR_BGR2RGB)[np.newaxis]
    image = triton.InferInput("image", list(pixels.shape), "UINT8")
    image.set_data_from_numpy(pixels, binary_data=True)
    return [image], None


def binary_jpeg() -> tuple[list[triton.InferInput], None]:
    """The JPEG file's bytes as a binary BYTES element, binary outputs."""
    image = triton.InferInput("image", [1], "BYTES")
    image.set_data_from_numpy(np.array([PHOTO.read_bytes()], dtype=object), binary_data=True)
    return [image], None


@pytest.mark.parametrize("make_inputs", [json_input, binary_pixels, binary_jpeg])
def test_infer_finds_the_faces_detect_finds(live: str, make_inputs: object) -> None:
    """tritonclient's infer, in JSON or binary tensors, returns the boxes of ``detect``."""
    expected = detect_faces(live)
    assert len(expected) == 1
    inputs, outputs = make_inputs()  # type: ignore[operator]
    client = triton.InferenceServerClient(urlsplit(live).netloc + PREFIX)
    try:
        result = client.infer("face", inputs, outputs=outputs, request_id="7")
    finally:
        client.close()
    assert result.get_response()["id"] == "7"
    assert result.as_numpy("boxes").tolist() == expected
    assert result.as_numpy("batch_index").tolist() == [0]
    labels = [
        label if isinstance(label, str) else label.decode() for label in result.as_numpy("labels")
    ]
    assert labels == ["face"]  # bytes from binary outputs, text from JSON
    assert 0.5 <= float(result.as_numpy("scores")[0]) <= 1
