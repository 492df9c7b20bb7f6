"""Dynamic batching: a model bound by reading its weights, batched and unbatched, over HTTP.

The model is ``mlp_model.py``'s (64 MiB of weights, ONNX Runtime, one thread): first
measured alone, batch 16 against batch 1, then served by the atom (``batching_server.py``)
with its declared batching (max 16 items, 5 ms) and with ATOM_BATCH__MLP__MAX_SIZE=1,
each at wrk concurrency 1, 8 and 32 (one item per request). The two servers alternate
over the rounds (which goes first alternates too); the table gives medians, the median of
each round's ratio, and the mean batch size from the atom's own metrics.

    .venv/bin/python benchmarks/bench_batching.py [--seconds 5] [--rounds 3]
"""

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench_stack import POST_SCRIPT
from prometheus_client.parser import text_string_to_metric_families

from scripts.atomctl import AtomServer, bake, http, wrk

HERE = Path(__file__).resolve().parent
CONCURRENCY = (1, 8, 32)
RATIO_TARGET = 2.0  # batched / unbatched requests/s at concurrency 32
P50_TARGET_MS = 1.0  # batched p50 - unbatched p50 at concurrency 1
# wrk sends one item per request; a different number for each connection is not needed:
# every request does the same work.
BODY = json.dumps({"data": [0.5]})


class MlpServer(AtomServer):
    """batching_server.py in the baked project."""

    def command(self) -> list[str]:
        return [self.python, "batching_server.py", "--port", str(self.port), "--host", "127.0.0.1"]


def model_alone(model_path: Path, seconds: float = 2.0) -> dict[int, float]:
    """Items/s of the bare model at batch 1 and 16 (one thread), in alternating runs."""
    sys.path.insert(0, str(HERE))
    from mlp_model import Mlp

    model = Mlp(model_path)
    rates: dict[int, list[float]] = {1: [], 16: []}
    for _ in range(3):
        for size in rates:
            items = [0.5] * size
            model.predict_batch(items)
            count, started = 0, time.perf_counter()
            while time.perf_counter() - started < seconds / 3:
                model.predict_batch(items)
                count += size
            rates[size].append(count / (time.perf_counter() - started))
    return {size: statistics.median(values) for size, values in rates.items()}


def batch_counts(server: AtomServer) -> tuple[float, float]:
    """(items, batches) of the MLP so far, from the server's metrics."""
    _, _, text = http("GET", server.url("/metrics"))
    found = {
        sample.name: sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.labels.get("model") == "mlp"
    }
    return found.get("atom_batch_size_sum", 0.0), found.get("atom_batch_size_count", 0.0)


def measure(server: MlpServer, script: Path, seconds: int) -> dict[int, dict]:
    """Each concurrency on one server: warm-up, then a measured run."""
    results = {}
    with server:
        url = server.url("/mlp")
        for connections in CONCURRENCY:
            wrk(url, 1, connections, script, threads=1)
            items, batches = batch_counts(server)
            row = wrk(url, seconds, connections, script, threads=1)
            items2, batches2 = batch_counts(server)
            row["batch"] = (items2 - items) / (batches2 - batches) if batches2 > batches else 1.0
            results[connections] = row
    return results


def main() -> int:
    """Measure and print the tables."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        project = bake(workdir / "bake")
        for name in ("mlp_model.py", "batching_server.py"):
            shutil.copy(HERE / name, project)
        sys.path.insert(0, str(HERE))
        from mlp_model import build

        model_path = build(workdir / "mlp.onnx")
        alone = model_alone(model_path)
        script = workdir / "mlp.lua"
        script.write_text(POST_SCRIPT.format(body=BODY))
        env = {"LOG_ROOT": str(workdir / "logs"), "MLP_MODEL": str(model_path), "ATOM_THREADS": "1"}
        variants = {
            "batched": env,
            "unbatched": {**env, "ATOM_BATCH__MLP__MAX_SIZE": "1"},
        }
        runs: dict[str, list[dict]] = {name: [] for name in variants}
        for round_ in range(args.rounds):
            order = list(variants) if round_ % 2 == 0 else list(reversed(variants))
            for name in order:
                server = MlpServer(project, env=variants[name])
                runs[name].append(measure(server, script, args.seconds))
    print_tables(alone, runs, args)
    return 0


def print_tables(alone: dict[int, float], runs: dict[str, list[dict]], args) -> None:
    """The model alone, then the HTTP table with its targets."""
    print(f"The model alone (ONNX Runtime, 1 thread), Python {sys.version.split()[0]}:")
    print()
    print("| batch | items/s | vs batch 1 |")
    print("|---|---|---|")
    for size, rate in alone.items():
        print(f"| {size} | {rate:.0f} | {rate / alone[1]:.1f}x |")
    print()
    print(
        f"Over HTTP: wrk 1 thread, one item per request, {args.seconds} s per run,"
        f" {args.rounds} alternating rounds (medians)"
    )
    print()
    print(
        "| connections | batched req/s | unbatched req/s | batched / unbatched"
        " | batched p50 / p99 ms | unbatched p50 / p99 ms | mean batch | target |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for connections in CONCURRENCY:
        on = [run[connections] for run in runs["batched"]]
        off = [run[connections] for run in runs["unbatched"]]

        def med(rows: list[dict], key: str) -> float:
            return statistics.median(row[key] for row in rows)

        ratio = statistics.median(a["rps"] / b["rps"] for a, b in zip(on, off, strict=True))
        target = "-"
        if connections == 32:
            met = "met" if ratio >= RATIO_TARGET else "not met"
            target = f">= {RATIO_TARGET:.1f}x: {met}"
        elif connections == 1:
            gap = med(on, "p50") - med(off, "p50")
            met = "met" if gap <= P50_TARGET_MS else "not met"
            target = f"p50 +{gap:.2f} ms (<= {P50_TARGET_MS:.0f} ms): {met}"
        print(
            f"| {connections} | {med(on, 'rps'):.0f} | {med(off, 'rps'):.0f} | {ratio:.2f}x"
            f" | {med(on, 'p50'):.2f} / {med(on, 'p99'):.2f}"
            f" | {med(off, 'p50'):.2f} / {med(off, 'p99'):.2f}"
            f" | {med(on, 'batch'):.1f} | {target} |"
        )
    print()
    print("mean batch: items per call of predict_batch in the measured runs (atom_batch_size)")


if __name__ == "__main__":
    raise SystemExit(main())
