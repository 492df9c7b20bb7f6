"""Values made safe for a log line: one line, secrets hidden, long values cut.

``escape_for_log`` keeps a value on its line (control characters escaped),
``redact_url_secrets`` and ``redact_headers`` hide credentials, ``summarize`` and
``format_long`` turn a body into a short JSON summary. Every log line the atom writes
about a request goes through these.
"""

import functools
import re
from collections.abc import Mapping
from typing import Any

import orjson

# Keys whose values are secrets: headers, JSON fields, query parameters (S3 and GCS
# signatures and credentials, Azure's sig, API keys, OAuth tokens, JWTs...). A name is
# matched after its camelCase humps are split (``accessKey`` is ``access_Key``).
SECRET_KEY_RE = re.compile(
    r"authorization|cookie|token|secret|passw(or)?d|pwd|api[-_]?key|credential|session"
    r"|signature|jwt|(^|[-_.])(key|sig|auth|pass|otp)($|[-_.])",
    re.I,
)
# Names of URL parameters (query and fragment) that hide their value besides those: OAuth's
# authorization code, SAML assertions, tickets, session ids. Not for JSON keys: the
# envelope's own ``code`` is no secret.
SECRET_PARAM_RE = re.compile(
    SECRET_KEY_RE.pattern + r"|ticket|assertion|saml|bearer|sessid|(^|[-_.])(code|sid)($|[-_.])",
    re.I,
)
CAMEL_HUMP_RE = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")
REDACTED = "***"
# Lower-case substrings of every text that redaction changes (each name either regex
# matches holds one; a URL's userinfo holds "@", its fragment "#"): a fast first test.
SECRET_WORDS = (
    b"authorization",
    b"cookie",
    b"token",
    b"secret",
    b"pass",
    b"pwd",
    b"key",
    b"credential",
    b"session",
    b"sig",
    b"auth",
    b"jwt",
    b"otp",
    b"ticket",
    b"assertion",
    b"saml",
    b"bearer",
    b"code",
    b"sid",
    b"@",
    b"#",
)
# In any text: the userinfo of a URL (``user:password@``, up to the last "@" before the
# host: a password may hold any character, quotes and "@" included), its fragment (never
# sent to a server: ``#access_token=`` and the like), and name=value pairs of a query or
# fragment, the value running to the next "&", "#" or blank whatever it holds.
URL_USERINFO_RE = re.compile(r"(?i)\b([a-z][a-z0-9+.-]{0,15}://)[^/?#\s]*@")
URL_FRAGMENT_RE = re.compile(r"(?i)(\b[a-z][a-z0-9+.-]{0,15}://[^#\s]*)#[^\s]+")
PARAM_RE = re.compile(r"(^|[?&;#\s\"'<>(\[{,])([^=&#?/:;\s\"'<>]{1,64})=([^&#\s]*)")
# What could end a log line, fake another or drive a terminal: C0 and C1 controls, DEL,
# the Unicode line and paragraph separators. None of them is printable (str.isprintable).
LOG_UNSAFE_RE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
LOG_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def escape_for_log(text: str) -> str:
    """``text`` on one line: control characters written as escapes (``\\n``, ``\\x1b``...)."""
    if text.isprintable():  # the common case; the substitution keeps any other safe text
        return text
    return LOG_UNSAFE_RE.sub(_escape_char, text)


def _escape_char(match: re.Match[str]) -> str:
    char = match[0]
    code = ord(char)
    return LOG_ESCAPES.get(char) or (f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")


def redact_url_secrets(text: str) -> str:
    """``text`` with URL credentials (``user:pass@``), fragments and secret-looking
    parameters hidden.

    Parameters are hidden by name (``SECRET_PARAM_RE``: ``sig``, ``key``, ``access_token``,
    ``X-Amz-Signature``, ``jwt``, ``code``...), wherever they are in the text, whatever
    their value holds; the rest is kept.
    """
    if "@" not in text and "=" not in text and "#" not in text:
        return text
    if "@" in text:
        text = URL_USERINFO_RE.sub(rf"\1{REDACTED}@", text)
    if "=" in text:
        text = PARAM_RE.sub(_hide_param, text)
    if "#" in text:
        text = URL_FRAGMENT_RE.sub(rf"\1#{REDACTED}", text)
    return text


def _hide_param(match: re.Match[str]) -> str:
    return f"{match[1]}{match[2]}={REDACTED}" if _is_secret_param(match[2]) else match[0]


def summarize(value: Any, *, max_chars: int = 200, max_items: int = 20, depth: int = 4) -> Any:
    """Return a JSON-safe, log-sized copy of a value.

    Long strings are cut (their length is kept), bytes and arrays are summarised,
    long containers are trimmed and values under secret-looking keys are redacted.
    """
    return _summarize(value, max_chars, max_items, depth)


def _summarize(value: Any, max_chars: int, max_items: int, depth: int) -> Any:
    kind = type(value)  # exact types first: JSON bodies hold nothing else
    if kind in _SCALARS:
        return value
    if kind is str:
        return redact_url_secrets(value if len(value) <= max_chars else _cut(value, max_chars))
    if kind is dict:
        return _summarize_mapping(value, max_chars, max_items, depth)
    if kind is list:
        return _summarize_items(value, max_chars, max_items, depth)
    return _summarize_other(value, max_chars, max_items, depth)


def _summarize_other(value: Any, max_chars: int, max_items: int, depth: int) -> Any:
    """``summarize`` for subclasses, bytes, arrays, other containers and objects."""
    if isinstance(value, bool | int | float):
        return value
    if isinstance(value, str):
        return _summarize(str(value), max_chars, max_items, depth)
    if isinstance(value, bytes | bytearray | memoryview):
        return f"<{len(value)} bytes>"
    if hasattr(value, "shape") and hasattr(value, "dtype"):
        return f"<array shape={tuple(value.shape)} dtype={value.dtype}>"
    if isinstance(value, Mapping):
        return _summarize_mapping(value, max_chars, max_items, depth)
    if isinstance(value, list | tuple | set | frozenset):
        return _summarize_items(list(value), max_chars, max_items, depth)
    # Exceptions and other objects: their text.
    text = str(value) if isinstance(value, BaseException) else repr(value)
    return _summarize(text, max_chars, max_items, depth)


_SCALARS = frozenset({int, float, bool, type(None)})


def _cut(text: str, max_chars: int) -> str:
    return f"{text[:max_chars]}...({len(text)} chars)"


def _summarize_items(items: list[Any], max_chars: int, max_items: int, depth: int) -> Any:
    """``summarize`` for sequences: the first ``max_items`` items and a count of the rest."""
    if depth <= 0:
        return "<...>"
    head = items[:max_items]
    if not all(type(item) in _SCALARS for item in head):  # numbers are the common case
        head = [_summarize(item, max_chars, max_items, depth - 1) for item in head]
    if len(items) > max_items:
        head.append(f"...({len(items)} items)")
    return head


def _summarize_mapping(value: Mapping, max_chars: int, max_items: int, depth: int) -> Any:
    """``summarize`` for mappings: keys as strings, secrets redacted, long ones trimmed."""
    if depth <= 0:
        return "<...>"
    out: dict[str, Any] = {}
    for index, (key, item) in enumerate(value.items()):
        if index == max_items:
            out["..."] = f"({len(value)} keys)"
            break
        name = key if type(key) is str else str(key)
        if secret_name(name):
            out[name] = REDACTED
        elif type(item) in _SCALARS:
            out[name] = item
        else:
            out[name] = _summarize(item, max_chars, max_items, depth - 1)
    return out


def secret_name(name: str) -> bool:
    """Whether a key (header, JSON field) names a secret."""
    if len(name) <= 64:
        return _is_secret(name)
    return SECRET_KEY_RE.search(CAMEL_HUMP_RE.sub("_", name)) is not None


@functools.lru_cache(maxsize=4096)
def _is_secret(name: str) -> bool:
    """Whether a key names a secret (cached: bodies repeat the same few keys)."""
    return SECRET_KEY_RE.search(CAMEL_HUMP_RE.sub("_", name)) is not None


@functools.lru_cache(maxsize=4096)
def _is_secret_param(name: str) -> bool:
    """Whether a URL parameter names a secret (cached: logs repeat the same few names)."""
    return SECRET_PARAM_RE.search(CAMEL_HUMP_RE.sub("_", name)) is not None


def format_long(value: Any, *, max_chars: int = 200, max_items: int = 20) -> str:
    """One compact line for a log: ``summarize`` rendered as JSON."""
    summary = summarize(value, max_chars=max_chars, max_items=max_items)
    return orjson.dumps(summary).decode()


def redact_headers(headers: Mapping[str, str] | Any) -> dict[str, str]:
    """Headers or query parameters as a dict, the values of credential-like names hidden
    (Authorization, Cookie, tokens, keys, ``jwt``, ``code``...: ``SECRET_PARAM_RE``)."""
    return {
        str(key): REDACTED if _secret_param_name(str(key)) else str(val)
        for key, val in dict(headers).items()
    }


def _secret_param_name(name: str) -> bool:
    if len(name) <= 64:
        return _is_secret_param(name)
    return SECRET_PARAM_RE.search(CAMEL_HUMP_RE.sub("_", name)) is not None
