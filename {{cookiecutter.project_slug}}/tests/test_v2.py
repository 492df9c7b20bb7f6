"""The Open Inference Protocol v2 routes with fake models: JSON and binary tensors, the
protocol's errors, signatures declared next to a loader, and the switch."""

import base64
import gzip
import json
import struct
import threading
from collections.abc import Callable, Iterator
from typing import Any

import cv2
import numpy as np
import pytest
from fastapi.testclient import TestClient

from {{ cookiecutter.package_name }}.api import Router
from {{ cookiecutter.package_name }}.api.app import get_app
from {{ cookiecutter.package_name }}.api.v2.signature import TensorSpec, V2Signature
from {{ cookiecutter.package_name }}.api.v2.tensors import (
    V2Error,
    parse_request,
    serialize_bytes,
)
from {{ cookiecutter.package_name }}.config import Settings

from .conftest import PREFIX, make_app, wait_ready

RED = np.zeros((8, 6, 3), np.uint8)
RED[..., 0] = 255  # the fake detector: one whole-image object, conf 1.0
BLACK = np.zeros((8, 6, 3), np.uint8)  # the fake detector finds nothing


def png(image: np.ndarray) -> bytes:
    """An RGB image encoded as PNG."""
    return cv2.imencode(".png", cv2.cvtColor(image, cv2.COLOR_RGB2BGR))[1].tobytes()


def binary_request(
    tensors: list[tuple[str, str, list[int], bytes]], **document: Any
) -> tuple[bytes, dict[str, str]]:
    """A request whose inputs are all binary: body and Inference-Header-Content-Length."""
    document["inputs"] = [
        {"name": n, "datatype": d, "shape": s, "parameters": {"binary_data_size": len(raw)}}
        for n, d, s, raw in tensors
    ]
    head = json.dumps(document).encode()
    body = head + b"".join(raw for *_, raw in tensors)
    return body, {"inference-header-content-length": str(len(head))}


def split_reply(reply: Any) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """The JSON part of a reply and its outputs as arrays (JSON data or binary)."""
    length = reply.headers.get("inference-header-content-length")
    content = reply.content
    document = json.loads(content if length is None else content[: int(length)])
    binary = b"" if length is None else content[int(length) :]
    arrays, offset = {}, 0
    for output in document["outputs"]:
        size = (output.get("parameters") or {}).get("binary_data_size")
        if size is None:
            kind = object if output["datatype"] == "BYTES" else None
            arrays[output["name"]] = np.array(output["data"], dtype=kind).reshape(output["shape"])
            continue
        raw = binary[offset : offset + size]
        offset += size
        if output["datatype"] == "BYTES":
            arrays[output["name"]] = np.array(_bytes_elements(raw), dtype=object)
        else:
            dtype = {"FP32": "<f4", "INT32": "<i4"}[output["datatype"]]
            arrays[output["name"]] = np.frombuffer(raw, dtype).reshape(output["shape"])
    assert offset == len(binary)
    return document, arrays


def _bytes_elements(raw: bytes) -> list[bytes]:
    elements, offset = [], 0
    while offset < len(raw):
        (size,) = struct.unpack_from("<I", raw, offset)
        elements.append(raw[offset + 4 : offset + 4 + size])
        offset += 4 + size
    return elements


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    """The atom with fake models, ready."""
    with TestClient(make_app(settings)) as test_client:
        wait_ready(test_client, settings.atom_api_prefix)
        yield test_client


def test_server_routes_at_the_root_and_under_the_prefix(client: TestClient) -> None:
    """Metadata, liveness and readiness answer at /v2 and {prefix}/v2 alike."""
    for root in ("/v2", f"{PREFIX}/v2"):
        meta = client.get(root).json()
        assert meta["extensions"] == ["binary_tensor_data"] and meta["version"]
        assert client.get(f"{root}/health/live").json() == {"live": True}
        assert client.get(f"{root}/health/ready").json() == {"ready": True}
        assert client.get(f"{root}/models/face/ready").json() == {"name": "face", "ready": True}
        assert client.get(f"{root}/models/face/versions/1/ready").status_code == 200


def test_model_metadata_describes_the_detection_tensors(client: TestClient) -> None:
    """The demo model's metadata: an image in; boxes, scores, labels, batch_index out."""
    assert client.get("/v2/models/face").json() == {
        "name": "face",
        "versions": ["1"],
        "platform": "python",
        "inputs": [{"name": "image", "datatype": "UINT8", "shape": [-1, -1, -1, 3]}],
        "outputs": [
            {"name": "boxes", "datatype": "FP32", "shape": [-1, 4]},
            {"name": "scores", "datatype": "FP32", "shape": [-1]},
            {"name": "labels", "datatype": "BYTES", "shape": [-1]},
            {"name": "batch_index", "datatype": "INT32", "shape": [-1]},
        ],
    }
    assert client.get("/v2/models/face/versions/1").json()["name"] == "face"


def test_infer_json_bytes_images(client: TestClient) -> None:
    """BYTES elements in JSON are base64 images; one row per object, with its image's index."""
    body = {
        "id": "r1",
        "inputs": [
            {
                "name": "image",
                "datatype": "BYTES",
                "shape": [3],
                "data": [base64.b64encode(png(image)).decode() for image in (RED, BLACK, RED)],
            }
        ],
    }
    reply = client.post(f"{PREFIX}/v2/models/face/infer", json=body)
    assert reply.status_code == 200 and reply.headers["content-type"] == "application/json"
    document, out = split_reply(reply)
    head = (document["id"], document["model_name"], document["model_version"])
    assert head == ("r1", "face", "1")
    assert out["boxes"].tolist() == [[0, 0, 6, 8], [0, 0, 6, 8]]
    assert out["scores"].tolist() == [1.0, 1.0]
    assert out["labels"].tolist() == ["fake", "fake"]
    assert out["batch_index"].tolist() == [0, 2]


def test_infer_binary_uint8_batch_and_binary_outputs(client: TestClient) -> None:
    """A binary UINT8 [N, H, W, 3] tensor in, binary outputs back (binary_data_output)."""
    batch = np.stack([BLACK, RED])
    body, headers = binary_request(
        [("image", "UINT8", list(batch.shape), batch.tobytes())],
        parameters={"binary_data_output": True},
    )
    reply = client.post("/v2/models/face/infer", content=body, headers=headers)
    assert reply.status_code == 200
    assert reply.headers["content-type"] == "application/octet-stream"
    _, out = split_reply(reply)
    assert out["boxes"].tolist() == [[0, 0, 6, 8]]
    assert out["batch_index"].tolist() == [1]
    assert out["labels"].tolist() == [b"fake"]


def test_infer_binary_bytes_and_chosen_outputs(client: TestClient) -> None:
    """Raw encoded images as binary BYTES; only the outputs asked for, each as asked."""
    body, headers = binary_request(
        [("image", "BYTES", [2], serialize_bytes(np.array([png(RED), png(RED)], dtype=object)))],
        outputs=[{"name": "scores", "parameters": {"binary_data": True}}, {"name": "labels"}],
    )
    document, out = split_reply(client.post("/v2/models/face/infer", content=body, headers=headers))
    assert [output["name"] for output in document["outputs"]] == ["scores", "labels"]
    assert "data" in document["outputs"][1] and "data" not in document["outputs"][0]
    assert out["scores"].tolist() == [1.0, 1.0]


def test_infer_single_image_threshold_and_gzip(client: TestClient) -> None:
    """A [H, W, 3] image in JSON, the threshold parameter, a gzip-compressed body."""
    body = {
        "inputs": [
            {"name": "image", "datatype": "UINT8", "shape": [8, 6, 3], "data": RED.tolist()}
        ],
        "parameters": {"threshold": 1.0},
    }
    raw = gzip.compress(json.dumps(body).encode())
    reply = client.post("/v2/models/face/infer", content=raw, headers={"content-encoding": "gzip"})
    assert split_reply(reply)[1]["scores"].tolist() == [1.0]
    body["inputs"][0]["data"] = (RED // 2).tolist()
    assert split_reply(client.post("/v2/models/face/infer", json=body))[1]["scores"].size == 0


BEYOND = (
    b'{"inputs": [{"name": "image", "datatype": "UINT8", "shape": [1, 1, 3],'
    b' "parameters": {"binary_data_size": 9}}]}'
)
LENGTH = "Inference-Header-Content-Length must be a length within the body"
BAD_REQUESTS = {
    "not JSON": (b"{", {}, 400, "the request's JSON part is not valid JSON"),
    "no inputs": (b'{"inputs": []}', {}, 400, "inputs must be a non-empty list"),
    "unknown input": (
        b'{"inputs": [{"name": "x", "datatype": "FP32", "shape": [1], "data": [1]}]}',
        {},
        400,
        "unknown input 'x'",
    ),
    "wrong datatype": (
        b'{"inputs": [{"name": "image", "datatype": "FP32", "shape": [1], "data": [1]}]}',
        {},
        400,
        "input 'image' must be UINT8 or BYTES, not FP32",
    ),
    "count": (
        b'{"inputs": [{"name": "image", "datatype": "UINT8", "shape": [2, 2, 3], "data": [1]}]}',
        {},
        400,
        "input 'image': 1 elements for shape [2, 2, 3]",
    ),
    "bad shape": (
        b'{"inputs": [{"name": "image", "datatype": "UINT8", "shape": [3], "data": [1, 2, 3]}]}',
        {},
        400,
        "input 'image': UINT8 images must have shape [H, W, 3] or [N, H, W, 3]",
    ),
    "bad image": (
        b'{"inputs": [{"name": "image", "datatype": "BYTES", "shape": [1], "data": ["aGk="]}]}',
        {},
        400,
        "input 'image', element 0: not a JPEG, PNG, WebP or BMP image",
    ),
    "binary beyond": (
        BEYOND + b"xyz",
        {"inference-header-content-length": str(len(BEYOND))},
        400,
        "input 'image': binary_data_size is beyond the binary data",
    ),
    "header length": (b"{}", {"inference-header-content-length": "99"}, 400, None),
    "threshold": (
        b'{"inputs": [{"name": "image", "datatype": "UINT8", "shape": [1, 1, 3],'
        b' "data": [1, 2, 3]}], "parameters": {"threshold": "high"}}',
        {},
        400,
        "parameter 'threshold' must be a number between 0 and 1",
    ),
    "unknown output": (
        b'{"inputs": [{"name": "image", "datatype": "UINT8", "shape": [1, 1, 3],'
        b' "data": [1, 2, 3]}], "outputs": [{"name": "masks"}]}',
        {},
        400,
        "unknown output 'masks'",
    ),
    "encoding": (b"{}", {"content-encoding": "br"}, 415, "Content-Encoding 'br' is not supported"),
    "huge shape": (
        b'{"inputs": [{"name": "image", "datatype": "UINT8", "data": [],'
        b' "shape": [0, 4611686018427387904, 4611686018427387904]}]}',
        {},
        413,
        "input 'image': shape [0, 4611686018427387904, 4611686018427387904] is too large",
    ),
    "100 dimensions": (
        b'{"inputs": [{"name": "image", "datatype": "UINT8", "data": [1], "shape": ['
        + b", ".join([b"1"] * 100)
        + b"]}]}",
        {},
        400,
        "input 'image': 100 dimensions, at most 32",
    ),
    "negative dimension": (
        b'{"inputs": [{"name": "image", "datatype": "UINT8", "shape": [-1, 3], "data": []}]}',
        {},
        400,
        "input 'image': shape must be a list of non-negative integers",
    ),
    "non-ASCII length": (
        b"{}",
        {"inference-header-content-length": "\u00b2".encode()},
        400,
        LENGTH,
    ),
    "5000-digit length": (b"{}", {"inference-header-content-length": "9" * 5000}, 400, LENGTH),
    "negative length": (b"{}", {"inference-header-content-length": "-1"}, 400, LENGTH),
}


@pytest.mark.parametrize("value", ["\u00b2", "\u0661", "9" * 5000, "-1", "+1", " ", "1e3"])
def test_malformed_header_lengths_are_400(value: str) -> None:
    """Inference-Header-Content-Length holds ASCII digits only, a length within the body
    (a superscript two and an Arabic-Indic one are digits to Python; 5000 digits are
    beyond int())."""
    with pytest.raises(V2Error) as error:
        parse_request(b"{}", value)
    assert (error.value.status, error.value.msg) == (400, LENGTH)


@pytest.mark.parametrize("case", sorted(BAD_REQUESTS))
def test_bad_requests_get_the_protocol_error(client: TestClient, case: str) -> None:
    """Each malformed request is a 4xx whose body is ``{"error": "..."}``, naming the fault."""
    body, headers, status, msg = BAD_REQUESTS[case]
    reply = client.post("/v2/models/face/infer", content=body, headers=headers)
    assert reply.status_code == status
    assert set(reply.json()) == {"error"}
    if msg is not None:
        assert reply.json()["error"].startswith(msg)


def test_unknown_models_versions_paths_and_methods(client: TestClient) -> None:
    """404 and 405 under /v2 use the protocol's error body too (405 keeps Allow)."""
    # A name `make route` refuses: the README's example route (plates) may be there.
    unknown = client.get("/v2/models/no-such-model")
    assert unknown.json() == {"error": "unknown model 'no-such-model'"}
    assert unknown.status_code == 404
    reply = client.post("/v2/models/face/versions/7/infer", json={})
    assert (reply.status_code, reply.json()) == (404, {"error": "model 'face' has no version '7'"})
    assert client.get(f"{PREFIX}/v2/repository").json() == {"error": "Not Found"}
    reply = client.get("/v2/models/face/infer")
    assert (reply.status_code, reply.headers["allow"]) == (405, "POST")
    assert reply.json() == {"error": "Method Not Allowed"}
    assert client.get(f"{PREFIX}/nothing").json()["code"] == 404  # the envelope elsewhere


def test_errors_made_before_the_routes_use_the_protocol_body(
    make_settings: Callable[..., Settings],
) -> None:
    """A path with a control character (404) and a body above the limit (413), refused by
    the middleware before any route runs, answer {"error": ...} under /v2 too."""
    settings = make_settings(atom_max_body_bytes=2048)
    with TestClient(make_app(settings)) as client:
        for root in ("/v2", f"{PREFIX}/v2"):
            reply = client.get(f"{root}/models/face%0a")
            assert (reply.status_code, reply.json()) == (404, {"error": "Not Found"})
            reply = client.post(f"{root}/models/face/infer", content=b"x" * 4096)
            assert reply.status_code == 413
            assert reply.json() == {"error": "Request Entity Too Large (limit 2048 bytes)"}
        reply = client.post(f"{PREFIX}/detect", content=b"x" * 4096)
        assert (reply.status_code, reply.json()["code"]) == (413, 413)  # the envelope elsewhere


def test_not_ready_until_the_model_loads(make_settings: Callable[..., Settings]) -> None:
    """While a model loads, ready routes and infer answer 503."""
    release = threading.Event()

    def slow(_: Settings) -> object:
        release.wait(10)
        return object()

    app = make_app(make_settings(), model_loaders={"face": slow})
    with TestClient(app) as client:
        assert client.get("/v2/health/ready").status_code == 503
        assert client.get("/v2/models/face/ready").json() == {"name": "face", "ready": False}
        reply = client.post("/v2/models/face/infer", json={})
        assert (reply.status_code, reply.json()) == (
            503,
            {"error": "model 'face' is not ready (loading)"},
        )
        release.set()


def test_a_declared_signature(make_settings: Callable[..., Settings]) -> None:
    """A model declares its own tensors and function next to its loader: metadata and
    inference follow it; a failure inside it is a generic 500."""
    router = Router()

    @router.model_loader("doubler")
    def load(_: Settings) -> int:
        return 2

    def infer(model: int, inputs: dict, context: Any) -> dict:
        if inputs["x"].size and inputs["x"][0] < 0:
            raise RuntimeError("secret detail")
        return {"y": inputs["x"] * model}

    router.v2_signature(
        "doubler",
        V2Signature(
            inputs=(TensorSpec("x", "INT64", (-1,)),),
            outputs=(TensorSpec("y", "INT64", (-1,)),),
            infer=infer,
        ),
    )
    app = get_app(make_settings(), routers=[router])
    with TestClient(app) as client:
        wait_ready(client, PREFIX)
        meta = client.get("/v2/models/doubler").json()
        assert meta["inputs"] == [{"name": "x", "datatype": "INT64", "shape": [-1]}]
        body = {"inputs": [{"name": "x", "datatype": "INT64", "shape": [3], "data": [1, 2, 3]}]}
        output = client.post("/v2/models/doubler/infer", json=body).json()["outputs"][0]
        assert output == {"name": "y", "datatype": "INT64", "shape": [3], "data": [2, 4, 6]}
        body["inputs"][0]["data"] = [-1, 0, 0]
        reply = client.post("/v2/models/doubler/infer", json=body)
        assert (reply.status_code, reply.json()) == (500, {"error": "Internal Server Error"})


def test_the_switch_turns_v2_off(make_settings: Callable[..., Settings]) -> None:
    """V2_SWITCH=false: no v2 route, at the root or under the prefix, nor in the document."""
    with TestClient(make_app(make_settings(v2_switch=False))) as client:
        assert client.get("/v2").status_code == 404
        assert client.get(f"{PREFIX}/v2/health/live").json()["code"] == 404
        assert not [path for path in client.get("/openapi.json").json()["paths"] if "/v2" in path]


def test_the_document_lists_the_prefixed_routes_once(client: TestClient) -> None:
    """/openapi.json holds the v2 routes under the prefix (the root copies are not listed),
    the infer request's schema, and both reply types."""
    paths = client.get("/openapi.json").json()["paths"]
    v2 = sorted(path for path in paths if "/v2" in path)
    assert all(path.startswith(PREFIX + "/v2") for path in v2) and len(v2) == 9
    infer = paths[PREFIX + "/v2/models/{model_name}/infer"]["post"]
    body = infer["requestBody"]["content"]["application/json"]["schema"]
    assert body["required"] == ["inputs"]
    assert set(infer["responses"]["200"]["content"]) == {
        "application/json",
        "application/octet-stream",
    }


def test_parse_request_keeps_binary_zero_copy() -> None:
    """A binary UINT8 input is a view on the body, not a copy."""
    image = np.arange(24, dtype=np.uint8).reshape(2, 4, 3)
    body, headers = binary_request([("image", "UINT8", [2, 4, 3], image.tobytes())])
    parsed = parse_request(body, headers["inference-header-content-length"])
    assert np.array_equal(parsed.inputs["image"], image)
    assert not parsed.inputs["image"].flags.owndata
    with pytest.raises(V2Error, match="belong to no input"):
        parse_request(body + b"x", headers["inference-header-content-length"])
