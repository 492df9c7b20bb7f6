"""Legacy ``.linker`` models of ``linker_atom``: read, unmasked and checked, never in /tmp.

Layout, all big-endian: a 2-byte mark ("HL" current, "LH" legacy), the 2-byte length of
the whole header, a 1-byte model version, the 8-byte payload length, then the base85 of
the customer id up to the end of the header. The payload is a tar of the model folder in
which every byte, except bytes equal to 0 or to the key, is XORed with a one-byte key:
"HL" masks the first 10,240 bytes only, "LH" all of them. That is obfuscation, not
encryption: re-encrypt such models with ``protect encrypt`` once they are read.
"""

import base64
import contextlib
import struct
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO, NamedTuple, cast

from .archive import extract_members, read_members
from .errors import FormatError, ModelIdMismatchError, ModelKeyError, TruncatedError, WrongKeyError
from .fileformat import read_exact

MASKED_BYTES = {b"HL": 10240, b"LH": -1}  # -1: the whole payload is masked
HEAD = struct.Struct(">2sHBQ")


class LinkerHeader(NamedTuple):
    """The header of a ``.linker`` file."""

    mark: str
    size: int
    version: int
    payload_size: int
    customer_id: str


def read_header(f: BinaryIO, name: str) -> LinkerHeader:
    """Parse the header; the stream is left at the start of the payload."""
    head = read_exact(f, HEAD.size)
    if head[:2] not in MASKED_BYTES:
        raise FormatError(f"{name}: not a .linker model (no 'HL' or 'LH' mark)")
    if len(head) < HEAD.size:
        raise TruncatedError(f"{name}: the file ends inside its header")
    mark, size, version, payload_size = HEAD.unpack(head)
    if size < HEAD.size:
        raise FormatError(f"{name}: header length {size} is shorter than its fixed fields")
    encoded = read_exact(f, size - HEAD.size)
    if len(encoded) < size - HEAD.size:
        raise TruncatedError(f"{name}: the file ends inside its header")
    try:
        customer_id = base64.b85decode(encoded).decode("utf-8")
    except ValueError:
        raise FormatError(f"{name}: the customer id is not base85 of UTF-8 text") from None
    return LinkerHeader(mark.decode("ascii"), size, version, payload_size, customer_id)


def unmask_table(key: int) -> bytes:
    """The byte mapping of the mask: XOR with the key, except 0 and the key themselves."""
    return bytes(value if value in (0, key) else value ^ key for value in range(256))


class Payload:
    """The payload as a stream, unmasked as it is read (what ``tarfile`` reads from)."""

    def __init__(self, f: BinaryIO, name: str, header: LinkerHeader, key: int) -> None:
        self._f, self._name, self._table = f, name, unmask_table(key)
        self._left = header.payload_size
        masked = MASKED_BYTES[header.mark.encode("ascii")]
        self._masked = header.payload_size if masked < 0 else masked
        self._position = 0

    def read(self, size: int | None = -1) -> bytes:
        """Up to ``size`` unmasked bytes of the payload."""
        if size is None or size < 0 or size > self._left:
            size = self._left
        data = read_exact(self._f, size)
        if len(data) < size:
            raise TruncatedError(
                f"{self._name}: the payload ends {self._left - len(data)} bytes early"
            )
        cut = min(len(data), max(self._masked - self._position, 0))
        if cut:
            data = data[:cut].translate(self._table) + data[cut:]
        self._position += len(data)
        self._left -= len(data)
        return data


def open_payload(f: BinaryIO, name: str, key: int, customer_id: str) -> Payload:
    """The unmasked payload of a ``.linker`` stream, once its customer id is checked."""
    if not isinstance(key, int) or not 1 <= key <= 255:
        raise ModelKeyError("a legacy .linker key is one byte: 1 to 255")
    header = read_header(f, name)
    if header.customer_id != customer_id:
        raise ModelIdMismatchError(
            f"{name}: made for the customer {header.customer_id!r}, not {customer_id!r}"
        )
    return Payload(f, name, header, key)


def as_stream(payload: Payload) -> BinaryIO:
    """The payload as the binary stream ``tarfile`` reads in stream mode (``read`` only)."""
    return cast(BinaryIO, payload)


@contextlib.contextmanager
def tar_errors(name: str) -> Iterator[None]:
    """A payload that is no tar once unmasked means a wrong key byte (or a damaged file)."""
    try:
        yield
    except tarfile.TarError as exc:
        raise WrongKeyError(
            f"{name}: the unmasked payload is not a tar archive ({exc}): "
            "wrong legacy key byte, or a damaged file"
        ) from None


def read_linker(path: Path | str, key: int, customer_id: str) -> dict[str, bytes]:
    """The files of a ``.linker`` model, in memory: {relative path: content}."""
    with open(path, "rb") as f, tar_errors(str(path)):
        return read_members(as_stream(open_payload(f, str(path), key, customer_id)))


def extract_linker(path: Path | str, key: int, customer_id: str, target: Path | str) -> list[Path]:
    """Extract a ``.linker`` model under ``target``; return the files written."""
    with open(path, "rb") as f, tar_errors(str(path)):
        payload = as_stream(open_payload(f, str(path), key, customer_id))
        return extract_members(payload, Path(target))


def inspect_linker(path: Path | str) -> LinkerHeader:
    """The header of a ``.linker`` file."""
    with open(path, "rb") as f:
        return read_header(f, str(path))
