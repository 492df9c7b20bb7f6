"""Command line of model protection: ``python -m <package>.protection.protect COMMAND``.

    keygen   [--out FILE] [--format base64|hex] [--force]
    encrypt  INPUT OUTPUT --model-id ID [--key-file FILE] [--chunk-size BYTES] [--force]
    decrypt  INPUT OUTPUT [--model-id ID] [--key-file FILE] [--force]   (OUTPUT - is stdout)
    decrypt  OLD.linker FOLDER --legacy-key BYTE --customer-id ID       (legacy models)
    inspect  INPUT [--json]                                             (no key needed)

Without ``--key-file`` the key is found as the atom finds it (``keys.py``). Progress goes
to stderr for files of 64 MiB and more (``--progress`` / ``--quiet`` decide otherwise).
Exit status: 0 done, 1 the protector is not compiled (``make protector``), 2 usage or
configuration error, 3 no key, a malformed key or the wrong key, 4 the file is not a
valid protected model (tampered, truncated, reordered, another model id, unsafe
archive), 5 input or output error.
"""

import argparse
import contextlib
import json
import os
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from ..config import SettingsError, load_settings
from . import fileformat, linker
from .errors import ModelKeyError, ProtectorError, ProtectorNotBuiltError
from .keys import load_protector, protector_module

EXIT_OK, EXIT_NOT_BUILT, EXIT_USAGE, EXIT_KEY, EXIT_INVALID, EXIT_IO = range(6)
# The first matching class gives the exit status (subclasses before their bases).
EXIT_CODES: tuple[tuple[type[BaseException], int], ...] = (
    (ProtectorNotBuiltError, EXIT_NOT_BUILT),
    (ModelKeyError, EXIT_KEY),
    (ProtectorError, EXIT_INVALID),
    (SettingsError, EXIT_USAGE),
    (FileExistsError, EXIT_USAGE),
    (OSError, EXIT_IO),
    (ValueError, EXIT_USAGE),
)
PROGRESS_FROM = 64 << 20
MIB = 1 << 20


class Progress:
    """Reports bytes done on stderr, at most twice a second, and a last line at the end."""

    def __init__(self, label: str, total: int, stream: IO[str] | None = None) -> None:
        self.label, self.total = label, max(total, 1)
        self.stream = stream or sys.stderr
        self.last = 0.0
        self.end = "\r" if self.stream.isatty() else "\n"

    def __call__(self, done: int) -> None:
        now = time.monotonic()
        if done < self.total and now - self.last < 0.5:
            return
        self.last = now
        percent = min(100 * done // self.total, 100)
        end = "\n" if done >= self.total else self.end
        self.stream.write(
            f"{self.label}: {done / MIB:.1f} of {self.total / MIB:.1f} MiB ({percent}%){end}"
        )
        self.stream.flush()


def progress_for(args: argparse.Namespace, label: str, size: int) -> Progress | None:
    """A progress reporter when asked for, or for large files unless --quiet."""
    if args.quiet or not (args.progress or size >= PROGRESS_FROM):
        return None
    return Progress(label, size)


def umask() -> int:
    """The process's umask."""
    mask = os.umask(0o077)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def output_file(path: str, force: bool, mode: int = 0o600) -> Iterator[IO[bytes]]:
    """A file written beside ``path`` and renamed onto it only once complete.

    ``mode`` (less the umask) is the file's final mode: decrypted models stay private.
    """
    if path == "-":
        yield sys.stdout.buffer
        return
    target = Path(path)
    if target.exists() and not force:
        raise FileExistsError(f"{path} exists (--force replaces it)")
    target.parent.mkdir(parents=True, exist_ok=True)
    descriptor, partial = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    try:
        os.fchmod(descriptor, mode & ~umask())
        with os.fdopen(descriptor, "wb") as out:
            yield out
        os.replace(partial, target)
    except BaseException:
        Path(partial).unlink(missing_ok=True)
        raise


def protector(args: argparse.Namespace) -> Any:
    """The protector of --key-file, or of the key the atom would use."""
    if args.key_file:
        return protector_module().ModelProtector.from_key_file(args.key_file)
    return load_protector(load_settings())


def command_keygen(args: argparse.Namespace) -> int:
    """Write a new model key (32 random bytes) to --out (mode 600) or to stdout."""
    text = fileformat.key_to_text(os.urandom(fileformat.KEY_SIZE), args.format) + "\n"
    if not args.out:
        sys.stdout.write(text)
        return EXIT_OK
    path = Path(args.out)
    if path.exists() and not args.force:
        raise FileExistsError(
            f"{path} exists (--force replaces it; models encrypted with it are lost)"
        )
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w", encoding="ascii") as out:
        out.write(text)
    sys.stderr.write(f"new model key written to {path}\n")
    return EXIT_OK


def command_encrypt(args: argparse.Namespace) -> int:
    """Encrypt INPUT into OUTPUT for --model-id."""
    model = protector(args)
    report = progress_for(args, f"encrypting {args.input}", os.path.getsize(args.input))
    with output_file(args.output, args.force, mode=0o644) as out:  # safe to share
        header = model.encrypt(
            args.input, out, args.model_id, chunk_size=args.chunk_size, progress=report
        )
    sys.stderr.write(f"{args.output}: model {header.model_id!r}, encrypted ({model.source})\n")
    return EXIT_OK


def command_decrypt(args: argparse.Namespace) -> int:
    """Decrypt INPUT into OUTPUT (or extract a legacy .linker model into a folder)."""
    if args.legacy_key is not None:
        if args.customer_id is None:
            raise ValueError("--legacy-key needs --customer-id")
        files = linker.extract_linker(args.input, args.legacy_key, args.customer_id, args.output)
        sys.stderr.write(f"{len(files)} file(s) extracted under {args.output}\n")
        return EXIT_OK
    model = protector(args)
    header = fileformat.read_header(args.input)
    size = header.describe(os.path.getsize(args.input))["plaintext_size"]
    report = progress_for(args, f"decrypting {args.input}", size)
    with output_file(args.output, args.force) as out:
        model.decrypt_into(args.input, out, args.model_id, progress=report)
    return EXIT_OK


def command_inspect(args: argparse.Namespace) -> int:
    """Print the header of a protected (or legacy) model; the key is neither needed nor shown."""
    with open(args.input, "rb") as f:
        mark = f.read(2)
    if mark in linker.MASKED_BYTES:
        info = linker.inspect_linker(args.input)._asdict()
        info["format"] = "legacy .linker (one-byte XOR mask, not encryption)"
    else:
        info = fileformat.read_header(args.input).describe(os.path.getsize(args.input))
    if args.json:
        sys.stdout.write(json.dumps(info, ensure_ascii=False) + "\n")
    else:
        sys.stdout.writelines(f"{key}: {value}\n" for key, value in info.items())
    return EXIT_OK


def byte_value(text: str) -> int:
    """A byte from decimal or 0x-hex text."""
    return int(text, 0)


def add_key_options(parser: argparse.ArgumentParser) -> None:
    """--key-file and the progress switches, shared by encrypt and decrypt."""
    parser.add_argument("--key-file", help="file holding the key (default: the atom's lookup)")
    parser.add_argument("--force", action="store_true", help="replace OUTPUT if it exists")
    parser.add_argument("--progress", action="store_true", help="report progress on stderr")
    parser.add_argument("--quiet", action="store_true", help="no progress, even for big files")


def build_parser() -> argparse.ArgumentParser:
    """The command line: one sub-command per action."""
    parser = argparse.ArgumentParser(
        prog=f"python -m {__package__}.protect",
        description="Encrypt, decrypt and inspect the atom's model files (AES-256-GCM).",
        epilog="Exit status: 0 done, 1 protector not compiled, 2 usage, 3 key, "
        "4 invalid or tampered file, 5 input/output.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    keygen = commands.add_parser("keygen", help="write a new model key")
    keygen.add_argument("--out", help="key file to create (mode 600); default: stdout")
    keygen.add_argument("--format", choices=("base64", "hex"), default="base64")
    keygen.add_argument("--force", action="store_true", help="replace the key file")
    keygen.set_defaults(run=command_keygen)
    encrypt = commands.add_parser("encrypt", help="encrypt a model file")
    encrypt.add_argument("input")
    encrypt.add_argument("output")
    encrypt.add_argument("--model-id", required=True, help="model id sealed into the file")
    encrypt.add_argument("--chunk-size", type=int, default=fileformat.DEFAULT_CHUNK_SIZE)
    add_key_options(encrypt)
    encrypt.set_defaults(run=command_encrypt)
    decrypt = commands.add_parser("decrypt", help="decrypt a model file (or a legacy one)")
    decrypt.add_argument("input")
    decrypt.add_argument("output", help="file, '-' for stdout, or a folder (legacy)")
    decrypt.add_argument("--model-id", help="refuse a file holding another model")
    decrypt.add_argument("--legacy-key", type=byte_value, help="key byte of a .linker file")
    decrypt.add_argument("--customer-id", help="customer id of a .linker file")
    add_key_options(decrypt)
    decrypt.set_defaults(run=command_decrypt)
    inspect = commands.add_parser("inspect", help="print a model file's header")
    inspect.add_argument("input")
    inspect.add_argument("--json", action="store_true", help="one JSON object")
    inspect.set_defaults(run=command_inspect)
    return parser


def exit_code(exc: BaseException) -> int:
    """The exit status of an error (see the module docstring)."""
    return next(code for kind, code in EXIT_CODES if isinstance(exc, kind))


def main(argv: list[str] | None = None) -> int:
    """Parse, run the command, turn its error into one line on stderr and an exit status."""
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except tuple(kind for kind, _ in EXIT_CODES) as exc:
        sys.stderr.write(f"protect {args.command}: {exc}\n")
        return exit_code(exc)


if __name__ == "__main__":
    raise SystemExit(main())
