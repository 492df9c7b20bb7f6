"""The shared rotating log file: several processes, no lost or mixed lines, sizes kept."""

import logging
import multiprocessing
import re
import time
from pathlib import Path

from {{ cookiecutter.package_name }}.lib.log import SharedRotatingFileHandler, make_formatter

LINE_RE = re.compile(r"^proc=(\d+) seq=(\d+) (x+) end$")
PROCESSES, LINES, MAX_BYTES = 4, 500, 8192


def write_lines(handler: SharedRotatingFileHandler, proc: int) -> None:
    """Child process body: log LINES lines of varying length through the handler."""
    log = logging.getLogger(f"writer{proc}")
    log.propagate = False
    log.addHandler(handler)
    for seq in range(LINES):
        log.warning("proc=%d seq=%d %s end", proc, seq, "x" * (20 + (seq * 7 + proc) % 90))


def all_lines(directory: Path) -> list[str]:
    """Every line of atom.log and its backups."""
    lines: list[str] = []
    for path in directory.glob("atom.log*"):
        if not path.name.endswith(".lock"):
            lines.extend(path.read_text().splitlines())
    return lines


def test_processes_share_the_file(tmp_path: Path) -> None:
    """4 processes x 500 lines: every line once and whole, no file above the limit."""
    handler = SharedRotatingFileHandler(tmp_path / "atom.log", MAX_BYTES, backup_count=1000)
    handler.setFormatter(logging.Formatter("%(message)s"))
    handler.emit(logging.makeLogRecord({"msg": "proc=9 seq=0 xx end"}))  # opened before the fork
    context = multiprocessing.get_context("fork")
    children = [context.Process(target=write_lines, args=(handler, p)) for p in range(PROCESSES)]
    for child in children:
        child.start()
    for child in children:
        child.join(60)
        assert child.exitcode == 0

    seen = set()
    for line in all_lines(tmp_path):
        match = LINE_RE.match(line)
        assert match, f"mixed or cut line: {line!r}"
        seen.add((int(match[1]), int(match[2])))
    assert len(seen) == PROCESSES * LINES + 1
    assert len(all_lines(tmp_path)) == PROCESSES * LINES + 1
    files = [p for p in tmp_path.glob("atom.log*") if not p.name.endswith(".lock")]
    assert len(files) > 10  # it did rotate, many times
    assert max(p.stat().st_size for p in files) <= MAX_BYTES


def test_backup_count_is_kept(tmp_path: Path) -> None:
    """Only backup_count old files remain; the newest lines are in atom.log."""
    handler = SharedRotatingFileHandler(tmp_path / "atom.log", 2048, backup_count=3)
    handler.setFormatter(logging.Formatter("%(message)s"))
    for seq in range(400):
        handler.emit(logging.makeLogRecord({"msg": f"line {seq:04d} " + "y" * 40}))
    names = sorted(p.name for p in tmp_path.glob("atom.log*") if not p.name.endswith(".lock"))
    assert names == ["atom.log", "atom.log.1", "atom.log.2", "atom.log.3"]
    assert (tmp_path / "atom.log").read_text().splitlines()[-1].startswith("line 0399 ")
    assert all(p.stat().st_size <= 2048 for p in tmp_path.glob("atom.log*"))


def test_a_record_longer_than_the_limit_is_cut(tmp_path: Path) -> None:
    """A single huge record cannot grow a file past max_bytes."""
    handler = SharedRotatingFileHandler(tmp_path / "atom.log", 1024, backup_count=2)
    handler.setFormatter(logging.Formatter("%(message)s"))
    handler.emit(logging.makeLogRecord({"msg": "z" * 5000}))
    content = (tmp_path / "atom.log").read_bytes()
    assert len(content) <= 1024
    assert content.endswith(b"...(cut)\n")


def test_line_is_formatted_once_per_record_and_dated_per_second() -> None:
    """Console and file share one formatted line; the date text follows the record's second."""
    formatter = make_formatter()
    fields = {
        "msg": "hello %s",
        "args": ("x",),
        "name": "atom",
        "levelname": "INFO",
        "request_id": "r1",
        "trace_id": "-",
    }
    record = logging.makeLogRecord({**fields, "created": 1_800_000_000.25, "msecs": 250})
    first = formatter.format(record)
    record.msg = "changed after formatting"
    assert formatter.format(record) == first
    assert " INFO " in first
    assert first.endswith("[r1] atom: hello x")
    later = logging.makeLogRecord({**fields, "created": 1_800_000_001.5, "msecs": 500})
    expected = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(1_800_000_001))
    assert formatter.format(later).startswith(f"{expected}.500 ")
