# cython: language_level=3, binding=True, embedsignature=True
"""Encrypted model files: the STREAM construction over AES-256-GCM, through ``cryptography``.

Compiled by the package's build (``setup.py``: ``make protector``, ``pip install -e .``,
``pip wheel .``); the image ships the compiled module only. The cipher is
``cryptography``'s AES-GCM: this module derives the file key and the nonces, seals and
opens the chunks, and checks their order. The byte layout is in ``fileformat.py``; what
follows is why it resists tampering.

The construction is STREAM (Hoang, Reyhanitabar, Rogaway and Vizár, "Online
Authenticated-Encryption and its Nonce-Reuse Misuse-Resistance", CRYPTO 2015): the
plaintext is cut into chunks, and chunk ``i`` is sealed by a nonce-based AEAD under a
nonce made of a per-file prefix and the counter ``i``, with the last chunk marked. A
reader that opens chunk ``i`` with counter ``i`` accepts only the chunk written at that
place, and knows whether the stream may end after it. (Google Tink's AES-GCM-HKDF
streaming AEAD is built the same way.) Here:

- **Per-file key.** The model key (32 random bytes) encrypts nothing itself. Each file
  draws a random 16-byte salt; HKDF-SHA256 of the model key with that salt (info
  ``HKDF_INFO``) gives 48 bytes: the file's AES-256 key and a 16-byte key check. Files
  encrypted with the same model key thus have different file keys, so their nonces
  never meet under one key (two salts collide with a chance of about 2^-65 even after
  2^32 files).
- **Nonces.** 12 bytes, GCM's own size: a random 4-byte nonce prefix, then a 64-bit
  big-endian counter. Counter ``i`` seals chunk ``i``; the highest value (``HEADER_INDEX``)
  is kept for the header, and no file reaches it.
- **Header tag.** AES-GCM over an empty plaintext, with the header's bytes (version,
  chunk size, salt, nonce prefix, key check, model id) as associated data: a MAC of the
  header under the file key.
- **Chunks.** Chunk ``i`` is AES-GCM of its plaintext under nonce ``prefix | i``, with as
  associated data the header tag followed by the chunk's 13-byte frame: index ``i``,
  plaintext length, flags. The flags are 1 on the last chunk and 0 on every other.
  STREAM puts that last-chunk flag into the nonce; this format puts it into the
  authenticated frame. Both bind it to the chunk's tag, and as the writer seals each
  counter once, each nonce still serves once: the security argument is the same. The
  index in the frame repeats the counter; it only lets the reader name a misplaced
  chunk.

What the reader (``_decrypt_chunks``) does with each kind of damage, and the error:

- **Wrong key**: the key check derived from the salt differs: ``WrongKeyError``, before
  any decryption. (It is an HKDF output: it tells nothing about the key.) A changed salt
  or key check cannot be told from another key, and is reported as one.
- **Header changed** (a renamed model id, another chunk size or nonce prefix): the header
  tag fails: ``HeaderTamperedError``. A file cannot be renamed to serve as another model.
- **A chunk's bytes changed**: its tag fails: ``ChunkTamperedError``.
- **Chunks reordered, duplicated or a middle one dropped**: the chunk found at position
  ``i`` was sealed with another counter, so its tag would fail. Its frame's index (in
  the clear, but authenticated) is compared first, to name the problem:
  ``ChunkOrderError``; an index rewritten to hide the move fails the tag instead.
- **Cut at a chunk boundary** (the last chunks dropped): the chunk now at the end does
  not carry the last-chunk bit, and the file ends: ``TruncatedError``. Setting the bit on
  it changes its associated data: ``ChunkTamperedError``. Likewise a middle chunk with
  the bit set (to end the model early) fails its tag.
- **Cut inside a chunk or inside the header**: ``TruncatedError``. **Bytes after the last
  chunk**: ``TamperedError``.
- **A chunk taken from another file** encrypted with the same model key, at the same
  position and chunk size: the other file's salt gave another file key, so the tag
  fails: ``ChunkTamperedError``. Even two files that shared a salt and nonce prefix (a
  broken random source) keep their chunks apart as long as their headers differ,
  because each chunk authenticates its own file's header tag.

Nothing of a chunk is released before its tag is checked. ``decrypt`` returns nothing
and ``decrypt_to_memory_file`` closes its file when any chunk fails; ``decrypt_into`` may
have written the chunks before the failure (the command line writes beside the target
and renames only a complete file). Decryption holds one chunk at a time, whatever the
size of the model.

Limits: this deters copying of the image or of the model files, which are useless
without the key. It is not DRM: the atom must hold the key to serve the model (a secret
mounted into the container), and whoever controls the container or its host can read
the key or the decrypted model in memory. The model id, the chunk size and the model's
size are in the clear (authenticated, not hidden).

``ModelProtector.open_linker`` and ``extract_linker`` still read the legacy ``.linker``
files of ``linker_atom`` (``linker.py``), so existing models keep loading.

One name, two constructors, told apart by their arguments: ``ModelProtector(key)`` (32
bytes) is this module's protector; ``ModelProtector(xor_key, user_id, model_version=0)``
(an int key byte and a customer id, positional or by those names, as ``linker_atom``
called it) is the legacy one, with ``linker_atom``'s ``decrypt_model``,
``encrypt_model``, ``encrypt_model_legacy`` and ``remove_model`` (``linker.LinkerModels``),
and a DeprecationWarning. Each kind refuses the other's methods with ``ModelKeyError``,
so a legacy key byte never reaches the cipher.

Speed: one trick, kept because ``benchmarks/bench_protector.py`` measures it paying
(with and without, side by side; the numbers are in BENCHMARKS.md): ``reused_buffers``,
one buffer per role (read, sealed, opened) for the whole file instead of new bytes per
chunk. New 1 MiB objects at every chunk make glibc trim and grow its heap, so each chunk
lands on fresh pages: with the trick, encryption runs about 4x and streamed decryption
about 1.1x as fast. Filling the returned bytes object in place, its pages mapped ahead
with ``madvise(MADV_POPULATE_WRITE)``, measured hardly faster than writing to
``io.BytesIO`` (median 1.04x over eleven runs, 0.98x to 1.30x) and was removed.
"""

import hmac
import io
import os
import struct
import warnings

cimport cython

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
    key_from_text,
    key_to_text,
    name_of,
    pack_header,
    parse_header,
    read_exact,
    read_header,
    read_key_file,
    reading,
    writing,
)
from .linker import LinkerHeader, LinkerModels, extract_linker, inspect_linker, read_linker
from .memory_file import MemoryFile

HEADER_INDEX = (1 << 64) - 1  # the header tag's nonce; chunk indexes stay below it
HKDF_INFO = b"atom-model-protector v1: file key, key check"
_INDEX = struct.Struct(">Q")

# The speed tricks in use. Only benchmarks/bench_protector.py changes this set: it removes
# a name to measure the code without that trick, next to the code with it.
_SPEED_TRICKS = {"reused_buffers"}


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


cdef object _read(object f, object buffer, Py_ssize_t size):
    """Up to ``size`` bytes of ``f`` (fewer only at the end), read into ``buffer``, which
    serves every chunk (without the ``reused_buffers`` trick: new bytes, as ``f.read``)."""
    if "reused_buffers" not in _SPEED_TRICKS:
        return read_exact(f, size)
    view = buffer[:size]
    return view[: _read_into(f, view)]


cdef bytes _nonce(bytes prefix, unsigned long long index):
    """The 12-byte nonce of a chunk (or of the header, at HEADER_INDEX)."""
    return prefix + _INDEX.pack(index)


# The protector -------------------------------------------------------------------------

@cython.auto_pickle(False)
@cython.final
cdef class ModelProtector:
    """Encrypts and decrypts model files with one 32-byte model key.

    Build it from the key's text or file (``from_key_text``, ``from_key_file``). The key
    is never shown: not by ``repr``, not in an error, not by pickling or copying.
    """

    cdef bytes _key
    cdef object _legacy  # linker.LinkerModels for linker_atom's constructor, else None
    cdef readonly str source
    cdef readonly Py_ssize_t chunk_size

    def __init__(
        self,
        key=None,
        user_id=None,
        model_version=0,
        *,
        xor_key=None,
        chunk_size=DEFAULT_CHUNK_SIZE,
        source="a key",
    ):
        check_chunk_size(chunk_size)
        self.chunk_size = chunk_size
        if xor_key is not None or user_id is not None or _is_key_byte(key):
            self._init_legacy(key if xor_key is None else xor_key, user_id, model_version)
            return
        if key is None:
            raise TypeError(
                "ModelProtector needs a model key (32 bytes), or linker_atom's "
                "(xor_key, user_id) for legacy .linker files"
            )
        key = bytes(key)
        if len(key) != KEY_SIZE:
            raise ModelKeyError(f"{source}: a model key is {KEY_SIZE} bytes")
        self._key = key
        self._legacy = None
        self.source = source

    cdef _init_legacy(self, object xor_key, object user_id, object model_version):
        """linker_atom's protector of ``.linker`` files (one key byte, one customer id)."""
        if user_id is None:
            raise TypeError("ModelProtector(xor_key, user_id): user_id is missing")
        self._legacy = LinkerModels(xor_key, user_id, model_version)  # checks them
        warnings.warn(
            "ModelProtector(xor_key, user_id) reads and writes linker_atom's .linker files, "
            "a one-byte mask: move the model to the encrypted format (docs/migration.md)",
            DeprecationWarning,
            stacklevel=1,  # Cython functions push no frame: 1 is the caller's line
        )
        self._key = b""
        self.source = "a legacy .linker key byte"

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
        if self._legacy is not None:
            return f"<ModelProtector legacy .linker user_id={self._legacy.user_id!r} key=<hidden>>"
        return f"<ModelProtector key=<hidden> source={self.source!r} chunk_size={self.chunk_size}>"

    def __reduce__(self):
        raise TypeError("a ModelProtector holds a key: it cannot be pickled or copied")

    cdef tuple _derive(self, bytes salt):
        """The file key and the key check of a salt."""
        if self._legacy is not None:
            raise ModelKeyError(
                "this ModelProtector was built with linker_atom's (xor_key, user_id): it "
                "reads .linker files only (decrypt_model); build one with a model key"
            )
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
        out = io.BytesIO()
        self.decrypt_into(src, out, model_id)
        return out.getvalue()  # the buffer itself, no copy (it is not shared)

    def decrypt_into(self, src, dst, model_id=None, *, progress=None):
        """Decrypt into ``dst`` (path or writable binary file), one chunk of memory at a time.

        Returns the number of plaintext bytes written. On failure, a ``dst`` path is removed.
        """
        name = name_of(src)
        with reading(src) as f:
            header, aead = self._open(f, name, model_id)
            try:
                with writing(dst) as out:
                    return _decrypt_chunks(aead, header, f, out, progress, name)
            except BaseException:
                if isinstance(dst, (str, bytes, os.PathLike)):
                    try:
                        os.unlink(dst)  # no partial plaintext left behind
                    except OSError:  # never created: the original error says why
                        pass
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

    # linker_atom's methods (built with its constructor) --------------------------------

    cdef object _linker(self, str method):
        if self._legacy is None:
            raise ModelKeyError(
                f"{method} is linker_atom's, for .linker files: build the protector as "
                "ModelProtector(xor_key, user_id); this one holds a model key"
            )
        return self._legacy

    @property
    def xor_key(self):
        """The legacy key byte (None for a protector built with a model key)."""
        return None if self._legacy is None else self._legacy.xor_key

    @property
    def user_id(self):
        """The legacy customer id (None for a protector built with a model key)."""
        return None if self._legacy is None else self._legacy.user_id

    @property
    def model_version(self):
        """The legacy model version written by ``encrypt_model`` (None with a model key)."""
        return None if self._legacy is None else self._legacy.model_version

    def decrypt_model(self, source_dir, out_path="/tmp"):
        """Extract a ``.linker`` model into a new private folder under ``out_path``.

        Returns (the model's folder, the new folder), as ``linker_atom`` did; unsafe
        members are refused; the folder is removed at exit or by ``remove_model``.
        """
        return self._linker("decrypt_model").decrypt_model(source_dir, out_path)

    def encrypt_model(self, source_dir, out_path="."):
        """Write ``out_path/<name>.linker`` from a model folder; return its path."""
        return self._linker("encrypt_model").encrypt_model(source_dir, out_path)

    def encrypt_model_legacy(self, source_dir, out_path="."):
        """``encrypt_model`` in the older layout that masks every byte."""
        return self._linker("encrypt_model_legacy").encrypt_model_legacy(source_dir, out_path)

    def remove_model(self, source_dir):
        """Remove a model ``decrypt_model`` extracted (its whole folder)."""
        return self._linker("remove_model").remove_model(source_dir)


def _is_key_byte(key):
    """linker_atom's first argument: an int (a key byte), where a model key is bytes."""
    return isinstance(key, int) and not isinstance(key, bool)


cdef _encrypt_chunks(object aead, object header, object fin, object fout, object progress):
    """Seal the plaintext chunk by chunk; one chunk is read ahead to flag the last one."""
    cdef Py_ssize_t chunk = header.chunk_size
    cdef Py_ssize_t size
    cdef unsigned long long index = 0, done = 0
    cdef bint reuse = "reused_buffers" in _SPEED_TRICKS
    inputs = (memoryview(bytearray(chunk)), memoryview(bytearray(chunk)))  # used in turn
    sealed = memoryview(bytearray(chunk + TAG_SIZE))
    current = _read(fin, inputs[0], chunk)
    while True:
        size = len(current)
        following = _read(fin, inputs[(index + 1) & 1], chunk) if size == chunk else b""
        frame = FRAME.pack(index, size, 0 if following else LAST)
        nonce, aad = _nonce(header.nonce_prefix, index), header.tag + frame
        _write_all(fout, frame)
        if reuse:
            aead.encrypt_into(nonce, current, aad, sealed[: size + TAG_SIZE])
            _write_all(fout, sealed[: size + TAG_SIZE])
        else:
            _write_all(fout, aead.encrypt(nonce, current, aad))
        done += size
        if progress is not None:
            progress(done)
        if not following:
            return done
        current = following
        index += 1


cdef object _decrypt_chunks(
    object aead, object header, object f, object out, object progress, str name
):
    """Check and open each chunk in order, writing it to ``out``; return the plaintext size."""
    cdef Py_ssize_t chunk = header.chunk_size, head = FRAME.size
    cdef Py_ssize_t size
    cdef unsigned long long index = 0, done = 0, offset = header.size
    cdef unsigned int flags
    cdef bint reuse = "reused_buffers" in _SPEED_TRICKS
    frames, bodies = memoryview(bytearray(head)), memoryview(bytearray(chunk + TAG_SIZE))
    opened = memoryview(bytearray(chunk))
    prefix, header_tag = header.nonce_prefix, header.tag
    while True:
        frame = _read(f, frames, head)
        if len(frame) < head:
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
        body = _read(f, bodies, size + TAG_SIZE)
        if len(body) < size + TAG_SIZE:
            raise TruncatedError(f"{name}: the file ends inside chunk {index}")
        nonce, aad = _nonce(prefix, index), header_tag + bytes(frame)
        try:
            if reuse:
                aead.decrypt_into(nonce, body, aad, opened[:size])
                _write_all(out, opened[:size])
            else:
                _write_all(out, aead.decrypt(nonce, body, aad))
        except InvalidTag:
            raise ChunkTamperedError(
                f"{name}: chunk {index} (at byte {offset}) failed authentication: "
                "the file was modified or is corrupt"
            ) from None
        done += size
        offset += head + size + TAG_SIZE
        index += 1
        if progress is not None:
            progress(done)
        if flags & LAST:
            break
    if _read_into(f, frames[:1]):
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
