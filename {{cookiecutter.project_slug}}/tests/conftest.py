"""Shared fixtures: hermetic settings, an app client, the sample photo."""

import base64
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from {{ cookiecutter.package_name }}.api.app import get_app
from {{ cookiecutter.package_name }}.config import Settings

DATA_DIR = Path(__file__).parent / "data"
PHOTO = DATA_DIR / "astronaut.jpg"  # NASA portrait of Eileen Collins, public domain


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No variable of the developer's shell leaks into a test's settings."""
    for name in Settings.model_fields:
        monkeypatch.delenv(name.upper(), raising=False)


@pytest.fixture
def make_settings(tmp_path: Path) -> Callable[..., Settings]:
    """Build settings from keyword overrides, logging into the test's temporary folder."""

    def make(**overrides: Any) -> Settings:
        overrides.setdefault("log_root", str(tmp_path / "logs"))
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


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    """A client of the real app (real model), ready."""
    with TestClient(get_app(settings)) as test_client:
        wait_ready(test_client, settings.atom_api_prefix)
        yield test_client


@pytest.fixture
def prefix(settings: Settings) -> str:
    """The route prefix of the default settings."""
    return settings.atom_api_prefix


def read_log(settings: Settings) -> str:
    """Everything the app wrote to its log file so far."""
    assert settings.log_file is not None
    return settings.log_file.read_text(encoding="utf-8")


@pytest.fixture(scope="session")
def photo_b64() -> str:
    """The sample photo as base64."""
    return base64.b64encode(PHOTO.read_bytes()).decode()
