# cython: language_level=3, binding=True, embedsignature=True
"""Encrypted model files: AES-256-GCM in authenticated chunks, through ``cryptography``.

Compiled by ``python build_protector.py`` (``make protector``); the image ships the
compiled module only. The cipher is ``cryptography``'s; this module holds the key and
calls it. The file layout is in ``fileformat.py``.

Each file gets a random salt; HKDF-SHA256 turns the 32-byte model key and the salt into
the file's AES-256 key and a key check, so a wrong key is told apart from a damaged file.
The header tag is AES-GCM's tag over the header (model id, chunk size, nonce material).
Each chunk is sealed with the nonce ``nonce prefix | chunk index`` (64-bit) and also
authenticates the header tag and its own frame (index, length, last-chunk flag): a
changed byte, a renamed model id, chunks swapped, dropped or cut off each fail with their
own error. Decryption holds one chunk at a time, whatever the size of the model.

``ModelProtector.open_linker`` and ``extract_linker`` still read the legacy ``.linker``
files of ``linker_atom`` (``linker.py``), so existing models keep loading.
"""

import hmac
import io
import os
import struct

cimport cython
from cpython.buffer cimport PyBUF_WRITE
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize
from cpython.memoryview cimport PyMemoryView_FromMemory

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.hashes import SHA256
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from .errors import (
    ChunkOrderError,
    ChunkTamperedError,
    FormatError,
    HeaderTamperedError,
    ModelIdMismatchError,
    ModelKeyError,
    ProtectorError,
    TamperedError,
    TruncatedError,
    UnsafeArchiveError,
    WrongKeyError,
)
from .fileformat import (
    DEFAULT_CHUNK_SIZE,
    FORMAT_VERSION,
    FRAME,
    KEY_SIZE,
    LAST,
    MAGIC,
    NONCE_PREFIX_SIZE,
    SALT_SIZE,
    TAG_SIZE,
    Header,
    check_chunk_size,
    chunk_count,
    key_from_text,
    key_to_text,
    name_of,
    pack_header,
    parse_header,
    read_header,
    read_key_file,
    reading,
    writing,
)
from .linker import LinkerHeader, extract_linker, inspect_linker, read_linker
from .memory_file import MemoryFile

HEADER_INDEX = (1 << 64) - 1  # the header tag's nonce; chunk indexes stay below it
HKDF_INFO = b"atom-model-protector v1: file key, key check"
_INDEX = struct.Struct(">Q")
PREFAULT_FROM = 1 << 20


cdef extern from "<sys/mman.h>" nogil:
    int madvise(void *addr, size_t length, int advice)

cdef extern from "<unistd.h>" nogil:
    int getpagesize()

# Linux 5.14+ (a constant, as older C headers lack it); older kernels refuse it, harmlessly.
cdef int MADV_POPULATE_WRITE = 23


cdef void _prefault(char *start, Py_ssize_t size) noexcept nogil:
    """Map a new buffer's pages in one system call rather than one page fault per page
    (most of the time of a large decryption in memory goes to those faults)."""
    cdef size_t page = getpagesize()
    cdef size_t first = (<size_t>start + page - 1) & ~(page - 1)
    cdef size_t last = (<size_t>start + <size_t>size) & ~(page - 1)
    if last > first:
        madvise(<void *>first, last - first, MADV_POPULATE_WRITE)


cdef Py_ssize_t _read_into(object f, object view) except -1:
    """Fill ``view`` from ``f``; return how much was read (less only at the end)."""
    cdef Py_ssize_t total = 0, size = len(view)
    while total < size:
        got = f.readinto(view[total:])
        if not got:
            break
        total += got
    return total


cdef _write_all(object f, object view):
    """Write all of ``view`` (a raw file may take it in several calls)."""
    cdef Py_ssize_t done = 0, size = len(view)
    while done < size:
        written = f.write(view[done:])
        done = size if written is None else done + written


cdef bytes _nonce(bytes prefix, unsigned long long index):
    """The 12-byte nonce of a chunk (or of the header, at HEADER_INDEX)."""
    return prefix + _INDEX.pack(index)


# Where decrypted chunks go -------------------------------------------------------------

cdef class _Sink:
    """Where decrypted chunks go: ``reserve`` gives room for one, ``commit`` keeps it."""

    cdef object reserve(self, Py_ssize_t size):
        raise NotImplementedError

    cdef commit(self, Py_ssize_t size):
        raise NotImplementedError


@cython.final
cdef class _BytesSink(_Sink):
    """A new bytes object of the exact plaintext size, filled in place: no final copy."""

    cdef object out
    cdef object view
    cdef Py_ssize_t pos
    cdef Py_ssize_t size

    def __cinit__(self, Py_ssize_t size):
        self.size = size
        self.pos = 0
        if size == 0:  # the empty bytes object is shared: never write into it
            self.out = b""
            self.view = memoryview(bytearray())
        else:  # not shared until returned: filling it is how the C API builds bytes
            self.out = PyBytes_FromStringAndSize(NULL, size)
            if size >= PREFAULT_FROM:
                _prefault(PyBytes_AS_STRING(self.out), size)
            self.view = PyMemoryView_FromMemory(PyBytes_AS_STRING(self.out), size, PyBUF_WRITE)

    cdef object reserve(self, Py_ssize_t size):
        if self.pos + size > self.size:
            raise TamperedError("the file holds more data than its size allows")
        return self.view[self.pos : self.pos + size]

    cdef commit(self, Py_ssize_t size):
        self.pos += size

    cdef object finish(self, str name):
        self.view.release()
        if self.pos != self.size:
            raise TamperedError(f"{name}: the chunks do not add up to the file's size")
        return self.out


@cython.final
cdef class _StreamSink(_Sink):
    """A writable binary file, written one chunk at a time through a reused buffer."""

    cdef object dst
    cdef object view

    def __cinit__(self, object dst, Py_ssize_t chunk_size):
        self.dst = dst
        self.view = memoryview(bytearray(chunk_size))

    cdef object reserve(self, Py_ssize_t size):
        return self.view[:size]

    cdef commit(self, Py_ssize_t size):
        _write_all(self.dst, self.view[:size])


# The protector -------------------------------------------------------------------------

@cython.auto_pickle(False)
@cython.final
cdef class ModelProtector:
    """Encrypts and decrypts model files with one 32-byte model key.

    Build it from the key's text or file (``from_key_text``, ``from_key_file``). The key
    is never shown: not by ``repr``, not in an error, not by pickling or copying.
    """

    cdef bytes _key
    cdef readonly str source
    cdef readonly Py_ssize_t chunk_size

    def __init__(self, key, *, chunk_size=DEFAULT_CHUNK_SIZE, source="a key"):
        key = bytes(key)
        if len(key) != KEY_SIZE:
            raise ModelKeyError(f"{source}: a model key is {KEY_SIZE} bytes")
        check_chunk_size(chunk_size)
        self._key = key
        self.source = source
        self.chunk_size = chunk_size

    @staticmethod
    def generate_key():
        """32 random bytes from the operating system: a new model key."""
        return AESGCM.generate_key(bit_length=256)

    @staticmethod
    def key_to_text(key, fmt="base64"):
        """A key as the text of a key file: base64 (default) or hex."""
        return key_to_text(key, fmt)

    @classmethod
    def from_key_text(cls, text, *, source="the key text", chunk_size=DEFAULT_CHUNK_SIZE):
        """The protector of a key written as base64 or hex (spaces and newlines ignored)."""
        return cls(key_from_text(text, source), chunk_size=chunk_size, source=source)

    @classmethod
    def from_key_file(cls, path, *, source=None, chunk_size=DEFAULT_CHUNK_SIZE):
        """The protector of the key held by a file (base64 or hex text)."""
        source = source or f"key file {os.fsdecode(path)}"
        text = read_key_file(path, source)
        return cls.from_key_text(text, source=source, chunk_size=chunk_size)

    def __repr__(self):
        return f"<ModelProtector key=<hidden> source={self.source!r} chunk_size={self.chunk_size}>"

    def __reduce__(self):
        raise TypeError("a ModelProtector holds a key: it cannot be pickled or copied")

    cdef tuple _derive(self, bytes salt):
        """The file key and the key check of a salt."""
        material = HKDF(
            algorithm=SHA256(), length=KEY_SIZE + TAG_SIZE, salt=salt, info=HKDF_INFO
        ).derive(self._key)
        return material[:KEY_SIZE], material[KEY_SIZE:]

    # Encryption ------------------------------------------------------------------------

    def encrypt(self, src, dst, model_id, *, chunk_size=None, progress=None):
        """Encrypt a model (path or binary file) into ``dst`` (path or binary file).

        ``chunk_size`` defaults to the protector's; ``progress(done)`` is called after
        each chunk with the plaintext bytes done. Returns the header written.
        """
        chunk_size = self.chunk_size if chunk_size is None else chunk_size
        salt, prefix = os.urandom(SALT_SIZE), os.urandom(NONCE_PREFIX_SIZE)
        file_key, key_check = self._derive(salt)
        raw = pack_header(chunk_size, model_id, salt, prefix, key_check)
        aead = AESGCM(file_key)
        tag = aead.encrypt(_nonce(prefix, HEADER_INDEX), b"", raw)
        header = Header(
            FORMAT_VERSION, chunk_size, model_id, salt, prefix, key_check, tag,
            len(raw) + TAG_SIZE, raw,
        )
        with reading(src) as fin, writing(dst) as fout:
            _write_all(fout, raw)
            _write_all(fout, tag)
            _encrypt_chunks(aead, header, fin, fout, progress)
        return header

    def encrypt_bytes(self, data, model_id):
        """Encrypt bytes in memory; return the protected file's bytes."""
        out = io.BytesIO()
        self.encrypt(io.BytesIO(bytes(data)), out, model_id)
        return out.getvalue()

    # Decryption ------------------------------------------------------------------------

    def read_header(self, src, model_id=None):
        """The header, once the key, the header's authenticity and the model id are checked."""
        with reading(src) as f:
            return self._open(f, name_of(src), model_id)[0]

    def decrypt(self, src, model_id=None):
        """The plaintext as bytes, decrypted in memory (path or binary file).

        With ``model_id``, a file holding another model is refused.
        """
        cdef _BytesSink sink
        name = name_of(src)
        with reading(src) as f:
            header, aead = self._open(f, name, model_id)
            size = _remaining_plaintext(f, header)
            if size < 0:  # not seekable: collect the chunks
                out = io.BytesIO()
                _decrypt_chunks(aead, header, f, _StreamSink(out, header.chunk_size), None, name)
                return out.getvalue()
            sink = _BytesSink(size)
            _decrypt_chunks(aead, header, f, sink, None, name)
            return sink.finish(name)

    def decrypt_into(self, src, dst, model_id=None, *, progress=None):
        """Decrypt into ``dst`` (path or writable binary file), one chunk of memory at a time.

        Returns the number of plaintext bytes written. On failure, a ``dst`` path is removed.
        """
        name = name_of(src)
        with reading(src) as f:
            header, aead = self._open(f, name, model_id)
            try:
                with writing(dst) as out:
                    sink = _StreamSink(out, header.chunk_size)
                    return _decrypt_chunks(aead, header, f, sink, progress, name)
            except BaseException:
                if isinstance(dst, (str, bytes, os.PathLike)):
                    os.unlink(dst)  # no partial plaintext left behind
                raise

    def decrypt_to_memory_file(self, src, model_id=None, *, progress=None):
        """Decrypt into an anonymous in-memory file whose ``path`` a library can open.

        Close the returned ``MemoryFile`` (or use it in a ``with``) once the library has
        read it; nothing touches the disk.
        """
        memory = MemoryFile((model_id or "atom-model")[:48])  # memfd names: under 250 bytes
        try:
            with open(memory.fileno(), "wb", buffering=0, closefd=False) as out:
                memory.size = self.decrypt_into(src, out, model_id, progress=progress)
            memory.seal()
        except BaseException:
            memory.close()
            raise
        return memory

    cdef tuple _open(self, object f, str name, object model_id):
        """Read the header; check the key, the header's tag and the model id."""
        header = parse_header(f, name)
        file_key, key_check = self._derive(header.salt)
        if not hmac.compare_digest(key_check, header.key_check):
            raise WrongKeyError(
                f"{name}: the model key ({self.source}) does not open this file: "
                "it was encrypted with another key"
            )
        aead = AESGCM(file_key)
        try:
            aead.decrypt(_nonce(header.nonce_prefix, HEADER_INDEX), header.tag, header.raw)
        except InvalidTag:
            raise HeaderTamperedError(
                f"{name}: the header (model id, chunk size, nonce material) was altered "
                "after encryption"
            ) from None
        if model_id is not None and header.model_id != model_id:
            raise ModelIdMismatchError(
                f"{name}: holds the model {header.model_id!r}, not {model_id!r}"
            )
        return header, aead

    # Legacy .linker files --------------------------------------------------------------

    @staticmethod
    def open_linker(path, key_byte, customer_id):
        """The files of a legacy ``.linker`` model, in memory: {relative path: bytes}.

        ``key_byte`` is its one-byte mask key; ``customer_id`` must match its header's.
        """
        return read_linker(path, key_byte, customer_id)

    @staticmethod
    def extract_linker(path, key_byte, customer_id, target_dir):
        """Extract a legacy ``.linker`` model under ``target_dir``; return the files written.

        A member that would escape ``target_dir`` (absolute, ``..``, link, device) is
        refused with ``UnsafeArchiveError`` and nothing of the archive is left behind.
        """
        return extract_linker(path, key_byte, customer_id, target_dir)

    @staticmethod
    def read_linker_header(path):
        """The header of a legacy ``.linker`` file (mark, version, sizes, customer id)."""
        return inspect_linker(path)


cdef _encrypt_chunks(object aead, object header, object fin, object fout, object progress):
    """Seal the plaintext chunk by chunk; one chunk is read ahead to flag the last one."""
    cdef Py_ssize_t chunk = header.chunk_size
    cdef Py_ssize_t size, ahead
    cdef unsigned long long index = 0, done = 0
    current, following = bytearray(chunk), bytearray(chunk)
    sealed = memoryview(bytearray(chunk + TAG_SIZE))
    size = _read_into(fin, memoryview(current))
    while True:
        ahead = _read_into(fin, memoryview(following)) if size == chunk else 0
        frame = FRAME.pack(index, size, LAST if ahead == 0 else 0)
        out = sealed[: size + TAG_SIZE]
        aead.encrypt_into(
            _nonce(header.nonce_prefix, index), memoryview(current)[:size], header.tag + frame, out
        )
        _write_all(fout, frame)
        _write_all(fout, out)
        done += size
        if progress is not None:
            progress(done)
        if ahead == 0:
            return done
        current, following = following, current
        size = ahead
        index += 1


cdef long long _remaining_plaintext(object f, object header) except? -2:
    """Plaintext bytes after the header if the file is intact, or -1 if it is not seekable."""
    try:
        here = f.tell()
        end = f.seek(0, os.SEEK_END)
        f.seek(here)
    except (OSError, ValueError, AttributeError):
        return -1
    return chunk_count(header, header.size + max(end - here, 0))[1]


cdef object _decrypt_chunks(
    object aead, object header, object f, _Sink sink, object progress, str name
):
    """Check and open each chunk in order into ``sink``; return the plaintext size."""
    cdef Py_ssize_t chunk = header.chunk_size, head = FRAME.size
    cdef Py_ssize_t size
    cdef unsigned long long index = 0, done = 0, offset = header.size
    cdef unsigned int flags
    buffer = memoryview(bytearray(head + chunk + TAG_SIZE))
    frame = buffer[:head]
    prefix, header_tag = header.nonce_prefix, header.tag
    while True:
        if _read_into(f, frame) < head:
            raise TruncatedError(
                f"{name}: the file ends after {index} chunk(s), before its last chunk"
            )
        position, size, flags = FRAME.unpack_from(frame)
        if position != index:
            raise ChunkOrderError(
                f"{name}: chunk {position} stands at position {index}: "
                "chunks were reordered, duplicated or dropped"
            )
        if flags & ~LAST or size > chunk or (not flags & LAST and size != chunk):
            raise ChunkTamperedError(f"{name}: chunk {index} has an impossible frame")
        body = buffer[head : head + size + TAG_SIZE]
        if _read_into(f, body) < size + TAG_SIZE:
            raise TruncatedError(f"{name}: the file ends inside chunk {index}")
        try:
            aead.decrypt_into(
                _nonce(prefix, index), body, header_tag + frame.tobytes(), sink.reserve(size)
            )
        except InvalidTag:
            raise ChunkTamperedError(
                f"{name}: chunk {index} (at byte {offset}) failed authentication: "
                "the file was modified or is corrupt"
            ) from None
        sink.commit(size)
        done += size
        offset += head + size + TAG_SIZE
        index += 1
        if progress is not None:
            progress(done)
        if flags & LAST:
            break
    if _read_into(f, frame[:1]):
        raise TamperedError(f"{name}: data follows the last chunk")
    return done


__all__ = [
    "DEFAULT_CHUNK_SIZE",
    "FORMAT_VERSION",
    "KEY_SIZE",
    "MAGIC",
    "ChunkOrderError",
    "ChunkTamperedError",
    "FormatError",
    "Header",
    "HeaderTamperedError",
    "LinkerHeader",
    "MemoryFile",
    "ModelIdMismatchError",
    "ModelKeyError",
    "ModelProtector",
    "ProtectorError",
    "TamperedError",
    "TruncatedError",
    "UnsafeArchiveError",
    "WrongKeyError",
    "read_header",
]
