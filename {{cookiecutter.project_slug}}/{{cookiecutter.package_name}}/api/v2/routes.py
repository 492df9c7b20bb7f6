"""The Open Inference Protocol v2 routes, for every model of the atom (V2_SWITCH).

Mounted under ATOM_API_PREFIX (documented in ``/openapi.json``) and at the root, where
KServe and Triton clients look for them (same routes, left out of the document)::

    GET  /v2                                   server metadata
    GET  /v2/health/live, /v2/health/ready     liveness, readiness (503 until loaded)
    GET  /v2/models/{name}[/versions/1]        model metadata: its tensors
    GET  /v2/models/{name}[/versions/1]/ready  200 once the model is loaded, 503 before
    POST /v2/models/{name}[/versions/1]/infer  inference (JSON, or binary tensors)

Each model has one version, "1". Errors are ``{"error": "..."}``: 400 for a bad
request, 404 for an unknown model, version or path, 405 for a wrong method, 503 while
the model loads, 500 (message generic, details in the log) for a failure of ours.
"""

import logging
from collections.abc import Iterable, Mapping
from typing import Any

from fastapi import APIRouter, FastAPI, Request, Response
from starlette.concurrency import run_in_threadpool

from ... import __version__
from ...config import Settings
from ...errors import VqlError
from ...images.loader import ImageLoader
from ..model_store import READY, ModelStore
from ..mounting import include_flat
from ..router import Router as UdfAPIRoute
from ..schema.response import ORJSONResponse
from .schema import (
    InferenceRequest,
    InferenceResponse,
    ModelMetadata,
    ModelReady,
    ServerLive,
    ServerMetadata,
    ServerReady,
    V2ErrorBody,
    inline_schema,
)
from .signature import InferContext, V2Signature, detector_signature
from .tensors import HEADER_LENGTH, InferRequest, V2Error, decompress, encode_response
from .tensors import parse_request as parse_infer_request

logger = logging.getLogger(__name__)

ROOT = "/v2"
VERSION = "1"
EXTENSIONS = ["binary_tensor_data"]
INTERNAL_MSG = "Internal Server Error"
MAX_SHOWN = 64


def error(msg: str, status: int, headers: Mapping[str, str] | None = None) -> ORJSONResponse:
    """The protocol's error reply."""
    return ORJSONResponse({"error": msg}, status, headers=headers)


def _errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    return {status: {"model": V2ErrorBody, "description": "error"} for status in statuses}


def collect_signatures(
    routers: Iterable[APIRouter], model_names: Iterable[str]
) -> dict[str, V2Signature]:
    """The signature of every model: declared by its router, else the detector's default."""
    declared: dict[str, V2Signature] = {}
    for router in routers:
        declared.update(getattr(router, "v2_signatures", {}))
    return {name: declared.get(name) or detector_signature() for name in model_names}


class V2State:
    """What the v2 routes read: the models, their signatures, the image limits."""

    def __init__(
        self, store: ModelStore, signatures: dict[str, V2Signature], images: ImageLoader, name: str
    ) -> None:
        self.store = store
        self.signatures = signatures
        self.images = images
        self.name = name

    def signature(self, model: str, version: str | None) -> V2Signature:
        """The model's signature; 404 for an unknown model or version."""
        signature = self.signatures.get(model)
        if signature is None:
            raise V2Error(f"unknown model {model[:MAX_SHOWN]!r}", 404)
        if version is not None and version != VERSION:
            raise V2Error(f"model {model!r} has no version {version[:MAX_SHOWN]!r}", 404)
        return signature

    def metadata(self, model: str, version: str | None) -> dict[str, Any]:
        signature = self.signature(model, version)
        return {
            "name": model,
            "versions": [VERSION],
            "platform": signature.platform,
            "inputs": [spec.metadata() for spec in signature.inputs],
            "outputs": [spec.metadata() for spec in signature.outputs],
        }


def _state(request: Request) -> V2State:
    return request.app.state.v2


def _check_inputs(signature: V2Signature, parsed: InferRequest) -> None:
    declared = {spec.name for spec in signature.inputs}
    for name in parsed.inputs:
        if name not in declared:
            raise V2Error(f"unknown input {name[:MAX_SHOWN]!r}")
    for spec in signature.inputs:
        datatype = parsed.datatypes.get(spec.name)
        if datatype is None:
            raise V2Error(f"input {spec.name!r} is missing")
        if datatype not in (spec.datatype, *spec.accepts):
            allowed = " or ".join((spec.datatype, *spec.accepts))
            raise V2Error(f"input {spec.name!r} must be {allowed}, not {datatype}")


def _binary(parameters: Mapping[str, Any], key: str, default: bool, what: str) -> bool:
    value = parameters.get(key, default)
    if not isinstance(value, bool):
        raise V2Error(f"{what}: {key} must be true or false")
    return value


def _selected(signature: V2Signature, parsed: InferRequest) -> list[tuple[str, bool]]:
    """The outputs to send, each with whether it goes in binary."""
    default = _binary(parsed.parameters, "binary_data_output", False, "the request")
    if parsed.outputs is None:
        return [(spec.name, default) for spec in signature.outputs]
    selected = []
    for output in parsed.outputs:
        spec = signature.output(output["name"])
        parameters = output.get("parameters") or {}
        selected.append((spec.name, _binary(parameters, "binary_data", default, spec.name)))
    return selected


def refused(model_name: str, exc: V2Error | VqlError) -> Response:
    """The protocol's error for a refused inference (a VqlError's headers kept), logged."""
    logger.info("v2 infer %s -> %d %s", model_name[:MAX_SHOWN], exc.status, exc.msg)
    return error(exc.msg, exc.status, getattr(exc, "headers", None))


def run_inference(
    state: V2State, model_name: str, model: Any, *, body: bytes, headers: Any, limit: int
) -> Response:
    """Decompress, parse (once), infer and encode, in a worker thread: nothing of it on
    the event loop. A refusal is answered here: an exception carried back to the event
    loop keeps the frames of this thread, with their tensors and images, alive until a
    garbage collection (the memory account saw them as held, rightly)."""
    try:
        return _inference(state, model_name, model, body=body, headers=headers, limit=limit)
    except (V2Error, VqlError) as exc:
        return refused(model_name, exc)


def _inference(
    state: V2State, model_name: str, model: Any, *, body: bytes, headers: Any, limit: int
) -> Response:
    signature = state.signatures[model_name]
    body = decompress(body, headers.get("content-encoding"), limit)
    parsed = parse_infer_request(body, headers.get(HEADER_LENGTH))
    _check_inputs(signature, parsed)
    selected = _selected(signature, parsed)
    context = InferContext(parameters=parsed.parameters, images=state.images)
    produced = signature.infer(model, parsed.inputs, context)
    outputs = []
    for name, binary in selected:
        if name not in produced:
            raise RuntimeError(f"the v2 function of {model_name!r} did not produce {name!r}")
        datatype = signature.output(name).datatype
        outputs.append((name, datatype, produced[name], binary))
    head: dict[str, Any] = {"model_name": model_name, "model_version": VERSION}
    if parsed.id is not None:
        head["id"] = parsed.id
    content, json_length = encode_response(head, outputs)
    if json_length is None:
        return Response(content, media_type="application/json")
    return Response(
        content,
        media_type="application/octet-stream",
        headers={"Inference-Header-Content-Length": str(json_length)},
    )


async def infer_reply(request: Request, model_name: str, version: str | None) -> Response:
    """One inference, every failure as the protocol's error."""
    try:
        state = _state(request)
        state.signature(model_name, version)  # 404 for an unknown model or version
        if state.store.status.get(model_name) != READY:
            state_name = state.store.status.get(model_name, "unknown")
            raise V2Error(f"model {model_name!r} is not ready ({state_name})", 503)
        model = state.store.models[model_name]
        limit = request.app.state.settings.atom_max_body_bytes
        body = await request.body()
        return await run_in_threadpool(
            run_inference,
            state,
            model_name,
            model,
            body=body,
            headers=request.headers,
            limit=limit,
        )
    except (V2Error, VqlError) as exc:
        return refused(model_name, exc)
    except Exception:
        logger.exception("v2 infer of %r failed", model_name[:MAX_SHOWN])
        return error(INTERNAL_MSG, 500)


def _model_ready(request: Request, model_name: str, version: str | None) -> Response:
    state = _state(request)
    try:
        state.signature(model_name, version)
    except V2Error as exc:
        return error(exc.msg, exc.status)
    ready = state.store.status.get(model_name) == READY
    return ORJSONResponse({"name": model_name, "ready": ready}, 200 if ready else 503)


def _model_metadata(request: Request, model_name: str, version: str | None) -> Response:
    try:
        return ORJSONResponse(_state(request).metadata(model_name, version))
    except V2Error as exc:
        return error(exc.msg, exc.status)


INFER_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": inline_schema(InferenceRequest)},
            "application/octet-stream": {
                "schema": {
                    "type": "string",
                    "format": "binary",
                    "description": "the JSON request, then the binary tensors (its length"
                    " in the Inference-Header-Content-Length header)",
                }
            },
        },
    }
}
BINARY_REPLY = {
    "application/octet-stream": {
        "schema": {"type": "string", "format": "binary"},
        "description": "JSON then binary outputs (Inference-Header-Content-Length)",
    }
}


def build_routers(include_in_schema: bool) -> list[APIRouter]:
    """The v2 routes: probes and metadata (logged at DEBUG), inference (logged)."""
    probes = UdfAPIRoute(tags=["v2"], quiet=True, responses={}, include_in_schema=include_in_schema)
    infers = UdfAPIRoute(tags=["v2"], responses={}, include_in_schema=include_in_schema)

    @probes.get(ROOT, response_model=ServerMetadata, summary="v2 server metadata")
    async def server_metadata(request: Request) -> Any:
        """The atom's name and version, and the protocol extensions it supports."""
        name = _state(request).name
        return {"name": name, "version": __version__, "extensions": EXTENSIONS}

    @probes.get(f"{ROOT}/health/live", response_model=ServerLive, summary="v2 server live")
    async def server_live() -> Any:
        """Always ``{"live": true}`` while the process serves."""
        return {"live": True}

    @probes.get(
        f"{ROOT}/health/ready",
        response_model=ServerReady,
        responses={503: {"model": ServerReady, "description": "models not loaded yet"}},
        summary="v2 server ready",
    )
    async def server_ready(request: Request) -> Any:
        """200 once every model is loaded, 503 before."""
        ready = _state(request).store.ready
        return ORJSONResponse({"ready": ready}, 200 if ready else 503)

    model_path = ROOT + "/models/{model_name}"
    version_path = model_path + "/versions/{model_version}"
    metadata_docs: dict[str, Any] = {"response_model": ModelMetadata, "responses": _errors(404)}
    ready_docs: dict[str, Any] = {
        "response_model": ModelReady,
        "responses": {**_errors(404), 503: {"model": ModelReady, "description": "loading"}},
    }

    @probes.get(model_path, summary="v2 model metadata", **metadata_docs)
    async def model_metadata(request: Request, model_name: str) -> Any:
        """The model's input and output tensors."""
        return _model_metadata(request, model_name, None)

    @probes.get(version_path, summary="v2 model metadata (version)", **metadata_docs)
    async def version_metadata(request: Request, model_name: str, model_version: str) -> Any:
        """The model's input and output tensors (its only version is "1")."""
        return _model_metadata(request, model_name, model_version)

    @probes.get(f"{model_path}/ready", summary="v2 model ready", **ready_docs)
    async def model_ready(request: Request, model_name: str) -> Any:
        """200 once the model is loaded, 503 before."""
        return _model_ready(request, model_name, None)

    @probes.get(f"{version_path}/ready", summary="v2 model ready (version)", **ready_docs)
    async def version_ready(request: Request, model_name: str, model_version: str) -> Any:
        """200 once the model is loaded, 503 before."""
        return _model_ready(request, model_name, model_version)

    infer_docs: dict[str, Any] = {
        "response_model": InferenceResponse,
        "responses": {200: {"content": BINARY_REPLY}, **_errors(400, 404, 413, 415, 500, 503)},
        "openapi_extra": INFER_BODY,
    }

    @infers.post(f"{model_path}/infer", summary="v2 inference", **infer_docs)
    async def infer(request: Request, model_name: str) -> Any:
        """Run the model on the input tensors (JSON, or binary tensors after the JSON)."""
        return await infer_reply(request, model_name, None)

    @infers.post(f"{version_path}/infer", summary="v2 inference (version)", **infer_docs)
    async def version_infer(request: Request, model_name: str, model_version: str) -> Any:
        """Run the model on the input tensors (its only version is "1")."""
        return await infer_reply(request, model_name, model_version)

    return [probes, infers]


def install_v2(app: FastAPI, routers: Iterable[APIRouter], settings: Settings) -> None:
    """Mount the v2 routes under ATOM_API_PREFIX and at the root, for the app's models."""
    store: ModelStore = app.state.models
    signatures = collect_signatures(routers, store.loaders)
    app.state.v2 = V2State(store, signatures, app.state.image_loader, settings.atom_title)
    prefix = settings.atom_api_prefix
    for router in build_routers(include_in_schema=True):
        include_flat(app, router, prefix)
    if prefix:
        for router in build_routers(include_in_schema=False):
            include_flat(app, router, "")
    # Every error under the v2 roots, the middleware's and FastAPI's 404/405 included, is
    # the protocol's body.
    roots = tuple(dict.fromkeys((prefix + ROOT, ROOT)))
    app.state.error_bodies = [
        *getattr(app.state, "error_bodies", ()),
        (roots, lambda status, msg, headers: error(msg, status, headers)),
    ]
