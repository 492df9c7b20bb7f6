"""Prometheus metrics: requests by route and status, latency, in flight, models, readiness."""

import re
from collections.abc import Callable

from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from {{ cookiecutter.package_name }}.api.app import get_app
from {{ cookiecutter.package_name }}.config import Settings
from {{ cookiecutter.package_name }}.control.metrics import Metrics, RequestRecorder

from .conftest import wait_ready


def samples(client: TestClient, prefix: str) -> dict[tuple[str, tuple], float]:
    """The scrape as {(sample name, sorted labels): value}."""
    response = client.get(f"{prefix}/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=")
    found = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def test_requests_by_route_and_status(client: TestClient, prefix: str) -> None:
    """Each request is counted under its route template, method and status."""
    for _ in range(3):
        client.get(f"{prefix}/v1/health/ping")
    client.get("/no/such/page")
    client.post(f"{prefix}/detect", json={"data": "x"})
    found = samples(client, prefix)
    ping = (("method", "GET"), ("route", f"{prefix}/v1/health/ping"), ("status", "200"))
    assert found[("atom_requests_total", ping)] == 3
    unmatched = (("method", "GET"), ("route", "<unmatched>"), ("status", "404"))
    assert found[("atom_requests_total", unmatched)] == 1
    invalid = (("method", "POST"), ("route", f"{prefix}/detect"), ("status", "422"))
    assert found[("atom_requests_total", invalid)] == 1
    latency = (("method", "GET"), ("route", f"{prefix}/v1/health/ping"))
    assert found[("atom_request_duration_seconds_count", latency)] == 3


def test_model_and_readiness_gauges(client: TestClient, prefix: str) -> None:
    """The model's load time and the readiness are reported; nothing is in flight but the scrape."""
    found = samples(client, prefix)
    assert 0 < found[("atom_model_load_seconds", (("model", "face"),))] < 30
    assert found[("atom_ready", ())] == 1
    assert found[("atom_requests_in_flight", ())] == 1  # the scrape itself
    assert found[("atom_serving_registered", ())] == 0


def test_metrics_switch_off(make_settings: Callable[..., Settings]) -> None:
    """METRICS_SWITCH=false removes the route."""
    settings = make_settings(metrics_switch=False)
    with TestClient(get_app(settings, model_loaders={})) as client:
        wait_ready(client, settings.atom_api_prefix)
        assert client.get(f"{settings.atom_api_prefix}/metrics").status_code == 404


def test_no_label_per_path(client: TestClient, prefix: str) -> None:
    """Unknown paths do not create one time series each."""
    for n in range(20):
        client.get(f"/random/{n}")
    text = client.get(f"{prefix}/metrics").text
    assert not re.search(r'route="/random/', text)


def test_latency_histogram_counts_every_request(client: TestClient, prefix: str) -> None:
    """The latency histogram holds each request once: buckets, count and sum agree."""
    for _ in range(5):
        client.get(f"{prefix}/v1/health/ping")
    found = samples(client, prefix)
    route = (("method", "GET"), ("route", f"{prefix}/v1/health/ping"))
    assert found[("atom_request_duration_seconds_count", route)] == 5
    assert found[("atom_request_duration_seconds_bucket", (("le", "+Inf"), *route))] == 5
    assert found[("atom_request_duration_seconds_bucket", (("le", "10.0"), *route))] == 5
    assert 0 < found[("atom_request_duration_seconds_sum", route)] < 5


def test_the_recorder_writes_each_request_at_once() -> None:
    """A request is counted, timed and out of the in-flight gauge as soon as it is answered."""
    metrics = Metrics()
    recorder = RequestRecorder(metrics)
    labels = {"route": "/r", "method": "GET", "status": "200"}

    recorder.started()
    recorder.started()
    assert metrics.registry.get_sample_value("atom_requests_in_flight") == 2
    recorder.finished("/r", "GET", 200, 0.01)
    assert metrics.registry.get_sample_value("atom_requests_total", labels) == 1
    assert metrics.registry.get_sample_value("atom_requests_in_flight") == 1
    recorder.finished("/r", "GET", 200, 0.02)
    assert metrics.registry.get_sample_value("atom_requests_total", labels) == 2
    assert metrics.registry.get_sample_value("atom_requests_in_flight") == 0
    latency = {"route": "/r", "method": "GET"}
    assert metrics.registry.get_sample_value("atom_request_duration_seconds_count", latency) == 2
