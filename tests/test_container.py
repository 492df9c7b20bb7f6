"""The container lane: the baked atom's Dockerfile built by podman on a local Debian base.

No registry serves base images here, so the lane makes its own: a minimal Debian bookworm
with python3 (debootstrap), imported into podman. The test-only plumbing lives here, not
in the Dockerfile: a containers.conf (runc, ulimits), chroot isolation, host networking,
and this machine's CA bundle plus a pip.conf mounted into the build for pip.
"""

import base64
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from scripts.atomctl import free_port, free_port_range, http

BASE_IMAGE = "localhost/atom-test-base:bookworm"
IMAGE = "localhost/my-atom:test"
CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"
CONTAINERS_CONF = """[containers]
default_ulimits = ["nofile=20000:20000", "nproc=4096:4096"]

[engine]
runtime = "runc"
"""


def tool(name: str) -> str:
    """A tool this lane needs; fail loudly if it is missing."""
    path = shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin")
    assert path, f"{name} is missing: run scripts/setup.sh (apt-get install {name})"
    return path


@pytest.fixture(scope="module")
def podman_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Environment for podman with the lane's containers.conf."""
    for name in ("podman", "runc", "debootstrap"):
        tool(name)
    conf = tmp_path_factory.mktemp("podman") / "containers.conf"
    conf.write_text(CONTAINERS_CONF)
    return {**os.environ, "CONTAINERS_CONF": str(conf)}


def podman(env: dict[str, str], *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    """Run podman; return the completed process (never raises on failure)."""
    return subprocess.run(
        ["podman", *args], env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


@pytest.fixture(scope="module")
def base_image(podman_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> str:
    """A Debian bookworm image with python3, built once per machine."""
    if podman(podman_env, "image", "exists", BASE_IMAGE).returncode == 0:
        return BASE_IMAGE
    rootfs = tmp_path_factory.mktemp("rootfs")
    result = subprocess.run(
        [
            tool("debootstrap"),
            "--variant=minbase",
            "--include=python3,ca-certificates",
            "bookworm",
            str(rootfs),
            "http://deb.debian.org/debian",
        ],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    tar = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
    imported = subprocess.run(
        ["podman", "import", "-", BASE_IMAGE],
        stdin=tar.stdout,
        env=podman_env,
        capture_output=True,
        timeout=600,
        check=False,
    )
    tar.wait(60)
    shutil.rmtree(rootfs, ignore_errors=True)
    assert imported.returncode == 0, imported.stderr
    return BASE_IMAGE


@pytest.fixture(scope="module")
def image(
    base_image: str,
    podman_env: dict[str, str],
    default_atom: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> str:
    """The baked atom's image, built with `podman build` from its own Dockerfile."""
    pip_conf = tmp_path_factory.mktemp("pip") / "pip.conf"
    pip_conf.write_text(f"[global]\ncert = {CA_BUNDLE}\n")
    started = time.monotonic()
    result = podman(
        podman_env,
        "build",
        "--format=docker",
        "--isolation=chroot",
        "--network=host",
        f"--volume={CA_BUNDLE}:{CA_BUNDLE}:ro",
        f"--volume={pip_conf}:/etc/pip.conf:ro",
        f"--build-arg=BASE_IMAGE={base_image}",
        "--tag",
        IMAGE,
        str(default_atom),
        timeout=1500,
    )
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-5000:]
    print(f"image built in {time.monotonic() - started:.0f} s")  # noqa: T201 - shown with -s
    return IMAGE


@pytest.fixture(scope="module")
def container(
    image: str,
    podman_env: dict[str, str],
    default_atom: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[dict]:
    """The image running (read-only root, key mounted as a secret), removed afterwards."""
    port, inner = free_port(), free_port_range(2)
    name = f"atom-test-{port}"
    args = [
        "run",
        "--detach",
        f"--name={name}",
        "--network=host",
        "--read-only",
        "--tmpfs=/tmp",
        "--tmpfs=/app/logs",
        f"--env=ATOM_PORT={port}",
        f"--env=ATOM_INNER_START_PORT={inner}",
        "--env=ATOM_WORKERS=2",
    ]
    # The project's key is private to its owner (mode 600); the container's user (uid
    # 10001) reads a copy, as it would read a Kubernetes Secret mounted with fsGroup.
    key = tmp_path_factory.mktemp("secret") / "model.key"
    shutil.copy(default_atom / "secrets" / "model.key", key)
    key.chmod(0o444)
    args.append(f"--volume={key}:/run/secrets/atom_model_key:ro")
    result = podman(podman_env, *args, image)
    assert result.returncode == 0, result.stderr
    try:
        yield {"name": name, "base": f"http://127.0.0.1:{port}", "env": podman_env}
    finally:
        podman(podman_env, "rm", "--force", "--time=2", name, timeout=60)


def wait_ready(base: str, timeout: float = 120) -> float:
    """Seconds until the ready route answers 200 through the container's nginx."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        try:
            if http("GET", f"{base}/d2atom/v1/health/ready", timeout=2)[0] == 200:
                return time.monotonic() - started
        except OSError:
            pass
        time.sleep(0.5)
    raise AssertionError("the container did not become ready")


def test_hadolint_reports_nothing_above_info(default_atom: Path) -> None:
    """hadolint finds no error, warning or style issue in the Dockerfile."""
    hadolint = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    result = subprocess.run(
        [hadolint, "--format", "json", "Dockerfile"],
        cwd=default_atom,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    findings = json.loads(result.stdout or "[]")
    assert [f for f in findings if f["level"] != "info"] == []


def test_container_serves_detect(container: dict, default_atom: Path) -> None:
    """The container becomes ready and detects the face in the photograph."""
    wait_ready(container["base"])
    photo = default_atom / "tests" / "data" / "astronaut.jpg"
    body = {"data": [base64.b64encode(photo.read_bytes()).decode()], "src_type": "base64"}
    status, _, reply = http("POST", f"{container['base']}/d2atom/detect", body)
    assert status == 200
    assert len(reply["objects"][0]) == 1


def test_healthcheck_passes(container: dict) -> None:
    """The image's HEALTHCHECK command succeeds once the atom is ready."""
    wait_ready(container["base"])
    result = podman(container["env"], "healthcheck", "run", container["name"], timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_image_holds_no_sources_tests_or_key(container: dict, default_atom: Path) -> None:
    """No .pyx, .c, tests or key file in the image; it runs as a non-root user."""
    found = podman(
        container["env"],
        "exec",
        container["name"],
        "sh",
        "-c",
        "find /app -name '*.pyx' -o -name '*.c' -o -name 'tests' -o -name 'secrets'"
        " -o -name '*.key'; id -u",
        timeout=60,
    )
    assert found.returncode == 0, found.stderr
    assert found.stdout.split() == ["10001"]
    secret = (default_atom / "secrets" / "model.key").read_text().strip()
    grep = podman(
        container["env"], "exec", container["name"], "grep", "-rlF", secret, "/app", "/opt"
    )
    assert grep.returncode == 1  # grep: no match anywhere
    assert grep.stdout == ""
    protector = podman(
        container["env"],
        "exec",
        container["name"],
        "sh",
        "-c",
        "ls /app/my_atom/dependency/ | grep -c '^model_protector.*\\.so$'",
    )
    assert protector.stdout.strip() == "1"


def test_podman_stop_is_clean(container: dict) -> None:
    """`podman stop` ends the container within 10 s with status 0."""
    wait_ready(container["base"])
    started = time.monotonic()
    result = podman(container["env"], "stop", "--time=10", container["name"], timeout=60)
    elapsed = time.monotonic() - started
    assert result.returncode == 0, result.stderr
    assert elapsed < 10
    state = podman(
        container["env"], "inspect", container["name"], "--format", "{{.State.ExitCode}}"
    )
    assert state.stdout.strip() == "0"
