"""JSON request bodies: parsed once, refused before they grow, large ones off the event loop.

``JsonRequest`` is the request that the routes of ``Router`` with a JSON body get (the
route class, ``api/call_log.py``, wraps FastAPI's request in it): its ``json()``, which
FastAPI's handler and the direct handler (``api/handler.py``) both call, parses the body
once with ``loads`` and keeps the value, so the call log summarises it without parsing.
Subclassing ``Request`` is FastAPI's documented way to change how a route reads its body.

``loads`` first bounds the body's structure from its bytes, before anything is allocated:
its commas, brackets and braces (an upper bound of the values it holds, a string's own
included) against ATOM_JSON_MAX_ITEMS (413), and its nesting against ATOM_JSON_MAX_DEPTH
(422). Ten megabytes of ``[],`` would otherwise become millions of Python lists. A body
above ``SMALL_BODY`` is checked and parsed in the thread pool, in slices small enough to
let the event loop run between them. A route that reads its body itself (v2's infer) is
not wrapped; ``loads`` gives it the same checks.

The parser is orjson (the template's ``bench_choices``: a list of numbers parses many
times faster than with the json module, and holds the GIL that much less). Where it reads
otherwise than the json module (FastAPI's parser), the json module decides, so a route gets
what FastAPI alone would give it: a body orjson refuses (a lone surrogate escape) is parsed
again with the json module, and so is one with an integer literal beyond 64 bits, which
orjson reads as a float (``as_json_module_reads``).
"""

import json
from collections.abc import AsyncGenerator
from itertools import accumulate
from typing import Any, NamedTuple

import orjson
from fastapi import HTTPException, Request
from starlette.concurrency import run_in_threadpool

SMALL_BODY = 16 * 1024  # bytes parsed on the event loop; larger bodies go to the thread pool
SLICE = 256 * 1024  # bytes counted at a time, so the event loop's thread gets the GIL back
WIDE_INT = 2.0**63  # orjson reads integer literals from -2**63 to 2**64 - 1 exactly
NESTED = frozenset({float, dict, list})  # what as_json_module_reads looks into
NUMBERS = frozenset({int, float, bool})
LONG_LIST = 64  # items from which a list of numbers is checked by its bounds
NOT_BRACKETS = bytes(sorted(set(range(256)) - set(b"[]{}")))
LEVEL = [0] * 256  # how each bracket moves the nesting level
LEVEL[ord("[")] = LEVEL[ord("{")] = 1
LEVEL[ord("]")] = LEVEL[ord("}")] = -1


class JsonLimits(NamedTuple):
    """ATOM_JSON_MAX_ITEMS and ATOM_JSON_MAX_DEPTH."""

    max_items: int
    max_depth: int


def check_structure(body: bytes, limits: JsonLimits) -> None:
    """Refuse a body with more items (413) or deeper nesting (422) than ``limits`` allow,
    from its bytes alone."""
    items = opens = 0
    for start in range(0, len(body), SLICE):
        end = start + SLICE
        sliced_opens = body.count(b"[", start, end) + body.count(b"{", start, end)
        opens += sliced_opens
        items += sliced_opens + body.count(b",", start, end)
        if items > limits.max_items:
            raise HTTPException(
                413, f"the JSON body holds more than {limits.max_items} items (ATOM_JSON_MAX_ITEMS)"
            )
    if opens > limits.max_depth and nesting(body) > limits.max_depth:
        raise HTTPException(
            422, f"the JSON body nests deeper than {limits.max_depth} (ATOM_JSON_MAX_DEPTH)"
        )


def nesting(body: bytes) -> int:
    """The deepest nesting of brackets and braces in ``body`` (a string's own included)."""
    level = deepest = 0
    for start in range(0, len(body), SLICE):
        brackets = body[start : start + SLICE].translate(None, NOT_BRACKETS)
        if brackets:
            levels = list(accumulate(map(LEVEL.__getitem__, brackets), initial=level))
            deepest, level = max(deepest, *levels), levels[-1]
    return deepest


def loads(body: bytes, limits: JsonLimits) -> Any:
    """The JSON value of ``body``, within ``limits`` (``HTTPException`` 413 or 422), as the
    json module reads it; ``json.JSONDecodeError`` when it is not JSON."""
    check_structure(body, limits)
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError:  # the json module's verdict (it reads lone surrogates)
        return json.loads(body)
    return value if as_json_module_reads(value) else json.loads(body)


async def parse(body: bytes, limits: JsonLimits) -> Any:
    """``loads``, in the thread pool when the body is above ``SMALL_BODY``."""
    if len(body) <= SMALL_BODY:
        return loads(body, limits)
    return await run_in_threadpool(loads, body, limits)


NOT_PARSED = object()


class JsonRequest(Request):
    """``request`` whose ``json()`` is ``parse`` of its body, made once and kept."""

    def __init__(self, request: Request, limits: JsonLimits) -> None:
        super().__init__(request.scope, request.receive)
        self.source = request
        self.json_limits = limits
        self.parsed: Any = NOT_PARSED  # the value, once parsed
        self.body_size: int | None = None  # the body's length, once read
        self.read: bytes | None = None  # the body, once read

    async def body(self) -> bytes:
        body = self.read
        if body is None:
            body = self.read = await self.source.body()
            self.body_size = len(body)
        return body

    async def stream(self) -> AsyncGenerator[bytes, None]:
        yield await self.body()
        yield b""

    async def json(self) -> Any:
        if self.parsed is NOT_PARSED:
            self.parsed = await parse(await self.body(), self.json_limits)
        return self.parsed


def as_json_module_reads(value: Any) -> bool:
    """True when ``value``, from ``orjson.loads``, is what ``json.loads`` makes of the same
    body. orjson reads an integer literal beyond 64 bits as a float (the json module keeps it
    exact): any integral float that large may be one, and makes this False.

    A long list of numbers (a tensor's data) is checked by its minimum and maximum,
    found in C, instead of a loop over its items.
    """
    pending = [value]
    while pending:
        item = pending.pop()
        kind = type(item)
        if kind is float:
            if _wide(item):
                return False
            continue
        if kind is not dict and kind is not list:
            continue
        values = item.values() if kind is dict else item
        if NESTED.isdisjoint(map(type, values)):
            continue  # strings, integers...: nothing orjson reads otherwise
        if kind is list and len(item) > LONG_LIST and set(map(type, item)) <= NUMBERS:
            if min(item) > -WIDE_INT and max(item) < WIDE_INT:
                continue
            if any(type(number) is float and _wide(number) for number in item):
                return False
            continue
        pending.extend(v for v in values if type(v) in NESTED)
    return True


def _wide(number: float) -> bool:
    """An integral float beyond what orjson reads as an integer."""
    return abs(number) >= WIDE_INT and number.is_integer()
