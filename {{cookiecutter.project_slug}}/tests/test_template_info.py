"""The template release of the runtime is visible: ready reply, OpenAPI version, a metric;
and it is the one .cruft.json records (make upgrade and cruft update move both)."""

import json
import re
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from {{ cookiecutter.package_name }} import __version__, about

ROOT = Path(__file__).parent.parent


def test_about_matches_the_record() -> None:
    """about.py's version and commit are those of .cruft.json, the atom's record."""
    record = ROOT / ".cruft.json"
    if not record.is_file():
        pytest.fail(".cruft.json is missing: the atom no longer records its template")
    state = json.loads(record.read_text(encoding="utf-8"))
    assert state["context"]["cookiecutter"]["_template_version"] == about.TEMPLATE_DECLARED
    assert (state["commit"] or "") == about.TEMPLATE_COMMIT


def test_the_version_says_whether_it_is_a_release() -> None:
    """A release is X.Y.Z; anything else is a development version naming its commit."""
    release = re.fullmatch(r"\d+\.\d+\.\d+", about.TEMPLATE_VERSION)
    development = re.fullmatch(
        r"(\d+\.\d+\.\d+\.dev\d+)(?:\+([0-9a-f]{12}))?", about.TEMPLATE_VERSION
    )
    assert release or development, about.TEMPLATE_VERSION
    if development:
        assert development.group(1) == about.TEMPLATE_DECLARED
        assert development.group(2) == (about.TEMPLATE_COMMIT[:12] or None)


def test_ready_names_the_template(client: TestClient, prefix: str) -> None:
    """The ready reply carries the template's version and commit."""
    reply = client.get(f"{prefix}/v1/health/ready").json()
    assert reply["template"] == {"version": about.TEMPLATE_VERSION, "commit": about.TEMPLATE_COMMIT}


def test_openapi_version_names_the_template(client: TestClient) -> None:
    """OpenAPI's info.version is the atom's version with the template's as build metadata."""
    info = client.get("/openapi.json").json()["info"]
    template = about.TEMPLATE_VERSION.replace("+", ".")
    assert info["version"] == f"{__version__}+atom-template.{template}"
    assert re.fullmatch(r"[0-9A-Za-z.-]+\+[0-9A-Za-z.-]+", info["version"])  # one "+"


def test_template_info_metric(client: TestClient, prefix: str) -> None:
    """atom_template_info is 1, labelled with the template's version and commit."""
    text = client.get(f"{prefix}/metrics").text
    (family,) = [f for f in text_string_to_metric_families(text) if f.name == "atom_template_info"]
    (sample,) = family.samples
    assert sample.labels == {"version": about.TEMPLATE_VERSION, "commit": about.TEMPLATE_COMMIT}
    assert sample.value == 1
