"""The log handlers: a file shared by several processes (no lost or mixed lines, sizes
kept) and batched writing (order kept, WARNING at once, nothing lost at exit or fork)."""

import io
import logging
import multiprocessing
import os
import re
import threading
import time
from pathlib import Path
from unittest import mock

from {{ cookiecutter.package_name }}.control import log_handlers as log_module
from {{ cookiecutter.package_name }}.control.log_handlers import (
    ConsoleHandler,
    SharedRotatingFileHandler,
    register_fork_hooks,
)
from {{ cookiecutter.package_name }}.control.logs import (
    configure_logging,
    log_line,
    make_formatter,
    request_id_ctx,
)

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
    handler.emit(logging.makeLogRecord({"msg": "proc=9 seq=0 xx end"}))
    handler.flush()  # opened before the fork
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
    handler.flush()
    names = sorted(p.name for p in tmp_path.glob("atom.log*") if not p.name.endswith(".lock"))
    assert names == ["atom.log", "atom.log.1", "atom.log.2", "atom.log.3"]
    assert (tmp_path / "atom.log").read_text().splitlines()[-1].startswith("line 0399 ")
    assert all(p.stat().st_size <= 2048 for p in tmp_path.glob("atom.log*"))


def test_a_record_longer_than_the_limit_is_cut(tmp_path: Path) -> None:
    """A single huge record cannot grow a file past max_bytes."""
    handler = SharedRotatingFileHandler(tmp_path / "atom.log", 1024, backup_count=2)
    handler.setFormatter(logging.Formatter("%(message)s"))
    handler.emit(logging.makeLogRecord({"msg": "z" * 5000}))
    handler.flush()
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


def record(level: int, message: str) -> logging.LogRecord:
    """A record as a logger makes it."""
    return logging.makeLogRecord({"msg": message, "levelno": level, "levelname": "X"})


def wait_for_lines(path: Path, count: int, timeout: float = 5) -> list[str]:
    """The file's lines once there are ``count`` of them (or the timeout)."""
    deadline = time.monotonic() + timeout
    lines: list[str] = []
    while time.monotonic() < deadline:
        lines = path.read_text().splitlines() if path.exists() else []
        if len(lines) >= count:
            break
        time.sleep(0.01)
    return lines


def test_info_lines_are_written_by_the_background_flush(tmp_path: Path) -> None:
    """Lines below WARNING reach the file without any further call, in order."""
    handler = SharedRotatingFileHandler(tmp_path / "atom.log", MAX_BYTES, backup_count=1)
    handler.setFormatter(logging.Formatter("%(message)s"))
    for seq in range(5):
        handler.handle(record(logging.INFO, f"info {seq}"))
    assert wait_for_lines(tmp_path / "atom.log", 5) == [f"info {seq}" for seq in range(5)]
    handler.close()


def test_a_warning_is_written_at_once_after_the_lines_before_it() -> None:
    """A WARNING flushes synchronously: it and the pending INFO lines are there, in order."""
    stream = io.StringIO()
    handler = ConsoleHandler(stream)
    handler.setFormatter(logging.Formatter("%(message)s"))
    with mock.patch.object(log_module, "FLUSH_INTERVAL", 60):  # the thread would not be in time
        handler.handle(record(logging.INFO, "first"))
        handler.handle(record(logging.DEBUG, "second"))
        handler.handle(record(logging.WARNING, "third"))
        assert stream.getvalue() == "first\nsecond\nthird\n"
    handler.close()


class SlowOutput(log_module.BatchedHandler):
    """A handler whose first write takes 0.5 s (a slow disk or a console pipe nobody reads)."""

    def __init__(self) -> None:
        super().__init__()
        self.written: list[str] = []
        self.writing = threading.Event()

    def write_lines(self, lines: list[str]) -> None:
        if not self.written:
            self.writing.set()
            time.sleep(0.5)
        self.written.extend(lines)


def test_a_slow_write_never_holds_up_the_next_line() -> None:
    """While a batch is being written, queuing a line takes no time; a WARNING waits for
    the batch before it and comes out after it, in order."""
    handler = SlowOutput()
    with mock.patch.object(log_module, "FLUSH_INTERVAL", 60):
        handler.queue_line("first", logging.INFO)
        writer = threading.Thread(target=handler.flush)
        writer.start()
        assert handler.writing.wait(5)
        started = time.perf_counter()
        handler.queue_line("second", logging.INFO)
        queued_in = time.perf_counter() - started
        handler.queue_line("third", logging.WARNING)  # flushes: waits for "first"
        waited = time.perf_counter() - started
        writer.join(5)
    assert queued_in < 0.1, f"queuing a line waited {queued_in:.3f} s for a write"
    assert waited > 0.2  # the WARNING was written after the slow batch, not before
    assert handler.written == ["first", "second", "third"]


def test_close_writes_what_is_pending(tmp_path: Path) -> None:
    """close() (and so logging.shutdown at exit) writes the pending lines."""
    handler = SharedRotatingFileHandler(tmp_path / "atom.log", MAX_BYTES, backup_count=1)
    handler.setFormatter(logging.Formatter("%(message)s"))
    with mock.patch.object(log_module, "FLUSH_INTERVAL", 60):
        handler.handle(record(logging.INFO, "last words"))
        handler.close()
        assert (tmp_path / "atom.log").read_text() == "last words\n"


def test_a_forked_child_does_not_repeat_the_parents_lines(tmp_path: Path) -> None:
    """Lines pending at a fork are written once, by the parent, before the fork."""
    register_fork_hooks()  # logging set-up does it; importing the handlers does not
    handler = SharedRotatingFileHandler(tmp_path / "atom.log", MAX_BYTES, backup_count=1)
    handler.setFormatter(logging.Formatter("%(message)s"))
    with mock.patch.object(log_module, "FLUSH_INTERVAL", 60):
        handler.handle(record(logging.INFO, "parent"))
        pid = os.fork()
        if pid == 0:  # the child: log one line, exit without atexit
            handler.handle(record(logging.WARNING, "child"))
            os._exit(0)
        os.waitpid(pid, 0)
        handler.close()
    assert sorted((tmp_path / "atom.log").read_text().splitlines()) == ["child", "parent"]


def test_batches_still_rotate_before_the_limit(tmp_path: Path) -> None:
    """One flush of many lines rotates as often as the size limit needs."""
    handler = SharedRotatingFileHandler(tmp_path / "atom.log", 1024, backup_count=50)
    handler.setFormatter(logging.Formatter("%(message)s"))
    with mock.patch.object(log_module, "FLUSH_INTERVAL", 60):
        for seq in range(100):
            handler.handle(record(logging.INFO, f"line {seq:03d} " + "w" * 50))
        handler.flush()
    files = [p for p in tmp_path.glob("atom.log*") if not p.name.endswith(".lock")]
    assert len(files) >= 6  # 100 lines of 60 bytes in files of at most 1024
    assert max(p.stat().st_size for p in files) <= 1024
    assert sorted(all_lines(tmp_path)) == [f"line {seq:03d} " + "w" * 50 for seq in range(100)]
    handler.close()


def test_call_lines_skip_the_record_and_read_the_same(tmp_path: Path) -> None:
    """A call line queued directly reads as the same message logged through a LogRecord."""
    configure_logging(level=logging.INFO, file=tmp_path / "atom.log")
    logger = logging.getLogger("tests.call_lines")
    made = []
    factory = logging.getLogRecordFactory()

    def counting(*args: object, **kwargs: object) -> logging.LogRecord:
        made.append(args)
        return factory(*args, **kwargs)

    logging.setLogRecordFactory(counting)
    token = request_id_ctx.set("rid-7")
    root = logging.getLogger()
    others = [h for h in root.handlers if not getattr(h, "_atom_handler", False)]
    for handler in others:  # pytest's capture: it would listen too
        root.removeHandler(handler)
    try:
        log_line(logger, logging.INFO, "GET /x -> 200 in 1.00 ms")
        assert made == []  # queued as text: no record was made
        logger.addFilter(lambda record: True)  # something else listens: the usual way
        log_line(logger, logging.INFO, "GET /x -> 200 in 1.00 ms")
        assert len(made) == 1
    finally:
        request_id_ctx.reset(token)
        logging.setLogRecordFactory(factory)
        logger.filters.clear()
        configure_logging(level=logging.INFO)
        for handler in others:
            root.addHandler(handler)
    direct, usual = (tmp_path / "atom.log").read_text().splitlines()
    stamp = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} "
    assert re.match(stamp, direct) and re.match(stamp, usual)
    expected = f"INFO {os.getpid()} [rid-7] tests.call_lines: GET /x -> 200 in 1.00 ms"
    assert direct[24:] == usual[24:] == expected
