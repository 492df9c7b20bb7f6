"""A JSON body parsed once: the value the call log parsed is the one FastAPI validates.

The call log parses a JSON body to summarise it (``api/call_log.py``); ``reuse`` hands
that value to ``await request.json()``, which FastAPI's handler and the direct handler
call, so the body is not parsed a second time. It does so only when the value is the one
the json module (which Starlette uses) would make of the same body
(``as_json_module_reads``), and only while Starlette's ``request._json`` behaves as
expected (``api/guards.py``: otherwise the body is simply parsed again).

TODO(i23t): this is one of the speed tricks measured in ``bench_choices``; it stays only
if its row wins (issue 23 item 2), together with the call line's body handling.
"""

from typing import Any

from starlette.requests import Request

from .guards import PARSED_JSON

NOT_JSON = object()  # a body that is not JSON (or not read as JSON)
WIDE_INT = 2.0**63  # orjson reads integer literals from -2**63 to 2**64 - 1 exactly
NESTED = frozenset({float, dict, list})  # what as_json_module_reads looks into
NUMBERS = frozenset({int, float, bool})
LONG_LIST = 64  # items from which a list of numbers is checked by its bounds


def reuse(request: Request, value: Any) -> None:
    """Let ``await request.json()`` return ``value`` (parsed by orjson from its body)."""
    if value is not NOT_JSON and PARSED_JSON.ok and as_json_module_reads(value):
        request._json = value


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
