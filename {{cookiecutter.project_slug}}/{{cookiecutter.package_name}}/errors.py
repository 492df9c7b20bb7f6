"""The atom's error type: business codes with real HTTP statuses.

Raise ``VqlError(code)`` anywhere in a request; the error handler answers with the
envelope ``{"code": code, "msg": message, "data": data}`` and the HTTP status of the
table below (``linker_atom`` sent the business code itself as the HTTP status, 600+
included, which proxies and clients mishandle). The codes are ``linker_atom``'s; its
Chinese messages and constants are in the compatibility package (``lib/exception.py``).
"""

from collections.abc import Mapping
from http import HTTPStatus
from typing import Any, NamedTuple


class ErrorKind(NamedTuple):
    """A business code's default message and HTTP status."""

    msg: str
    status: int


ERRORS: dict[int, ErrorKind] = {
    500: ErrorKind("unknown error", HTTPStatus.INTERNAL_SERVER_ERROR),
    # Image errors: the caller sent something we cannot use.
    501: ErrorKind("image cannot be read", HTTPStatus.BAD_REQUEST),
    502: ErrorKind("image is corrupt", HTTPStatus.BAD_REQUEST),
    503: ErrorKind("image cannot be fetched", HTTPStatus.BAD_REQUEST),
    504: ErrorKind("image type is not supported", HTTPStatus.UNSUPPORTED_MEDIA_TYPE),
    505: ErrorKind("image key is missing", HTTPStatus.BAD_REQUEST),
    506: ErrorKind("image database error", HTTPStatus.BAD_GATEWAY),
    # Atom errors.
    511: ErrorKind("processing failed", HTTPStatus.INTERNAL_SERVER_ERROR),
    512: ErrorKind("out of GPU memory", HTTPStatus.SERVICE_UNAVAILABLE),
    513: ErrorKind("model does not match", HTTPStatus.BAD_REQUEST),
    514: ErrorKind("model file is missing", HTTPStatus.INTERNAL_SERVER_ERROR),
    515: ErrorKind("service is unreachable", HTTPStatus.BAD_GATEWAY),
    516: ErrorKind("address is wrong", HTTPStatus.BAD_REQUEST),
    517: ErrorKind("request format is wrong", HTTPStatus.BAD_REQUEST),
    518: ErrorKind("atom address is illegal", HTTPStatus.BAD_REQUEST),
    519: ErrorKind("hardware does not match", HTTPStatus.INTERNAL_SERVER_ERROR),
    520: ErrorKind("model file is corrupt", HTTPStatus.INTERNAL_SERVER_ERROR),
    521: ErrorKind("disk is full", HTTPStatus.INSUFFICIENT_STORAGE),
    550: ErrorKind("IBase error", HTTPStatus.BAD_GATEWAY),
    # Low-code program errors.
    600: ErrorKind("low-code program error", HTTPStatus.INTERNAL_SERVER_ERROR),
    601: ErrorKind("low-code program timed out", HTTPStatus.GATEWAY_TIMEOUT),
    602: ErrorKind("low-code program: operation not allowed", HTTPStatus.BAD_REQUEST),
    603: ErrorKind("low-code program: variable defined twice", HTTPStatus.BAD_REQUEST),
    604: ErrorKind("low-code program: code error", HTTPStatus.BAD_REQUEST),
    # Authorization errors.
    700: ErrorKind("authorization is missing", HTTPStatus.UNAUTHORIZED),
    701: ErrorKind("not allowed to call", HTTPStatus.FORBIDDEN),
    702: ErrorKind("authorization cannot be checked", HTTPStatus.BAD_GATEWAY),
    703: ErrorKind("authorization code is invalid", HTTPStatus.UNAUTHORIZED),
}


class VqlError(Exception):
    """An error the caller sees as ``{"code": code, "msg": msg, "data": data}``.

    ``msg`` defaults to the code's message; pass one to say more (for example which
    image failed). ``status`` overrides the HTTP status of the table; ``headers`` go with
    the reply (``Retry-After``). ``status_code`` and ``detail`` are ``linker_atom``'s names
    for ``code`` and ``msg``.
    """

    def __init__(
        self,
        code: int = 500,
        msg: str | None = None,
        *,
        data: Any = None,
        status: int | None = None,
        status_code: int | None = None,
        detail: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        code = code if status_code is None else status_code
        msg = msg if detail is None else detail
        kind = ERRORS.get(code, ERRORS[500])
        self.code = code
        self.msg = msg or kind.msg
        self.data = data
        self.status = int(status or kind.status)
        self.headers = headers
        super().__init__(self.msg)

    @property
    def status_code(self) -> int:
        """``linker_atom``'s name of the business code (it was also the HTTP status)."""
        return self.code

    @property
    def detail(self) -> str:
        """``linker_atom``'s name of the message."""
        return self.msg

    def __repr__(self) -> str:
        return f"VqlError(code={self.code}, msg={self.msg!r}, status={self.status})"
