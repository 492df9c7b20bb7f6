"""Legacy ``.linker`` models of ``linker_atom``: read, unmasked and checked, never in /tmp.

Layout, all big-endian: a 2-byte mark ("HL" current, "LH" legacy), the 2-byte length of
the whole header, a 1-byte model version, the 8-byte payload length, then the base85 of
the customer id up to the end of the header. The payload is a tar of the model folder in
which every byte, except bytes equal to 0 or to the key, is XORed with a one-byte key:
"HL" masks the first 10,240 bytes only, "LH" all of them. That is obfuscation, not
encryption: re-encrypt such models with ``protect encrypt`` once they are read.

``LinkerModels`` is ``linker_atom``'s ``ModelProtector(xor_key, user_id, model_version)``
(the compiled ``ModelProtector`` built with those arguments delegates to it):
``decrypt_model`` extracts a model into a new private folder, safely (``archive.py``) and
without the decrypted tar the original left in /tmp, and removes that folder at exit
unless ``remove_model`` did it before; ``encrypt_model`` writes a ``.linker`` file.
"""

import atexit
import base64
import contextlib
import logging
import os
import shutil
import struct
import tarfile
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO, NamedTuple, cast

from .archive import extract_members, read_members
from .errors import FormatError, ModelIdMismatchError, ModelKeyError, TruncatedError, WrongKeyError
from .fileformat import read_exact

logger = logging.getLogger(__name__)

MASKED_BYTES = {b"HL": 10240, b"LH": -1}  # -1: the whole payload is masked
MAX_EXPANSION = 20  # a compressed payload's files may add up to 20 times its size
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
        self.max_extracted = header.payload_size * MAX_EXPANSION

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
    check_key_byte(key)
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
        payload = open_payload(f, str(path), key, customer_id)
        return read_members(as_stream(payload), payload.max_extracted)


def extract_linker(path: Path | str, key: int, customer_id: str, target: Path | str) -> list[Path]:
    """Extract a ``.linker`` model under ``target``; return the files written."""
    with open(path, "rb") as f, tar_errors(str(path)):
        payload = open_payload(f, str(path), key, customer_id)
        return extract_members(as_stream(payload), Path(target), payload.max_extracted)


def inspect_linker(path: Path | str) -> LinkerHeader:
    """The header of a ``.linker`` file."""
    with open(path, "rb") as f:
        return read_header(f, str(path))


# Writing (linker_atom's encrypt_model) ------------------------------------------------

COPY_CHUNK = 1 << 20


def check_key_byte(key: object) -> int:
    """A legacy key is one byte, 1 to 255 (0 would leave the payload as it is)."""
    if isinstance(key, bool) or not isinstance(key, int) or not 1 <= key <= 255:
        raise ModelKeyError("a legacy .linker key is one byte: 1 to 255")
    return key


def pack_header(mark: bytes, version: int, payload_size: int, customer_id: str) -> bytes:
    """The header of a ``.linker`` file."""
    encoded = base64.b85encode(customer_id.encode("utf-8"))
    return HEAD.pack(mark, HEAD.size + len(encoded), version, payload_size) + encoded


def write_linker(
    source: Path | str,
    out_dir: Path | str,
    key: int,
    customer_id: str,
    *,
    version: int = 0,
    mark: bytes = b"HL",
) -> Path:
    """Tar ``source`` (a folder or a file) and mask it into ``out_dir/<name>.linker``.

    The tar is written to an anonymous temporary file in ``out_dir`` (gone when closed,
    whatever happens) and the ``.linker`` file appears complete or not at all.
    """
    check_key_byte(key)
    source, out_dir = Path(source), Path(out_dir)
    target = out_dir / f"{source.name}.linker"
    table = unmask_table(key)  # masking and unmasking are the same mapping
    with tempfile.TemporaryFile(dir=out_dir) as tar_file:
        with tarfile.open(fileobj=tar_file, mode="w", dereference=True) as archive:
            archive.add(source, arcname=source.name)
        size = tar_file.tell()
        tar_file.seek(0)
        masked = size if MASKED_BYTES[mark] < 0 else MASKED_BYTES[mark]
        descriptor, partial = tempfile.mkstemp(prefix=f".{target.name}.", dir=out_dir)
        try:
            with os.fdopen(descriptor, "wb") as out:
                out.write(pack_header(mark, version, size, customer_id))
                while chunk := tar_file.read(COPY_CHUNK):
                    cut = min(masked, len(chunk))
                    if cut > 0:
                        chunk = chunk[:cut].translate(table) + chunk[cut:]
                        masked -= cut
                    out.write(chunk)
            os.replace(partial, target)
        except BaseException:
            Path(partial).unlink(missing_ok=True)
            raise
    return target


# linker_atom's ModelProtector(xor_key, user_id, model_version) ----------------------


class ExtractedFolders:
    """The folders ``decrypt_model`` made in this process, removed at exit if still there."""

    def __init__(self) -> None:
        self.folders: set[Path] = set()
        self.lock = threading.Lock()
        self.registered = False

    def add(self, folder: Path) -> None:
        """Remember a new folder (the exit hook is registered on the first one)."""
        with self.lock:
            if not self.registered:
                atexit.register(self.remove_all)
                self.registered = True
            self.folders.add(folder)

    def owner(self, path: Path) -> Path | None:
        """The folder made by ``decrypt_model`` that holds ``path``, if any."""
        with self.lock:
            return next((f for f in self.folders if path.is_relative_to(f)), None)

    def discard(self, folder: Path) -> None:
        """Forget a folder (it was removed)."""
        with self.lock:
            self.folders.discard(folder)

    def remove_all(self) -> None:
        """Remove every folder still there."""
        with self.lock:
            folders, self.folders = set(self.folders), set()
        for folder in folders:
            shutil.rmtree(folder, ignore_errors=True)


EXTRACTED = ExtractedFolders()


class LinkerModels:
    """``linker_atom``'s model protector: one key byte, one customer id, ``.linker`` files."""

    def __init__(self, xor_key: int, user_id: str, model_version: int = 0) -> None:
        self.xor_key = check_key_byte(xor_key)
        if not isinstance(user_id, str):
            raise TypeError("user_id must be a string")
        self.user_id = user_id
        self.model_version = int(model_version)

    def decrypt_model(self, source_dir: str, out_path: str = "/tmp") -> tuple[str, str]:
        """Extract the ``.linker`` model ``source_dir`` into a new folder under ``out_path``.

        Returns (the model's folder, the new folder): the model's folder is the archive's
        top folder when there is one. Unsafe members (absolute paths, ``..``, links,
        devices) are refused and nothing is left; the new folder (mode 700) goes at exit,
        or with ``remove_model``.
        """
        started = time.perf_counter()
        Path(out_path).mkdir(parents=True, exist_ok=True)
        folder = Path(tempfile.mkdtemp(prefix="linker-", dir=out_path)).resolve()
        EXTRACTED.add(folder)
        try:
            extract_linker(source_dir, self.xor_key, self.user_id, folder)
        except BaseException:
            self.remove_model(str(folder))
            raise
        tops = sorted(entry for entry in folder.iterdir() if entry.is_dir())
        logger.info("%s: extracted in %.2f s", source_dir, time.perf_counter() - started)
        return str(tops[0] if tops else folder), str(folder)

    def remove_model(self, source_dir: str) -> None:
        """Remove an extracted model: the whole folder ``decrypt_model`` made for it."""
        path = Path(source_dir).resolve()
        folder = EXTRACTED.owner(path) or path
        shutil.rmtree(folder)
        EXTRACTED.discard(folder)

    def encrypt_model(self, source_dir: str, out_path: str = ".") -> str:
        """Write ``out_path/<name>.linker`` from a model folder (or file), "HL" layout."""
        return str(self._write(source_dir, out_path, b"HL"))

    def encrypt_model_legacy(self, source_dir: str, out_path: str = ".") -> str:
        """``encrypt_model`` with the older "LH" layout (every byte masked)."""
        return str(self._write(source_dir, out_path, b"LH"))

    def _write(self, source_dir: str, out_path: str, mark: bytes) -> Path:
        started = time.perf_counter()
        target = write_linker(
            source_dir, out_path, self.xor_key, self.user_id, version=self.model_version, mark=mark
        )
        logger.info("%s: written in %.2f s", target, time.perf_counter() - started)
        return target
