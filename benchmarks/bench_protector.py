"""Decryption throughput of the model protector against bare AES-GCM and a plain read.

Prints one table. On the same random data, in the same run, alternating: reading the
plaintext file (warm page cache), bare AES-GCM from ``cryptography`` (one call over the
whole ciphertext, already in memory), and the atom's compiled ``ModelProtector`` reading
its chunked file (to bytes, to an in-memory file, streamed). Target: ``decrypt`` at least
0.9x bare AES-GCM.

    .venv/bin/python benchmarks/bench_protector.py [--size-mib 256] [--runs 7]
"""

import argparse
import importlib
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from scripts.atomctl import bake

MIB = 1 << 20
TARGET = 0.9


def load_protector(project: Path) -> Any:
    """The compiled protector module of a baked atom."""
    sys.path.insert(0, str(project))
    module = importlib.import_module("my_atom.dependency.model_protector")
    assert module.__file__.endswith(".so"), module.__file__
    return module


def cases(workdir: Path, module: Any, size: int) -> tuple[dict[str, Callable[[], Any]], bytes]:
    """Name -> a function doing one full decryption (or read) of ``size`` bytes; and the
    bare ciphertext of the same data."""
    plain = workdir / "model.bin"
    plain.write_bytes(os.urandom(size))
    key = module.ModelProtector.generate_key()
    protector = module.ModelProtector(key)
    sealed = workdir / "model.enc"
    protector.encrypt(plain, sealed, "bench")
    nonce = os.urandom(12)
    bare = AESGCM(key)
    ciphertext = bare.encrypt(nonce, plain.read_bytes(), None)

    def to_memory_file() -> None:
        protector.decrypt_to_memory_file(sealed, "bench").close()

    def streamed() -> None:
        with open(os.devnull, "wb") as sink:
            protector.decrypt_into(sealed, sink, "bench")

    return {
        "read the plaintext file": plain.read_bytes,
        "bare AES-GCM, one call, in memory": lambda: bare.decrypt(nonce, ciphertext, None),
        "bare AES-GCM, read file + one call": lambda: bare.decrypt(
            nonce, (workdir / "bare.enc").read_bytes(), None
        ),
        "ModelProtector.decrypt -> bytes": lambda: protector.decrypt(sealed, "bench"),
        "ModelProtector -> memory file (memfd)": to_memory_file,
        "ModelProtector.decrypt_into, streamed": streamed,
    }, ciphertext


def measure(functions: dict[str, Callable[[], Any]], runs: int) -> dict[str, list[float]]:
    """Seconds per call of each function, the functions alternating within each run."""
    seconds: dict[str, list[float]] = {name: [] for name in functions}
    for _ in range(runs):
        for name, function in functions.items():
            started = time.perf_counter()
            function()
            seconds[name].append(time.perf_counter() - started)
    return seconds


def main() -> int:
    """Bake an atom (compiling its protector), measure, print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=256)
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    size = args.size_mib * MIB
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        module = load_protector(bake(workdir / "bake"))
        functions, ciphertext = cases(workdir, module, size)
        (workdir / "bare.enc").write_bytes(ciphertext)
        del ciphertext
        for function in functions.values():  # warm up: page cache, allocator, imports
            function()
        seconds = measure(functions, args.runs)
    median = {name: statistics.median(values) for name, values in seconds.items()}
    bare = median["bare AES-GCM, one call, in memory"]
    read = median["read the plaintext file"]
    print(f"{args.size_mib} MiB of random data, {args.runs} alternating runs (medians);")
    print(f"chunks of {module.DEFAULT_CHUNK_SIZE // MIB} MiB; Python {sys.version.split()[0]}")
    print()
    print("| decryption | MiB/s | vs bare AES-GCM | vs reading the plaintext |")
    print("|---|---|---|---|")
    for name, value in median.items():
        print(f"| {name} | {size / MIB / value:.0f} | {bare / value:.2f}x | {read / value:.2f}x |")
    ratio = bare / median["ModelProtector.decrypt -> bytes"]
    verdict = "met" if ratio >= TARGET else "MISSED"
    print()
    print(f"target: ModelProtector.decrypt >= {TARGET}x bare AES-GCM: {ratio:.2f}x, {verdict}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
