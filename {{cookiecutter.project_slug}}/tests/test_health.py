"""Health routes: liveness, readiness tied to model loading, META's extra ping path."""

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable

from fastapi.testclient import TestClient

from {{ cookiecutter.package_name }} import about
from {{ cookiecutter.package_name }}.api.app import get_app
from {{ cookiecutter.package_name }}.config import Settings

from .conftest import ROOT, Server, read_log, wait_ready
from .fakes import model_names


def test_ping(client: TestClient, prefix: str) -> None:
    """Ping answers the bare body of linker_atom."""
    response = client.get(f"{prefix}/v1/health/ping")
    assert response.status_code == 200
    assert response.json() == {"is_alive": True}


def test_ready_after_loading(client: TestClient, prefix: str) -> None:
    """Ready is 200 and lists each model of the atom once loaded, and the template release."""
    response = client.get(f"{prefix}/v1/health/ready")
    assert response.status_code == 200
    models = dict.fromkeys(model_names(), "ready")
    assert "face" in models
    template = {"version": about.TEMPLATE_VERSION, "commit": about.TEMPLATE_COMMIT}
    assert response.json() == {"is_ready": True, "models": models, "template": template}


def test_ready_is_503_while_loading(settings: Settings, photo_b64: str) -> None:
    """Until the model is loaded: ping 200, ready 503, detect 503; then all 200."""
    release = threading.Event()

    class SlowModel:
        def predict_batch(self, images: list, threshold: float) -> list:
            return [[] for _ in images]

    def slow_loader(_: Settings) -> SlowModel:
        release.wait(10)
        return SlowModel()

    prefix = settings.atom_api_prefix
    with TestClient(get_app(settings, model_loaders={"face": slow_loader})) as client:
        assert client.get(f"{prefix}/v1/health/ping").status_code == 200
        response = client.get(f"{prefix}/v1/health/ready")
        assert response.status_code == 503
        assert response.json() == {
            "code": 503,
            "msg": "models are not loaded",
            "data": {"models": {"face": "loading"}},
        }
        detect = client.post(f"{prefix}/detect", json={"data": [photo_b64], "src_type": "base64"})
        assert detect.status_code == 503
        assert detect.json()["msg"] == "model 'face' is not available (loading)"
        release.set()
        wait_ready(client, prefix)
        detect = client.post(f"{prefix}/detect", json={"data": [photo_b64], "src_type": "base64"})
        assert detect.json()["objects"] == [[]]


def test_failed_model_keeps_ready_503_and_logs_why(settings: Settings) -> None:
    """A loader that raises leaves the atom alive, not ready, and the log says why."""

    def broken_loader(_: Settings) -> None:
        raise FileNotFoundError("models/face.bin is missing")

    prefix = settings.atom_api_prefix
    with TestClient(get_app(settings, model_loaders={"face": broken_loader})) as client:
        deadline = time.monotonic() + 5
        while client.get(f"{prefix}/v1/health/ready").json()["data"]["models"]["face"] != "failed":
            assert time.monotonic() < deadline
            time.sleep(0.02)
        assert client.get(f"{prefix}/v1/health/ready").status_code == 503
        assert client.get(f"{prefix}/v1/health/ping").status_code == 200
    assert "model 'face' failed to load: FileNotFoundError: models/face.bin is missing" in read_log(
        settings
    )


def test_shutdown_does_not_wait_for_a_loading_model(settings: Settings) -> None:
    """Stopping while a model is still loading returns at once."""
    never = threading.Event()
    app = get_app(settings, model_loaders={"face": lambda _: never.wait(30)})
    started = time.monotonic()
    with TestClient(app):
        pass
    assert time.monotonic() - started < 3
    never.set()


def test_meta_k8s_healthcheck_url_is_served(make_settings: Callable[..., Settings]) -> None:
    """META's k8sHealthcheckUrl answers like ping, at that exact path."""
    meta = json.dumps({"k8sHealthcheckUrl": "/custom/health"})
    with TestClient(get_app(make_settings(meta=meta), model_loaders={})) as client:
        response = client.get("/custom/health")
    assert response.status_code == 200
    assert response.json() == {"is_alive": True}


def test_image_healthcheck_ignores_the_proxy_of_the_environment(
    start: Callable[..., Server],
) -> None:
    """The image's HEALTHCHECK command asks the atom directly, whatever HTTP_PROXY says."""
    server = start()
    server.wait_ready()
    env = {
        "PATH": os.environ["PATH"],
        "ATOM_PORT": str(server.port),
        "LOG_ROOT": "",
        "HTTP_PROXY": "http://127.0.0.1:9",  # nothing listens there
        "http_proxy": "http://127.0.0.1:9",
    }
    command = [sys.executable, "-m", "{{ cookiecutter.package_name }}.deploy.healthcheck"]
    check = subprocess.run(command, cwd=ROOT, env=env, timeout=60, check=False)
    assert check.returncode == 0
    server.stop()
    check = subprocess.run(command, cwd=ROOT, env=env, timeout=60, check=False)
    assert check.returncode == 1
