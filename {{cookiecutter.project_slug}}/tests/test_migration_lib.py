"""Moving in from linker_atom 0.0.43: its helpers behave as before (lib.common, lib.log,
lib.requests, lib.load_image, lib.share_memory, the .linker ModelProtector), under the
atom's rules (limits, roots, no private addresses, safe extraction, no singleton)."""

import asyncio
import base64
import io
import logging
import os
import subprocess
import sys
import tarfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from {{ cookiecutter.package_name }}.client.shm import write_mmap_frame
from {{ cookiecutter.package_name }}.dependency.model_protector import ModelProtector
from {{ cookiecutter.package_name }}.errors import VqlError
from {{ cookiecutter.package_name }}.images.limits import ImageLimits
from {{ cookiecutter.package_name }}.images.loader import ImageLoader, set_default_loader
from {{ cookiecutter.package_name }}.images.loader import _default as loaders
from {{ cookiecutter.package_name }}.lib import common, load_image, log
from {{ cookiecutter.package_name }}.lib import requests as lib_requests
from {{ cookiecutter.package_name }}.lib.share_memory import CacheManager, MmapManager
from {{ cookiecutter.package_name }}.protection import errors

from .conftest import PHOTO, ROOT
from .stub_http import Stub, serve_stub
from .test_linker import make_linker, model_tar

PACKAGE = VqlError.__module__.split(".")[0]


@pytest.fixture
def roots(tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    """A default loader allowed to read two folders and 127.0.0.1 (restored afterwards)."""
    local_root, mmap_root = tmp_path / "images", tmp_path / "frames"
    local_root.mkdir()
    mmap_root.mkdir()
    (local_root / "photo.jpg").write_bytes(PHOTO.read_bytes())
    previous = list(loaders)
    limits = ImageLimits(
        local_roots=(str(local_root),),
        mmap_roots=(str(mmap_root),),
        url_allowed_networks=("127.0.0.1/32",),
        url_timeout=2,
    )
    set_default_loader(ImageLoader(limits))
    yield local_root, mmap_root
    loaders[:] = previous


@pytest.fixture
def stub() -> Iterator[Stub]:
    """The stub image server on 127.0.0.1."""
    with serve_stub() as running:
        yield running


RGB = cv2.cvtColor(cv2.imread(str(PHOTO)), cv2.COLOR_BGR2RGB)


# lib.load_image ------------------------------------------------------------------------


def test_every_source_gives_the_original_rgb(roots: tuple[Path, Path], stub: Stub) -> None:
    """url/local/base64/mmap, to numpy and to PIL: the same RGB picture from each."""
    descriptor = write_mmap_frame(roots[1] / "frame.bgr", cv2.imread(str(PHOTO)))
    encoded = base64.b64encode(PHOTO.read_bytes()).decode()
    sources = {
        "url": stub.url("/photo.jpg"),
        "local": str(roots[0] / "photo.jpg"),
        "base64": encoded,
        "mmap": descriptor,
    }
    for src_type, item in sources.items():
        array = getattr(load_image, f"{src_type}_to_np")(item)
        picture = getattr(load_image, f"{src_type}_to_pil")(item)
        assert array.dtype == np.uint8 and np.array_equal(array, RGB), src_type
        assert picture.mode == "RGB" and np.array_equal(np.asarray(picture), RGB), src_type
        assert np.array_equal(load_image.SRC_TYPE_MAP[src_type](item), RGB), src_type
        (listed,) = load_image.load_np_image(src_type, [item])
        (pictured,) = load_image.load_pil_image(src_type, [item])
        assert np.array_equal(listed, RGB) and isinstance(pictured, Image.Image), src_type


def test_the_atom_rules_apply_to_the_old_loaders(roots: tuple[Path, Path], tmp_path: Path) -> None:
    """Files outside the roots, private addresses and bad base64 are VqlErrors, not crashes."""
    outside = tmp_path / "outside.jpg"
    outside.write_bytes(PHOTO.read_bytes())
    with pytest.raises(VqlError) as refused:
        load_image.local_to_np(str(outside))
    assert refused.value.code == 501 and "IMAGE_LOCAL_ROOTS" in refused.value.msg
    with pytest.raises(VqlError) as private:
        load_image.url_to_pil("http://10.1.2.3/photo.jpg")
    assert (private.value.code, private.value.status) == (503, 400)
    with pytest.raises(VqlError) as corrupt:
        load_image.base64_to_np("bm90IGFuIGltYWdl")
    assert corrupt.value.code in (502, 504)


def test_load_image_with_a_func_map(roots: tuple[Path, Path]) -> None:
    """func_map: the caller's loaders, in order, 504 for an unknown src_type, 503 for None."""

    def slow_upper(item: str) -> str:
        time.sleep(0.05 if item == "a" else 0)
        return item.upper()

    assert load_image.load_image("txt", ["a", "b", "c"], {"txt": slow_upper}) == ["A", "B", "C"]
    assert load_image.load_image("stream", ["a"], {"txt": slow_upper}) == []
    with pytest.raises(VqlError) as unknown:
        load_image.load_image("nope", ["a"], {"txt": slow_upper})
    assert unknown.value.code == 504
    with pytest.raises(VqlError) as empty:
        load_image.load_image("txt", ["a", "b"], {"txt": lambda item: None})
    assert empty.value.code == 503
    assert load_image.load_np_image("txt", ["x"], func_map={"txt": str.upper}) == ["X"]
    assert load_image.load_image("base64", []) == []


def test_async_url_loaders(roots: tuple[Path, Path], stub: Stub) -> None:
    """async_url_to_np and async_url_to_pil await the loading of a list of URLs."""
    urls = [stub.url("/photo.jpg"), stub.url("/photo.jpg")]
    arrays = asyncio.run(load_image.async_url_to_np(urls))
    pictures = asyncio.run(load_image.async_url_to_pil(urls))
    assert len(arrays) == len(pictures) == 2
    assert all(np.array_equal(a, RGB) for a in arrays)
    assert all(np.array_equal(np.asarray(p), RGB) for p in pictures)


def test_video_file_base64_and_chunked(tmp_path: Path) -> None:
    """video_to_np gives the first frame (BGR), file_to_base64 the bytes, chunked groups."""
    path = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 5, (64, 48))
    frame = np.zeros((48, 64, 3), np.uint8)
    frame[..., 2] = 255  # red, in OpenCV's BGR order
    for _ in range(3):
        writer.write(frame)
    writer.release()
    first = load_image.video_to_np(str(path))
    assert first is not None and first.shape == (48, 64, 3)
    assert first[..., 2].mean() > 200 and first[..., 0].mean() < 50
    assert load_image.video_to_np(str(tmp_path / "missing.avi")) is None
    assert base64.b64decode(load_image.file_to_base64(str(PHOTO))) == PHOTO.read_bytes()
    assert [list(group) for group in load_image.chunked(range(7), 3)] == [
        [0, 1, 2],
        [3, 4, 5],
        [6],
    ]


# lib.share_memory ----------------------------------------------------------------------


def test_mmap_manager_reads_its_own_file(roots: tuple[Path, Path]) -> None:
    """Two managers on two files, read from many threads, each read its own bytes."""
    first, second = roots[1] / "a.bin", roots[1] / "b.bin"
    first.write_bytes(b"A" * 4096)
    second.write_bytes(b"B" * 4096)
    wrong: list[bytes] = []

    def read(path: Path, letter: bytes) -> None:
        for position in range(0, 4000, 40):
            data = MmapManager(str(path)).read(position, 64)
            if data != letter * 64:
                wrong.append(data)

    threads = [
        threading.Thread(target=read, args=(p, p.stem.upper().encode()))
        for p in (first, second) * 4
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert wrong == []
    assert MmapManager(str(first)) is not MmapManager(str(first))


def test_mmap_manager_bounds_and_roots(roots: tuple[Path, Path], tmp_path: Path) -> None:
    """Bytes past the end, past ``length``, or a file outside IMAGE_MMAP_ROOTS: VqlError 501."""
    inside = roots[1] / "frame.bin"
    inside.write_bytes(bytes(range(256)))
    assert MmapManager(str(inside)).read(10, 3) == bytes([10, 11, 12])
    for manager, position, size in [
        (MmapManager(str(inside)), 250, 10),
        (MmapManager(str(inside), length=100), 90, 20),
    ]:
        with pytest.raises(VqlError, match="outside the file"):
            manager.read(position, size)
    outside = tmp_path / "outside.bin"
    outside.write_bytes(b"x" * 10)
    with pytest.raises(VqlError, match="IMAGE_MMAP_ROOTS"):
        MmapManager(str(outside)).read(0, 1)


def test_cache_manager_expires() -> None:
    """CacheManager keeps a value for ``period`` seconds."""
    cache = CacheManager(period=0.2)
    cache.set("a", 1)
    assert cache.get("a") == 1
    time.sleep(0.3)
    assert cache.get("a", "gone") == "gone"
    assert cache.cache == {}


# lib.common, lib.log, lib.requests -----------------------------------------------------


def test_catch_exc_returns_the_default_and_logs(caplog: pytest.LogCaptureFixture) -> None:
    """A failing call logs its traceback and returns default_data; a good one its result."""

    @common.catch_exc(calc_time=True, default_data=[])
    def parse(text: str) -> int:
        return int(text)

    @common.catch_exc(default_data="fallback")
    async def fetch(fail: bool) -> str:
        if fail:
            raise ConnectionError("down")
        return "data"

    with caplog.at_level(logging.DEBUG):
        assert parse("12") == 12
        assert parse("x") == []
        assert asyncio.run(fetch(False)) == "data"
        assert asyncio.run(fetch(True)) == "fallback"
    errors_logged = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert [r.exc_info[0] for r in errors_logged if r.exc_info] == [ValueError, ConnectionError]
    assert sum("parse duration: " in r.getMessage() for r in caplog.records) == 2


def test_record_duration_logs(caplog: pytest.LogCaptureFixture) -> None:
    """record_duration logs ``<name> duration: <ms>ms`` for sync and async functions."""

    @common.record_duration
    def add(a: int, b: int) -> int:
        return a + b

    @common.record_duration
    async def double(a: int) -> int:
        return a * 2

    with caplog.at_level(logging.DEBUG):
        assert (add(1, 2), asyncio.run(double(4))) == (3, 8)
    messages = [r.getMessage() for r in caplog.records if "duration: " in r.getMessage()]
    assert [m.split(" ")[0] for m in messages] == ["add", "double"]
    assert all(m.endswith("ms") for m in messages)


def test_format_long_val_and_truncate_msg() -> None:
    """Strings cut to 200, bytes to 20; truncate_msg also keeps 10 list items and objects."""
    value = {"s": "x" * 300, "b": b"y" * 30, "l": ["z" * 250] * 12, "n": 5}
    assert common.format_long_val(value) == {
        "s": "x" * 200,
        "b": b"y" * 20,
        "l": ["z" * 200] * 12,
        "n": 5,
    }

    class Point:
        def __init__(self) -> None:
            self.label = "p" * 300

    assert log.truncate_msg(value)["l"] == ["z" * 200] * 10
    assert log.truncate_msg(Point()) == {"label": "p" * 200}
    assert log.build_current_date_str() == time.strftime("%Y%m%d")
    assert log.logger.name == PACKAGE


def test_lru_cache_keeps_the_original_methods() -> None:
    """LRUCache(capacity) with has/get/put/pop and its contents as ``cache``."""
    cache = common.LRUCache(2)
    cache.put("a", 1)
    cache.put("b", 2)
    assert cache.has("a") and cache.get("a") == 1
    cache.put("c", 3)
    assert not cache.has("b")
    assert list(cache.cache.items()) == [("a", 1), ("c", 3)]
    cache.pop("a")
    assert (cache.get("a"), cache.capacity) == (None, 2)


def test_requests_keeps_url_then_method(stub: Stub) -> None:
    """lib.requests.request(url, method) as linker_atom called it; get and post alike."""
    assert lib_requests.request(stub.url("/photo.jpg"), "get").content == PHOTO.read_bytes()
    assert lib_requests.get(stub.url("/photo.jpg"), timeout=5).status_code == 200
    assert stub.hits["/photo.jpg"] == 2


# dependency.model_protector: linker_atom's ModelProtector(xor_key, user_id) ------------


def legacy(version: int = 0) -> ModelProtector:
    """A legacy protector (its DeprecationWarning checked)."""
    with pytest.warns(DeprecationWarning, match="one-byte mask"):
        return ModelProtector(0x5A, "customer-0042", version)


def model_folder(root: Path) -> Path:
    """A model folder with two files."""
    folder = root / "yolo"
    (folder / "sub").mkdir(parents=True)
    (folder / "weights.pt").write_bytes(os.urandom(40_000))
    (folder / "sub" / "labels.txt").write_text("face\nplate\n")
    return folder


@pytest.mark.parametrize("method", ["encrypt_model", "encrypt_model_legacy"])
def test_linker_round_trip(tmp_path: Path, method: str) -> None:
    """encrypt_model writes <name>.linker; decrypt_model gives the folder back, then removes it."""
    source = model_folder(tmp_path / "src")
    protector = legacy(version=2)
    written = Path(getattr(protector, method)(str(source), str(tmp_path)))
    assert written == tmp_path / "yolo.linker"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["src", "yolo.linker"]  # no temp tar
    header = ModelProtector.read_linker_header(written)
    assert (header.mark, header.version, header.customer_id) == (
        "HL" if method == "encrypt_model" else "LH",
        2,
        "customer-0042",
    )
    model_dir, folder = protector.decrypt_model(str(written), out_path=str(tmp_path / "out"))
    assert Path(model_dir) == Path(folder) / "yolo"
    assert (Path(model_dir) / "weights.pt").read_bytes() == (source / "weights.pt").read_bytes()
    assert (Path(model_dir) / "sub" / "labels.txt").read_text() == "face\nplate\n"
    assert oct(Path(folder).stat().st_mode & 0o777) == "0o700"
    assert sorted(p.name for p in Path(folder).iterdir()) == ["yolo"]  # no decrypted tar
    protector.remove_model(model_dir)
    assert not Path(folder).exists()


def test_decrypt_model_reads_files_of_the_documented_layout(tmp_path: Path) -> None:
    """A .linker built by hand from the layout (tests/test_linker.py) opens with decrypt_model."""
    path = tmp_path / "model.linker"
    path.write_bytes(make_linker(model_tar(), b"LH"))
    model_dir, folder = legacy().decrypt_model(str(path), str(tmp_path))
    assert (Path(model_dir) / "weights.bin").stat().st_size == 30_000
    assert Path(model_dir).name == "model"
    legacy().remove_model(folder)


def test_encrypt_model_output_is_the_documented_layout(tmp_path: Path) -> None:
    """The file is the header then the tar with its first 10,240 bytes masked, byte for byte."""
    source = model_folder(tmp_path / "src")
    written = Path(legacy(version=1).encrypt_model(str(source), str(tmp_path)))
    data = written.read_bytes()
    size = int.from_bytes(data[2:4], "big")
    payload = data[size:]
    assert data[:2] == b"HL" and int.from_bytes(data[5:13], "big") == len(payload)
    assert base64.b85decode(data[13:size]) == b"customer-0042"
    key = 0x5A
    unmasked = bytes(b if b in (0, key) else b ^ key for b in payload[:10240]) + payload[10240:]
    with tarfile.open(fileobj=io.BytesIO(unmasked)) as archive:
        assert sorted(archive.getnames()) == [
            "yolo",
            "yolo/sub",
            "yolo/sub/labels.txt",
            "yolo/weights.pt",
        ]


def test_decrypt_model_refuses_unsafe_and_foreign_files(tmp_path: Path) -> None:
    """An archive escaping its folder or another customer's file: an error and nothing left."""
    evil = tarfile.TarInfo("../evil.txt")
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        evil.size = 4
        archive.addfile(evil, io.BytesIO(b"evil"))
    path = tmp_path / "evil.linker"
    path.write_bytes(make_linker(buffer.getvalue()))
    out = tmp_path / "out"
    with pytest.raises(errors.UnsafeArchiveError):
        legacy().decrypt_model(str(path), str(out))
    assert list(out.iterdir()) == [] and not (tmp_path / "evil.txt").exists()
    good = tmp_path / "good.linker"
    good.write_bytes(make_linker(model_tar(), customer="someone-else"))
    with pytest.raises(errors.ModelIdMismatchError):
        legacy().decrypt_model(str(good), str(out))
    assert list(out.iterdir()) == []


def test_extracted_models_are_removed_at_exit(tmp_path: Path) -> None:
    """A folder decrypt_model made and nobody removed is gone when the process exits."""
    source = model_folder(tmp_path / "src")
    written = legacy().encrypt_model(str(source), str(tmp_path))
    code = (
        "import sys, warnings; warnings.simplefilter('ignore')\n"
        f"from {PACKAGE}.dependency.model_protector import ModelProtector\n"
        "protector = ModelProtector(0x5A, 'customer-0042')\n"
        "print(protector.decrypt_model(sys.argv[1], sys.argv[2])[1])\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code, written, str(tmp_path / "out")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    folder = Path(result.stdout.strip())
    assert folder.parent == tmp_path / "out"
    assert not folder.exists()


def test_one_name_two_protectors(tmp_path: Path) -> None:
    """A key builds the AES protector, (xor_key, user_id) the legacy one; each refuses the other."""
    modern = ModelProtector(ModelProtector.generate_key())
    sealed = modern.encrypt_bytes(b"weights", "m")
    assert modern.decrypt(io.BytesIO(sealed), "m") == b"weights"
    assert (modern.xor_key, modern.user_id, modern.model_version) == (None, None, None)
    with pytest.raises(errors.ModelKeyError, match="decrypt_model is linker_atom's"):
        modern.decrypt_model(str(tmp_path / "x.linker"))
    old = legacy()
    with pytest.raises(errors.ModelKeyError, match=r"reads \.linker files only"):
        old.encrypt_bytes(b"weights", "m")
    assert "customer-0042" in repr(old) and "90" not in repr(old)
    with pytest.raises(errors.ModelKeyError, match="one byte"):
        ModelProtector(300, "customer")
    with pytest.raises(TypeError, match="user_id is missing"):
        ModelProtector(xor_key=12)
    with pytest.raises(TypeError, match="needs a model key"):
        ModelProtector()
