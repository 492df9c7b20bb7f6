"""The protect command line: keygen, encrypt, decrypt, inspect, and their exit statuses."""

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from {{ cookiecutter.package_name }}.protection import errors, protect

from .conftest import ModelFiles

MODULE = protect.__name__


def cli(*args: str | Path) -> int:
    """Run the command line in this process; return its exit status."""
    return protect.main([str(arg) for arg in args])


@pytest.fixture
def key_file(tmp_path: Path) -> Path:
    """A new key file, made by keygen."""
    path = tmp_path / "secrets" / "model.key"
    assert cli("keygen", "--out", path) == 0
    return path


def test_keygen_writes_a_private_key_file(key_file: Path, capsys: pytest.CaptureFixture) -> None:
    """keygen writes 32 random bytes as base64, mode 600, and never overwrites by accident."""
    assert len(key_file.read_text().strip()) == 44
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(key_file.parent.stat().st_mode) == 0o700
    assert cli("keygen", "--out", key_file) == protect.EXIT_USAGE
    assert "exists" in capsys.readouterr().err
    assert cli("keygen", "--format", "hex") == 0
    assert len(capsys.readouterr().out.strip()) == 64


def test_round_trip_and_inspect_as_a_module(tmp_path: Path, key_file: Path) -> None:
    """python -m ... encrypt, inspect and decrypt give back the file; inspect shows no key."""
    source = tmp_path / "model.bin"
    source.write_bytes(os.urandom(300_000))
    run = [sys.executable, "-m", MODULE]
    sealed, opened = tmp_path / "model.enc", tmp_path / "model.out"
    key_args = ["--key-file", str(key_file)]
    encrypt = [*run, "encrypt", str(source), str(sealed), "--model-id", "m1", *key_args]
    subprocess.run([*encrypt, "--chunk-size", "65536"], check=True, timeout=60)
    inspect = subprocess.run(
        [*run, "inspect", str(sealed)], check=True, timeout=60, capture_output=True, text=True
    )
    fields = dict(line.split(": ", 1) for line in inspect.stdout.splitlines())
    assert fields["model_id"] == "m1"
    assert fields["chunk_size"] == "65536"
    assert fields["plaintext_size"] == "300000"
    assert fields["chunks"] == "5"
    key_text = key_file.read_text().strip()
    assert key_text not in inspect.stdout and key_text not in inspect.stderr
    decrypt = [*run, "decrypt", str(sealed), str(opened), "--model-id", "m1", *key_args]
    subprocess.run(decrypt, check=True, timeout=60)
    assert opened.read_bytes() == source.read_bytes()


def test_help_and_usage_errors(capsys: pytest.CaptureFixture) -> None:
    """--help exits 0; a missing command or argument exits 2."""
    for args, status in ((["--help"], 0), (["encrypt", "--help"], 0), ([], 2), (["encrypt"], 2)):
        with pytest.raises(SystemExit) as exited:
            cli(*args)
        assert exited.value.code == status
    command = [sys.executable, "-m", MODULE, "--help"]
    result = subprocess.run(command, capture_output=True, text=True, check=True, timeout=60)
    assert "Exit status" in result.stdout


def test_inspect_json(model_files: ModelFiles, capsys) -> None:
    """inspect --json prints one object: the header, no key material."""
    assert cli("inspect", model_files.model_dir / "face.enc", "--json") == 0
    info = json.loads(capsys.readouterr().out)
    assert info["model_id"] == "face"
    assert info["format_version"] == 1
    assert "key" not in info and "key_check" not in info


@pytest.fixture
def sealed(tmp_path: Path, key_file: Path) -> Path:
    """A small file encrypted with key_file."""
    source, sealed = tmp_path / "plain", tmp_path / "sealed"
    source.write_bytes(b"weights" * 100)
    assert cli("encrypt", source, sealed, "--model-id", "face", "--key-file", key_file) == 0
    return sealed


def test_exit_statuses(tmp_path: Path, key_file: Path, sealed: Path, capsys) -> None:
    """Bad key 3, tampered 4, missing input 5, existing output 2; one line on stderr each."""
    other = tmp_path / "other.key"
    cli("keygen", "--out", other)
    out = tmp_path / "out"
    assert cli("decrypt", sealed, out, "--key-file", other) == protect.EXIT_KEY
    assert "does not open this file" in capsys.readouterr().err
    damaged = tmp_path / "damaged"
    data = bytearray(sealed.read_bytes())
    data[-3] ^= 1
    damaged.write_bytes(bytes(data))
    assert cli("decrypt", damaged, out, "--key-file", key_file) == protect.EXIT_INVALID
    assert not out.exists()  # nothing half-written is left
    assert cli("decrypt", sealed, out, "--model-id", "x", "--key-file", key_file) == 4
    assert cli("decrypt", tmp_path / "missing", out, "--key-file", key_file) == protect.EXIT_IO
    out.write_bytes(b"")
    assert cli("decrypt", sealed, out, "--key-file", key_file) == protect.EXIT_USAGE
    assert cli("decrypt", sealed, out, "--key-file", key_file, "--force") == 0
    assert cli("decrypt", sealed, out, "--key-file", tmp_path / "nokey", "--force") == 3
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 5 and all(line.startswith("protect decrypt: ") for line in lines)
    assert key_file.read_text().strip() not in "".join(lines)


def test_not_compiled_is_status_1(
    monkeypatch: pytest.MonkeyPatch, sealed: Path, key_file: Path, capsys
) -> None:
    """Without the compiled protector the command says how to build it and exits 1."""

    def missing() -> None:
        raise errors.ProtectorNotBuiltError("not compiled: run `make protector`")

    monkeypatch.setattr(protect, "protector_module", missing)
    assert cli("decrypt", sealed, "-", "--key-file", key_file) == protect.EXIT_NOT_BUILT
    assert "make protector" in capsys.readouterr().err


def test_progress_on_stderr(tmp_path: Path, key_file: Path, capsys) -> None:
    """--progress reports on stderr up to 100%, for encryption and decryption."""
    source, sealed, opened = tmp_path / "plain", tmp_path / "sealed", tmp_path / "opened"
    source.write_bytes(os.urandom(100_000))
    args = ("--key-file", key_file, "--progress")
    assert cli("encrypt", source, sealed, "--model-id", "m", "--chunk-size", "16384", *args) == 0
    assert "encrypting" in capsys.readouterr().err
    assert cli("decrypt", sealed, opened, *args) == 0
    captured = capsys.readouterr()
    assert captured.err.splitlines()[-1].endswith("0.1 of 0.1 MiB (100%)")
    assert captured.out == ""
    assert opened.read_bytes() == source.read_bytes()


def test_decrypt_a_legacy_model(tmp_path: Path) -> None:
    """decrypt --legacy-key --customer-id extracts a .linker model into a folder."""
    from .test_linker import CUSTOMER, FILES, KEY, make_linker, model_tar

    path = tmp_path / "old.linker"
    path.write_bytes(make_linker(model_tar()))
    out = tmp_path / "model-dir"
    assert cli("decrypt", path, out, "--legacy-key", hex(KEY), "--customer-id", CUSTOMER) == 0
    assert {name: (out / name).read_bytes() for name in FILES} == FILES
    assert cli("inspect", path) == 0
