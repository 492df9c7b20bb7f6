"""The model alone, in-process: the limit that bench_peer.py holds every server's throughput to.

Run by bench_peer.py on the servers' CPUs (``taskset``), with as many calling threads as
the servers have workers and each model held to the servers' threads per worker; prints
one JSON object.

    python model_limit.py face --photo P.b64 [--callers N] [--threads T] [--seconds S]
        images/s of decoding the base64 JPEG (base64 decode, ``cv2.imdecode``) and
        detecting faces in it (face_model.py), each caller in a loop
    python model_limit.py mlp --model M.onnx [--callers N] [--threads T] [--seconds S]
        items/s of mlp_model.py's ``predict_batch`` at every batch size from 1 to 16
        (the input rows built from the numbers included), each caller in a loop
"""

import argparse
import json
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

MAX_BATCH = 16


def rate(work: Callable[[], int], callers: int, seconds: float) -> float:
    """Units of work per second done by ``callers`` threads calling ``work`` for ``seconds``."""
    for _ in range(2):  # warm-up: first calls allocate
        work()
    counts = [0] * callers
    deadline = time.perf_counter() + seconds

    def loop(index: int) -> None:
        while True:  # at least one call, however busy the CPU is
            counts[index] += work()
            if time.perf_counter() >= deadline:
                return

    started = time.perf_counter()
    threads = [threading.Thread(target=loop, args=(i,)) for i in range(callers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sum(counts) / (time.perf_counter() - started)


def face(args: argparse.Namespace) -> dict:
    """Images/s of decode + detect on the photo."""
    from face_model import DEFAULT_THRESHOLD, FaceModel, decode

    text = args.photo.read_text().strip()
    model = FaceModel(args.threads)

    def work() -> int:
        model.predict(decode(text), DEFAULT_THRESHOLD)
        return 1

    return {"images_per_s": rate(work, args.callers, args.seconds)}


def mlp(args: argparse.Namespace) -> dict:
    """Items/s of the MLP at each batch size (its runs share the seconds)."""
    from mlp_model import Mlp

    model = Mlp(args.model, threads=args.threads)
    rates = {}
    for size in range(1, MAX_BATCH + 1):
        items = [0.5] * size

        def work(items: list[float] = items) -> int:
            model.predict_batch(items)
            return len(items)

        rates[size] = rate(work, args.callers, args.seconds / MAX_BATCH)
    return {"items_per_s": rates}


def main() -> int:
    """Measure one model and print the JSON object."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("kind", choices=("face", "mlp"))
    parser.add_argument("--photo", type=Path, help="face: a file holding the base64 JPEG")
    parser.add_argument("--model", type=Path, help="mlp: the ONNX file")
    parser.add_argument("--callers", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seconds", type=float, default=4.0)
    args = parser.parse_args()
    result = face(args) if args.kind == "face" else mlp(args)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
