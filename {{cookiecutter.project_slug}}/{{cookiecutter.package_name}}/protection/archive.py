"""Safe reading of a tar archive (the payload of legacy ``.linker`` models).

The archive is read as a stream, into memory or into a folder the caller gives. A member
that could escape its target is refused, never skipped: an absolute path, a ``..``
component, a symbolic or hard link, a device, a FIFO; so is an archive of more than
``MAX_MEMBERS`` members or, given ``max_bytes``, whose files add up to more (a compressed
payload may expand a thousandfold). The original extracted everything into /tmp without
any check and left it there.
"""

import tarfile
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from .errors import UnsafeArchiveError

CHUNK = 1 << 20
MAX_MEMBERS = 10_000


def member_path(member: tarfile.TarInfo) -> PurePosixPath:
    """The member's path relative to the target; refuse absolute paths and ``..``."""
    path = PurePosixPath(member.name)
    parts = [part for part in path.parts if part not in ("", ".")]
    if path.is_absolute():
        raise UnsafeArchiveError(f"archive member {member.name!r}: absolute paths are refused")
    if ".." in parts:
        raise UnsafeArchiveError(f"archive member {member.name!r}: '..' in a path is refused")
    if not parts:
        raise UnsafeArchiveError(f"archive member {member.name!r}: empty name")
    return PurePosixPath(*parts)


def check_kind(member: tarfile.TarInfo) -> None:
    """Accept regular files and folders only."""
    if member.isfile() or member.isdir():
        return
    if member.issym() or member.islnk():
        kind = f"a link to {member.linkname!r}"
    elif member.isdev():
        kind = "a device or a FIFO"
    else:
        kind = f"of tar type {member.type!r}"
    raise UnsafeArchiveError(f"archive member {member.name!r} is {kind}: refused")


def safe_members(
    fileobj: BinaryIO, max_bytes: int | None = None
) -> Iterator[tuple[PurePosixPath, tarfile.TarInfo, tarfile.TarFile]]:
    """Each checked member of a tar stream (compressed or not), in archive order.

    Sizes are those the members declare, checked before any of their content is read.
    """
    total = 0
    with tarfile.open(fileobj=fileobj, mode="r|*") as archive:
        for count, member in enumerate(archive, 1):
            if count > MAX_MEMBERS:
                raise UnsafeArchiveError(f"the archive has more than {MAX_MEMBERS} members")
            check_kind(member)
            total += member.size
            if max_bytes is not None and total > max_bytes:
                raise UnsafeArchiveError(
                    f"the archive's files expand to more than {max_bytes} bytes: refused"
                )
            yield member_path(member), member, archive


def read_members(fileobj: BinaryIO, max_bytes: int | None = None) -> dict[str, bytes]:
    """The regular files of the archive, in memory: {relative path: content}."""
    files = {}
    for path, member, archive in safe_members(fileobj, max_bytes):
        if member.isfile():
            stream = archive.extractfile(member)
            files[path.as_posix()] = stream.read() if stream else b""
    return files


def extract_members(fileobj: BinaryIO, target: Path, max_bytes: int | None = None) -> list[Path]:
    """Write the archive under ``target``; on a refused member, remove what was written."""
    root = Path(target).resolve()
    root.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    try:
        for path, member, archive in safe_members(fileobj, max_bytes):
            destination = inside(root, path)
            if member.isdir():
                destination.mkdir(parents=True, exist_ok=True)
                continue
            destination.parent.mkdir(parents=True, exist_ok=True)
            copy_member(archive, member, destination)
            written.append(destination)
    except BaseException:
        for done in written:
            done.unlink(missing_ok=True)
        raise
    return written


def inside(root: Path, path: PurePosixPath) -> Path:
    """``root / path``, refused if an existing symbolic link makes it leave ``root``."""
    destination = (root / path).resolve()
    if not destination.is_relative_to(root):
        raise UnsafeArchiveError(f"archive member {path.as_posix()!r} would leave {root}")
    return destination


def copy_member(archive: tarfile.TarFile, member: tarfile.TarInfo, destination: Path) -> None:
    """Copy one regular file's content to ``destination``, a chunk at a time."""
    stream = archive.extractfile(member)
    with destination.open("wb") as out:
        while stream is not None and (chunk := stream.read(CHUNK)):
            out.write(chunk)
