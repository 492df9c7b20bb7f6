"""server.py as a real process: it starts, serves, registers with Serving, stops on SIGTERM."""

import json
import socket
import time
from collections.abc import Callable

import pytest

from .conftest import Server, free_port, get
from .stubs import StubServing, running

pytestmark = pytest.mark.slow  # real server.py processes


def serving_env(serving: StubServing) -> dict[str, str]:
    """Variables that make the atom register with the stub, quickly."""
    port = serving.server_address[1]
    meta = {"servingHost": "127.0.0.1", "servingPort": port, "atomCode": "a1"}
    return {
        "META": json.dumps(meta),
        "SERVING_HEARTBEAT_INTERVAL": "0.2",
        "SERVING_RETRY_MAX": "1",
        "SERVING_TIMEOUT": "1",
    }


def test_serves_and_stops_on_sigterm(start: Callable[..., Server]) -> None:
    """Ready within 30 s, ping answers, SIGTERM ends it with status 0 within 5 s."""
    server = start()
    server.wait_ready()
    assert get(f"{server.base}/v1/health/ping") == (200, {"is_alive": True})
    assert server.stop() < 5


def test_bad_setting_stops_the_start(start: Callable[..., Server]) -> None:
    """A bad variable ends server.py at once with status 2 and one line naming it."""
    server = start(SW_SWITCH="maybe")
    assert server.process.wait(timeout=30) == 2
    assert server.output.read_text().strip().splitlines() == [
        "error: invalid configuration: SW_SWITCH='maybe': "
        "must be one of true/false, 1/0, yes/no, on/off"
    ]


def test_registers_heartbeats_and_unregisters(start: Callable[..., Server]) -> None:
    """A lone server.py registers once ready, sends heartbeats, and unregisters on SIGTERM."""
    with running(StubServing()) as serving:
        server = start(**serving_env(serving))
        server.wait_ready()
        (_, body), *_ = serving.wait_for("/atom/register")
        assert body["atomInstanceName"] == socket.gethostname()
        serving.wait_for("/atom/health", count=3)
        assert server.stop() < 5
        assert len(serving.paths("/atom/unRegister")) == 1
        assert len(serving.paths("/atom/register")) == 1


def test_serving_down_then_up_while_serving(start: Callable[..., Server]) -> None:
    """Serving down at start: the atom serves meanwhile, and registers when Serving comes up."""
    port = free_port()
    down = {"servingHost": "127.0.0.1", "servingPort": port}
    server = start(**{**serving_env(StubServing()), "META": json.dumps(down)})
    server.wait_ready()
    for _ in range(5):
        assert get(f"{server.base}/v1/health/ping")[0] == 200
        time.sleep(0.2)
    with running(StubServing(port)) as serving:
        serving.wait_for("/atom/register", timeout=5)
        serving.wait_for("/atom/health", timeout=5)
        assert server.stop() < 5


@pytest.mark.parametrize("mode", ["500", "garbage", "slow"])
def test_misbehaving_serving_does_not_stop_the_atom(
    start: Callable[..., Server], mode: str
) -> None:
    """500, garbage or slow replies: the atom keeps serving and keeps retrying."""
    with running(StubServing()) as serving:
        serving.mode["*"] = mode
        serving.slow_seconds = 1.5
        server = start(**serving_env(serving))
        server.wait_ready()
        serving.wait_for("/atom/register", count=2, timeout=10)
        started = time.monotonic()
        for _ in range(5):
            assert get(f"{server.base}/v1/health/ping")[0] == 200
        assert time.monotonic() - started < 2
        assert server.stop() < 5


def test_sigterm_with_serving_gone(start: Callable[..., Server]) -> None:
    """Registered, then Serving disappears: SIGTERM still ends the atom within 5 s."""
    with running(StubServing()) as serving:
        server = start(**serving_env(serving))
        server.wait_ready()
        serving.wait_for("/atom/health")
    assert server.stop() < 5
