"""The migration lane: linker_atom services moved into a baked atom with their imports renamed.

Two services are written as linker_atom 0.0.43's users wrote them, into a copy of the
default atom, with nothing changed but what docs/migration.md says (``linker_atom.`` becomes
the package name; the two ``auto_loop_setup`` lines the pinned uvicorn no longer has go):

- the seed README's ``server.py`` (environment set before the imports, ``get_app()``, a
  model per ``settings.model_id_list`` decrypted from a ``.linker`` file in an
  ``@app.on_event("startup")`` handler, an inline ``UdfAPIRoute`` with ``POST /detect``
  where the demo route is, a route module using ``get_engine`` and the old response
  bodies, ``uvicorn.run("server:app", ...)``), and its ``nginx_run.py``; run as
  ``python server.py --port P``, with uvicorn workers, and under ``nginx_run.py``;
- a multimodal ``batch_infer`` service importing ``VqlError``, ``logger`` and
  ``load_image``.
"""

import base64
import difflib
import io
import json
import os
import re
import shutil
import signal
import struct
import subprocess
import sys
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from scripts.atomctl import AtomLauncher, AtomServer, http, log_lines

pytestmark = pytest.mark.migration

PACKAGE = "my_atom"
KEY, CUSTOMER = 0x5A, "customer-0042"
LABELS = {"plates": "plate car", "faces": "face person"}
UVICORN_LINES = ("from uvicorn.loops.auto import auto_loop_setup", "auto_loop_setup(True)")

# The seed README's server.py, its example filled in: models decrypted at startup, and a
# --workers option passed to uvicorn.run as services do to run several processes.
SEED_SERVER = """import argparse
import os

import uvicorn
from uvicorn.loops.auto import auto_loop_setup

os.environ.setdefault('ATOM_API_PREFIX', '/d2atom')

# Fastapi 实例
from linker_atom.api.app import get_app
# APIRoute 实例
from linker_atom.api.base import UdfAPIRoute
# 内置配置类实例
from linker_atom.config import settings
from linker_atom.dependency.model_protector import ModelProtector
from linker_atom.lib.log import logger

from service_routes import predict_route

app = get_app()
parser = argparse.ArgumentParser(description='Start a RESTful server.')
parser.add_argument('--port', type=int, default=8000)
parser.add_argument('--workers', type=int, default=1)
args = parser.parse_args()


@app.on_event("startup")
async def startup_event():
    # 算法实现,在服务启动前加载解密模型
    protector = ModelProtector(xor_key=0x5A, user_id='customer-0042')
    app.state.engine = {}
    for model_id in settings.model_id_list:
        model_path, out_path = protector.decrypt_model(
            os.path.join('models', model_id + '.linker'))
        with open(os.path.join(model_path, 'labels.txt')) as f:
            app.state.engine[model_id] = f.read().split()
        protector.remove_model(out_path)
        logger.info(f'model {model_id} loaded')


# 实例化路由
route = UdfAPIRoute()


# 编写接口
@route.post('/detect', name='detect')
async def detect():
    return {'code': 200}


# 添加路由
app.include_router(
    router=route,
    prefix=settings.atom_api_prefix,
)
app.include_router(router=predict_route, prefix=settings.atom_api_prefix)


# 运行服务
def run():
    auto_loop_setup(True)
    uvicorn.run(
        app='server:app',
        host='0.0.0.0',
        port=args.port,
        access_log=False,
        workers=args.workers,
    )


if __name__ == '__main__':
    run()
"""

SEED_ROUTES = """from typing import List

from fastapi import Depends
from pydantic import BaseModel

from linker_atom.api.base import UdfAPIRoute
from linker_atom.api.dependencies import get_engine
from linker_atom.api.schema.response import DetectionRes, Object, SuccessResponse
from linker_atom.lib.exception import VqlError
from linker_atom.lib.load_image import load_image

predict_route = UdfAPIRoute()


class PredictBody(BaseModel):
    data: List[str] = []
    src_type: str = 'base64'
    model_id: str = ''


@predict_route.post('/v1/serving/inf_predict_v2', response_model=DetectionRes)
def inf_predict_v2(body: PredictBody, engine=Depends(get_engine)):
    if body.model_id not in engine:
        raise VqlError(513)
    images = load_image(body.src_type, body.data)
    label = engine[body.model_id][0]
    objects = [
        [Object(xmin=0, ymin=0, xmax=img.shape[1], ymax=img.shape[0], conf=1, label=label)]
        for img in images
    ]
    return DetectionRes(took=1, objects=objects)


@predict_route.get('/models')
def models(engine=Depends(get_engine)):
    return SuccessResponse(data=sorted(engine))
"""

SEED_NGINX_RUN = """from linker_atom.deploy import nginx_run


if __name__ == '__main__':
    nginx_run()
"""

BATCH_SERVER = """import argparse
import os

import uvicorn

os.environ.setdefault('ATOM_API_PREFIX', '/d2atom')

from linker_atom.api.app import get_app
from linker_atom.config import settings

from batch_infer import VisionLanguageModel, batch_route

app = get_app()
parser = argparse.ArgumentParser()
parser.add_argument('--port', type=int, default=8000)
args = parser.parse_args()


@app.on_event("startup")
def load_model():
    app.state.vlm = VisionLanguageModel()


app.include_router(batch_route, prefix=settings.atom_api_prefix)

if __name__ == '__main__':
    uvicorn.run('server:app', host='127.0.0.1', port=args.port)
"""

BATCH_INFER = """from typing import List

import numpy as np
from fastapi import Request
from pydantic import BaseModel

from linker_atom.api.base import UdfAPIRoute
from linker_atom.lib.common import format_long_val, record_duration
from linker_atom.lib.exception import VqlError
from linker_atom.lib.load_image import load_image
from linker_atom.lib.log import logger

batch_route = UdfAPIRoute()
COLOURS = ('red', 'green', 'blue')


class VisionLanguageModel:
    # Stands for a VLM: answers the prompt about each image's size and main colour.
    def generate(self, image: np.ndarray, prompt: str) -> str:
        colour = COLOURS[int(np.argmax(image.reshape(-1, 3).mean(axis=0)))]
        return f'{prompt} {image.shape[1]}x{image.shape[0]} {colour}'


class BatchInferBody(BaseModel):
    images: List[str]
    prompt: str
    src_type: str = 'base64'


@batch_route.post('/v1/batch_infer')
@record_duration
async def batch_infer(body: BatchInferBody, request: Request):
    logger.info(f'batch_infer {len(body.images)} images, prompt {format_long_val(body.prompt)}')
    if not body.prompt.strip():
        raise VqlError(517, 'the prompt is empty')
    if not body.images:
        raise VqlError(517)
    images = load_image(body.src_type, body.images)
    vlm = request.app.state.vlm
    results = [
        {'index': index, 'text': vlm.generate(image, body.prompt)}
        for index, image in enumerate(images)
    ]
    return {'code': 200, 'msg': '', 'data': results}
"""


def migrate(source: str, package: str = PACKAGE) -> str:
    """The edits of docs/migration.md: the package for linker_atom, no auto_loop_setup lines."""
    kept = [line for line in source.splitlines(keepends=True) if line.strip() not in UVICORN_LINES]
    return "".join(kept).replace("linker_atom.", f"{package}.")


def make_linker(folder: dict[str, bytes], name: str) -> bytes:
    """A .linker file of linker_atom's layout, built here from its description (not the atom's).

    A 2-byte mark "HL", the 2-byte header length, a version byte, the 8-byte tar length,
    the base85 customer id; then the tar, its first 10,240 bytes XORed with the key byte
    except the bytes equal to 0 or to the key.
    """
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for path, content in folder.items():
            member = tarfile.TarInfo(f"{name}/{path}")
            member.size = len(content)
            archive.addfile(member, io.BytesIO(content))
    tar = buffer.getvalue()
    masked = bytes(b if b in (0, KEY) else b ^ KEY for b in tar[:10240]) + tar[10240:]
    customer = base64.b85encode(CUSTOMER.encode())
    return b"HL" + struct.pack(">HBQ", 13 + len(customer), 1, len(tar)) + customer + masked


class SeedServer(AtomServer):
    """``python server.py --port P [--workers N]``: the seed's options, no --host."""

    def __init__(self, project: Path, *, workers: int | None = None, **kwargs: Any) -> None:
        super().__init__(project, **kwargs)
        self.workers = workers

    def command(self) -> list[str]:
        workers = [] if self.workers is None else ["--workers", str(self.workers)]
        return [self.python, "server.py", "--port", str(self.port), *workers]


class SeedLauncher(AtomLauncher):
    """The seed's ``python nginx_run.py`` (no options)."""

    def command(self) -> list[str]:
        return [self.python, "nginx_run.py"]


def nginx_binary() -> None:
    """nginx must be installed for the nginx_run case (scripts/setup.sh installs it)."""
    binary = shutil.which("nginx") or "/usr/sbin/nginx"
    assert os.access(binary, os.X_OK), "nginx is missing: run scripts/setup.sh"


def png_b64(colour: tuple[int, int, int], width: int, height: int) -> str:
    """A PNG of one colour (RGB), base64-encoded."""
    image = np.zeros((height, width, 3), np.uint8)
    image[:] = colour[::-1]  # OpenCV writes BGR
    return base64.b64encode(cv2.imencode(".png", image)[1].tobytes()).decode()


@pytest.fixture(scope="module")
def seed_atom(default_atom: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the default atom holding the seed's service and two legacy models."""
    project = tmp_path_factory.mktemp("seed") / "atom"
    shutil.copytree(default_atom, project, ignore=shutil.ignore_patterns("*.log", "logs"))
    (project / "server.py").write_text(migrate(SEED_SERVER), encoding="utf-8")
    (project / "service_routes.py").write_text(migrate(SEED_ROUTES), encoding="utf-8")
    (project / "nginx_run.py").write_text(migrate(SEED_NGINX_RUN), encoding="utf-8")
    for model_id, labels in LABELS.items():
        data = make_linker(
            {"labels.txt": labels.encode(), "weights.bin": os.urandom(20_000)}, model_id
        )
        (project / "models" / f"{model_id}.linker").write_bytes(data)
    return project


def seed_env(tmp_path: Path, model_ids: str = "plates,faces") -> dict[str, str]:
    """META naming the models (no Serving host), logs in the test's folder."""
    return {"META": json.dumps({"modelIds": model_ids}), "LOG_ROOT": str(tmp_path / "logs")}


def check_seed_routes(server: AtomServer) -> None:
    """The seed service's routes answer as under linker_atom (statuses now real)."""
    assert http("GET", server.url("/v1/health/ping"))[0::2] == (200, {"is_alive": True})
    assert http("POST", server.url("/detect"))[0::2] == (200, {"code": 200})
    assert http("GET", server.url("/models"))[0::2] == (
        200,
        {"code": 0, "msg": "Success", "data": ["faces", "plates"]},
    )
    body = {"data": [png_b64((9, 9, 9), 40, 30)], "src_type": "base64", "model_id": "plates"}
    status, _, reply = http("POST", server.url("/v1/serving/inf_predict_v2"), body)
    assert status == 200
    assert reply == {
        "code": 200,
        "msg": "",
        "description": "",
        "kwargs": {},
        "took": 1,
        "objects": [
            [{"xmin": 0.0, "ymin": 0.0, "xmax": 40.0, "ymax": 30.0, "conf": 1.0, "label": "plate"}]
        ],
    }
    status, _, error = http("POST", server.url("/v1/serving/inf_predict_v2"), {"model_id": "x"})
    assert (status, error["code"]) == (400, 513)  # linker_atom sent HTTP 513


def test_only_the_documented_lines_change() -> None:
    """The migrated files differ from the originals by the import rename and the two lines."""
    for source in (SEED_SERVER, SEED_ROUTES, SEED_NGINX_RUN, BATCH_SERVER, BATCH_INFER):
        diff = difflib.ndiff(source.splitlines(), migrate(source).splitlines())
        removed = [line[2:] for line in diff if line.startswith("- ")]
        for line in removed:
            assert "linker_atom." in line or line.strip() in UVICORN_LINES, line


def test_the_pinned_uvicorn_has_no_auto_loop_setup(default_atom: Path) -> None:
    """The seed's uvicorn import fails with the atom's uvicorn: the migration pages say so."""
    result = subprocess.run(
        [sys.executable, "-c", UVICORN_LINES[0]],
        cwd=default_atom,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode != 0 and "auto_loop_setup" in result.stderr
    for name in ("docs/migration.md", "docs/migration.zh-CN.md"):
        text = (default_atom / name).read_text(encoding="utf-8")
        assert all(line in text for line in UVICORN_LINES), name


def model_commands(migration: str) -> list[str]:
    """The shell lines of docs/migration.md's block that moves a .linker model (comments cut)."""
    block = next(b for b in re.findall(r"```sh\n(.*?)```", migration, re.S) if "--legacy-key" in b)
    lines = block.replace("\\\n", " ").splitlines()
    return [line.split("#", 1)[0].strip() for line in lines if line.split("#", 1)[0].strip()]


def test_migration_model_commands_run(seed_atom: Path) -> None:
    """docs/migration.md's commands turn a .linker model into models/yolo.enc (both languages)."""
    english = model_commands((seed_atom / "docs/migration.md").read_text(encoding="utf-8"))
    chinese = (seed_atom / "docs/migration.zh-CN.md").read_text(encoding="utf-8")
    assert english == model_commands(chinese)
    weights = os.urandom(50_000)
    linker = make_linker({"weights.pt": weights, "labels.txt": b"car"}, "yolo")
    (seed_atom / "models" / "yolo.linker").write_bytes(linker)
    env = {
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",  # python: this venv's
        "PYTHON": sys.executable,  # make: the same packages, set-up is a no-op
    }
    for command in english:
        # The page says .venv/bin/python: the seed atom's packages are this venv's.
        command = command.replace(".venv/bin/python", sys.executable)
        result = subprocess.run(
            ["bash", "-c", command],
            cwd=seed_atom,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert result.returncode == 0, (command, result.stdout, result.stderr)
    assert not (seed_atom / "models" / "yolo.linker").exists()
    assert not (seed_atom / "build" / "yolo").exists()
    code = (
        f"from {PACKAGE}.config import load_settings\n"
        f"from {PACKAGE}.dependency.keys import load_protector, model_path\n"
        "settings = load_settings()\n"
        "data = load_protector(settings).decrypt(model_path(settings, 'yolo.enc'), 'yolo')\n"
        "print(data.hex())\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=seed_atom,
        env={"PATH": os.environ["PATH"]},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert bytes.fromhex(result.stdout.strip()) == weights
    (seed_atom / "models" / "yolo.enc").unlink()


def test_seed_server_runs(seed_atom: Path, tmp_path: Path) -> None:
    """``python server.py --port P``: startup handler, replaced /detect, the route module."""
    extracted_before = set(Path("/tmp").glob("linker-*"))
    with SeedServer(seed_atom, env=seed_env(tmp_path)) as server:
        check_seed_routes(server)
        log_file = tmp_path / "logs" / "atom" / "atom.log"
        lines = log_lines(log_file, {"model faces loaded", "replaces"})
        assert any("model faces loaded" in line for line in lines)
        (note,) = [line for line in lines if "replaces" in line]
        assert "POST /d2atom/detect: server.detect, added later, replaces" in note
    assert set(Path("/tmp").glob("linker-*")) <= extracted_before  # remove_model removed them


def child_pids(pid: int) -> list[int]:
    """The live children of a process (from /proc)."""
    children = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(child) for child in children.read_text().split()] if children.exists() else []


def test_seed_server_with_uvicorn_workers(seed_atom: Path, tmp_path: Path) -> None:
    """``uvicorn.run("server:app", workers=2)``: two worker processes serve the same routes."""
    server = SeedServer(seed_atom, workers=2, env=seed_env(tmp_path))
    with server:
        assert server.process is not None
        workers = [
            pid
            for pid in child_pids(server.process.pid)
            if "spawn_main" in Path(f"/proc/{pid}/cmdline").read_text(errors="replace")
        ]
        assert len(workers) == 2
        for _ in range(3):
            check_seed_routes(server)
    deadline = time.monotonic() + 10
    while any(Path(f"/proc/{pid}").exists() for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(Path(f"/proc/{pid}").exists() for pid in workers)


def test_seed_service_under_nginx_run(seed_atom: Path, tmp_path: Path) -> None:
    """The seed's nginx_run.py runs the seed's server.py twice behind nginx, then stops."""
    nginx_binary()
    launcher = SeedLauncher(seed_atom, workers=2, env=seed_env(tmp_path))
    with launcher:
        check_seed_routes(launcher)
        assert len(launcher.worker_pids()) == 2
    assert launcher.process is not None and launcher.process.returncode == 0


def test_a_failing_startup_handler_is_visible(seed_atom: Path, tmp_path: Path) -> None:
    """A model file missing at startup: the server exits non-zero and the log says why."""
    server = SeedServer(seed_atom, env=seed_env(tmp_path, "plates,missing"))
    with pytest.raises(RuntimeError, match="exited early") as failed:
        server.start(ready_timeout=60)
    assert server.process is not None and server.process.returncode != 0
    assert "startup handler server.startup_event failed" in str(failed.value)
    assert "FileNotFoundError" in str(failed.value)


@pytest.fixture(scope="module")
def batch_atom(default_atom: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the default atom holding the batch_infer service."""
    project = tmp_path_factory.mktemp("batch") / "atom"
    shutil.copytree(default_atom, project, ignore=shutil.ignore_patterns("*.log", "logs"))
    (project / "server.py").write_text(migrate(BATCH_SERVER), encoding="utf-8")
    (project / "batch_infer.py").write_text(migrate(BATCH_INFER), encoding="utf-8")
    return project


@pytest.fixture
def batch_server(batch_atom: Path, tmp_path: Path) -> Iterator[SeedServer]:
    """The batch_infer service as ``python server.py --port P``."""
    with SeedServer(batch_atom, env={"LOG_ROOT": str(tmp_path / "logs")}) as server:
        yield server


def test_batch_infer_answers_per_image(batch_server: SeedServer, tmp_path: Path) -> None:
    """A list of base64 images and a prompt: one result per image, in order; logged."""
    images = [png_b64((250, 5, 5), 32, 16), png_b64((5, 250, 5), 8, 8), png_b64((5, 5, 250), 4, 2)]
    body = {"images": images, "prompt": "describe"}
    status, _, reply = http("POST", batch_server.url("/v1/batch_infer"), body)
    assert (status, reply["code"]) == (200, 200)
    assert reply["data"] == [
        {"index": 0, "text": "describe 32x16 red"},
        {"index": 1, "text": "describe 8x8 green"},
        {"index": 2, "text": "describe 4x2 blue"},
    ]
    log_file = tmp_path / "logs" / "atom" / "atom.log"
    (line,) = log_lines(log_file, {"batch_infer 3 images, prompt describe"})
    assert " INFO " in line and f" {PACKAGE}: " in line


def test_batch_infer_refuses_bad_input(batch_server: SeedServer) -> None:
    """An empty prompt or image list is 517, a broken image names its index: real 400s."""
    url = batch_server.url("/v1/batch_infer")
    status, _, reply = http("POST", url, {"images": [png_b64((1, 2, 3), 4, 4)], "prompt": " "})
    assert (status, reply["code"], reply["msg"]) == (400, 517, "the prompt is empty")
    status, _, reply = http("POST", url, {"images": [], "prompt": "p"})
    assert (status, reply["code"]) == (400, 517)
    broken = base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40).decode()
    images = [png_b64((1, 2, 3), 4, 4), broken]
    status, _, reply = http("POST", url, {"images": images, "prompt": "p"})
    assert (status, reply["code"]) == (400, 502)
    assert reply["msg"].startswith("image 1: ")
    status, _, reply = http("POST", url, {"prompt": "p"})
    assert (status, reply["code"], reply["msg"]) == (422, 422, "Request Entity Error")


def test_sigterm_stops_the_seed_server(seed_atom: Path, tmp_path: Path) -> None:
    """SIGTERM stops a seed-style server within 10 s (uvicorn's own signal handling)."""
    server = SeedServer(seed_atom, env=seed_env(tmp_path))
    try:
        server.start()
        assert server.process is not None
        started = time.monotonic()
        server.process.send_signal(signal.SIGTERM)
        server.process.wait(10)
        assert time.monotonic() - started < 10
    finally:
        server.kill()
