"""SkyWalking tracing against a stub collector over HTTP, and its absence when switched off."""

import json
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

from {{ cookiecutter.package_name }}.config import Settings

from .conftest import PREFIX, ROOT, Server
from .stubs import StubCollector, running


def post_json(url: str, body: dict, request_id: str) -> int:
    """POST JSON with an X-Request-ID; return the status."""
    request = urllib.request.Request(
        url,
        json.dumps(body).encode(),
        {"content-type": "application/json", "X-Request-ID": request_id},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.status


def test_detect_is_traced_and_its_logs_carry_the_trace_id(
    start: Callable[..., Server], tmp_path: Path
) -> None:
    """A detect request makes a segment named after the route; its log lines carry that trace id."""
    with running(StubCollector()) as collector:
        server = start(
            SW_SWITCH="on",
            SW_AGENT_PROTOCOL="http",
            SW_AGENT_COLLECTOR_BACKEND_SERVICES=collector.url.removeprefix("http://"),
            SW_AGENT_NAME="atom-under-test",
            SW_AGENT_LOG_REPORTER_ACTIVE="false",
            LOG_LEVEL="DEBUG",  # two lines per call: its arrival and its end
        )
        server.wait_ready()
        assert post_json(f"{server.base}/detect", {"data": [], "src_type": "base64"}, "sw-1") == 200
        deadline = time.monotonic() + 20
        while True:
            traced = [
                segment
                for segment in collector.segments()
                if any(span["operationName"] == f"{PREFIX}/detect" for span in segment["spans"])
            ]
            if traced or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert len(traced) == 1, collector.calls
        assert traced[0]["service"] == "atom-under-test"
        trace_id = traced[0]["traceId"]
        server.stop()
    lines = [
        line
        for line in (tmp_path / "logs" / "atom" / "atom.log").read_text().splitlines()
        if "[sw-1 " in line
    ]
    assert len(lines) >= 2
    assert all(f"[sw-1 tid={trace_id}]" in line for line in lines)


def test_switched_off_skywalking_is_not_imported() -> None:
    """With SW_SWITCH off, building and starting the app imports no skywalking module."""
    package = Settings.__module__.split(".")[0]
    code = (
        "import sys\n"
        "from fastapi.testclient import TestClient\n"
        f"from {package}.api.app import get_app\n"
        f"from {package}.config import Settings\n"
        "settings = Settings(_env_file=None, log_root='')\n"
        "with TestClient(get_app(settings, model_loaders={})) as client:\n"
        f"    while client.get('{PREFIX}/v1/health/ready').status_code != 200:\n"
        "        pass\n"
        "print(sorted(m for m in sys.modules if m.startswith('skywalking')))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert result.stdout.strip() == "[]"
