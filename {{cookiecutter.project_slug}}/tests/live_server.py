"""An app served by uvicorn from a thread of the test, for clients that need a real socket."""

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import uvicorn
from fastapi import FastAPI

from {{ cookiecutter.package_name }}.control.log_handlers import flush_all

from .conftest import free_port


@contextmanager
def serve_in_thread(app: FastAPI, *, timeout: float = 10, **options: Any) -> Iterator[str]:
    """Serve ``app`` on a free port of 127.0.0.1 (lifespan included; ``options`` for
    uvicorn.Config); yield its base URL."""
    port = free_port()
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, log_config=None, access_log=False, **options
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="live-server", daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + timeout
        while not server.started:
            assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.02)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout)
        # The server's last lines now, while pytest captures this test's output: written
        # by the log thread later, they would come after pytest's summary.
        flush_all()
