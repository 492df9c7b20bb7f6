"""Tensors of the Open Inference Protocol v2: JSON and the binary tensor extension.

A request body is a JSON object, optionally followed by binary data: the
``Inference-Header-Content-Length`` header then gives the length of the JSON part, and
each input whose ``parameters`` hold ``binary_data_size`` takes that many bytes of the
rest, in input order. Binary tensors are little-endian, row-major, without padding; a
``BYTES`` element is a 4-byte little-endian length followed by its bytes. Outputs are
sent in binary when the request asks (``binary_data`` on a requested output, or
``binary_data_output`` in the request's parameters), after the JSON part in the same way.

Every problem with a request is a ``V2Error`` (HTTP 400 unless said otherwise), whose
message goes to the caller as ``{"error": "..."}``. What the parse makes is held in the
request's memory account before it is made (``memory.py``): the decompressed body, the
objects of the JSON part (``json_size``, an upper bound counted in C), JSON numbers
turned into an array, and the copies of binary ``BYTES`` elements.
"""

import math
import struct
import zlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson

from ...memory import current_account

HEADER_LENGTH = "inference-header-content-length"
DTYPES: dict[str, np.dtype] = {
    "BOOL": np.dtype(np.bool_),
    "UINT8": np.dtype("<u1"),
    "UINT16": np.dtype("<u2"),
    "UINT32": np.dtype("<u4"),
    "UINT64": np.dtype("<u8"),
    "INT8": np.dtype("<i1"),
    "INT16": np.dtype("<i2"),
    "INT32": np.dtype("<i4"),
    "INT64": np.dtype("<i8"),
    "FP16": np.dtype("<f2"),
    "FP32": np.dtype("<f4"),
    "FP64": np.dtype("<f8"),
    "BYTES": np.dtype(object),
}
MAX_NAME = 256
MAX_BYTES_DEPTH = 8  # nesting of a JSON BYTES tensor's data
MAX_DIMS = 32  # numpy takes 64
MAX_ELEMENTS = 1 << 40  # of a shape, its zero dimensions read as 1 (numpy's own bound)
MAX_LENGTH_DIGITS = 18  # of Inference-Header-Content-Length
INFLATE_CHUNK = 1 << 20  # bytes inflated (and held) at a time
# What orjson makes of a JSON text, at most, per byte and per separator: every element
# an object of up to 40 bytes plus its pointer, every array or object 72 bytes.
JSON_PER_COMMA = 48
JSON_PER_CONTAINER = 72


class V2Error(Exception):
    """A request the protocol refuses: ``{"error": msg}`` with ``status``."""

    def __init__(self, msg: str, status: int = 400) -> None:
        super().__init__(msg)
        self.msg = msg
        self.status = status


@dataclass
class InferRequest:
    """A parsed inference request: named input arrays, parameters, requested outputs."""

    inputs: dict[str, np.ndarray]
    datatypes: dict[str, str]
    parameters: dict[str, Any] = field(default_factory=dict)
    outputs: list[dict[str, Any]] | None = None
    id: str | None = None


def decompress(body: bytes, encoding: str | None, max_bytes: int) -> bytes:
    """The body without its gzip or deflate Content-Encoding, never above ``max_bytes``."""
    if not encoding or encoding == "identity":
        return body
    wbits = {"gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}.get(encoding.lower())
    if wbits is None:
        raise V2Error(f"Content-Encoding {encoding[:20]!r} is not supported", 415)
    inflater, account = zlib.decompressobj(wbits), current_account()
    raw, pending = bytearray(), body
    try:
        while pending and len(raw) <= max_bytes:
            account.take(INFLATE_CHUNK, "the decompressed body")
            raw += inflater.decompress(pending, INFLATE_CHUNK)
            pending = inflater.unconsumed_tail
    except zlib.error:
        raise V2Error(f"the body is not valid {encoding}") from None
    if len(raw) > max_bytes:
        raise V2Error(f"the decompressed body is above {max_bytes} bytes", 413)
    return bytes(raw)


def json_size(body: bytes, end: int) -> int:
    """At most the bytes orjson allocates to parse ``body[:end]``, from counts made in C."""
    commas = body.count(b",", 0, end) + body.count(b":", 0, end) + 1
    containers = body.count(b"[", 0, end) + body.count(b"{", 0, end)
    return end + JSON_PER_COMMA * commas + JSON_PER_CONTAINER * containers


def split_body(body: bytes, header_length: str | None) -> tuple[Any, memoryview]:
    """The JSON part, parsed (its objects held first), and the binary part of a body."""
    view = memoryview(body)
    if header_length is None:
        end = len(body)
    else:
        digits = header_length.strip()
        if not (digits.isascii() and digits.isdigit() and len(digits) <= MAX_LENGTH_DIGITS):
            raise V2Error("Inference-Header-Content-Length must be a length within the body")
        end = int(digits)
        if end > len(body):
            raise V2Error("Inference-Header-Content-Length must be a length within the body")
    current_account().take(json_size(body, end), "the parse of the JSON part")
    try:
        return orjson.loads(view[:end]), view[end:]
    except orjson.JSONDecodeError:
        raise V2Error("the request's JSON part is not valid JSON") from None


def _name(value: Any, what: str) -> str:
    if not isinstance(value, str) or not value or len(value) > MAX_NAME:
        raise V2Error(f"{what} must be a non-empty string of at most {MAX_NAME} characters")
    return value


def _shape(value: Any, name: str) -> tuple[int, ...]:
    if not isinstance(value, list) or not all(
        type(dim) is int and 0 <= dim < 2**63 for dim in value
    ):
        raise V2Error(f"input {name!r}: shape must be a list of non-negative integers")
    if len(value) > MAX_DIMS:
        raise V2Error(f"input {name!r}: {len(value)} dimensions, at most {MAX_DIMS}")
    if math.prod(max(dim, 1) for dim in value) > MAX_ELEMENTS:
        raise V2Error(f"input {name!r}: shape {value} is too large", 413)
    return tuple(value)


def _parameters(value: Any, what: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise V2Error(f"{what}: parameters must be an object")
    return value


def _flat_strings(data: Any, name: str, depth: int = 0) -> Iterable[Any]:
    """The elements of a JSON BYTES tensor (nested or flat), each a string."""
    if isinstance(data, str):
        yield data
    elif isinstance(data, list) and depth < MAX_BYTES_DEPTH:
        for item in data:
            yield from _flat_strings(item, name, depth + 1)
    else:
        raise V2Error(f"input {name!r}: BYTES data must be strings")


def _from_json(data: Any, datatype: str, shape: tuple[int, ...], name: str) -> np.ndarray:
    count = math.prod(shape)
    if datatype == "BYTES":
        elements = list(_flat_strings(data, name))
        array = np.empty(len(elements), dtype=object)
        array[:] = elements
    else:
        if not isinstance(data, list):
            raise V2Error(f"input {name!r}: data must be a JSON array")
        current_account().take(count * DTYPES[datatype].itemsize, f"input {name!r}")
        try:
            array = np.asarray(data, dtype=DTYPES[datatype]).reshape(-1)
        except (ValueError, TypeError, OverflowError):
            raise V2Error(f"input {name!r}: data does not hold {datatype} numbers") from None
    if array.size != count:
        raise V2Error(f"input {name!r}: {array.size} elements for shape {list(shape)}")
    return array.reshape(shape)


def parse_bytes_elements(raw: memoryview, count: int, name: str) -> np.ndarray:
    """A binary BYTES tensor: ``count`` length-prefixed elements filling ``raw`` exactly."""
    elements, offset = [], 0
    while offset < len(raw):
        if offset + 4 > len(raw):
            raise V2Error(f"input {name!r}: a BYTES element's length is cut")
        (size,) = struct.unpack_from("<I", raw, offset)
        offset += 4
        if offset + size > len(raw):
            raise V2Error(f"input {name!r}: a BYTES element runs past its binary data")
        elements.append(bytes(raw[offset : offset + size]))
        offset += size
    if len(elements) != count:
        raise V2Error(f"input {name!r}: {len(elements)} BYTES elements, its shape says {count}")
    array = np.empty(count, dtype=object)
    array[:] = elements
    return array


def _from_binary(raw: memoryview, datatype: str, shape: tuple[int, ...], name: str) -> np.ndarray:
    count = math.prod(shape)
    if datatype == "BYTES":
        current_account().take(len(raw), f"input {name!r}")  # the elements, copied
        return parse_bytes_elements(raw, count, name).reshape(shape)
    dtype = DTYPES[datatype]
    if len(raw) != count * dtype.itemsize:
        raise V2Error(
            f"input {name!r}: {len(raw)} bytes of binary data, {datatype} {list(shape)}"
            f" needs {count * dtype.itemsize}"
        )
    return np.frombuffer(raw, dtype=dtype).reshape(shape)


def parse_inputs(items: Any, binary: memoryview) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """The input tensors of a request, by name, and their datatypes."""
    if not isinstance(items, list) or not items:
        raise V2Error("inputs must be a non-empty list")
    arrays: dict[str, np.ndarray] = {}
    datatypes: dict[str, str] = {}
    offset = 0
    for item in items:
        if not isinstance(item, dict):
            raise V2Error("each input must be an object")
        name = _name(item.get("name"), "an input's name")
        if name in arrays:
            raise V2Error(f"input {name!r} is given twice")
        datatype = item.get("datatype")
        if datatype not in DTYPES:
            raise V2Error(f"input {name!r}: datatype {str(datatype)[:20]!r} is not supported")
        shape = _shape(item.get("shape"), name)
        size = _parameters(item.get("parameters"), f"input {name!r}").get("binary_data_size")
        if size is not None:
            if type(size) is not int or size < 0 or offset + size > len(binary):
                raise V2Error(f"input {name!r}: binary_data_size is beyond the binary data")
            arrays[name] = _from_binary(binary[offset : offset + size], datatype, shape, name)
            offset += size
        elif "data" in item:
            arrays[name] = _from_json(item["data"], datatype, shape, name)
        else:
            raise V2Error(f"input {name!r} has neither data nor binary_data_size")
        datatypes[name] = datatype
    if offset != len(binary):
        raise V2Error(f"{len(binary) - offset} bytes of binary data belong to no input")
    return arrays, datatypes


def parse_request(body: bytes, header_length: str | None) -> InferRequest:
    """An inference request from its body and its Inference-Header-Content-Length."""
    document, binary = split_body(body, header_length)
    if not isinstance(document, dict):
        raise V2Error("the request must be a JSON object")
    inputs, datatypes = parse_inputs(document.get("inputs"), binary)
    outputs = document.get("outputs")
    if outputs is not None:
        if not isinstance(outputs, list) or not all(isinstance(o, dict) for o in outputs):
            raise V2Error("outputs must be a list of objects")
        for output in outputs:
            _name(output.get("name"), "an output's name")
            _parameters(output.get("parameters"), f"output {output['name']!r}")
    request_id = document.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise V2Error("id must be a string")
    parameters = _parameters(document.get("parameters"), "the request")
    return InferRequest(inputs, datatypes, parameters, outputs, request_id)


def bytes_element(value: Any) -> bytes:
    """One BYTES element as bytes (text is UTF-8)."""
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value)
    return str(value).encode("utf-8")


def serialize_bytes(array: np.ndarray) -> bytes:
    """A BYTES tensor in the binary form: each element length-prefixed, row-major."""
    parts = []
    for value in array.reshape(-1):
        element = bytes_element(value)
        parts.append(struct.pack("<I", len(element)))
        parts.append(element)
    return b"".join(parts)


def json_data(array: np.ndarray, datatype: str) -> list[Any]:
    """A tensor's elements, flat, as JSON values (BYTES as text)."""
    if datatype == "BYTES":
        return [bytes_element(v).decode("utf-8", "backslashreplace") for v in array.reshape(-1)]
    return array.reshape(-1).tolist()


def encode_output(
    name: str, datatype: str, array: np.ndarray, binary: bool
) -> tuple[dict[str, Any], bytes | None]:
    """One output tensor: its JSON object and, when sent in binary, its bytes."""
    output: dict[str, Any] = {"name": name, "datatype": datatype, "shape": list(array.shape)}
    if not binary:
        output["data"] = json_data(array, datatype)
        return output, None
    if datatype == "BYTES":
        raw = serialize_bytes(array)
    else:
        raw = np.ascontiguousarray(array, dtype=DTYPES[datatype]).tobytes()
    output["parameters"] = {"binary_data_size": len(raw)}
    return output, raw


def encode_response(
    head: Mapping[str, Any],
    outputs: Sequence[tuple[str, str, np.ndarray, bool]],
) -> tuple[bytes, int | None]:
    """The response body and, when it carries binary data, the length of its JSON part."""
    objects, chunks = [], []
    for name, datatype, array, binary in outputs:
        output, raw = encode_output(name, datatype, array, binary)
        objects.append(output)
        if raw is not None:
            chunks.append(raw)
    document = orjson.dumps({**head, "outputs": objects})
    if not chunks:
        return document, None
    return b"".join([document, *chunks]), len(document)
