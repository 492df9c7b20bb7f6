"""The layout of a protected model file, and the text form of a model key.

A protected file is a header, then one or more chunks: the STREAM construction over
AES-256-GCM, whose security argument is in ``model_protector.pyx``. All integers are
big-endian; ``|`` joins bytes. ``L`` is the model id's length, ``C`` the chunk size.

Header (``68 + L`` bytes)::

    offset  size  field
    0       8     magic b"\\x89ATOMGCM"
    8       2     format version: 1
    10      4     chunk size C: plaintext bytes per chunk, 16 B to 64 MiB (default 1 MiB)
    14      16    salt, random per file: HKDF-SHA256(model key, salt) gives the file's
                  AES-256 key and the key check
    30      4     nonce prefix, random per file
    34      16    key check: tells a wrong key from a damaged file
    50      2     L: 1 to 255
    52      L     model id, UTF-8, printable
    52 + L  16    header tag: AES-GCM under the file key, nonce ``prefix | 2**64 - 1``,
                  empty plaintext, associated data = the 52 + L bytes above

Chunk ``i`` (``i`` = 0, 1, ..., right after the header and after chunk ``i - 1``;
``n + 29`` bytes)::

    offset  size  field (the first 13 bytes are the chunk's frame)
    0       8     index: i, the chunk counter
    8       4     plaintext length n: C in every chunk but the last, 0 to C in the last
    12      1     flags: 1 in the last chunk, 0 in the others (no other bit is used)
    13      n     ciphertext: AES-256-GCM under the file key, nonce ``prefix | i``
                  (4 + 8 bytes), associated data = header tag | frame
    13 + n  16    the chunk's GCM tag

The writer reads one chunk ahead to know which chunk is the last, so every file ends with
a flagged chunk: a model of ``N`` bytes makes ``max(1, ceil(N / C))`` chunks (an empty
model, one chunk with ``n = 0``), and the file is ``68 + L + N + 29 * chunks`` bytes.

A model key is 32 random bytes, written in its file as base64 (44 characters) or hex
(64 characters); spaces and newlines around it are ignored.
"""

import base64
import binascii
import contextlib
import os
import struct
from typing import Any, BinaryIO, NamedTuple

from .errors import FormatError, HeaderTamperedError, ModelKeyError, TruncatedError

MAGIC = b"\x89ATOMGCM"
FORMAT_VERSION = 1
KEY_SIZE = 32
TAG_SIZE = 16
SALT_SIZE = 16
NONCE_PREFIX_SIZE = 4
DEFAULT_CHUNK_SIZE = 1 << 20
MIN_CHUNK_SIZE = 16
MAX_CHUNK_SIZE = 64 << 20
MAX_MODEL_ID_BYTES = 255
KEY_FILE_MAX_BYTES = 4096

FIXED = struct.Struct(">8sHI16s4s16sH")
FRAME = struct.Struct(">QIB")
LAST = 1

Source = str | bytes | os.PathLike | BinaryIO


class Header(NamedTuple):
    """The header of a protected file: public values, authenticated by the key."""

    format_version: int
    chunk_size: int
    model_id: str
    salt: bytes
    nonce_prefix: bytes
    key_check: bytes
    tag: bytes
    size: int  # bytes of the header in the file, tag included
    raw: bytes  # the header's bytes before the tag (what the tag authenticates)

    def describe(self, file_size: int | None = None) -> dict[str, Any]:
        """The header as plain values (no key material), with the sizes a file implies."""
        info: dict[str, Any] = {
            "format": "atom-model (AES-256-GCM, chunked)",
            "format_version": self.format_version,
            "model_id": self.model_id,
            "chunk_size": self.chunk_size,
            "header_size": self.size,
            "salt": self.salt.hex(),
            "nonce_prefix": self.nonce_prefix.hex(),
        }
        if file_size is not None:
            chunks, plain = chunk_count(self, file_size)
            info.update(file_size=file_size, chunks=chunks, plaintext_size=plain)
        return info


def pack_header(
    chunk_size: int, model_id: str, salt: bytes, prefix: bytes, key_check: bytes
) -> bytes:
    """The header's bytes before its tag."""
    check_chunk_size(chunk_size)
    encoded = model_id_bytes(model_id)
    fields = (MAGIC, FORMAT_VERSION, chunk_size, salt, prefix, key_check, len(encoded))
    return FIXED.pack(*fields) + encoded


def chunk_count(header: Header, file_size: int) -> tuple[int, int]:
    """(chunks, plaintext bytes) of an intact file of this size."""
    overhead = FRAME.size + TAG_SIZE
    body = max(file_size - header.size, 0)
    chunks = -(-body // (header.chunk_size + overhead))
    return chunks, max(body - chunks * overhead, 0)


def check_chunk_size(chunk_size: int) -> None:
    """Chunk sizes are bounded: a forged header cannot ask for gigabytes of buffer."""
    if not MIN_CHUNK_SIZE <= chunk_size <= MAX_CHUNK_SIZE:
        raise ValueError(f"chunk size must be {MIN_CHUNK_SIZE} to {MAX_CHUNK_SIZE} bytes")


def model_id_bytes(model_id: str) -> bytes:
    """The model id as UTF-8: printable, 1 to 255 bytes."""
    if not isinstance(model_id, str) or not model_id or not model_id.isprintable():
        raise ValueError("the model id must be a non-empty printable string")
    encoded = model_id.encode("utf-8")
    if len(encoded) > MAX_MODEL_ID_BYTES:
        raise ValueError(f"the model id must be at most {MAX_MODEL_ID_BYTES} bytes in UTF-8")
    return encoded


def name_of(src: Source) -> str:
    """How a message names a source: its path, or the file object's name."""
    if isinstance(src, str | bytes | os.PathLike):
        return os.fsdecode(src)
    return str(getattr(src, "name", "<stream>"))


def reading(src: Source) -> contextlib.AbstractContextManager:
    """A binary file to read: ``src`` itself, or the path opened without buffering."""
    if isinstance(src, str | bytes | os.PathLike):
        return open(src, "rb", buffering=0)
    return contextlib.nullcontext(src)


def writing(dst: Source) -> contextlib.AbstractContextManager:
    """A binary file to write: ``dst`` itself, or the path opened for writing."""
    if isinstance(dst, str | bytes | os.PathLike):
        return open(dst, "wb")
    return contextlib.nullcontext(dst)


def read_exact(f: BinaryIO, size: int) -> bytes:
    """Up to ``size`` bytes (fewer only at the end of the file)."""
    parts, left = [], size
    while left > 0 and (part := f.read(left)):
        parts.append(part)
        left -= len(part)
    return b"".join(parts)


def parse_header(f: BinaryIO, name: str) -> Header:
    """Read and check the header's form; the stream is left at the first chunk."""
    fixed = read_exact(f, FIXED.size)
    if not fixed.startswith(MAGIC):
        raise FormatError(f"{name}: not a protected model (it does not start with {MAGIC!r})")
    if len(fixed) < FIXED.size:
        raise TruncatedError(f"{name}: the file ends inside its header")
    _, version, chunk_size, salt, prefix, key_check, id_size = FIXED.unpack(fixed)
    if version != FORMAT_VERSION:
        raise FormatError(
            f"{name}: format version {version}; this protector reads version {FORMAT_VERSION}"
        )
    if not MIN_CHUNK_SIZE <= chunk_size <= MAX_CHUNK_SIZE or not 0 < id_size <= MAX_MODEL_ID_BYTES:
        raise HeaderTamperedError(f"{name}: the header holds impossible sizes: it was altered")
    rest = read_exact(f, id_size + TAG_SIZE)
    if len(rest) < id_size + TAG_SIZE:
        raise TruncatedError(f"{name}: the file ends inside its header")
    try:
        model_id = rest[:id_size].decode("utf-8")
    except UnicodeDecodeError:
        raise HeaderTamperedError(f"{name}: the model id is not UTF-8: it was altered") from None
    raw = fixed + rest[:id_size]
    tag = rest[id_size:]
    return Header(
        version, chunk_size, model_id, salt, prefix, key_check, tag, len(rest) + len(fixed), raw
    )


def read_header(src: Source) -> Header:
    """The header of a protected file (path or binary file), checked for form only.

    No key is needed (``protect inspect`` prints it); authenticity is checked when the
    file is decrypted.
    """
    with reading(src) as f:
        return parse_header(f, name_of(src))


def key_from_text(text: str | bytes, source: str) -> bytes:
    """The 32 key bytes of a key's text; the error never repeats the text."""
    problem = (
        f"{source}: not a model key: expected {KEY_SIZE} random bytes written as "
        "base64 (44 characters) or hex (64 characters)"
    )
    try:
        if isinstance(text, bytes | bytearray):
            text = bytes(text).decode("ascii")
        text = "".join(text.split())
        if len(text) == 2 * KEY_SIZE:
            key = bytes.fromhex(text)
        else:
            key = base64.b64decode(text, validate=True)
    except (ValueError, binascii.Error):
        raise ModelKeyError(problem) from None
    if len(key) != KEY_SIZE:
        raise ModelKeyError(problem)
    return key


def key_to_text(key: bytes, fmt: str = "base64") -> str:
    """A key as the text of a key file: base64 (default) or hex."""
    if len(key) != KEY_SIZE:
        raise ModelKeyError(f"a model key is {KEY_SIZE} bytes")
    if fmt == "hex":
        return bytes(key).hex()
    if fmt == "base64":
        return base64.b64encode(key).decode("ascii")
    raise ValueError("the key format is base64 or hex")


def read_key_file(path: str | os.PathLike, source: str) -> bytes:
    """The content of a key file; errors say which file and why, never what it holds."""
    try:
        with open(path, "rb") as f:
            data = f.read(KEY_FILE_MAX_BYTES + 1)
    except FileNotFoundError:
        raise ModelKeyError(f"{source}: no such key file") from None
    except IsADirectoryError:
        raise ModelKeyError(f"{source}: is a folder, not a key file") from None
    except OSError as exc:
        raise ModelKeyError(f"{source}: the key file cannot be read ({exc.strerror})") from None
    if len(data) > KEY_FILE_MAX_BYTES:
        raise ModelKeyError(f"{source}: too large to be a key file")
    return data
