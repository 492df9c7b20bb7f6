"""The peers, side by side: the atom against LitServe, BentoML and Ray Serve, and the model's limit.

Every server serves the same two models with the same code (face_model.py: the atom's
demo model, OpenCV's Haar cascade; mlp_model.py: the batching benchmark's ONNX MLP; the
atom runs its own copy of the cascade, the same calls), takes the same request bodies,
and runs on the same CPUs with the same number of workers and model threads. Each peer
lives in its own virtual environment under build/ (``build/<peer>-venv``), installed from
``peers/<peer>.txt``, where every package is pinned, and made again when that file
changes. The load generator (wrk, 1 thread) runs on the other CPUs: by default the
servers get every CPU but the first, wrk the first, so the load never takes the servers'
cores and a faster server does not pay for the wrk it keeps busy.

The MLP stands for a model on an accelerator, which has a device of its own beside the
server's CPU: its runs are held to the servers' CPUs (MLP_CPUS, in mlp_model.py itself, so
alike for every server whichever thread or process calls it), while the server around it
runs on wrk's CPU. With the server's own work on the model's CPU no Python server comes
near the model's limit: every microsecond a request costs the server is taken from the
model (``--mlp-shared`` measures that layout).

Loads (wrk with a timeout of 30 s: a slow reply counts in the latencies, it is not
dropped), each after a warm-up run on the same server:

- the sample photograph (512x512, base64 JPEG) at 4 connections, and at 1 for latency;
- the empty request (``{"data": [], "src_type": "stream"}``) at 32 and 1: each stack alone;
- the MLP, one item per request, batched, at 32 and 1.

The model's own limit is measured in the same run, right before each server
(model_limit.py, in-process, on the servers' CPUs, with as many threads as the servers
have workers): decoding the photo and detecting its faces, and the MLP at each batch
size. Each server's throughput is given as a fraction of it: for the MLP, of the model's
rate at the batch sizes that server formed (each server's batches are counted by the
model code itself: MLP_BATCH_LOG). The targets of issue 25 are checked at the end.

    .venv/bin/python benchmarks/bench_peer.py [--quick] [--rounds 3] [--seconds 6]
        [--servers atom,litserve,bentoml,ray] [--cpus 1] [--load-cpus 0] [--workers N]

``--quick`` runs one short round (a smoke check of the whole harness, numbers not to be
trusted); the raw results of the last run are kept in build/bench_peer.json
(``--from-json build/bench_peer.json`` prints the tables again).
"""

import argparse
import base64
import collections
import contextlib
import importlib.metadata
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench_workers import WRK_SCRIPT

from scripts.atomctl import AtomServer, bake, free_port, http, pinned, wrk

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
BUILD = ROOT / "build"
# Copied into the baked atom, the directory every server runs in.
FILES = (
    "face_model.py",
    "mlp_model.py",
    "model_limit.py",
    "batching_server.py",
    "litserve_server.py",
    "bentoml_server.py",
    "ray_server.py",
)
WRK_TIMEOUT = 30  # seconds
READY_TIMEOUT = 300  # seconds: Ray starts a dozen processes on one busy core
STOP_TIMEOUT = 30  # seconds, before what is left of a server's session is killed
DRAIN_TIMEOUT = 60  # seconds a server may take to finish the requests of a run that ended
IDLE_CORES = 0.2  # a server using less CPU than this is idle (Ray's agents never stop)
RAW = BUILD / "bench_peer.json"  # the last run's raw results (--from-json prints them again)


@dataclass(frozen=True)
class Workload:
    """What a load sends: a body to a route of one of the two models."""

    label: str
    kind: str  # "face" or "mlp": which server serves it
    path: str
    body: dict


WORKLOADS = {
    "photo": Workload("detect, 512x512 photo", "face", "/detect", {}),  # body made at run time
    "empty": Workload(
        "detect, empty request", "face", "/detect", {"data": [], "src_type": "stream"}
    ),
    "mlp": Workload("MLP, batched, 1 item per request", "mlp", "/mlp", {"data": [0.5]}),
}
# (workload, connections), in the order of the table.
LOADS = (("photo", 4), ("photo", 1), ("empty", 32), ("empty", 1), ("mlp", 32), ("mlp", 1))
# Issue 25's targets.
FRACTION_TARGETS = {("photo", 4): 0.95, ("mlp", 32): 0.90}  # atom / the model's limit
RATIO_TARGETS = {("photo", 4): 1.0, ("mlp", 32): 1.2, ("empty", 32): 1.5}  # atom / each peer
P99_LOADS = (("empty", 32), ("mlp", 32))  # atom's p99 <= the best peer's
PROBES = {"face": WORKLOADS["empty"], "mlp": WORKLOADS["mlp"]}  # 200 = ready


@dataclass(frozen=True)
class Peer:
    """A framework: its name on the page and how it is set up."""

    label: str
    package: str  # its pinned distribution, shown on the page
    configured: str


SERVERS = {
    "atom": Peer(
        "atom",
        "",
        "`server.py` of the default bake (one worker per CPU; above one, `nginx_run.py`),"
        " with its defaults: log file and console at INFO, a call line per request, request"
        " ids, metrics; the face model batches as `detect.py` declares it (16 images, 5 ms),"
        " the MLP as `batching_server.py` does (16 items, 5 ms); model threads: the atom's"
        " thread budget (CPUs / workers).",
    ),
    "litserve": Peer(
        "LitServe",
        "litserve",
        "`litserve_server.py`: one `LitAPI` per model (`setup`, `decode_request` with the"
        " body as a Pydantic model, `predict` on a batch, `encode_response`),"
        " `max_batch_size` 16, `batch_timeout` 5 ms for both models, `workers_per_device` ="
        " workers on `accelerator='cpu'`, one API server, `fast_queue` (ZeroMQ), logging as"
        " it comes (uvicorn at info).",
    ),
    "bentoml": Peer(
        "BentoML",
        "bentoml",
        "`bentoml_server.py`, run with `bentoml serve` (its production server): one"
        " `@bentoml.service` per model (`workers` = workers), the body's fields as the API's"
        " parameters; the MLP with adaptive batching (`batchable=True`, `max_batch_size` 16,"
        " `max_latency_ms` 1000, the documentation's value); the face API unbatched (a"
        " batchable API takes one parameter; batching the image with its threshold takes a"
        " second Service, a hop between processes), a plain `def` run in BentoML's thread"
        " pool; uvloop and httptools installed, as the atom has them; logging and metrics as"
        " BentoML sets them.",
    ),
    "ray": Peer(
        "Ray Serve",
        "ray",
        "`ray_server.py`: a local Ray instance with the CPUs of the process, Serve's HTTP"
        " proxy, one deployment per model with a FastAPI ingress (`@serve.ingress`, the body"
        " as a Pydantic model) and a `@serve.batch` method (16, 5 ms) for both models;"
        " `num_replicas` = workers, each reserving its model threads' CPUs,"
        " `max_ongoing_requests` 64 (Serve's default of 5 would cap every batch at 5; its"
        " guide says to raise it for async methods);"
        " Ray's defaults otherwise (dashboard, request logs).",
    ),
}


# Virtual environments --------------------------------------------------------------


def peer_python(name: str) -> str:
    """The Python of a peer's virtual environment, made (or made again) from its pins."""
    requirements = HERE / "peers" / f"{name}.txt"
    venv = BUILD / f"{name}-venv"
    python = venv / "bin" / "python"
    marker = venv / "requirements.txt"
    wanted = requirements.read_text()
    if python.exists() and marker.exists() and marker.read_text() == wanted:
        return str(python)
    print(f"bench: installing {requirements.name} into {venv} ...", file=sys.stderr, flush=True)
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True, timeout=300)
    pip = [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    subprocess.run([*pip, "-r", str(requirements)], check=True, timeout=1800)
    marker.write_text(wanted)
    return str(python)


MODEL_PACKAGES = ("opencv-python-headless", "onnxruntime", "numpy")


def model_packages(peers: list[str]) -> str:
    """The versions of the models' packages: the atom's, and any peer's that differs."""
    atom = {package: importlib.metadata.version(package) for package in MODEL_PACKAGES}
    text = ", ".join(f"{package} {version}" for package, version in atom.items())
    differ = [
        f"{SERVERS[name].label} has {package} {pinned_version(name, package)}"
        for name in peers
        for package in MODEL_PACKAGES
        if pinned_version(name, package) != atom[package]
    ]
    if differ:
        return f"The atom has {text}; " + "; ".join(differ) + "."
    return f"Every environment has {text}."


def pinned_version(name: str, package: str) -> str:
    """The version ``peers/<name>.txt`` pins for ``package``."""
    for line in (HERE / "peers" / f"{name}.txt").read_text().splitlines():
        if line.lower().startswith(f"{package}=="):
            return line.split("==", 1)[1]
    return "?"


# Servers -----------------------------------------------------------------------------


def session_stats(sid: int) -> dict[int, float]:
    """Live processes of session ``sid`` and the CPU seconds each has used so far.

    A server started with setsid leads a session of its own: every process it starts
    (workers, Ray's agents and actors) is in it, even when its parent has gone.
    """
    ticks = os.sysconf("SC_CLK_TCK")
    members = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        # fields[0] is the state (the 3rd field of stat), [3] the session, [11] utime, [12] stime
        if int(fields[3]) == sid and fields[0] != "Z":
            members[int(entry.name)] = (int(fields[11]) + int(fields[12])) / ticks
    return members


class Server(AtomServer):
    """A server on the servers' CPUs, in a session of its own; ready when its route answers.

    Stopped with SIGTERM to the process it started, then SIGKILL to whatever is left of
    its session after STOP_TIMEOUT (Ray's agents outlive their driver).
    """

    def __init__(
        self,
        project: Path,
        name: str,
        kind: str,
        inner: list[str],
        cpus: str,
        env: dict[str, str],
        python: str,
    ) -> None:
        super().__init__(project, env=env, python=python)
        self.name, self.kind, self.cpus = name, kind, cpus
        self.inner = [part.replace("{port}", str(self.port)) for part in inner]
        self.output = project / f"{name}-{kind}-{self.port}.log"

    def command(self) -> list[str]:
        setsid = shutil.which("setsid")
        assert setsid, "setsid is missing (Debian: util-linux)"
        return [setsid, *pinned(self.inner, self.cpus)]

    def start(self, ready_timeout: float = READY_TIMEOUT) -> "Server":
        """Start the process; wait until the probe body gets a 200 from the model's route."""
        started = time.perf_counter()
        probe = PROBES[self.kind]
        with self.output.open("wb") as output:
            self.process = subprocess.Popen(
                self.command(),
                cwd=self.project,
                env=self.env,
                stdout=output,
                stderr=subprocess.STDOUT,
            )
        while time.perf_counter() < started + ready_timeout:
            if self.process.poll() is not None:
                tail = self.output.read_text(errors="replace")[-3000:]
                raise RuntimeError(f"{self.name} {self.kind} exited early:\n{tail}")
            with contextlib.suppress(OSError):
                if http("POST", self.url(probe.path), probe.body, timeout=5)[0] == 200:
                    self.seconds_to_ready = time.perf_counter() - started
                    return self
            time.sleep(0.2)
        self.stop()
        tail = self.output.read_text(errors="replace")[-3000:]
        raise RuntimeError(f"{self.name} {self.kind} not ready in {ready_timeout} s:\n{tail}")

    def drain(self, timeout: float = DRAIN_TIMEOUT) -> None:
        """Wait until the server has finished what wrk left it (the replies nobody reads).

        A run that ends leaves requests queued in the server: a server that still computes
        them would slow the next run down. Idle is less than IDLE_CORES of CPU time used
        over half a second by all of its processes.
        """
        assert self.process is not None
        deadline = time.monotonic() + timeout
        before = sum(session_stats(self.process.pid).values())
        while time.monotonic() < deadline:
            time.sleep(0.5)
            now = sum(session_stats(self.process.pid).values())
            if now - before < IDLE_CORES * 0.5:
                return
            before = now

    def stop(self, timeout: float = STOP_TIMEOUT) -> int:
        if self.process is None:
            return 0
        leader = self.process.pid
        with contextlib.suppress(ProcessLookupError):
            os.kill(leader, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout)
        for pid in session_stats(leader):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(10)
        deadline = time.monotonic() + 10
        while session_stats(leader) and time.monotonic() < deadline:
            time.sleep(0.1)
        return self.process.returncode or 0


@dataclass
class Setup:
    """What every server of a run shares."""

    project: Path
    workdir: Path
    model: Path
    cpus: str
    mlp_cpus: str  # the MLP servers' CPUs; the model's runs are on ``cpus``
    workers: int
    threads: int
    pythons: dict[str, str]

    def server(self, name: str, kind: str, batch_log: Path) -> Server:
        """One server of one model."""
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(self.workdir / "home"),
            "MLP_MODEL": str(self.model),
            "MLP_BATCH_LOG": str(batch_log),
            "MLP_CPUS": self.cpus,
            "LOG_ROOT": str(self.workdir / "logs"),
            "PEER_WORKERS": str(self.workers),
            "MODEL_THREADS": str(self.threads),
            # No reports home (there is no network here anyway).
            "BENTOML_DO_NOT_TRACK": "True",
            "BENTOML_HOME": str(self.workdir / "bentoml"),
            "RAY_USAGE_STATS_ENABLED": "0",
            "RAY_TMPDIR": str(self.workdir / "ray"),
        }
        python = self.pythons[name]
        port = "{port}"
        if name == "atom":
            script = "server.py" if kind == "face" else "batching_server.py"
            inner = [python, script, "--port", port, "--host", "127.0.0.1"]
            if self.workers > 1:
                inner = [python, "nginx_run.py", "--server", script]
                env.update(
                    ATOM_INNER_START_PORT=str(free_port(self.workers)),
                    ATOM_WORKERS=str(self.workers),
                )
        elif name == "bentoml":
            service = "FaceService" if kind == "face" else "MlpService"
            bentoml = str(Path(python).parent / "bentoml")
            inner = [bentoml, "serve", f"bentoml_server:{service}", "--host", "127.0.0.1"]
            inner += ["--port", port]
        else:
            inner = [python, f"{name}_server.py", kind, "--port", port]
        cpus = self.cpus if kind == "face" else self.mlp_cpus
        server = Server(self.project, name, kind, inner, cpus, env, python)
        if name == "atom" and self.workers > 1:
            server.env["ATOM_PORT"] = str(server.port)
        return server


# Measuring ---------------------------------------------------------------------------


def batch_sizes(log: Path, offset: int) -> tuple[collections.Counter, int]:
    """The batch sizes written to ``log`` after ``offset``, and the new offset."""
    if not log.exists():
        return collections.Counter(), offset
    data = log.read_bytes()
    return collections.Counter(int(line) for line in data[offset:].split()), len(data)


def run_server(setup: Setup, name: str, kind: str, scripts: dict, args: argparse.Namespace) -> dict:
    """Start one server, run each load of its model (warm-up, then measured), stop it."""
    log = setup.workdir / f"batches-{name}-{kind}-{time.monotonic_ns()}.log"
    rows = {}
    with setup.server(name, kind, log) as server:
        for workload, connections in LOADS:
            if WORKLOADS[workload].kind != kind:
                continue
            url = server.url(WORKLOADS[workload].path)
            script = scripts[workload]
            wrk(url, args.warmup, connections, script, threads=1, timeout=WRK_TIMEOUT)
            server.drain()
            _, offset = batch_sizes(log, 0)
            # A server that batches the photo replies a batch at a time, four photos about
            # every 0.6 s: a 6 s run counts 36 or 40 replies. A longer run evens that out.
            photo4 = (workload, connections) == ("photo", 4)
            seconds = args.photo_seconds if photo4 else args.seconds
            row: dict[str, Any] = wrk(
                url, seconds, connections, script, threads=1, timeout=WRK_TIMEOUT
            )
            server.drain()
            batches, _ = batch_sizes(log, offset)
            row["batches"] = {str(size): count for size, count in sorted(batches.items())}
            rows[key(workload, connections)] = row
    return rows


def key(workload: str, connections: int) -> str:
    """A load's key in the raw results ("mlp/32")."""
    return f"{workload}/{connections}"


def model_alone(setup: Setup, kind: str, seconds: float) -> Any:
    """The model's limit on the servers' CPUs: the photo's images/s, or the MLP's items/s
    at each batch size ({"1": ..., "16": ...})."""
    command = pinned([sys.executable, str(setup.project / "model_limit.py")], setup.cpus)
    if kind == "face":
        command += ["face", "--photo", str(setup.workdir / "photo.b64")]
    else:
        command += ["mlp", "--model", str(setup.model)]
    command += ["--callers", str(setup.workers), "--threads", str(setup.threads)]
    command += ["--seconds", str(seconds)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, check=True)
    result = json.loads(done.stdout)
    return result["images_per_s"] if kind == "face" else result["items_per_s"]


def measure(args: argparse.Namespace) -> dict:
    """Set up, measure in rounds; the raw results."""
    os.sched_setaffinity(0, {int(cpu) for cpu in args.load_cpus.split(",")})  # and so wrk's
    loadavg_start = os.getloadavg()
    started = time.perf_counter()
    pythons = {
        name: sys.executable if name == "atom" else peer_python(name) for name in args.servers
    }
    with tempfile.TemporaryDirectory(prefix="atom-peer-") as tmp:
        workdir = Path(tmp)
        for folder in ("home", "logs", "bentoml", "ray"):
            (workdir / folder).mkdir()
        project = bake(workdir / "bake")
        for name in FILES:
            shutil.copy(HERE / name, project)
        sys.path.insert(0, str(HERE))
        from mlp_model import build

        photo = base64.b64encode((project / "tests" / "data" / "astronaut.jpg").read_bytes())
        (workdir / "photo.b64").write_bytes(photo)
        bodies = {name: w.body for name, w in WORKLOADS.items()}
        bodies["photo"] = {"data": [photo.decode()], "src_type": "base64"}
        scripts = {}
        for name, body in bodies.items():
            (workdir / f"{name}.json").write_text(json.dumps(body))
            scripts[name] = workdir / f"{name}.lua"
            scripts[name].write_text(WRK_SCRIPT.format(body=workdir / f"{name}.json"))
        cores = len(args.cpus.split(","))
        workers = args.workers or cores
        threads = max(1, cores // workers)  # the atom's rule (control/threads.py)
        model = build(workdir / "mlp.onnx")
        mlp_cpus = args.cpus if args.mlp_shared else args.load_cpus
        setup = Setup(project, workdir, model, args.cpus, mlp_cpus, workers, threads, pythons)
        rounds = []
        for round_ in range(args.rounds):
            turn = round_ % len(args.servers)
            runs: dict[str, dict] = {}
            alone: dict[str, dict] = {}
            for name in args.servers[turn:] + args.servers[:turn]:
                runs[name], alone[name] = {}, {}
                for kind in ("face", "mlp"):
                    note = f"bench: round {round_ + 1}, {name} {kind} ..."
                    print(note, file=sys.stderr, flush=True)
                    # The model alone right before each server: on a shared machine the
                    # ratio holds better than against one measurement per round.
                    limit = model_alone(setup, kind, args.model_seconds)
                    alone[name]["photo" if kind == "face" else "mlp"] = limit
                    runs[name].update(run_server(setup, name, kind, scripts, args))
            rounds.append({"alone": alone, "runs": runs})
    return {
        "servers": args.servers,
        "cpus": args.cpus,
        "load_cpus": args.load_cpus,
        "mlp_cpus": mlp_cpus,
        "photo_seconds": args.photo_seconds,
        "workers": workers,
        "threads": threads,
        "rounds_run": args.rounds,
        "seconds": args.seconds,
        "warmup": args.warmup,
        "minutes": (time.perf_counter() - started) / 60,
        "loadavg": [loadavg_start, os.getloadavg()],
        "rounds": rounds,
    }


def main() -> int:
    """Measure (or read earlier raw results) and print the page's section."""
    args = parse_args()
    if args.from_json:
        raw = json.loads(args.from_json.read_text())
    else:
        raw = measure(args)
        RAW.parent.mkdir(exist_ok=True)
        RAW.write_text(json.dumps(raw, indent=1))
    print("\n".join(report(raw)))
    return 0


def parse_args() -> argparse.Namespace:
    """The command line; --quick makes one short round, a smoke check."""
    cpus = sorted(os.sched_getaffinity(0))
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one short round: a smoke check")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=6, help="per measured run")
    parser.add_argument("--warmup", type=int, default=2, help="seconds of warm-up per load")
    parser.add_argument("--model-seconds", type=float, default=4.0, help="per model, per round")
    parser.add_argument("--servers", default=",".join(SERVERS))
    parser.add_argument(
        "--cpus",
        default=",".join(map(str, cpus[1:] or cpus)),
        help="the servers' CPUs (default: all but the first)",
    )
    parser.add_argument("--load-cpus", default=str(cpus[0]), help="wrk's CPUs (default: the first)")
    parser.add_argument(
        "--mlp-shared",
        action="store_true",
        help="the MLP servers on the model's CPUs (default: on wrk's, the model on its own)",
    )
    parser.add_argument(
        "--photo-seconds",
        type=int,
        default=30,
        help="per measured run of the photo at 4 connections (replies come a batch at a time)",
    )
    parser.add_argument(
        "--workers", type=int, help="workers per server (default: one per server CPU)"
    )
    parser.add_argument(
        "--from-json", type=Path, help=f"print the tables of earlier raw results ({RAW.name})"
    )
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.seconds, args.warmup, args.model_seconds = 1, 4, 1, 2.0
        args.photo_seconds = 4
    args.servers = args.servers.split(",")
    unknown = set(args.servers) - set(SERVERS)
    if unknown or "atom" not in args.servers:
        parser.error(f"--servers: the atom and any of {', '.join(SERVERS)}")
    return args


# The page ----------------------------------------------------------------------------


def med(values: list[float]) -> float | None:
    """The median, None for no values."""
    return statistics.median(values) if values else None


def shown(value: float | None, form: str) -> str:
    """A number in ``form``, or "-" when there is none."""
    return "-" if value is None else form.format(value)


def limit_for(workload: str, alone: dict, batches: dict[str, int]) -> float | None:
    """The model's requests/s for a load: for the MLP, at the batch sizes a server formed."""
    if workload == "photo":
        return alone["photo"]
    if workload != "mlp":
        return None
    rates = alone["mlp"]  # items/s by batch size, "1" to "16"
    if not batches:
        return rates[str(max(map(int, rates)))]
    if not all(rates[size] for size in batches):
        return None  # a run of the model alone measured nothing (model_limit.py before a fix)
    items = sum(int(size) * count for size, count in batches.items())
    seconds = sum(count * int(size) / rates[size] for size, count in batches.items())
    return items / seconds


def report(raw: dict) -> list[str]:
    """The set-up, the peer table and the targets, as Markdown lines."""
    servers, rounds = raw["servers"], raw["rounds"]
    peers = [name for name in servers if name != "atom"]
    pins = [f"{SERVERS[n].label} {pinned_version(n, SERVERS[n].package)}" for n in peers]
    start, end = raw["loadavg"]
    mlp_cpus = raw.get("mlp_cpus", raw["cpus"])
    if mlp_cpus == raw["cpus"]:
        mlp_layout = "The MLP servers too, the model's runs with them. "
    else:
        mlp_layout = (
            f"The MLP's runs on CPU {raw['cpus']} (MLP_CPUS: the model on a CPU of its own, as"
            f" on an accelerator), the MLP servers' own work on CPU {mlp_cpus}, beside wrk. "
        )
    photo_seconds = raw.get("photo_seconds", raw["seconds"])
    lines = [
        f"Servers on CPU {raw['cpus']}, wrk (1 thread) on CPU {raw['load_cpus']}:"
        f" {raw['workers']} worker(s) per server, {raw['threads']} model thread(s) per worker."
        f" {mlp_layout}{raw['rounds_run']} round(s), the servers in turn (each round starts"
        f" with the next one); per load a {raw['warmup']} s warm-up, then {raw['seconds']} s"
        f" measured ({photo_seconds} s for the photo at 4 connections); medians"
        " over the rounds (ratios and fractions: medians of each round's). "
        + "".join(f"{pin}, " for pin in pins[:-1])
        + "".join(f"{pin}. " for pin in pins[-1:])
        + model_packages(peers)
        + f" Took {raw['minutes']:.1f} min; load average {start[0]:.2f} / {start[1]:.2f} /"
        f" {start[2]:.2f} (1 / 5 / 15 min) at the start, {end[0]:.2f} / {end[1]:.2f} /"
        f" {end[2]:.2f} at the end.",
        "",
        *(f"- {SERVERS[name].label}: {SERVERS[name].configured}" for name in servers),
        "",
    ]
    measured = [each for r in rounds for each in r["alone"].values()]
    photo = med([each["photo"] for each in measured])
    mlp = {size: med([each["mlp"][size] for each in measured]) for size in ("1", "8", "16")}
    lines += [
        f"The model alone (`model_limit.py`: in-process, on CPU {raw['cpus']},"
        f" {raw['workers']} calling thread(s)): decoding the photo and detecting its faces,"
        f" {photo:.2f} images/s; the MLP, {mlp['1']:.0f} items/s at batch 1, {mlp['8']:.0f} at"
        f" 8, {mlp['16']:.0f} at 16 (medians; measured right before each server)."
        " \"Of the model's limit\" divides a server's requests/s by the model's rate measured"
        " before it: for the MLP, at the batch sizes that server formed (mean batch).",
        "",
    ]
    table, results = peer_table(rounds, servers)
    return [*lines, *table, "", *target_table(results, peers)]


def peer_table(rounds: list[dict], servers: list[str]) -> tuple[list[str], dict]:
    """One row per load and server: requests/s, latency, fraction of the limit, atom / it."""
    lines = [
        "| load | connections | server | req/s | p50 ms | p99 ms | of the model's limit"
        " | atom / server | mean batch | errors |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    results: dict = {}
    for workload, connections in LOADS:
        load = key(workload, connections)
        for name in servers:
            result = summary(rounds, name, workload, load)
            results[(load, name)] = result
            lines.append(
                f"| {WORKLOADS[workload].label} | {connections} | {SERVERS[name].label}"
                f" | {result['rps']:.1f} | {result['p50']:.2f} | {result['p99']:.2f}"
                f" | {shown(result['fraction'], '{:.2f}')}"
                f" | {'-' if name == 'atom' else shown(result['ratio'], '{:.2f}x')}"
                f" | {shown(result['batch'], '{:.1f}')} | {result['errors']:.0f} |"
            )
    return lines, results


def summary(rounds: list[dict], name: str, workload: str, load: str) -> dict:
    """One server's medians on one load, its fraction of the limit and the atom's ratio."""
    rows = [r["runs"][name][load] for r in rounds]
    fractions, ratios = [], []
    for r in rounds:
        row = r["runs"][name][load]
        limit = limit_for(workload, r["alone"][name], row["batches"])
        if limit:
            fractions.append(row["rps"] / limit)
        if row["rps"] > 0:
            ratios.append(r["runs"]["atom"][load]["rps"] / row["rps"])
    batches: collections.Counter = collections.Counter()
    for row in rows:
        batches.update({int(size): count for size, count in row["batches"].items()})
    items = sum(size * count for size, count in batches.items())
    return {
        "rps": med([row["rps"] for row in rows]),
        "p50": med([row["p50"] for row in rows]),
        "p99": med([row["p99"] for row in rows]),
        "fraction": med(fractions),
        "ratio": med(ratios),
        "batch": items / sum(batches.values()) if batches else None,
        "errors": sum(row["errors"] + row["socket_errors"] for row in rows),
    }


def target_table(results: dict, peers: list[str]) -> list[str]:
    """Issue 25's targets, each met or not."""
    lines = ["| target | measured | |", "|---|---|---|"]

    def add(text: str, value: str, met: bool | None) -> None:
        verdict = {True: "met", False: "**not met**", None: "not measured"}[met]
        lines.append(f"| {text} | {value} | {verdict} |")

    def label(load: tuple[str, int]) -> str:
        return f"{WORKLOADS[load[0]].label}, {load[1]} connections"

    for load, goal in FRACTION_TARGETS.items():
        fraction = results[(key(*load), "atom")]["fraction"]
        add(
            f"atom >= {goal:.2f} of the model's limit: {label(load)}",
            shown(fraction, "{:.2f}"),
            None if not fraction else fraction >= goal,
        )
    for load, goal in RATIO_TARGETS.items():
        for name in peers:
            ratio = results[(key(*load), name)]["ratio"]
            add(
                f"atom / {SERVERS[name].label} >= {goal:.1f}x: {label(load)}",
                shown(ratio, "{:.2f}x"),
                None if not ratio else ratio >= goal,
            )
    for load in P99_LOADS:
        answered = [name for name in peers if results[(key(*load), name)]["rps"]]
        atom = results[(key(*load), "atom")]
        if not answered or not atom["rps"]:
            add(f"atom's p99 <= the best peer's: {label(load)}", "-", None)
            continue
        best = min(answered, key=lambda name: results[(key(*load), name)]["p99"])
        other = results[(key(*load), best)]["p99"]
        add(
            f"atom's p99 <= the best peer's: {label(load)}",
            f"{atom['p99']:.2f} ms ({SERVERS[best].label}: {other:.2f} ms)",
            atom["p99"] <= other,
        )
    return lines


if __name__ == "__main__":
    raise SystemExit(main())
