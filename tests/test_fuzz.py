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

The protocol operations (``detect/stream`` and the Open Inference Protocol v2 routes:
path parameters, cheap replies) run in a second pass with fewer examples and one worker:
in the first pass they would share its budget with ``detect`` (which then got as few as
27 cases), and with two workers hypothesis describes its path-parameter filters with
``ast.parse`` from both threads at once, which CPython 3.11 can fail with "AST
constructor recursion depth mismatch" (a race of the interpreter).

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
PROTOCOL_EXAMPLES = 150  # per operation and phase of the second pass
PROTOCOL_PATHS = "/v2|/detect/stream"
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
    "POST /d2atom/detect/stream",
    "GET /d2atom/v2",
    "GET /d2atom/v2/health/live",
    "GET /d2atom/v2/health/ready",
    "GET /d2atom/v2/models/{model_name}",
    "GET /d2atom/v2/models/{model_name}/versions/{model_version}",
    "GET /d2atom/v2/models/{model_name}/ready",
    "GET /d2atom/v2/models/{model_name}/versions/{model_version}/ready",
    "POST /d2atom/v2/models/{model_name}/infer",
    "POST /d2atom/v2/models/{model_name}/versions/{model_version}/infer",
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


def schemathesis(
    schema_url: str, report: Path, cwd: Path, *, protocols: bool = False
) -> subprocess.CompletedProcess[str]:
    """``schemathesis run`` with the lane's checks, bounded; its JSON report in ``report``.

    The first pass takes every operation but the protocol ones, the second those only.
    """
    command = [
        sys.executable,
        "-m",
        "schemathesis.cli",
        "run",
        schema_url,
        "--include-path-regex" if protocols else "--exclude-path-regex",
        PROTOCOL_PATHS,
        "--checks",
        ",".join(CHECKS),
        "--max-examples",
        str(PROTOCOL_EXAMPLES if protocols else MAX_EXAMPLES),
        "--continue-on-failure",
        "--workers",
        "1" if protocols else "2",
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


def fuzz_pass(base: str, tmp_path: Path, *, protocols: bool) -> tuple[dict[str, int], str]:
    """One schemathesis pass: the cases per operation; fails on any failure or error."""
    started = time.perf_counter()
    report_path = tmp_path / ("protocols.json" if protocols else "schemathesis.json")
    result = schemathesis(f"{base}/openapi.json", report_path, tmp_path, protocols=protocols)
    seconds = time.perf_counter() - started
    output = f"{result.stdout[-20000:]}\n{result.stderr[-5000:]}"
    assert report_path.exists(), output
    report = json.loads(report_path.read_text())
    cases = cases_per_operation(report)
    seed = report["seed"]
    print(f"schemathesis: {cases} cases in {seconds:.0f} s, seed {seed}")  # noqa: T201 - -s
    assert (report["failures"], report["errors"]) == ([], []), output
    assert (result.returncode, report["complete"]) == (0, True), output
    return cases, output


def test_fuzz_the_openapi_schema(default_atom: Path, tmp_path: Path) -> None:
    """Generated requests get no 5xx and only documented replies; the atom is alive after."""
    with AtomServer(default_atom, env=atom_env(tmp_path)) as atom:
        cases, output = fuzz_pass(atom.base, tmp_path, protocols=False)
        more, more_output = fuzz_pass(atom.base, tmp_path, protocols=True)
        assert set(cases) | set(more) == OPERATIONS, output + more_output
        assert not set(cases) & set(more), output + more_output
        # Hypothesis stops early once it finds nothing new, but not long before the bound.
        assert cases["POST /d2atom/detect"] >= MAX_EXAMPLES // 2, output
        infer = "POST /d2atom/v2/models/{model_name}/infer"
        assert more[infer] >= PROTOCOL_EXAMPLES // 2, more_output
        assert more["POST /d2atom/detect/stream"] >= 20, more_output  # it stops sooner
        assert http("GET", atom.url("/v1/health/ping"))[0::2] == (200, {"is_alive": True})
        assert atom.process is not None and atom.process.poll() is None, atom.output.read_text()
