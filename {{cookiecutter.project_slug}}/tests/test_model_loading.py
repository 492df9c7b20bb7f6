"""The demo model loads through the protector: key lookup, nothing on disk, clear failures."""

import gc
import logging
import os
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import cv2
import pytest
from fastapi.testclient import TestClient

from {{ cookiecutter.package_name }}.api.app import get_app
from {{ cookiecutter.package_name }}.api.interface import detect
from {{ cookiecutter.package_name }}.config import Settings
from {{ cookiecutter.package_name }}.protection import errors, keys
from {{ cookiecutter.package_name }}.protection.model_protector import ModelProtector

from .conftest import PREFIX, ModelFiles, read_log, wait_ready

# An audit hook cannot be removed: installed once, it records only while "opened" is a list,
# and only the test's own thread (log writers of earlier tests' apps may still be at work).
AUDIT: dict[str, Any] = {"installed": False, "opened": None, "thread": None}


def record_opens(event: str, args: tuple[Any, ...]) -> None:
    """Audit hook: while recording, note every file the test's thread opens (a descriptor as
    what it points to, such as ``/memfd:face (deleted)``)."""
    recording = AUDIT["opened"] is not None and threading.get_ident() == AUDIT["thread"]
    if event == "open" and recording:
        if isinstance(args[0], int):
            args = (os.readlink(f"/proc/self/fd/{args[0]}"), *args[1:])
        AUDIT["opened"].append(args)


@pytest.fixture
def opens() -> Iterator[list[tuple[Any, ...]]]:
    """The files opened (path, mode, flags) while the fixture is in use."""
    if not AUDIT["installed"]:
        sys.addaudithook(record_opens)
        AUDIT["installed"] = True
    AUDIT["thread"] = threading.get_ident()
    AUDIT["opened"] = opened = []
    try:
        yield opened
    finally:
        AUDIT["opened"] = None


@pytest.fixture(autouse=True)
def private_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """This process's temporary folder, a new one: other processes on the machine write
    to /tmp too, and must not make a watched folder change."""
    folder = tmp_path / "tmp"
    folder.mkdir()
    monkeypatch.setenv("TMPDIR", str(folder))  # for C libraries too (putenv)
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder


def disk_state() -> tuple[set[tuple[str, str]], set[str]]:
    """Entries of this process's temporary folder and of the project, and the files on disk
    this process holds open. /dev/shm is not listed: other processes of the machine (tests
    sharing frames) change it; a file this process made there would be held or opened for
    writing, which the other checks see."""
    watched = {tempfile.gettempdir(), str(keys.PROJECT_ROOT)}
    entries = {
        (folder, name) for folder in watched if os.path.isdir(folder) for name in os.listdir(folder)
    }
    held = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:  # the descriptor of the listing itself, already closed
            continue
        device = target.startswith("/dev/") and not target.startswith("/dev/shm/")
        # The log writer thread opens atom.log and its lock on its first write, at any moment.
        log = os.path.basename(target).startswith("atom.log")
        on_disk = target.startswith("/") and not target.startswith(("/memfd:", "/proc/"))
        if on_disk and not device and not log:
            held.add(target)
    return entries, held


def writes(opened: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """The opens that could write or create a file on disk (memory files do not count)."""
    flags = os.O_WRONLY | os.O_RDWR | os.O_CREAT
    return [
        event
        for event in opened
        if not os.fsdecode(event[0]).startswith("/memfd:")
        and (
            (isinstance(event[1], str) and set(event[1]) & set("wax+"))
            or (isinstance(event[2], int) and event[2] & flags)
        )
    ]


def test_nothing_touches_the_disk_while_the_model_loads(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, opens: list
) -> None:
    """No temporary file appears, no file is opened for writing, no new file stays open."""
    seen = {}
    real = detect.FaceDetector

    def spy(cascade_xml: str) -> detect.FaceDetector:
        seen["while decrypted"] = disk_state()
        return real(cascade_xml)

    monkeypatch.setattr(detect, "FaceDetector", spy)
    before = disk_state()
    model = detect.load_model(settings)
    after = disk_state()
    assert isinstance(model, real)
    assert seen["while decrypted"] == before == after
    assert writes(opens) == []
    read = {os.fsdecode(event[0]) for event in opens if not isinstance(event[0], int)}
    assert str(Path(settings.atom_model_dir) / detect.MODEL_FILE) in read


def test_a_path_for_libraries_that_want_one(
    settings: Settings, model_files: ModelFiles, opens: list
) -> None:
    """A library that only opens paths reads the model from the memfd path; no disk file."""
    protector = ModelProtector.from_key_file(model_files.key_file)
    before = disk_state()
    with protector.decrypt_to_memory_file(model_files.model_dir / detect.MODEL_FILE) as memory:
        assert disk_state() == before
        cascade = cv2.CascadeClassifier(memory.path)
        assert not cascade.empty()
    assert writes(opens) == []
    assert disk_state() == before


def test_the_demo_model_finds_the_face(settings: Settings) -> None:
    """The decrypted cascade is the real one: it finds one face in the sample photo."""
    from .conftest import PHOTO

    image = cv2.cvtColor(cv2.imread(str(PHOTO)), cv2.COLOR_BGR2RGB)
    (face,) = detect.load_model(settings).predict(image, 0.5)
    assert face.xmin < 224 < face.xmax and face.ymin < 113 < face.ymax


def test_the_project_key_opens_the_project_model() -> None:
    """The key the template made for this project opens models/face.enc (make model otherwise)."""
    assert keys.PROJECT_KEY_FILE.is_file(), "no secrets/model.key: run `make key model`"
    protector = ModelProtector.from_key_file(keys.PROJECT_KEY_FILE)
    model = keys.PROJECT_ROOT / "models" / detect.MODEL_FILE
    assert protector.decrypt(model, detect.MODEL_NAME).startswith(b"<?xml")


# Key lookup ------------------------------------------------------------------------------


@pytest.fixture
def no_project_key(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """The project's own key file made absent (its path, for a test to create)."""
    path = tmp_path / "project" / "secrets" / "model.key"
    monkeypatch.setattr(keys, "PROJECT_KEY_FILE", path)
    return path


def plain_settings(tmp_path: Path, **values: Any) -> Settings:
    """Settings where nothing about the key is set unless given (no test defaults)."""
    return Settings(_env_file=None, log_root=str(tmp_path / "logs"), **values)


def test_key_file_variable_wins(
    tmp_path: Path, model_files: ModelFiles, caplog: pytest.LogCaptureFixture
) -> None:
    """ATOM_MODEL_KEY_FILE wins over ATOM_MODEL_KEY, which is then ignored with a warning."""
    wrong = ModelProtector.key_to_text(ModelProtector.generate_key())
    settings = plain_settings(
        tmp_path, atom_model_key_file=str(model_files.key_file), atom_model_key=wrong
    )
    protector = keys.load_protector(settings)
    assert protector.source == f"ATOM_MODEL_KEY_FILE={model_files.key_file}"
    assert "ATOM_MODEL_KEY is ignored" in caplog.text
    assert wrong not in caplog.text


def test_key_variable_works_with_a_warning(
    tmp_path: Path, model_files: ModelFiles, caplog: pytest.LogCaptureFixture, no_project_key: Path
) -> None:
    """ATOM_MODEL_KEY opens the model; a warning says environment variables leak."""
    settings = plain_settings(
        tmp_path, atom_model_key=model_files.key_text, atom_model_dir=str(model_files.model_dir)
    )
    with caplog.at_level(logging.WARNING):
        assert isinstance(detect.load_model(settings), detect.FaceDetector)
    assert "environment variables leak" in caplog.text
    assert model_files.key_text not in caplog.text
    assert model_files.key_text not in repr(settings) + str(settings.model_dump())


def test_default_secret_mount_then_project_key(
    tmp_path: Path, model_files: ModelFiles, no_project_key: Path
) -> None:
    """Unset variables: the default secret path if it exists, else the project's key file."""

    def left_at_default(default: Path) -> Settings:
        """Settings whose ATOM_MODEL_KEY_FILE default is ``default`` (and is not set)."""
        settings = plain_settings(tmp_path).model_copy(update={"atom_model_key_file": str(default)})
        settings.__pydantic_fields_set__.discard("atom_model_key_file")
        return settings

    mounted = left_at_default(model_files.key_file)
    assert keys.load_protector(mounted).source == f"key file {model_files.key_file}"
    no_project_key.parent.mkdir(parents=True)
    no_project_key.write_text(model_files.key_text)
    unmounted = left_at_default(tmp_path / "no-secret-mounted")
    assert keys.load_protector(unmounted).source == f"key file {no_project_key}"


def test_no_key_at_all(tmp_path: Path, no_project_key: Path) -> None:
    """Without any key the error lists where it looked."""
    settings = plain_settings(tmp_path).model_copy(update={"atom_model_key_file": "/nowhere"})
    settings.__pydantic_fields_set__.discard("atom_model_key_file")
    with pytest.raises(errors.ModelKeyError) as raised:
        keys.load_protector(settings)
    assert "ATOM_MODEL_KEY_FILE and ATOM_MODEL_KEY are not set" in str(raised.value)
    assert str(no_project_key) in str(raised.value)


def test_protector_not_compiled(monkeypatch: pytest.MonkeyPatch, settings: Settings) -> None:
    """Without the compiled module, loading says how to build it."""
    monkeypatch.setattr(keys, "PROTECTOR_MODULE", f"{keys.__package__}.not_built_here")
    with pytest.raises(errors.ProtectorNotBuiltError, match="make protector"):
        keys.load_protector(settings)


def test_startup_objects_leave_the_collector_once_the_models_are_in(settings: Settings) -> None:
    """Once the models are loaded, what startup made (the model among it) is out of the
    cyclic garbage collector's way (``gc.freeze``) in an app that owns its process (as
    server.py's does): a full collection no longer walks it. When the app stops, it is
    collectable again. An app that does not own its process (a test client's) freezes
    nothing."""
    gc.unfreeze()
    embedded = get_app(settings, model_loaders={detect.MODEL_NAME: detect.load_model})
    with TestClient(embedded) as client:
        wait_ready(client, PREFIX)
        time.sleep(0.2)  # the loading task's end, where a freeze would be
        assert walked(embedded.state.models.models[detect.MODEL_NAME])
    app = get_app(settings, model_loaders={detect.MODEL_NAME: detect.load_model})
    app.state.owns_process = True
    with TestClient(app) as client:
        wait_ready(client, PREFIX)
        model = app.state.models.models[detect.MODEL_NAME]
        assert gc.is_tracked(model)
        deadline = time.monotonic() + 10
        while walked(model):  # frozen right after the models are in
            assert time.monotonic() < deadline, "the model is still walked by the collector"
            time.sleep(0.02)
        made_after = [[]]
        made_after.append(made_after)  # a cycle made by a request: still collected
        assert walked(made_after)
    assert walked(model)


def walked(thing: object) -> bool:
    """Whether the cyclic garbage collector walks ``thing`` (frozen objects it does not)."""
    return any(each is thing for each in gc.get_objects())


# Failures in the lifespan ----------------------------------------------------------------


def failed_reason(settings: Settings) -> str:
    """Start the app, wait until the model has failed; return the log (ready stayed 503)."""
    prefix = settings.atom_api_prefix
    app = get_app(settings, model_loaders={detect.MODEL_NAME: detect.load_model})
    with TestClient(app) as client:
        deadline = time.monotonic() + 10
        while client.get(f"{prefix}/v1/health/ready").json()["data"]["models"]["face"] != "failed":
            assert time.monotonic() < deadline, "the model neither failed nor loaded"
            time.sleep(0.02)
        assert client.get(f"{prefix}/v1/health/ready").status_code == 503
    return read_log(settings)


def test_load_failures_keep_ready_503_and_say_why(
    make_settings: Callable[..., Settings], model_files: ModelFiles, tmp_path: Path
) -> None:
    """No key, a wrong key, a malformed key, a missing model: 503, and the log says why."""
    wrong = tmp_path / "wrong.key"
    wrong.write_text(ModelProtector.key_to_text(ModelProtector.generate_key()))
    bad = tmp_path / "bad.key"
    bad.write_text("not a key at all, but long enough to look like one maybe")
    missing = tmp_path / "none.key"
    cases = [
        ({"atom_model_key_file": str(missing)}, "ModelKeyError: ATOM_MODEL_KEY_FILE="),
        ({"atom_model_key_file": str(wrong)}, "WrongKeyError: "),
        ({"atom_model_key_file": str(bad)}, "not a model key"),
        ({"atom_model_dir": str(tmp_path / "empty")}, "FileNotFoundError: "),
    ]
    for number, (overrides, reason) in enumerate(cases):
        log = failed_reason(make_settings(log_root=str(tmp_path / f"logs{number}"), **overrides))
        assert "model 'face' failed to load: " in log and reason in log, log
        assert model_files.key_text not in log and wrong.read_text() not in log
