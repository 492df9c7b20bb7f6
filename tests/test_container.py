"""The container lane: the baked atom's Dockerfile built by podman on a local Debian base.

No registry serves base images here, so the lane makes its own: a minimal Debian bookworm
with python3 (debootstrap), imported into podman. The test-only plumbing lives here, not
in the Dockerfile: a containers.conf (runc, ulimits), chroot isolation, host networking,
and this machine's CA bundle plus a pip.conf mounted into the build for pip.

The image runs twice: the README's way (its `docker run` line, with `--user` a uid that
owns a mode 600 key file, like `--user "$(id -u)"` does for whoever runs it) and with the
image's default user reading a secret mounted read-only on a read-only root.
"""

import base64
import hashlib
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from scripts.atomctl import free_port, http

pytestmark = pytest.mark.container

# The base image is made by this command (and a `podman import`); its tag carries a hash
# of it, so a change of the command makes a new image instead of using a stale one.
DEBOOTSTRAP = (
    "--variant=minbase",
    "--include=python3,ca-certificates",
    "bookworm",
    "{rootfs}",
    "http://deb.debian.org/debian",
)
BASE_IMAGE = (
    "localhost/atom-test-base:bookworm-"
    + hashlib.sha256("\0".join(DEBOOTSTRAP).encode()).hexdigest()[:12]
)
IMAGE = "localhost/my-atom:test"
README_UID = 12345  # a uid with no passwd entry in the image, as platforms assign them
DEFAULT_UID = 10001
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
    """A Debian bookworm image with python3, made once per machine (and per DEBOOTSTRAP)."""
    if podman(podman_env, "image", "exists", BASE_IMAGE).returncode == 0:
        return BASE_IMAGE
    rootfs = tmp_path_factory.mktemp("rootfs")
    result = subprocess.run(
        [tool("debootstrap"), *(arg.format(rootfs=rootfs) for arg in DEBOOTSTRAP)],
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
def build_context(default_atom: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The default atom, with its model file private to its owner (mode 600), as a build
    context: the image must be readable by any user whatever the modes of the checkout."""
    context = tmp_path_factory.mktemp("context") / default_atom.name
    shutil.copytree(default_atom, context, ignore=shutil.ignore_patterns("*.log"))
    (context / "models" / "face.enc").chmod(0o600)
    return context


@pytest.fixture(scope="module")
def image(
    base_image: str,
    podman_env: dict[str, str],
    build_context: Path,
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
        str(build_context),
        timeout=1500,
    )
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-5000:]
    print(f"image built in {time.monotonic() - started:.0f} s")  # noqa: T201 - shown with -s
    return IMAGE


def readme_docker_run(project: Path) -> list[str]:
    """The `docker run` line of the atom's docs/deployment.md, "Build the image", split."""
    page = (project / "docs" / "deployment.md").read_text(encoding="utf-8")
    section = page.split("## Build the image", 1)[1]
    (line,) = re.findall(r"^docker run .*$", section, re.M)
    return shlex.split(line)


def give_key_to(uid: int, key: Path, env: dict[str, str]) -> None:
    """Make ``uid`` (as the containers see it) the owner of ``key``, mode 600."""
    key.chmod(0o600)
    if os.geteuid() == 0:
        os.chown(key, uid, uid)
        return
    # Rootless podman: container uids map to the user's subordinate uids.
    chown = podman(env, "unshare", "chown", f"{uid}:{uid}", str(key), timeout=60)
    assert chown.returncode == 0, chown.stderr


def readme_run_args(project: Path, checkout: Path, image: str, port: int) -> list[str]:
    """The README's `docker run` as podman arguments: its --user and key volume as written
    (with $(id -u) the key owner's uid and $PWD the checkout), its -p replaced by this
    lane's host network, its image by the one built here."""
    words = readme_docker_run(project)
    assert words[:2] == ["docker", "run"] and words[-1] == "my-atom", words
    options = dict(zip(words[2:-1:2], words[3:-1:2], strict=True))
    assert set(options) == {"-p", "--user", "-v"}, words
    assert options["-p"] == "8000:8000"
    assert options["--user"] == "$(id -u)"
    volume = options["-v"].replace("$PWD", str(checkout))
    assert volume == f"{checkout}/secrets/model.key:/run/secrets/atom_model_key:ro"
    return [f"--env=ATOM_PORT={port}", f"--user={README_UID}", f"--volume={volume}", image]


@pytest.fixture(scope="module", params=["readme", "default-user"])
def container(
    request: pytest.FixtureRequest,
    image: str,
    podman_env: dict[str, str],
    default_atom: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[dict]:
    """The image running, removed afterwards: the README's way (a uid owning a private key
    file), or as the image's user reading a secret, read-only, with 2 workers."""
    port, inner = free_port(), free_port(2)
    name = f"atom-test-{request.param}-{port}"
    args = ["run", "--detach", f"--name={name}", "--network=host"]
    args.append(f"--env=ATOM_INNER_START_PORT={inner}")
    checkout = tmp_path_factory.mktemp(request.param)
    key = checkout / "secrets" / "model.key"
    key.parent.mkdir()
    shutil.copy(default_atom / "secrets" / "model.key", key)
    if request.param == "readme":
        give_key_to(README_UID, key, podman_env)
        args += readme_run_args(default_atom, checkout, image, port)
        uid = README_UID
    else:
        # Readable by the image's user, as a Kubernetes Secret mounted with fsGroup is.
        key.chmod(0o444)
        args += ["--read-only", "--tmpfs=/tmp", "--tmpfs=/app/logs", "--env=ATOM_WORKERS=2"]
        args += [f"--env=ATOM_PORT={port}", f"--volume={key}:/run/secrets/atom_model_key:ro"]
        args.append(image)
        uid = DEFAULT_UID
    result = podman(podman_env, *args)
    assert result.returncode == 0, result.stderr
    try:
        yield {"name": name, "base": f"http://127.0.0.1:{port}", "env": podman_env, "uid": uid}
    finally:
        podman(podman_env, "rm", "--force", "--time=2", name, timeout=60)


def wait_ready(container: dict, timeout: float = 120) -> float:
    """Seconds until the ready route answers 200 through the container's nginx."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        try:
            if http("GET", f"{container['base']}/d2atom/v1/health/ready", timeout=2)[0] == 200:
                return time.monotonic() - started
        except OSError:
            pass
        time.sleep(0.5)
    logs = podman(container["env"], "logs", container["name"], timeout=60)
    raise AssertionError(f"the container did not become ready:\n{logs.stdout[-4000:]}")


def in_container(container: dict, script: str) -> subprocess.CompletedProcess:
    """Run a shell script in the running container (as its user)."""
    return podman(container["env"], "exec", container["name"], "sh", "-c", script, timeout=60)


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
    wait_ready(container)
    photo = default_atom / "tests" / "data" / "astronaut.jpg"
    body = {"data": [base64.b64encode(photo.read_bytes()).decode()], "src_type": "base64"}
    status, _, reply = http("POST", f"{container['base']}/d2atom/detect", body)
    assert status == 200
    assert len(reply["objects"][0]) == 1


def test_healthcheck_passes(container: dict) -> None:
    """The image's HEALTHCHECK command succeeds once the atom is ready."""
    wait_ready(container)
    result = podman(container["env"], "healthcheck", "run", container["name"], timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_runs_as_its_uid_in_group_0_and_writes_its_log(container: dict) -> None:
    """The processes run as the uid given (no passwd entry needed), group 0; the log is written."""
    wait_ready(container)
    found = in_container(container, "id -u; id -g; test -s /app/logs/atom/atom.log && echo log")
    assert found.returncode == 0, found.stderr
    assert found.stdout.split() == [str(container["uid"]), "0", "log"]


def test_image_holds_no_sources_tests_or_key(container: dict, default_atom: Path) -> None:
    """No .pyx, .c, tests or key file in the image; the package is the wheel's, compiled."""
    wait_ready(container)
    located = in_container(container, "python -c 'import my_atom, os; print(my_atom.__path__[0])'")
    assert located.returncode == 0, located.stderr
    package = located.stdout.strip()
    assert package.startswith("/opt/venv/lib/") and package.endswith("/site-packages/my_atom")
    found = in_container(
        container,
        f"find /app {package} -name '*.pyx' -o -name '*.c' -o -name 'tests' -o -name 'secrets'"
        " -o -name '*.key' -o -name '*.egg-info'",
    )
    assert found.returncode == 0, found.stderr
    assert found.stdout.split() == []
    secret = (default_atom / "secrets" / "model.key").read_text().strip()
    grep = podman(
        container["env"], "exec", container["name"], "grep", "-rlF", secret, "/app", "/opt"
    )
    assert grep.returncode == 1  # grep: no match anywhere
    assert grep.stdout == ""
    protector = in_container(
        container, f"ls {package}/protection/ | grep -c '^model_protector.*\\.so$'"
    )
    assert protector.stdout.strip() == "1"


def test_every_file_is_readable_by_all(container: dict) -> None:
    """Any uid reads the app, the models and the venv (the build context had a 600 file)."""
    script = "find /app /opt/venv -path /app/logs -prune -o ! -perm -o+r -print | head"
    found = in_container(container, script)
    assert found.returncode == 0, found.stderr
    assert found.stdout == ""


def test_podman_stop_is_clean(container: dict) -> None:
    """`podman stop` ends the container within 10 s with status 0."""
    wait_ready(container)
    started = time.monotonic()
    result = podman(container["env"], "stop", "--time=10", container["name"], timeout=60)
    elapsed = time.monotonic() - started
    assert result.returncode == 0, result.stderr
    assert elapsed < 10
    state = podman(
        container["env"], "inspect", container["name"], "--format", "{{.State.ExitCode}}"
    )
    assert state.stdout.strip() == "0"
