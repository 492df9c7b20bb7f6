"""The fuzz lane: schemathesis against the baked atom's OpenAPI schema, on a real server.

Schemathesis reads ``/openapi.json`` and sends generated requests, valid and invalid,
to every operation. Checks used, and why:

- not_a_server_error: no 5xx, whatever the input;
- status_code_conformance, content_type_conformance, response_headers_conformance,
  response_schema_conformance: every reply is one the schema documents, body included;
- unsupported_method, allow_header_conformance: other methods get 405 with ``Allow``;
- missing_required_header, ignored_auth: part of "all"; the atom declares no required
  header and no auth, so they have nothing to test today and guard future routes.

Left out: positive_data_acceptance (a schema-valid ``detect`` body still holds random
strings, not images, so 400/415 is the right answer, not a bug); negative_data_rejection
(FastAPI's lax parsing accepts ``"threshold": "0.5"`` or ``false`` as numbers, kept for
``linker_atom`` clients that send numbers as text); the stateful checks (no links).

URLs never leave the machine: IMAGE_URL_HOSTS lists only 127.0.0.1, a private address
the atom refuses without a DNS look-up, so no generated URL can hang on DNS.
"""

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from scripts.atomctl import AtomServer, http

pytestmark = pytest.mark.fuzz

MAX_EXAMPLES = 1000  # per operation and phase: about a minute of fuzzing on 2 cores
FUZZ_TIMEOUT = 240
CHECKS = (
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_headers_conformance",
    "response_schema_conformance",
    "unsupported_method",
    "allow_header_conformance",
    "missing_required_header",
    "ignored_auth",
)
OPERATIONS = {
    "GET /d2atom/v1/health/ping",
    "GET /d2atom/v1/health/ready",
    "GET /d2atom/metrics",
    "POST /d2atom/detect",
}


def atom_env(tmp: Path) -> dict[str, str]:
    """Settings of the atom under fuzz: logs in ``tmp``, no network, empty file roots."""
    for name in ("logs", "local", "mmap"):
        (tmp / name).mkdir()
    return {
        "LOG_ROOT": str(tmp / "logs"),
        "IMAGE_URL_HOSTS": "127.0.0.1",
        "IMAGE_URL_TIMEOUT": "2",
        "IMAGE_URL_RETRIES": "0",
        "IMAGE_LOCAL_ROOTS": str(tmp / "local"),
        "IMAGE_MMAP_ROOTS": str(tmp / "mmap"),
    }


def schemathesis(schema_url: str, report: Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    """``schemathesis run`` with the lane's checks, bounded; its JSON report in ``report``."""
    command = [
        sys.executable,
        "-m",
        "schemathesis.cli",
        "run",
        schema_url,
        "--checks",
        ",".join(CHECKS),
        "--max-examples",
        str(MAX_EXAMPLES),
        "--continue-on-failure",
        "--workers",
        "2",
        "--request-timeout",
        "10",
        "--generation-database",
        "none",
        "--no-color",
        "--report",
        "json",
        "--report-json-path",
        str(report),
    ]
    return subprocess.run(
        command, cwd=cwd, capture_output=True, text=True, timeout=FUZZ_TIMEOUT, check=False
    )


def cases_per_operation(report: dict) -> dict[str, int]:
    """How many generated requests each operation received, over every phase."""
    return {
        operation: sum(sum(counts.values()) for counts in phases.values())
        for operation, phases in report["valid_rates"].items()
    }


def test_fuzz_the_openapi_schema(default_atom: Path, tmp_path: Path) -> None:
    """Generated requests get no 5xx and only documented replies; the atom is alive after."""
    with AtomServer(default_atom, env=atom_env(tmp_path)) as atom:
        started = time.perf_counter()
        report_path = tmp_path / "schemathesis.json"
        result = schemathesis(f"{atom.base}/openapi.json", report_path, tmp_path)
        seconds = time.perf_counter() - started
        output = f"{result.stdout[-20000:]}\n{result.stderr[-5000:]}"
        assert report_path.exists(), output
        report = json.loads(report_path.read_text())
        cases = cases_per_operation(report)
        seed = report["seed"]
        print(f"schemathesis: {cases} cases in {seconds:.0f} s, seed {seed}")  # noqa: T201 - -s
        assert (report["failures"], report["errors"]) == ([], []), output
        assert (result.returncode, report["complete"]) == (0, True), output
        assert set(cases) == OPERATIONS, output
        # Hypothesis stops early once it finds nothing new, but not long before the bound.
        assert cases["POST /d2atom/detect"] >= MAX_EXAMPLES // 2, output
        assert http("GET", atom.url("/v1/health/ping"))[0::2] == (200, {"is_alive": True})
        assert atom.process is not None and atom.process.poll() is None, atom.output.read_text()
