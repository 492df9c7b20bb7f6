"""The compiled model protector: round trips, each kind of tampering, a key that never shows."""

import copy
import io
import os
import pickle
import struct
from pathlib import Path

import pytest

from {{ cookiecutter.package_name }}.dependency import errors, fileformat, model_protector
from {{ cookiecutter.package_name }}.dependency.model_protector import ModelProtector

CHUNK = 64
SIZES = [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 5 * CHUNK, 5 * CHUNK + 7]
FRAME = fileformat.FRAME.size + fileformat.TAG_SIZE  # bytes a chunk adds to its plaintext


@pytest.fixture(scope="module")
def key() -> bytes:
    """A model key."""
    return ModelProtector.generate_key()


@pytest.fixture
def protector(key: bytes) -> ModelProtector:
    """A protector with small chunks, so that a few bytes make several chunks."""
    return ModelProtector(key, chunk_size=CHUNK)


def secret_forms(key: bytes) -> list[str]:
    """Every way the key could appear in a text."""
    return [key.hex(), ModelProtector.key_to_text(key), repr(key)[2:-1]]


def test_the_compiled_module_is_tested(protector: ModelProtector) -> None:
    """The tests import the compiled extension, not a Python import of the .pyx."""
    assert model_protector.__file__.endswith(".so"), model_protector.__file__
    assert ModelProtector.__module__ == model_protector.__name__
    assert not hasattr(protector, "__dict__")  # an extension type: no attribute can be added


@pytest.mark.parametrize("size", SIZES)
def test_round_trip(protector: ModelProtector, tmp_path: Path, size: int) -> None:
    """Any size comes back byte for byte, from a path or a stream, to bytes or a file."""
    data = os.urandom(size)
    encrypted = protector.encrypt_bytes(data, "face")
    chunks = max(1, -(-size // CHUNK))
    header = fileformat.read_header(io.BytesIO(encrypted))
    assert len(encrypted) == header.size + chunks * FRAME + size
    assert header.describe(len(encrypted))["plaintext_size"] == size
    assert header.describe(len(encrypted))["chunks"] == chunks
    path = tmp_path / "model.enc"
    path.write_bytes(encrypted)
    assert protector.decrypt(path, "face") == data
    assert protector.decrypt(io.BytesIO(encrypted)) == data
    out = io.BytesIO()
    assert protector.decrypt_into(path, out) == size
    assert out.getvalue() == data


def test_file_to_file_with_progress(protector: ModelProtector, tmp_path: Path) -> None:
    """encrypt and decrypt_into work path to path and report progress after each chunk."""
    source, sealed, opened = tmp_path / "plain", tmp_path / "sealed", tmp_path / "opened"
    source.write_bytes(os.urandom(3 * CHUNK + 5))
    done: list[int] = []
    protector.encrypt(source, sealed, "face", progress=done.append)
    assert done == [CHUNK, 2 * CHUNK, 3 * CHUNK, 3 * CHUNK + 5]
    protector.decrypt_into(sealed, opened, "face")
    assert opened.read_bytes() == source.read_bytes()


def test_a_stream_that_cannot_seek(protector: ModelProtector) -> None:
    """A pipe-like source (no seek) is decrypted too."""

    class Pipe(io.RawIOBase):
        def __init__(self, data: bytes) -> None:
            self.inner = io.BytesIO(data)

        def readable(self) -> bool:
            return True

        def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
            return self.inner.readinto(buffer)

    data = os.urandom(2 * CHUNK + 3)
    assert protector.decrypt(Pipe(protector.encrypt_bytes(data, "face"))) == data


def test_each_file_is_sealed_differently(protector: ModelProtector) -> None:
    """The same model encrypted twice gives two different files (salt and nonce per file)."""
    data = os.urandom(100)
    assert protector.encrypt_bytes(data, "face") != protector.encrypt_bytes(data, "face")


# Tampering -------------------------------------------------------------------------------


@pytest.fixture
def sealed(protector: ModelProtector) -> bytes:
    """A protected file of four chunks (the last one partial)."""
    return protector.encrypt_bytes(os.urandom(3 * CHUNK + 10), "face")


def chunk_span(data: bytes, index: int) -> tuple[int, int]:
    """Where chunk ``index`` (frame and ciphertext) lies in a protected file."""
    start = fileformat.read_header(io.BytesIO(data)).size + index * (CHUNK + FRAME)
    return start, min(start + CHUNK + FRAME, len(data))


def flip(data: bytes, position: int) -> bytes:
    """The data with one bit changed."""
    return data[:position] + bytes([data[position] ^ 1]) + data[position + 1 :]


def swap_chunks(data: bytes, first: int, second: int) -> bytes:
    """The data with two full chunks exchanged."""
    (a, b), (c, d) = chunk_span(data, first), chunk_span(data, second)
    return data[:a] + data[c:d] + data[b:c] + data[a:b] + data[d:]


def drop_chunk(data: bytes, index: int) -> bytes:
    """The data without one chunk."""
    start, end = chunk_span(data, index)
    return data[:start] + data[end:]


def rename(data: bytes, old: str, new: str) -> bytes:
    """The data with the model id in the header replaced (same length)."""
    return data.replace(old.encode(), new.encode(), 1)


TAMPERING = [
    ("flipped byte", lambda d: flip(d, chunk_span(d, 1)[0] + 20), errors.ChunkTamperedError),
    ("flipped tag", lambda d: flip(d, len(d) - 1), errors.ChunkTamperedError),
    ("swapped chunks", lambda d: swap_chunks(d, 1, 2), errors.ChunkOrderError),
    ("dropped chunk", lambda d: drop_chunk(d, 1), errors.ChunkOrderError),
    ("cut after a chunk", lambda d: d[: chunk_span(d, 2)[1]], errors.TruncatedError),
    ("cut inside a chunk", lambda d: d[:-5], errors.TruncatedError),
    ("cut inside the header", lambda d: d[:20], errors.TruncatedError),
    ("renamed model id", lambda d: rename(d, "face", "fake"), errors.HeaderTamperedError),
    ("changed chunk size", lambda d: flip(d, 13), errors.HeaderTamperedError),
    ("data appended", lambda d: d + b"more", errors.TamperedError),
    ("not a model", lambda d: b"<?xml version='1.0'?>" + d, errors.FormatError),
    ("newer format", lambda d: d[:8] + struct.pack(">H", 9) + d[10:], errors.FormatError),
]


@pytest.mark.parametrize(
    ("change", "error"), [case[1:] for case in TAMPERING], ids=[case[0] for case in TAMPERING]
)
def test_tampering_fails_with_its_own_error(
    protector: ModelProtector, key: bytes, sealed: bytes, change, error: type
) -> None:
    """Each kind of damage raises its own exception class, with a message free of the key."""
    with pytest.raises(error) as raised:
        protector.decrypt(io.BytesIO(change(sealed)), "face")
    assert raised.type is error
    assert not any(form in str(raised.value) for form in secret_forms(key))
    with pytest.raises(error):
        protector.decrypt_into(io.BytesIO(change(sealed)), io.BytesIO())


def test_a_failed_decryption_leaves_no_partial_file(
    protector: ModelProtector, sealed: bytes, tmp_path: Path
) -> None:
    """decrypt_into a path removes what it wrote when a later chunk fails authentication."""
    source, target = tmp_path / "sealed", tmp_path / "opened"
    source.write_bytes(flip(sealed, chunk_span(sealed, 2)[0] + 20))  # chunks 0 and 1 are good
    with pytest.raises(errors.ChunkTamperedError):
        protector.decrypt_into(source, target, "face")
    assert not target.exists()


def test_wrong_key(sealed: bytes, key: bytes) -> None:
    """Another key fails with WrongKeyError, naming where that key came from, not the key."""
    other = ModelProtector(ModelProtector.generate_key(), source="key file /run/other")
    with pytest.raises(errors.WrongKeyError) as raised:
        other.decrypt(io.BytesIO(sealed))
    assert "key file /run/other" in str(raised.value)
    assert not any(form in str(raised.value) for form in secret_forms(key))


def test_another_model_id_is_refused(protector: ModelProtector, sealed: bytes) -> None:
    """An authentic file of another model is refused when a model id is asked for."""
    with pytest.raises(errors.ModelIdMismatchError, match="holds the model 'face', not 'plates'"):
        protector.decrypt(io.BytesIO(sealed), "plates")
    assert protector.read_header(io.BytesIO(sealed), "face").model_id == "face"


def test_every_error_is_a_protector_error() -> None:
    """One except clause catches every failure of the protector."""
    for name in dir(errors):
        value = getattr(errors, name)
        if isinstance(value, type) and issubclass(value, Exception):
            assert issubclass(value, errors.ProtectorError)


# The key ---------------------------------------------------------------------------------


def test_the_key_never_shows(protector: ModelProtector, key: bytes) -> None:
    """Not in repr, not as an attribute, not through pickle or copy."""
    assert not any(form in repr(protector) for form in secret_forms(key))
    assert not hasattr(protector, "_key") and not hasattr(protector, "key")
    for action in (pickle.dumps, copy.copy, copy.deepcopy):
        with pytest.raises(TypeError, match="cannot be pickled or copied"):
            action(protector)


def test_key_text_forms(tmp_path: Path, key: bytes) -> None:
    """A key file holds base64 or hex, with spaces and newlines around it."""
    data = os.urandom(10)
    sealed = ModelProtector(key).encrypt_bytes(data, "face")
    for text in (ModelProtector.key_to_text(key), f"  {key.hex().upper()}\n"):
        path = tmp_path / "key"
        path.write_text(text + "\n")
        protector = ModelProtector.from_key_file(path)
        assert protector.decrypt(io.BytesIO(sealed)) == data
        assert protector.source == f"key file {path}"


@pytest.mark.parametrize(
    "text", ["", "c2hvcnQ=", "z" * 44, "g" * 64, "QUFB" * 12, "é" * 44, b"\xff" * 44]
)
def test_a_bad_key_is_refused_without_echo(text: str | bytes) -> None:
    """A malformed key is a ModelKeyError that names the source and never repeats the text."""
    with pytest.raises(errors.ModelKeyError) as raised:
        ModelProtector.from_key_text(text, source="ATOM_MODEL_KEY")
    message = str(raised.value)
    assert message.startswith("ATOM_MODEL_KEY: not a model key")
    if isinstance(text, str) and text:
        assert text not in message


def test_key_file_problems_name_the_file(tmp_path: Path) -> None:
    """A missing, unreadable or oversized key file says which and why."""
    with pytest.raises(errors.ModelKeyError, match=r"key file .*/nope: no such key file"):
        ModelProtector.from_key_file(tmp_path / "nope")
    with pytest.raises(errors.ModelKeyError, match="is a folder"):
        ModelProtector.from_key_file(tmp_path)
    (tmp_path / "big").write_bytes(b"A" * 5000)
    with pytest.raises(errors.ModelKeyError, match="too large"):
        ModelProtector.from_key_file(tmp_path / "big")


def test_bad_arguments() -> None:
    """A key of the wrong size, a chunk size out of bounds, an empty model id are refused."""
    with pytest.raises(errors.ModelKeyError, match="32 bytes"):
        ModelProtector(b"short")
    with pytest.raises(ValueError, match="chunk size"):
        ModelProtector(bytes(32), chunk_size=8)
    with pytest.raises(ValueError, match="model id"):
        ModelProtector(bytes(32)).encrypt_bytes(b"x", "")


# Memory files ----------------------------------------------------------------------------


def test_memory_file_is_a_path_in_memory(protector: ModelProtector, sealed: bytes) -> None:
    """decrypt_to_memory_file gives a sealed memfd whose /proc path opens like a file."""
    data = protector.decrypt(io.BytesIO(sealed))
    with protector.decrypt_to_memory_file(io.BytesIO(sealed), "face") as memory:
        assert memory.path == f"/proc/self/fd/{memory.fileno()}"
        assert os.readlink(memory.path).startswith("/memfd:face")
        assert Path(memory.path).read_bytes() == data == memory.read()
        assert memory.size == len(data)
        with pytest.raises(PermissionError):
            os.pwrite(memory.fileno(), b"x", 0)
    assert memory.closed
    with pytest.raises(ValueError, match="closed"):
        memory.fileno()
