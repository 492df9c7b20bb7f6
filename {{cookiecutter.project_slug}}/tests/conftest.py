"""Shared fixtures: hermetic settings, app clients with fake or real models, the sample photo.

Tests that are not about a real model use the fake models of ``fakes.py`` (``client``,
``make_app``, ``start``): a model added to the atom does not make them wait for it.
"""

import base64
import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NamedTuple

import cv2
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from {{ cookiecutter.package_name }} import about
from {{ cookiecutter.package_name }}.api.app import get_app
from {{ cookiecutter.package_name }}.api.interface import detect
from {{ cookiecutter.package_name }}.config import Settings
from {{ cookiecutter.package_name }}.control.log_handlers import flush_all
from {{ cookiecutter.package_name }}.protection.keys import protector_module

from .fakes import loaders

DATA_DIR = Path(__file__).parent / "data"
PHOTO = DATA_DIR / "astronaut.jpg"  # NASA portrait of Eileen Collins, public domain


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No variable of the developer's shell leaks into a test's settings."""
    for name in Settings.model_fields:
        monkeypatch.delenv(name.upper(), raising=False)


class ModelFiles(NamedTuple):
    """A model key of the tests and the demo model encrypted with it."""

    key_file: Path
    model_dir: Path
    key_text: str


@pytest.fixture(scope="session")
def model_files(tmp_path_factory: pytest.TempPathFactory) -> ModelFiles:
    """A fresh key and the demo model encrypted with it: tests never use the project's key."""
    protector = protector_module().ModelProtector
    root = tmp_path_factory.mktemp("model")
    key = protector.generate_key()
    key_text = protector.key_to_text(key)
    (root / "model.key").write_text(key_text + "\n")
    (root / "models").mkdir()
    cascade = Path(cv2.data.haarcascades) / detect.CASCADE_FILE
    protector(key).encrypt(cascade, root / "models" / detect.MODEL_FILE, detect.MODEL_NAME)
    return ModelFiles(root / "model.key", root / "models", key_text)


@pytest.fixture
def make_settings(tmp_path: Path, model_files: ModelFiles) -> Callable[..., Settings]:
    """Build settings from keyword overrides, logging into the test's temporary folder.

    The model key and model folder are the tests' own (``model_files``).
    """

    def make(**overrides: Any) -> Settings:
        overrides.setdefault("log_root", str(tmp_path / "logs"))
        overrides.setdefault("atom_model_key_file", str(model_files.key_file))
        overrides.setdefault("atom_model_dir", str(model_files.model_dir))
        return Settings(_env_file=None, **overrides)

    return make


@pytest.fixture
def settings(make_settings: Callable[..., Settings]) -> Settings:
    """The default settings."""
    return make_settings()


def wait_ready(client: TestClient, prefix: str, timeout: float = 10.0) -> None:
    """Poll the ready route until it answers 200."""
    deadline = time.monotonic() + timeout
    while client.get(f"{prefix}/v1/health/ready").status_code != 200:
        if time.monotonic() > deadline:
            raise AssertionError("the app did not become ready")
        time.sleep(0.02)


def make_app(settings: Settings, *, real: tuple[str, ...] = (), **kwargs: Any) -> FastAPI:
    """The atom's app with fake models, except the models named in ``real``."""
    kwargs.setdefault("model_loaders", loaders(real=real))
    return get_app(settings, **kwargs)


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    """A client of the atom's app with fake models, ready."""
    with TestClient(make_app(settings)) as test_client:
        wait_ready(test_client, settings.atom_api_prefix)
        yield test_client


@pytest.fixture
def real_client(settings: Settings) -> Iterator[TestClient]:
    """A client of the atom's app with the real demo model (the other models fake), ready."""
    with TestClient(make_app(settings, real=(detect.MODEL_NAME,))) as test_client:
        wait_ready(test_client, settings.atom_api_prefix)
        yield test_client


@pytest.fixture
def prefix(settings: Settings) -> str:
    """The route prefix of the default settings."""
    return settings.atom_api_prefix


def read_log(settings: Settings) -> str:
    """Everything the app wrote to its log file so far."""
    assert settings.log_file is not None
    flush_all()  # lines below WARNING are written in batches
    return settings.log_file.read_text(encoding="utf-8")


@pytest.fixture(scope="session")
def photo_b64() -> str:
    """The sample photo as base64."""
    return base64.b64encode(PHOTO.read_bytes()).decode()


# Real server.py processes ------------------------------------------------------

ROOT = Path(__file__).parent.parent
PREFIX = about.API_PREFIX


def ephemeral_low() -> int:
    """The first port of the kernel's ephemeral range (32768 unless the machine sets it)."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port() -> int:
    """A port nothing listens on right now, from 20000 up to the kernel's ephemeral range:
    a port from that range, once released, can become the source port of an outgoing
    connection before the server binds it."""
    high = max(ephemeral_low(), 20100)
    for _ in range(200):
        port = random.randrange(20000, high)
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port between 20000 and {high}")


def get(url: str) -> tuple[int, dict]:
    """GET a URL; return status and JSON body."""
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as error:
        return error.code, json.load(error)


class Server:
    """A server process on a free port with a clean environment; its output goes to a file.

    It runs ``tests/fake_server.py`` (``server.main`` with fake models), or ``server.py``
    itself, with the real models, when ``real`` is true.
    """

    def __init__(self, tmp_path: Path, *, real: bool = False, **env: str) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}{PREFIX}"
        self.output = tmp_path / f"server-{self.port}.out"
        environ = {"PATH": os.environ["PATH"], "LOG_ROOT": str(tmp_path / "logs"), **env}
        script = "server.py" if real else "tests/fake_server.py"
        with self.output.open("wb") as output:
            self.process = subprocess.Popen(
                [sys.executable, script, "--port", str(self.port), "--host", "127.0.0.1"],
                cwd=ROOT,
                env=environ,
                stdout=output,
                stderr=subprocess.STDOUT,
            )

    def wait_ready(self, timeout: float = 30) -> None:
        """Poll ready until 200."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if get(f"{self.base}/v1/health/ready")[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"server.py did not become ready:\n{self.output.read_text()}")

    def stop(self) -> float:
        """SIGTERM; return how long the process took to exit (it must exit with 0)."""
        started = time.monotonic()
        self.process.send_signal(signal.SIGTERM)
        assert self.process.wait(timeout=10) == 0
        return time.monotonic() - started

    def kill(self) -> None:
        """SIGKILL if still running (cleanup by pid)."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)


@pytest.fixture
def start(tmp_path: Path) -> Iterator[Callable[..., Server]]:
    """Start server.py processes; each is killed by pid after the test if still running."""
    started: list[Server] = []

    def make(*, real: bool = False, **env: str) -> Server:
        started.append(Server(tmp_path, real=real, **env))
        return started[-1]

    yield make
    for server in started:
        server.kill()
