"""/docs and /redoc in a real browser, every other host unreachable: each shows every
operation of the atom's OpenAPI schema, and Swagger UI's "Try it out" calls the atom.

Headless Chromium is driven through its DevTools protocol (a websocket), the way a person
would use the page: open it, wait for it to draw, click.
"""

import contextlib
import itertools
import json
import shutil
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from websockets.sync.client import ClientConnection, connect

from scripts.atomctl import AtomServer, http

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
    "--remote-debugging-port=0",
]
PING = "/d2atom/v1/health/ping"
# The operations each page shows, as [METHOD, path] pairs.
SWAGGER_OPERATIONS = """[...document.querySelectorAll('.opblock')].map(block => [
    block.querySelector('.opblock-summary-method').textContent,
    block.querySelector('.opblock-summary-path').dataset.path])"""
REDOC_OPERATIONS = """[...document.querySelectorAll('[data-section-id^="operation/"]')]
    .map(section => section.querySelector('h2').textContent.trim())"""


class Chromium:
    """Headless Chromium with one page, driven over the DevTools protocol."""

    def __init__(self, profile: Path) -> None:
        chromium = shutil.which("chromium")
        assert chromium, "chromium is missing: run scripts/setup.sh (apt-get install chromium)"
        self.process = subprocess.Popen(
            [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "about:blank"],
            stdout=subprocess.DEVNULL,
            stderr=(profile.parent / "chromium.log").open("wb"),
        )
        self.ids = itertools.count(1)
        self.stack = contextlib.ExitStack()
        self.page = self.stack.enter_context(self._connect(profile / "DevToolsActivePort"))

    def _connect(self, port_file: Path, timeout: float = 60) -> ClientConnection:
        """The websocket of the browser's page, once the browser listens."""
        deadline = time.monotonic() + timeout
        while not port_file.is_file() or not port_file.read_text().strip():
            assert self.process.poll() is None, "chromium exited at start"
            assert time.monotonic() < deadline, "chromium did not start"
            time.sleep(0.1)
        port = port_file.read_text().split()[0]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as reply:
            (page,) = [t for t in json.load(reply) if t["type"] == "page"]
        return connect(page["webSocketDebuggerUrl"], max_size=None, open_timeout=10)

    def call(self, method: str, **params: Any) -> dict:
        """One protocol command; its result (events in between are skipped)."""
        number = next(self.ids)
        self.page.send(json.dumps({"id": number, "method": method, "params": params}))
        while True:
            message = json.loads(self.page.recv(timeout=30))
            if message.get("id") == number:
                assert "error" not in message, message
                return message["result"]

    def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page."""
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        assert "exceptionDetails" not in result, result["exceptionDetails"]
        return result["result"].get("value")

    def wait_for(self, expression: str, timeout: float = 30) -> Any:
        """The value of ``expression`` once it is truthy."""
        deadline = time.monotonic() + timeout
        check = f"(() => {{ const v = ({expression}); return v instanceof Node || v; }})()"
        while not (value := self.evaluate(check)):
            assert time.monotonic() < deadline, f"not in the page after {timeout} s: {expression}"
            time.sleep(0.1)
        return value

    def open(self, url: str) -> None:
        """Navigate the page to ``url``."""
        self.call("Page.navigate", url=url)

    def close(self) -> None:
        """Close the connection and stop the browser."""
        self.stack.close()
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)


@pytest.fixture(scope="module")
def server(default_atom: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[AtomServer]:
    """The default atom, running."""
    with AtomServer(default_atom, env={"LOG_ROOT": str(tmp_path_factory.mktemp("logs"))}) as atom:
        yield atom


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Chromium]:
    """One headless Chromium for the lane."""
    chromium = Chromium(tmp_path_factory.mktemp("chromium") / "profile")
    yield chromium
    chromium.close()


@pytest.fixture(scope="module")
def schema(server: AtomServer) -> dict:
    """The atom's OpenAPI schema."""
    status, _, body = http("GET", f"{server.base}/openapi.json")
    assert status == 200
    return body


def operations(schema: dict) -> list[tuple[str, str, str]]:
    """(METHOD, path, summary) of every operation of the schema."""
    return sorted(
        (method.upper(), path, operation["summary"])
        for path, methods in schema["paths"].items()
        for method, operation in methods.items()
    )


def test_swagger_ui_shows_every_operation(
    server: AtomServer, browser: Chromium, schema: dict
) -> None:
    """Swagger UI draws one block per operation of the schema, no more, no fewer."""
    browser.open(f"{server.base}/docs")
    browser.wait_for("document.querySelectorAll('.opblock').length > 0")
    shown = sorted(tuple(pair) for pair in browser.evaluate(SWAGGER_OPERATIONS))
    assert shown == [(method, path) for method, path, _ in operations(schema)]


def test_swagger_ui_calls_the_atom(server: AtomServer, browser: Chromium) -> None:
    """Try it out, then Execute on ping: the page shows the atom's 200 and its body."""
    browser.open(f"{server.base}/docs")
    block = f"document.querySelector('.opblock-summary-path[data-path=\"{PING}\"]')"
    browser.wait_for(block)
    browser.evaluate(
        f"{block}.closest('.opblock').querySelector('.opblock-summary-control').click()"
    )
    browser.wait_for("document.querySelector('.try-out__btn')")
    browser.evaluate("document.querySelector('.try-out__btn').click()")
    browser.wait_for("document.querySelector('.btn.execute')")
    browser.evaluate("document.querySelector('.btn.execute').click()")
    reply = "document.querySelector('.live-responses-table tr.response')"
    status = browser.wait_for(f"{reply}?.querySelector('.response-col_status').textContent")
    body = browser.wait_for(f"{reply}?.querySelector('.response-col_description pre').textContent")
    assert (status.strip(), json.loads(body)) == ("200", {"is_alive": True})


def test_redoc_shows_every_operation(server: AtomServer, browser: Chromium, schema: dict) -> None:
    """ReDoc draws a section per operation of the schema, under its summary."""
    browser.open(f"{server.base}/redoc")
    browser.wait_for(f"{REDOC_OPERATIONS}.length > 0")
    shown = sorted(browser.evaluate(REDOC_OPERATIONS))
    assert shown == sorted(summary for _, _, summary in operations(schema))
