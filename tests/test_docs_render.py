"""/docs and /redoc render in a real browser with every other host unreachable."""

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from scripts.atomctl import AtomServer

pytestmark = pytest.mark.docs_render

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    # Every host but the atom resolves to nothing: the page must not need the internet.
    "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
    "--virtual-time-budget=15000",
]


def rendered_dom(url: str, profile: Path) -> str:
    """The page's DOM after its scripts ran, from headless Chromium."""
    chromium = shutil.which("chromium")
    assert chromium, "chromium is missing: run scripts/setup.sh (apt-get install chromium)"
    result = subprocess.run(
        [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--dump-dom", url],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


@pytest.fixture(scope="module")
def server(default_atom: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[AtomServer]:
    """The default atom, running."""
    with AtomServer(default_atom, env={"LOG_ROOT": str(tmp_path_factory.mktemp("logs"))}) as atom:
        yield atom


def test_swagger_ui_renders_the_routes(server: AtomServer, tmp_path: Path) -> None:
    """Swagger UI draws one operation block per route."""
    dom = rendered_dom(f"{server.base}/docs", tmp_path)
    for path in ("/d2atom/detect", "/d2atom/v1/health/ping", "/d2atom/v1/health/ready"):
        assert f'class="opblock-summary-path" data-path="{path}"' in dom


def test_redoc_renders_the_routes(server: AtomServer, tmp_path: Path) -> None:
    """ReDoc draws the operations with their summaries."""
    dom = rendered_dom(f"{server.base}/redoc", tmp_path)
    assert "Detect faces" in dom
    assert "/d2atom/detect" in dom
    assert "Liveness" in dom
