"""Legacy .linker models: built here from the documented layout, read back, unsafe ones refused."""

import base64
import io
import os
import struct
import tarfile
from pathlib import Path

import pytest

from {{ cookiecutter.package_name }}.protection import errors
from {{ cookiecutter.package_name }}.protection.model_protector import ModelProtector

KEY = 0x5A
CUSTOMER = "customer-0042"
FILES = {"model/weights.bin": os.urandom(30_000), "model/config.json": b'{"classes": 80}'}


def make_tar(members: list[tarfile.TarInfo], contents: dict[str, bytes]) -> bytes:
    """A tar holding these members (files take their content from ``contents``)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.GNU_FORMAT) as archive:
        for member in members:
            data = contents.get(member.name, b"")
            member.size = len(data) if member.isfile() else 0
            archive.addfile(member, io.BytesIO(data) if member.isfile() else None)
    return buffer.getvalue()


def file_member(name: str, **changes: object) -> tarfile.TarInfo:
    """A tar member (a regular file unless ``type`` says otherwise)."""
    member = tarfile.TarInfo(name)
    for attribute, value in changes.items():
        setattr(member, attribute, value)
    return member


def mask(payload: bytes, key: int, count: int) -> bytes:
    """XOR the first ``count`` bytes with the key, except bytes equal to 0 or to the key."""
    head = bytes(b if b in (0, key) else b ^ key for b in payload[:count])
    return head + payload[count:]


def make_linker(payload: bytes, mark: bytes = b"HL", customer: str = CUSTOMER) -> bytes:
    """A .linker file, as the layout describes it (all big-endian)."""
    customer_b85 = base64.b85encode(customer.encode())
    size = 2 + 2 + 1 + 8 + len(customer_b85)
    masked = mask(payload, KEY, 10240 if mark == b"HL" else len(payload))
    return mark + struct.pack(">HBQ", size, 3, len(payload)) + customer_b85 + masked


def model_tar() -> bytes:
    """The tar of a model folder holding FILES."""
    return make_tar([file_member(name) for name in FILES], FILES)


@pytest.mark.parametrize("mark", [b"HL", b"LH"])
def test_legacy_file_decodes(tmp_path: Path, mark: bytes) -> None:
    """Both marks read back into memory and into a folder, byte for byte."""
    path = tmp_path / "model.linker"
    path.write_bytes(make_linker(model_tar(), mark))
    assert ModelProtector.open_linker(path, KEY, CUSTOMER) == FILES
    written = ModelProtector.extract_linker(path, KEY, CUSTOMER, tmp_path / "out")
    assert sorted(written) == sorted((tmp_path / "out" / name).resolve() for name in FILES)
    for name, content in FILES.items():
        assert (tmp_path / "out" / name).read_bytes() == content
    header = ModelProtector.read_linker_header(path)
    assert (header.mark, header.version, header.customer_id) == (mark.decode(), 3, CUSTOMER)


def test_the_mask_really_hides_the_tar(tmp_path: Path) -> None:
    """The test's file is masked: read as a plain tar, it fails."""
    data = make_linker(model_tar(), b"LH")
    offset = ModelProtector.read_linker_header(write(tmp_path, data)).size
    with pytest.raises(tarfile.TarError), tarfile.open(fileobj=io.BytesIO(data[offset:])) as tar:
        tar.getmembers()


def write(tmp_path: Path, data: bytes) -> Path:
    """Write a .linker file; return its path."""
    path = tmp_path / "model.linker"
    path.write_bytes(data)
    return path


UNSAFE = [
    ("dot-dot", file_member("model/../../evil.txt"), "'..'"),
    ("absolute", file_member("/etc/evil.txt"), "absolute"),
    ("symlink", file_member("model/link", type=tarfile.SYMTYPE, linkname="/etc/passwd"), "link"),
    ("hard link", file_member("model/hard", type=tarfile.LNKTYPE, linkname="model/a"), "link"),
    ("device", file_member("model/dev", type=tarfile.CHRTYPE, devmajor=1, devminor=3), "device"),
    ("fifo", file_member("model/fifo", type=tarfile.FIFOTYPE), "device or a FIFO"),
]


@pytest.mark.parametrize(
    ("member", "reason"), [case[1:] for case in UNSAFE], ids=[case[0] for case in UNSAFE]
)
def test_unsafe_member_is_refused(tmp_path: Path, member: tarfile.TarInfo, reason: str) -> None:
    """A member escaping the target is refused, in memory and on disk, and nothing is left."""
    ok = file_member("model/ok.txt")
    contents = {"model/ok.txt": b"fine", member.name: b"evil"}
    path = write(tmp_path, make_linker(make_tar([ok, member], contents)))
    with pytest.raises(errors.UnsafeArchiveError, match=reason):
        ModelProtector.open_linker(path, KEY, CUSTOMER)
    target = tmp_path / "target" / "inner"
    with pytest.raises(errors.UnsafeArchiveError, match=reason):
        ModelProtector.extract_linker(path, KEY, CUSTOMER, target)
    assert [p for p in target.rglob("*") if p.is_file()] == []
    assert not (tmp_path / "evil.txt").exists() and not (tmp_path / "target" / "evil.txt").exists()


def test_a_symlink_already_in_the_target_is_not_followed(tmp_path: Path) -> None:
    """A member whose folder is a symbolic link out of the target is refused."""
    target = tmp_path / "target"
    target.mkdir()
    (target / "model").symlink_to(tmp_path)
    path = write(tmp_path, make_linker(model_tar()))
    with pytest.raises(errors.UnsafeArchiveError, match="would leave"):
        ModelProtector.extract_linker(path, KEY, CUSTOMER, target)


def test_wrong_customer_wrong_key_and_truncation(tmp_path: Path) -> None:
    """Another customer id, another key byte, a cut payload: each has its error."""
    path = write(tmp_path, make_linker(model_tar()))
    with pytest.raises(errors.ModelIdMismatchError, match="customer-0042"):
        ModelProtector.open_linker(path, KEY, "someone-else")
    with pytest.raises(errors.WrongKeyError, match="wrong legacy key byte"):
        ModelProtector.open_linker(path, KEY ^ 0x11, CUSTOMER)
    with pytest.raises(errors.ModelKeyError, match="one byte"):
        ModelProtector.open_linker(path, 300, CUSTOMER)
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(errors.TruncatedError):
        ModelProtector.open_linker(path, KEY, CUSTOMER)
    path.write_bytes(b"PK\x03\x04 not a linker")
    with pytest.raises(errors.FormatError):
        ModelProtector.open_linker(path, KEY, CUSTOMER)


class Zeros(io.RawIOBase):
    """``size`` zero bytes, read without holding them."""

    def __init__(self, size: int) -> None:
        self.left = size

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:
        count = min(len(buffer), self.left)
        buffer[:count] = bytes(count)
        self.left -= count
        return count


def compressed_tar(members: list[tuple[str, int]]) -> bytes:
    """A gzip tar of members made of zeros: (name, size) each."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz", compresslevel=1) as archive:
        for name, size in members:
            member = tarfile.TarInfo(name)
            member.size = size
            archive.addfile(member, Zeros(size))
    return buffer.getvalue()


def test_a_compressed_bomb_is_refused_before_it_is_extracted(tmp_path: Path) -> None:
    """A small gzip payload declaring 64 MiB of files is refused, in memory and on disk."""
    payload = compressed_tar([("model/ok.bin", 1000), ("model/zeros.bin", 64 << 20)])
    assert len(payload) < 512_000  # 64 MiB of files in well under 1 MiB
    path = write(tmp_path, make_linker(payload))
    with pytest.raises(errors.UnsafeArchiveError, match="expand"):
        ModelProtector.open_linker(path, KEY, CUSTOMER)
    target = tmp_path / "target"
    with pytest.raises(errors.UnsafeArchiveError, match="expand"):
        ModelProtector.extract_linker(path, KEY, CUSTOMER, target)
    assert [p for p in target.rglob("*") if p.is_file()] == []


def test_too_many_members_are_refused(tmp_path: Path) -> None:
    """An archive of more than 10,000 members is refused."""
    payload = compressed_tar([(f"model/{n}", 0) for n in range(10_001)])
    path = write(tmp_path, make_linker(payload))
    with pytest.raises(errors.UnsafeArchiveError, match="10000 members"):
        ModelProtector.open_linker(path, KEY, CUSTOMER)


def test_a_compressed_model_still_loads(tmp_path: Path) -> None:
    """A gzip payload of ordinary model files (little compression) reads back."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, data in FILES.items():
            member = tarfile.TarInfo(name)
            member.size = len(data)
            archive.addfile(member, io.BytesIO(data))
    path = write(tmp_path, make_linker(buffer.getvalue()))
    assert ModelProtector.open_linker(path, KEY, CUSTOMER) == FILES
