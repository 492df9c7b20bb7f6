"""The example detect route on a real photograph, and its errors."""

import base64
import json
from collections.abc import Callable

import cv2
import numpy as np
import pytest
from fastapi.testclient import TestClient

from {{ cookiecutter.package_name }}.config import Settings

from .conftest import make_app, wait_ready

# Where the face is in the sample photo (512 x 512), checked by eye.
FACE_CENTRE = (224, 113)


@pytest.fixture
def client(real_client: TestClient) -> TestClient:
    """These tests are about the demo model: the real one."""
    return real_client


def detect(client: TestClient, prefix: str, **body: object) -> dict:
    """POST the body to detect; return status and JSON."""
    response = client.post(f"{prefix}/detect", json=body)
    return {"status": response.status_code, **response.json()}


def encode(image: np.ndarray, ext: str = ".png") -> str:
    """An array as base64 of an encoded image."""
    ok, buffer = cv2.imencode(ext, image)
    assert ok
    return base64.b64encode(buffer.tobytes()).decode()


def test_finds_the_face(client: TestClient, prefix: str, photo_b64: str) -> None:
    """The astronaut's face is found, once, where it is."""
    reply = detect(client, prefix, data=[photo_b64], src_type="base64")
    assert (reply["status"], reply["code"], reply["msg"]) == (200, 200, "")
    assert reply["took"] > 0
    (faces,) = reply["objects"]
    assert len(faces) == 1
    face = faces[0]
    assert face["label"] == "face"
    assert 0.5 <= face["conf"] <= 1
    assert face["xmin"] < FACE_CENTRE[0] < face["xmax"]
    assert face["ymin"] < FACE_CENTRE[1] < face["ymax"]
    assert 60 < face["xmax"] - face["xmin"] < 160


def test_data_uri_and_order(client: TestClient, prefix: str, photo_b64: str) -> None:
    """A data: URI works, and there is one result list per image, in input order."""
    blank = encode(np.full((64, 64, 3), 200, np.uint8))
    reply = detect(
        client,
        prefix,
        data=[blank, f"data:image/jpeg;base64,{photo_b64}", blank],
        src_type="base64",
    )
    assert reply["status"] == 200
    assert [len(objects) for objects in reply["objects"]] == [0, 1, 0]


def test_threshold_filters(client: TestClient, prefix: str, photo_b64: str) -> None:
    """A threshold above every confidence returns no object."""
    reply = detect(client, prefix, data=[photo_b64], src_type="base64", threshold=1.0)
    assert reply["objects"] == [[]]


def test_no_images(client: TestClient, prefix: str) -> None:
    """An empty list is answered with an empty list."""
    assert detect(client, prefix, data=[], src_type="base64")["objects"] == []


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (["%%%not base64%%%"], (400, 501, "image 0: invalid base64")),
        ([""], (400, 501, "image 0: empty image")),
        ([{"path": "/x"}], (400, 501, "image 0: a base64 item must be a string")),
        (
            [encode(np.zeros((8, 8, 3), np.uint8)), base64.b64encode(b"plain text").decode()],
            (400, 502, "image 1: not a JPEG, PNG, WebP or BMP image (10 bytes)"),
        ),
    ],
)
def test_bad_images(
    client: TestClient, prefix: str, photo_b64: str, data: list, expected: tuple
) -> None:
    """Each bad item is a clear 4xx naming the item; the next good request still works."""
    reply = detect(client, prefix, data=data, src_type="base64")
    assert (reply["status"], reply["code"], reply["msg"]) == expected
    assert detect(client, prefix, data=[photo_b64], src_type="base64")["status"] == 200


def test_unsupported_format_is_415(client: TestClient, prefix: str) -> None:
    """An image format the atom does not decode (GIF) is 415 with code 504."""
    gif = base64.b64encode(b"GIF89a" + bytes(20)).decode()
    reply = detect(client, prefix, data=[gif], src_type="base64")
    assert (reply["status"], reply["code"], reply["msg"]) == (
        415,
        504,
        "image 0: GIF images are not supported (JPEG, PNG, WebP or BMP only)",
    )


def test_unknown_src_type_is_422(client: TestClient, prefix: str) -> None:
    """A src_type outside the contract is a validation error."""
    assert detect(client, prefix, data=[], src_type="ftp")["status"] == 422


def test_model_id_must_match_meta(make_settings: Callable[..., Settings], photo_b64: str) -> None:
    """With modelIds in META, another model_id is refused with code 513."""
    settings = make_settings(meta=json.dumps({"modelIds": "face_v1"}))
    prefix = settings.atom_api_prefix
    with TestClient(make_app(settings)) as client:
        wait_ready(client, prefix)
        body = {"data": [photo_b64], "src_type": "base64"}
        assert detect(client, prefix, **body, model_id="face_v1")["status"] == 200
        reply = detect(client, prefix, **body, model_id="other")
    assert (reply["status"], reply["code"]) == (400, 513)
