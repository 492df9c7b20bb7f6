"""The errors of model protection: one class per way a protected model can fail to open.

Messages name the file and what is wrong with it, never the key.
"""


class ProtectorError(Exception):
    """A protected model cannot be read or written."""


class ProtectorNotBuiltError(ProtectorError):
    """The compiled protector module is missing (``make protector`` builds it)."""


class ModelKeyError(ProtectorError):
    """No model key was found, or what was found is not a key."""


class WrongKeyError(ModelKeyError):
    """The key does not open this file."""


class FormatError(ProtectorError):
    """The file is not a protected model, or one of a format version this code cannot read."""


class TamperedError(ProtectorError):
    """The file failed authentication: it was modified, corrupted, truncated or reordered."""


class HeaderTamperedError(TamperedError):
    """The header (model id, chunk size, nonce material) was changed after encryption."""


class ChunkTamperedError(TamperedError):
    """A chunk's bytes were changed after encryption (a flipped bit, a corrupted copy)."""


class ChunkOrderError(TamperedError):
    """A chunk is not at its place: chunks were reordered, duplicated or dropped."""


class TruncatedError(TamperedError):
    """The file ends before its last chunk."""


class ModelIdMismatchError(ProtectorError):
    """The file is authentic but holds another model than the one asked for."""


class UnsafeArchiveError(ProtectorError):
    """An archive member would escape its target: absolute path, ``..``, link or device."""
