"""Registration with Serving against a stub Serving that records every call."""

import itertools
import logging
import socket
import time
from collections.abc import Iterator

import pytest

from {{ cookiecutter.package_name }}.control.meta import ServingMeta
from {{ cookiecutter.package_name }}.control.serving import ServingAgent

from .stubs import StubServing, running

AGENT_LOGGER = "{{ cookiecutter.package_name }}.control.serving"
META = {
    "abilityCode": "OD210_101_001866_020",
    "abilityCodeInstance": "OD210_101_001866_020cuy4v0htvv7",
    "abilityDependAtomCodes": ["a009_dep"],
    "atomCode": "a009_atom",
    "svcAddress": "http://atom.svc:8000",
    "atomProcessUrl": "/d2atom/detect",
}


@pytest.fixture
def serving() -> Iterator[StubServing]:
    """A running stub Serving."""
    with running(StubServing()) as stub:
        yield stub


def agent_for(stub_url: str, **kwargs: float) -> ServingAgent:
    """An agent registering with the stub; the stub also answers the atom's ready route."""
    host, port = stub_url.removeprefix("http://").split(":")
    meta = ServingMeta.model_validate({**META, "servingHost": host, "servingPort": port})
    options = {"interval": 0.2, "retry_base": 0.05, "retry_max": 0.4, "timeout": 0.5, **kwargs}
    return ServingAgent(meta, f"{stub_url}/ready", instance_name="pod-7", **options)


@pytest.fixture
def agent(serving: StubServing) -> Iterator[ServingAgent]:
    """An agent started against the stub, stopped after the test."""
    agent = agent_for(serving.url)
    agent.start()
    yield agent
    agent.stop(budget=1)


def test_register_body_and_url(agent: ServingAgent, serving: StubServing) -> None:
    """Register is a POST to /atom/register with exactly the contract's fields."""
    (_, body), *_ = serving.wait_for("/atom/register")
    assert body == {
        "abilityCode": "OD210_101_001866_020",
        "abilityCodeInstance": "OD210_101_001866_020cuy4v0htvv7",
        "abilityDependAtomCodes": ["a009_dep"],
        "atomCode": "a009_atom",
        "atomInstanceName": "pod-7",
        "requestUrl": "http://atom.svc:8000/d2atom/detect",
    }
    ready_at = serving.paths("/ready")[0][0]
    assert serving.paths("/atom/register")[0][0] >= ready_at  # only once the atom answers


def test_heartbeats_at_the_interval(agent: ServingAgent, serving: StubServing) -> None:
    """Heartbeats carry the instance name and follow each other at the configured interval."""
    beats = serving.wait_for("/atom/health", count=6)
    assert all(body == {"atomInstanceName": "pod-7"} for _, body in beats)
    gaps = [later[0] - earlier[0] for earlier, later in itertools.pairwise(beats)]
    assert all(0.15 < gap < 0.4 for gap in gaps), gaps
    assert len(serving.paths("/atom/register")) == 1


def test_register_reply_causes_a_new_registration(
    agent: ServingAgent, serving: StubServing
) -> None:
    """A heartbeat reply whose data is "register" makes the atom register again."""
    serving.wait_for("/atom/health")
    serving.mode["/atom/health"] = "register"
    serving.wait_for("/atom/register", count=2)
    serving.wait_for("/atom/health", count=3)


@pytest.mark.parametrize("mode", ["ok", "ok-int"])
def test_code_zero_as_string_or_number(serving: StubServing, mode: str) -> None:
    """A reply with code "0" or 0 is a success: one register, then heartbeats."""
    serving.mode["*"] = mode
    agent = agent_for(serving.url)
    agent.start()
    try:
        serving.wait_for("/atom/health", count=2)
        assert agent.registered
        assert len(serving.paths("/atom/register")) == 1
    finally:
        agent.stop(budget=1)


@pytest.mark.parametrize("mode", ["refused", "500", "html", "garbage", "slow"])
def test_failures_are_retried_until_serving_answers(serving: StubServing, mode: str) -> None:
    """A refusal, an error, HTML, garbage or a slow reply is retried until one succeeds."""
    serving.mode["/atom/register"] = mode
    serving.slow_seconds = 1.0  # above the agent's 0.5 s timeout
    agent = agent_for(serving.url)
    agent.start()
    try:
        serving.wait_for("/atom/register", count=3)
        assert not agent.registered
        serving.mode["/atom/register"] = "ok"
        serving.wait_for("/atom/health", count=1)
        assert agent.registered
    finally:
        agent.stop(budget=1)


def test_serving_down_at_start_then_up() -> None:
    """With Serving down at start, the atom registers once it comes up."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    ready = StubServing()  # answers the atom's ready route only
    with running(ready):
        host_port = f"http://127.0.0.1:{port}"
        agent = agent_for(host_port)
        agent.ready_url = f"{ready.url}/ready"
        agent.start()
        try:
            time.sleep(1.0)  # several failed attempts
            with running(StubServing(port)) as serving:
                serving.wait_for("/atom/register", timeout=5)
                serving.wait_for("/atom/health", timeout=5)
        finally:
            agent.stop(budget=0.5)


def test_warnings_are_rate_limited(serving: StubServing, caplog: pytest.LogCaptureFixture) -> None:
    """Many failed attempts give one warning, not one per attempt."""
    serving.mode["/atom/register"] = "500"
    agent = agent_for(serving.url, retry_max=0.1)
    with caplog.at_level(logging.DEBUG, logger=AGENT_LOGGER):
        agent.start()
        serving.wait_for("/atom/register", count=8)
        agent.stop(budget=0.5)
    warnings = [
        r for r in caplog.records if r.levelno == logging.WARNING and "register" in r.getMessage()
    ]
    assert len(warnings) == 1
    assert "HTTP 500" in warnings[0].getMessage()


def test_backoff_grows_and_is_capped(serving: StubServing) -> None:
    """Gaps between failed attempts grow, and stay under the cap."""
    serving.mode["/atom/register"] = "500"
    agent = agent_for(serving.url, retry_max=0.8)
    agent.start()
    try:
        attempts = [at for at, _ in serving.wait_for("/atom/register", count=7, timeout=15)]
    finally:
        agent.stop(budget=0.5)
    gaps = [b - a for a, b in itertools.pairwise(attempts)]
    assert gaps[0] < 0.1  # the first retry waits 0.025 to 0.05 s
    assert gaps[-1] > 0.35  # later ones at least half the cap, 0.4 to 0.8 s
    assert max(gaps) < 0.8 + 0.25


def test_stop_sends_unregister_once(agent: ServingAgent, serving: StubServing) -> None:
    """stop() sends one unRegister with the instance name, quickly."""
    serving.wait_for("/atom/health")
    started = time.monotonic()
    agent.stop(budget=2)
    agent.stop(budget=2)
    assert time.monotonic() - started < 1
    unregistered = [body for _, body in serving.paths("/atom/unRegister")]
    assert unregistered == [{"atomInstanceName": "pod-7"}]
    assert not agent.registered


@pytest.mark.parametrize("mode", ["slow", "down"])
def test_stop_is_bounded_when_serving_misbehaves(serving: StubServing, mode: str) -> None:
    """stop() returns within its budget when Serving hangs or is gone."""
    agent = agent_for(serving.url)
    agent.start()
    serving.wait_for("/atom/health")
    if mode == "slow":
        serving.mode["*"] = "slow"
        serving.slow_seconds = 10
    else:
        serving.shutdown()
        serving.server_close()
    started = time.monotonic()
    agent.stop(budget=2)
    assert time.monotonic() - started < 2.5
