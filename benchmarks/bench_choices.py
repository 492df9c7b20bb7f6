"""Runtime choices, measured: each speed trick of the atom with and without, side by side.

One row per trick: the atom as shipped against the same atom with that trick switched off
(``choice_servers.py`` names the variants), on the request the trick is for. Variants of a
row alternate over several rounds (which goes first alternates too). Each run gives
requests/s from wrk and the server's own CPU time per request (from /proc): on this
shared 2-core machine requests/s moves by tens of percent from one run to the next, the
CPU per request much less, so the verdict reads the CPU ratio; a trick for the latency
tail (its row says "p99") is judged by the p99 latency instead. A trick stays when it wins
at least ``KEEP`` (1.10x); the table gives medians, the median of each round's ratio, and
the spread of those ratios (the noise).

    .venv/bin/python benchmarks/bench_choices.py [--seconds 5] [--rounds 3] [--connections 8]
        [--only LABEL-SUBSTRING[,LABEL-SUBSTRING...]] [--pin]

``--pin`` holds each server to CPU 1 and wrk to CPU 0, as bench_stack.py's does.
"""

import argparse
import functools
import json
import shutil
import statistics
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench_stack import ECHO_BODY, POST_SCRIPT, StackServer, loaded

from scripts.atomctl import bake, small_face, wrk

HERE = Path(__file__).resolve().parent
KEEP = 1.10
TENSOR_ITEMS = 100_000


class Pair(NamedTuple):
    """A row: what the shipped variant does, and the variant without it."""

    label: str
    shipped: str
    other: str
    path: str
    body: str | None  # a body of ``bodies`` below, or None for a GET
    judge: str = "cpu"  # the ratio of the verdict: "cpu" (per request) or "p99" (latency)


PAIRS = (
    Pair("direct handler; logged JSON POST", "shipped", "no-direct-handler", "/bench/echo", "echo"),
    Pair("direct handler; detect, nothing to load", "shipped", "no-direct-handler", "/detect",
         "stream"),
    Pair("inline_state_dependencies; detect, nothing to load", "shipped", "no-inline", "/detect",
         "stream"),
    Pair("include_flat; GET ping", "shipped", "routes-included", "/v1/health/ping", None),
    Pair("orjson parse; logged JSON POST", "shipped", "json-module", "/bench/echo", "echo"),
    Pair(f"orjson parse; {TENSOR_ITEMS} floats", "shipped", "json-module", "/bench/tensor",
         "tensor"),
    Pair("batched log handlers (vs QueueHandler); logged JSON POST", "shipped", "log-queue",
         "/bench/echo", "echo"),
    Pair("logs.log_line's queue (_Direct); logged JSON POST", "shipped", "no-log-line",
         "/bench/echo", "echo"),
    Pair("ATOM_OTEL off (vs on, no provider); logged JSON POST", "shipped", "otel-on",
         "/bench/echo", "echo"),
    Pair("gc.freeze after startup; p99, logged JSON POST", "shipped", "no-gc-freeze",
         "/bench/echo", "echo", "p99"),
    Pair("gc.freeze after startup; p99, 64x64 face", "shipped", "no-gc-freeze", "/detect",
         "face", "p99"),
    Pair("gc.freeze after startup; p99, batched MLP", "shipped", "no-gc-freeze", "/mlp", "mlp",
         "p99"),
    Pair("async detect (vs def); 64x64 face", "shipped", "detect-def", "/detect", "face"),
    Pair("async detect (vs def); detect, nothing to load", "shipped", "detect-def", "/detect",
         "stream"),
)  # fmt: skip


class ChoiceServer(StackServer):
    """choice_servers.py VARIANT in the baked project (held to ``cpus`` when given)."""

    variants = "choice_servers.py"


def measure(make: Callable[[], ChoiceServer], path: str, script: Path | None, args):
    """Throughput, latency and CPU per request of one route of one server (after a warm-up).
    A server that exits while starting (its port taken meanwhile, on a shared machine) is
    started again once, on another port."""
    try:
        server = make().start()
    except RuntimeError:
        server = make().start()
    try:
        url = server.url(path)
        wrk_cpus = "0" if args.pin else None
        wrk(url, 2, args.connections, script, threads=1, cpus=wrk_cpus)
        return loaded(server, url, args.seconds, args.connections, script, wrk_cpus)
    finally:
        server.stop()


def run_pair(pair: Pair, project: Path, workdir: Path, scripts: dict, args) -> dict:
    """Both variants of a row, alternating over the rounds."""
    runs: dict[str, list[dict]] = {pair.shipped: [], pair.other: []}
    env = {"LOG_ROOT": str(workdir / "logs")}
    if pair.body == "mlp":  # the model only where it is asked for: 64 MiB a server
        env["MLP_MODEL"] = str(workdir / "mlp.onnx")
    for round_ in range(args.rounds):
        order = (pair.shipped, pair.other) if round_ % 2 else (pair.other, pair.shipped)
        for variant in order:
            script = scripts[pair.body] if pair.body else None
            cpus = "1" if args.pin else None
            make = functools.partial(ChoiceServer, project, variant, cpus, env=env)
            runs[variant].append(measure(make, pair.path, script, args))
    return runs


def summary(pair: Pair, runs: dict) -> dict:
    """The row's medians, ratios (shipped over the other) and verdict."""
    shipped, other = runs[pair.shipped], runs[pair.other]
    rps = [a["rps"] / b["rps"] for a, b in zip(shipped, other, strict=True)]
    cpu = [b["cpu_us"] / a["cpu_us"] for a, b in zip(shipped, other, strict=True)]
    p99 = [b["p99"] / a["p99"] for a, b in zip(shipped, other, strict=True)]
    judged = cpu if pair.judge == "cpu" else p99
    return {
        "label": pair.label,
        "with_rps": statistics.median(r["rps"] for r in shipped),
        "without_rps": statistics.median(r["rps"] for r in other),
        "with_cpu": statistics.median(r["cpu_us"] for r in shipped),
        "without_cpu": statistics.median(r["cpu_us"] for r in other),
        "rps_ratio": statistics.median(rps),
        "cpu_ratio": statistics.median(cpu),
        "cpu_spread": (min(cpu), max(cpu)),
        "with_p99": statistics.median(r["p99"] for r in shipped),
        "without_p99": statistics.median(r["p99"] for r in other),
        "p99_ratio": statistics.median(p99),
        "judge": pair.judge,
        "kept": statistics.median(judged) >= KEEP,
    }


def print_table(rows: list[dict]) -> None:
    print(
        "| trick; request | with: req/s, CPU µs/req | without: req/s, CPU µs/req"
        " | req/s with / without | CPU without / with (spread) | p99 ms with, without"
        " | p99 without / with | >= 1.10x |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for row in rows:
        low, high = row["cpu_spread"]
        verdict = ("yes" if row["kept"] else "no") + f" ({row['judge']})"
        print(
            f"| {row['label']} | {row['with_rps']:.0f}, {row['with_cpu']:.0f}"
            f" | {row['without_rps']:.0f}, {row['without_cpu']:.0f} | {row['rps_ratio']:.2f}x"
            f" | {row['cpu_ratio']:.2f}x ({low:.2f}-{high:.2f})"
            f" | {row['with_p99']:.1f}, {row['without_p99']:.1f} | {row['p99_ratio']:.2f}x"
            f" | {verdict} |"
        )


def main() -> int:
    """Measure every row and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument(
        "--only", default="", help="rows whose label contains this (or one of these, a,b)"
    )
    parser.add_argument("--json", type=Path, help="also write the rows here")
    parser.add_argument("--pin", action="store_true", help="servers on CPU 1, wrk on CPU 0")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        project = bake(workdir / "bake")
        for name in ("choice_servers.py", "batching_server.py", "mlp_model.py"):
            shutil.copy(HERE / name, project)
        sys.path.insert(0, str(HERE))
        from mlp_model import build

        build(workdir / "mlp.onnx")
        bodies = {
            "echo": ECHO_BODY,
            "face": json.dumps({"data": [small_face(project)], "src_type": "base64"}),
            "stream": json.dumps({"data": [], "src_type": "stream"}),
            "tensor": json.dumps({"data": [i / 7 for i in range(TENSOR_ITEMS)]}),
            "mlp": json.dumps({"data": [0.5]}),
        }
        scripts = {name: workdir / f"{name}.lua" for name in bodies}
        for name, body in bodies.items():
            scripts[name].write_text(POST_SCRIPT.format(body=body))
        for pair in PAIRS:
            if any(part in pair.label for part in args.only.split(",")):
                rows.append(summary(pair, run_pair(pair, project, workdir, scripts, args)))
                print(f"measured: {rows[-1]}", file=sys.stderr)
                if args.json:
                    args.json.write_text(json.dumps(rows, indent=1))
    print(
        f"wrk 1 thread, {args.connections} connections, {args.seconds} s per run;"
        f" {args.rounds} alternating rounds; Python {sys.version.split()[0]}"
        + ("; servers on CPU 1, wrk on CPU 0" if args.pin else "")
    )
    print()
    print_table(rows)
    print()
    print(
        "medians over the rounds; the ratios are medians of the rounds' ratios, the spread"
        " their lowest and highest. A trick stays when CPU without / with >= 1.10x (p99"
        " without / with for a trick for the latency tail)."
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
