"""Batching under nginx_run: each of two workers batches its own requests, and one scrape
through nginx sums the batch metrics of both (the demo model batches)."""

import base64
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from scripts.atomctl import AtomLauncher, http
from tests.test_nginx import log_pids, nginx_binary

pytestmark = pytest.mark.nginx

CONCURRENT = 16


@pytest.fixture
def atom(default_atom: Path, tmp_path: Path, runtime_dir: Path) -> Iterator[AtomLauncher]:
    """nginx_run.py with 2 workers of the default atom."""
    nginx_binary()
    launcher = AtomLauncher(
        default_atom,
        workers=2,
        env={"LOG_ROOT": str(tmp_path / "logs"), "ATOM_RUNTIME_DIR": str(runtime_dir)},
    )
    with launcher:
        yield launcher


def scrape(atom: AtomLauncher) -> dict[tuple[str, str], float]:
    """The batch samples of one scrape through nginx, by (name, model)."""
    status, _, text = http("GET", atom.url("/metrics"))
    assert status == 200
    return {
        (sample.name, sample.labels.get("model", "")): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name.startswith("atom_batch_")
    }


def test_each_worker_batches_and_the_scrape_sums_them(atom: AtomLauncher) -> None:
    """16 concurrent detects through nginx: every reply is the lone call's, both workers
    batched, and the scrape counts all 16 images in fewer than 16 batches."""
    photo = (atom.project / "tests" / "data" / "astronaut.jpg").read_bytes()
    body = {"data": [base64.b64encode(photo).decode()], "src_type": "base64"}
    status, _, alone = http("POST", atom.url("/detect"), body)
    assert status == 200 and len(alone["objects"][0]) == 1
    before = scrape(atom)

    def detect(n: int) -> tuple[int, dict]:
        status, _, reply = http("POST", atom.url("/detect"), body, {"X-Request-ID": f"b-{n}"})
        return status, reply

    with ThreadPoolExecutor(CONCURRENT) as pool:
        replies = list(pool.map(detect, range(CONCURRENT)))
    for status, reply in replies:
        assert status == 200
        assert reply["objects"] == alone["objects"]
    assert log_pids(atom, {f"b-{n}" for n in range(CONCURRENT)}) == set(atom.worker_pids().values())
    after = scrape(atom)
    images = after[("atom_batch_size_sum", "face")] - before[("atom_batch_size_sum", "face")]
    batches = after[("atom_batch_size_count", "face")] - before[("atom_batch_size_count", "face")]
    waits = after[("atom_batch_wait_seconds_count", "face")]
    assert images == CONCURRENT
    assert 2 <= batches < CONCURRENT  # each worker ran batches, some held several requests
    assert waits == CONCURRENT + 1
    assert after[("atom_batch_queue_depth", "face")] == 0
