"""Decryption throughput of the model protector, and each of its speed tricks with and without.

Prints two tables. On the same random data, in the same run, alternating (the order
rotates from one round to the next): reading the plaintext file (warm page cache), bare
AES-GCM from ``cryptography`` (one call over the whole ciphertext, already in memory), and
the atom's compiled ``ModelProtector`` reading its chunked file (to bytes, to an
in-memory file, streamed; and encrypting). Then the same paths with one speed trick of
``model_protector.pyx`` switched off (the benchmark removes its name from the module's
``_SPEED_TRICKS``): "with / without" is the median over the rounds of the time without
divided by the time with, so above 1 the trick pays. Target: ``decrypt`` at least 0.9x
bare AES-GCM.

    .venv/bin/python benchmarks/bench_protector.py [--size-mib 256] [--runs 15]
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
from typing import Any, NamedTuple

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from scripts.atomctl import bake

MIB = 1 << 20
TARGET = 0.9


class Case(NamedTuple):
    """One measured function, with the speed tricks it runs without."""

    function: Callable[[], Any]
    without: frozenset[str] = frozenset()


def load_protector(project: Path) -> Any:
    """The compiled protector module of a baked atom."""
    sys.path.insert(0, str(project))
    module = importlib.import_module("my_atom.protection.model_protector")
    assert module.__file__.endswith(".so"), module.__file__
    return module


def cases(workdir: Path, module: Any, size: int) -> tuple[dict[str, Case], dict[str, str]]:
    """Name -> a case doing one full decryption (or read, or encryption) of ``size`` bytes;
    and, for each case without a trick, the name of the same path with every trick."""
    plain = workdir / "model.bin"
    plain.write_bytes(os.urandom(size))
    key = module.ModelProtector.generate_key()
    protector = module.ModelProtector(key)
    sealed = workdir / "model.enc"
    protector.encrypt(plain, sealed, "bench")
    nonce = os.urandom(12)
    bare = AESGCM(key)
    (workdir / "bare.enc").write_bytes(bare.encrypt(nonce, plain.read_bytes(), None))
    ciphertext = (workdir / "bare.enc").read_bytes()

    def to_bytes() -> None:
        protector.decrypt(sealed, "bench")

    def to_memory_file() -> None:
        protector.decrypt_to_memory_file(sealed, "bench").close()

    def streamed() -> None:
        with open(os.devnull, "wb") as sink:
            protector.decrypt_into(sealed, sink, "bench")

    def encrypt() -> None:
        with open(os.devnull, "wb") as sink:
            protector.encrypt(plain, sink, "bench")

    found = {
        "read the plaintext file": Case(plain.read_bytes),
        "bare AES-GCM, one call, in memory": Case(lambda: bare.decrypt(nonce, ciphertext, None)),
        "bare AES-GCM, read file + one call": Case(
            lambda: bare.decrypt(nonce, (workdir / "bare.enc").read_bytes(), None)
        ),
        "ModelProtector.decrypt -> bytes": Case(to_bytes),
        "ModelProtector -> memory file (memfd)": Case(to_memory_file),
        "ModelProtector.decrypt_into, streamed": Case(streamed),
        "ModelProtector.encrypt, file to /dev/null": Case(encrypt),
    }
    reference = {}  # a case without a trick -> the same path with every trick
    for name in [name for name in found if name.startswith("ModelProtector")]:
        for trick in sorted(module._SPEED_TRICKS):
            label = f"{name}, without {trick}"
            found[label] = Case(found[name].function, frozenset([trick]))
            reference[label] = name
    return found, reference


def measure(module: Any, found: dict[str, Case], runs: int) -> dict[str, list[float]]:
    """Seconds per call of each case, the cases alternating within each run (the first
    one moving on by one from run to run)."""
    tricks = frozenset(module._SPEED_TRICKS)
    seconds: dict[str, list[float]] = {name: [] for name in found}
    names = list(found)
    for run in range(runs):
        for name in names[run % len(names) :] + names[: run % len(names)]:
            case = found[name]
            module._SPEED_TRICKS.clear()
            module._SPEED_TRICKS.update(tricks - case.without)
            started = time.perf_counter()
            case.function()
            seconds[name].append(time.perf_counter() - started)
    module._SPEED_TRICKS.update(tricks)
    return seconds


def main() -> int:
    """Bake an atom (compiling its protector), measure, print the tables."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=256)
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    size = args.size_mib * MIB
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        module = load_protector(bake(workdir / "bake"))
        found, reference = cases(workdir, module, size)
        measure(module, found, 1)  # warm up: page cache, allocator, imports
        seconds = measure(module, found, args.runs)
    median = {name: statistics.median(values) for name, values in seconds.items()}
    bare = median["bare AES-GCM, one call, in memory"]
    read = median["read the plaintext file"]
    print(f"{args.size_mib} MiB of random data, {args.runs} alternating runs (medians);")
    print(f"chunks of {module.DEFAULT_CHUNK_SIZE // MIB} MiB; Python {sys.version.split()[0]}")
    print()
    print("| decryption | MiB/s | vs bare AES-GCM | vs reading the plaintext |")
    print("|---|---|---|---|")
    for name, value in median.items():
        if name not in reference:
            mibs = size / MIB / value
            print(f"| {name} | {mibs:.0f} | {bare / value:.2f}x | {read / value:.2f}x |")
    print()
    print("| speed trick switched off | MiB/s with | MiB/s without | with / without |")
    print("|---|---|---|---|")
    for label, name in reference.items():
        ratio = statistics.median(
            without / with_ for without, with_ in zip(seconds[label], seconds[name], strict=True)
        )
        with_mibs, without_mibs = size / MIB / median[name], size / MIB / median[label]
        print(f"| {label} | {with_mibs:.0f} | {without_mibs:.0f} | {ratio:.2f}x |")
    ratio = bare / median["ModelProtector.decrypt -> bytes"]
    verdict = "met" if ratio >= TARGET else "MISSED"
    print()
    print("with / without: the median over the runs of the time without the trick divided")
    print("by the time with it (above 1.00x the trick pays)")
    print(f"target: ModelProtector.decrypt >= {TARGET}x bare AES-GCM: {ratio:.2f}x, {verdict}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
