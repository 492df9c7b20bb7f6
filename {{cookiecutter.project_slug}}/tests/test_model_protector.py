"""The compiled model protector: round trips, each kind of tampering, a key that never shows."""

import copy
import io
import os
import pickle
import struct
from collections.abc import Callable
from pathlib import Path

import pytest

from {{ cookiecutter.package_name }}.protection import errors, fileformat, model_protector
from {{ cookiecutter.package_name }}.protection.model_protector import ModelProtector

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
#
# Each case damages a real protected file of five chunks (four full, the last partial) the
# way an attacker or a bad copy would, and names the exact error class a reader must raise.
# The construction that makes each fail is explained in model_protector.pyx.

PLAINTEXT = 4 * CHUNK + 10  # five chunks: four full ones and a partial last one
Reader = Callable[[ModelProtector, Path], object]
READERS: dict[str, Reader] = {
    "decrypt": lambda protector, path: protector.decrypt(path, "face"),
    "decrypt_into": lambda protector, path: protector.decrypt_into(path, io.BytesIO(), "face"),
    "memory file": lambda protector, path: protector.decrypt_to_memory_file(path, "face").close(),
}


@pytest.fixture
def sealed(protector: ModelProtector) -> bytes:
    """A protected file of five chunks (the last one partial)."""
    return protector.encrypt_bytes(os.urandom(PLAINTEXT), "face")


@pytest.fixture
def sibling(protector: ModelProtector) -> bytes:
    """Another file with the key, model id, chunk size and size of ``sealed``."""
    return protector.encrypt_bytes(os.urandom(PLAINTEXT), "face")


def chunk_span(data: bytes, index: int) -> tuple[int, int]:
    """Where chunk ``index`` (frame and ciphertext) lies in a protected file."""
    start = fileformat.read_header(io.BytesIO(data)).size + index * (CHUNK + FRAME)
    return start, min(start + CHUNK + FRAME, len(data))


def chunk(data: bytes, index: int) -> bytes:
    """The bytes of chunk ``index``, frame included."""
    start, end = chunk_span(data, index)
    return data[start:end]


def put_chunk(data: bytes, index: int, new: bytes) -> bytes:
    """The data with chunk ``index`` replaced by ``new``."""
    start, end = chunk_span(data, index)
    return data[:start] + new + data[end:]


def flip(data: bytes, position: int) -> bytes:
    """The data with one bit changed."""
    return data[:position] + bytes([data[position] ^ 1]) + data[position + 1 :]


def swap_chunks(data: bytes, first: int, second: int) -> bytes:
    """The data with two chunks exchanged."""
    (a, b), (c, d) = chunk_span(data, first), chunk_span(data, second)
    return data[:a] + data[c:d] + data[b:c] + data[a:b] + data[d:]


def drop_chunk(data: bytes, index: int) -> bytes:
    """The data without one chunk."""
    start, end = chunk_span(data, index)
    return data[:start] + data[end:]


def cut_after(data: bytes, index: int) -> bytes:
    """The data cut at the end of chunk ``index``: every later chunk dropped."""
    return data[: chunk_span(data, index)[1]]


def set_frame(data: bytes, index: int, *, position: int | None = None, last: bool) -> bytes:
    """The data with chunk ``index``'s frame rewritten: its index and last-chunk flag."""
    start = chunk_span(data, index)[0]
    old, size, _ = fileformat.FRAME.unpack_from(data, start)
    frame = fileformat.FRAME.pack(old if position is None else position, size, int(last))
    return data[:start] + frame + data[start + len(frame) :]


def rename(data: bytes, old: str, new: str) -> bytes:
    """The data with the model id in the header replaced (its length field too)."""
    at = data.index(old.encode())
    length = struct.pack(">H", len(new.encode()))
    return data[: at - 2] + length + new.encode() + data[at + len(old.encode()) :]


TAMPERING = [
    ("flipped byte", lambda d, s: flip(d, chunk_span(d, 1)[0] + 20), errors.ChunkTamperedError),
    ("flipped tag", lambda d, s: flip(d, len(d) - 1), errors.ChunkTamperedError),
    ("reordered chunks", lambda d, s: swap_chunks(d, 1, 2), errors.ChunkOrderError),
    ("first and last exchanged", lambda d, s: swap_chunks(d, 0, 4), errors.ChunkOrderError),
    (
        "reordered, indexes rewritten",
        lambda d, s: set_frame(
            set_frame(swap_chunks(d, 1, 2), 1, position=1, last=False), 2, position=2, last=False
        ),
        errors.ChunkTamperedError,
    ),
    (
        "chunk duplicated",
        lambda d, s: put_chunk(d, 1, chunk(d, 1) + chunk(d, 1)),
        errors.ChunkOrderError,
    ),
    (
        "chunk copied over the next",
        lambda d, s: put_chunk(d, 2, chunk(d, 1)),
        errors.ChunkOrderError,
    ),
    ("middle chunk dropped", lambda d, s: drop_chunk(d, 1), errors.ChunkOrderError),
    (
        "chunk from another file, same key and place",
        lambda d, s: put_chunk(d, 2, chunk(s, 2)),
        errors.ChunkTamperedError,
    ),
    (
        "last chunk from another file",
        lambda d, s: put_chunk(d, 4, chunk(s, 4)),
        errors.ChunkTamperedError,
    ),
    ("last chunk dropped", lambda d, s: cut_after(d, 3), errors.TruncatedError),
    ("last three chunks dropped", lambda d, s: cut_after(d, 1), errors.TruncatedError),
    (
        "last chunk dropped, flag set on the new last",
        lambda d, s: set_frame(cut_after(d, 3), 3, last=True),
        errors.ChunkTamperedError,
    ),
    (
        "last-chunk flag set on a middle chunk",
        lambda d, s: set_frame(d, 1, last=True),
        errors.ChunkTamperedError,
    ),
    (
        "last-chunk flag cleared on the last chunk",
        lambda d, s: set_frame(d, 4, last=False),
        errors.ChunkTamperedError,
    ),
    (
        "cut inside a chunk's frame",
        lambda d, s: d[: chunk_span(d, 2)[0] + 5],
        errors.TruncatedError,
    ),
    ("cut inside a chunk", lambda d, s: d[:-5], errors.TruncatedError),
    ("cut inside the header", lambda d, s: d[:20], errors.TruncatedError),
    ("renamed model id", lambda d, s: rename(d, "face", "fake"), errors.HeaderTamperedError),
    ("longer model id", lambda d, s: rename(d, "face", "faces"), errors.HeaderTamperedError),
    ("changed chunk size", lambda d, s: flip(d, 13), errors.HeaderTamperedError),
    ("changed salt: reads as another key", lambda d, s: flip(d, 20), errors.WrongKeyError),
    ("changed key check", lambda d, s: flip(d, 40), errors.WrongKeyError),
    ("changed nonce prefix", lambda d, s: flip(d, 31), errors.HeaderTamperedError),
    ("data appended", lambda d, s: d + b"more", errors.TamperedError),
    ("not a model", lambda d, s: b"<?xml version='1.0'?>" + d, errors.FormatError),
    ("newer format", lambda d, s: d[:8] + struct.pack(">H", 9) + d[10:], errors.FormatError),
]


@pytest.fixture
def damaged(request: pytest.FixtureRequest, sealed: bytes, sibling: bytes, tmp_path: Path) -> Path:
    """A file holding ``sealed`` with the damage of the test's case."""
    data = request.param(sealed, sibling)
    assert data != sealed
    path = tmp_path / "model.enc"
    path.write_bytes(data)
    return path


@pytest.mark.parametrize("reader", READERS.values(), ids=READERS)
@pytest.mark.parametrize(
    ("damaged", "error"),
    [case[1:] for case in TAMPERING],
    ids=[case[0] for case in TAMPERING],
    indirect=["damaged"],
)
def test_tampering_fails_with_its_own_error(
    protector: ModelProtector, key: bytes, damaged: Path, error: type, reader: Reader
) -> None:
    """Each kind of damage to a file raises its own exception class, free of the key."""
    with pytest.raises(error) as raised:
        reader(protector, damaged)
    assert raised.type is error
    assert not any(form in str(raised.value) for form in secret_forms(key))


def test_the_damaged_files_are_whole_otherwise(protector: ModelProtector, sealed: bytes) -> None:
    """The untouched file and its sibling open: the failures above come from the damage."""
    assert len(protector.decrypt(io.BytesIO(sealed), "face")) == PLAINTEXT
    assert fileformat.read_header(io.BytesIO(sealed)).describe(len(sealed))["chunks"] == 5


@pytest.mark.parametrize("reader", READERS.values(), ids=READERS)
def test_a_file_cut_anywhere_is_truncated(
    protector: ModelProtector, sealed: bytes, tmp_path: Path, reader: Reader
) -> None:
    """A file cut at any byte after its magic raises TruncatedError, never a vaguer error."""
    path = tmp_path / "model.enc"
    for size in range(len(fileformat.MAGIC), len(sealed)):
        path.write_bytes(sealed[:size])
        with pytest.raises(errors.TruncatedError):
            reader(protector, path)


def test_chunks_are_bound_to_their_header(
    protector: ModelProtector, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With salt and nonce prefix repeated (a broken random source), a chunk of a file of
    another model still fails: each chunk authenticates its own file's header tag."""
    monkeypatch.setattr(os, "urandom", lambda size: bytes(range(size)))
    data = bytes(range(200))
    first = protector.encrypt_bytes(data, "face")
    second = protector.encrypt_bytes(data, "plates")
    assert chunk(first, 1)[:-16] == chunk(second, 1)[:-16]  # same key, nonce, frame and text
    assert chunk(first, 1)[-16:] != chunk(second, 1)[-16:]  # another header: another tag
    with pytest.raises(errors.ChunkTamperedError):
        protector.decrypt(io.BytesIO(put_chunk(first, 1, chunk(second, 1))))


def test_a_failed_decryption_leaves_no_partial_file(
    protector: ModelProtector, sealed: bytes, tmp_path: Path
) -> None:
    """decrypt_into a path removes what it wrote when a later chunk fails authentication."""
    source, target = tmp_path / "sealed", tmp_path / "opened"
    source.write_bytes(flip(sealed, chunk_span(sealed, 2)[0] + 20))  # chunks 0 and 1 are good
    with pytest.raises(errors.ChunkTamperedError):
        protector.decrypt_into(source, target, "face")
    assert not target.exists()


def test_wrong_key(sealed: bytes, key: bytes, tmp_path: Path) -> None:
    """Another key fails with WrongKeyError, naming where that key came from, not the key."""
    path = tmp_path / "model.enc"
    path.write_bytes(sealed)
    other = ModelProtector(ModelProtector.generate_key(), source="key file /run/other")
    for reader in READERS.values():
        with pytest.raises(errors.WrongKeyError) as raised:
            reader(other, path)
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


# The benchmark's switches ----------------------------------------------------------------


@pytest.mark.parametrize("trick", sorted(model_protector._SPEED_TRICKS))
def test_a_speed_trick_switched_off_changes_no_result(
    key: bytes, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, trick: str
) -> None:
    """Without any one speed trick, as bench_protector.py measures it, results stay the same."""
    monkeypatch.setattr(model_protector, "_SPEED_TRICKS", model_protector._SPEED_TRICKS - {trick})
    protector = ModelProtector(key, chunk_size=CHUNK)
    data = os.urandom(PLAINTEXT)
    path = tmp_path / "model.enc"
    protector.encrypt(io.BytesIO(data), path, "face")
    assert protector.decrypt(path, "face") == data
    with protector.decrypt_to_memory_file(path, "face") as memory:
        assert memory.read() == data
    path.write_bytes(path.read_bytes()[:-5])
    with pytest.raises(errors.TruncatedError):
        protector.decrypt(path, "face")
