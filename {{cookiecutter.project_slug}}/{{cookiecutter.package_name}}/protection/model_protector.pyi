"""Type stub of the compiled ``model_protector`` (source: ``model_protector.pyx``)."""

import os
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO, Final, final, overload

from .errors import ChunkOrderError as ChunkOrderError
from .errors import ChunkTamperedError as ChunkTamperedError
from .errors import FormatError as FormatError
from .errors import HeaderTamperedError as HeaderTamperedError
from .errors import ModelIdMismatchError as ModelIdMismatchError
from .errors import ModelKeyError as ModelKeyError
from .errors import ProtectorError as ProtectorError
from .errors import TamperedError as TamperedError
from .errors import TruncatedError as TruncatedError
from .errors import UnsafeArchiveError as UnsafeArchiveError
from .errors import WrongKeyError as WrongKeyError
from .fileformat import DEFAULT_CHUNK_SIZE as DEFAULT_CHUNK_SIZE
from .fileformat import FORMAT_VERSION as FORMAT_VERSION
from .fileformat import KEY_SIZE as KEY_SIZE
from .fileformat import MAGIC as MAGIC
from .fileformat import Header as Header
from .fileformat import read_header as read_header
from .linker import LinkerHeader as LinkerHeader
from .memory_file import MemoryFile as MemoryFile

Source = str | os.PathLike[str] | BinaryIO
Progress = Callable[[int], object]

HEADER_INDEX: Final[int]
HKDF_INFO: Final[bytes]
_SPEED_TRICKS: set[str]  # the speed tricks in use; only the benchmark removes any

@final
class ModelProtector:
    """Encrypts and decrypts model files with one 32-byte model key (never shown).

    ``ModelProtector(xor_key, user_id, model_version=0)`` is linker_atom's protector of
    legacy ``.linker`` files instead (``decrypt_model`` and the other methods at the end).
    """

    @property
    def source(self) -> str:
        """Where the key came from (a file path or a variable name), never the key."""

    @property
    def chunk_size(self) -> int:
        """Plaintext bytes per chunk of the files this protector encrypts."""

    @overload
    def __init__(self, key: bytes, *, chunk_size: int = ..., source: str = "a key") -> None: ...
    @overload
    def __init__(self, key: int, user_id: str, model_version: int = 0) -> None: ...
    @overload
    def __init__(self, *, xor_key: int, user_id: str, model_version: int = 0) -> None: ...
    @staticmethod
    def generate_key() -> bytes:
        """32 random bytes from the operating system: a new model key."""

    @staticmethod
    def key_to_text(key: bytes, fmt: str = "base64") -> str:
        """A key as the text of a key file: base64 (default) or hex."""

    @classmethod
    def from_key_text(
        cls, text: str | bytes, *, source: str = "the key text", chunk_size: int = ...
    ) -> ModelProtector:
        """The protector of a key written as base64 or hex."""

    @classmethod
    def from_key_file(
        cls, path: str | os.PathLike[str], *, source: str | None = None, chunk_size: int = ...
    ) -> ModelProtector:
        """The protector of the key held by a file (base64 or hex text)."""

    def encrypt(
        self,
        src: Source,
        dst: Source,
        model_id: str,
        *,
        chunk_size: int | None = None,
        progress: Progress | None = None,
    ) -> Header:
        """Encrypt a model file or stream; return the header written."""

    def encrypt_bytes(self, data: bytes, model_id: str) -> bytes:
        """Encrypt bytes in memory; return the protected file's bytes."""

    def read_header(self, src: Source, model_id: str | None = None) -> Header:
        """The header, once the key, its authenticity and the model id are checked."""

    def decrypt(self, src: Source, model_id: str | None = None) -> bytes:
        """The plaintext as bytes, decrypted in memory."""

    def decrypt_into(
        self,
        src: Source,
        dst: Source,
        model_id: str | None = None,
        *,
        progress: Progress | None = None,
    ) -> int:
        """Decrypt into a file or stream, one chunk at a time; return the bytes written."""

    def decrypt_to_memory_file(
        self, src: Source, model_id: str | None = None, *, progress: Progress | None = None
    ) -> MemoryFile:
        """Decrypt into an anonymous in-memory file; its ``path`` opens like a file."""

    @staticmethod
    def open_linker(
        path: str | os.PathLike[str], key_byte: int, customer_id: str
    ) -> dict[str, bytes]:
        """The files of a legacy ``.linker`` model, in memory."""

    @staticmethod
    def extract_linker(
        path: str | os.PathLike[str],
        key_byte: int,
        customer_id: str,
        target_dir: str | os.PathLike[str],
    ) -> list[Path]:
        """Extract a legacy ``.linker`` model under ``target_dir``, refusing unsafe members."""

    @staticmethod
    def read_linker_header(path: str | os.PathLike[str]) -> LinkerHeader:
        """The header of a legacy ``.linker`` file."""

    # linker_atom's protector of .linker files (built with xor_key and user_id) ----------
    @property
    def xor_key(self) -> int | None:
        """The legacy key byte (None for a protector built with a model key)."""

    @property
    def user_id(self) -> str | None:
        """The legacy customer id (None for a protector built with a model key)."""

    @property
    def model_version(self) -> int | None:
        """The legacy model version (None for a protector built with a model key)."""

    def decrypt_model(self, source_dir: str, out_path: str = "/tmp") -> tuple[str, str]:
        """Extract a ``.linker`` model into a new folder: (model folder, new folder)."""

    def encrypt_model(self, source_dir: str, out_path: str = ".") -> str:
        """Write ``out_path/<name>.linker`` from a model folder; return its path."""

    def encrypt_model_legacy(self, source_dir: str, out_path: str = ".") -> str:
        """``encrypt_model`` in the older layout that masks every byte."""

    def remove_model(self, source_dir: str) -> None:
        """Remove a model ``decrypt_model`` extracted (its whole folder)."""
