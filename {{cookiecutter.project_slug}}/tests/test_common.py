"""Helpers: log-safe values (control/log_safety.py), daemon threads (control/daemon.py),
and linker_atom's LRU cache (lib/common.py)."""

import asyncio
import contextvars
import threading

import numpy as np
import pytest

from {{ cookiecutter.package_name }}.control.daemon import run_in_daemon_thread
from {{ cookiecutter.package_name }}.control.log_safety import format_long, summarize
from {{ cookiecutter.package_name }}.lib.common import LRUCache


def test_summarize() -> None:
    """Long strings cut, bytes and arrays summarised, secrets redacted, containers trimmed."""
    value = {
        "text": "a" * 300,
        "raw": b"\x00" * 10,
        "image": np.zeros((4, 5, 3), np.uint8),
        "api_key": "k-123",
        "nested": {"password": "p", "list": list(range(30))},
        "error": ValueError("bad"),
    }
    assert summarize(value) == {
        "text": "a" * 200 + "...(300 chars)",
        "raw": "<10 bytes>",
        "image": "<array shape=(4, 5, 3) dtype=uint8>",
        "api_key": "***",
        "nested": {"password": "***", "list": [*range(20), "...(30 items)"]},
        "error": "bad",
    }


def test_format_long_is_one_json_line() -> None:
    """format_long renders the summary as compact JSON."""
    assert format_long({"a": "b" * 5}, max_chars=3) == '{"a":"bbb...(5 chars)"}'


def test_lru_evicts_least_recently_used() -> None:
    """Past capacity, the least recently used key goes first."""
    cache = LRUCache(capacity=2)
    cache.put("a", 1)
    cache.put("b", 2)
    assert cache.get("a") == 1  # "b" is now the oldest
    cache.put("c", 3)
    assert "b" not in cache
    assert (cache.get("a"), cache.get("c"), len(cache)) == (1, 3, 2)


def test_lru_is_bounded_by_bytes() -> None:
    """Past max_bytes, old values go; a value above the bound alone is not stored."""
    cache = LRUCache(capacity=100, max_bytes=1000)
    for key in range(5):
        cache.put(key, np.zeros(300, np.uint8))
    assert list(range(5))[-3:] == [k for k in range(5) if k in cache]
    assert cache.nbytes == 900
    assert cache.put("huge", b"x" * 1001) is False
    assert "huge" not in cache
    assert cache.nbytes == 900


def test_lru_is_thread_safe() -> None:
    """Eight threads hammering the cache leave its bounds and byte count exact."""
    cache = LRUCache(capacity=50, max_bytes=40_000)

    def hammer(seed: int) -> None:
        for i in range(3000):
            key = (seed * 7 + i) % 120
            if i % 3:
                cache.put(key, b"x" * (100 + key * 3))
            else:
                cache.get(key)
            if i % 17 == 0:
                cache.pop((key + 1) % 120)

    threads = [threading.Thread(target=hammer, args=(seed,)) for seed in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(cache) <= 50
    held = sum(100 + key * 3 for key in range(120) if key in cache)
    assert cache.nbytes == held <= 40_000


def test_run_in_daemon_thread() -> None:
    """The result, an exception and the context come back from the thread."""
    var: contextvars.ContextVar[str] = contextvars.ContextVar("var", default="unset")

    def work() -> tuple[str, bool]:
        return var.get(), threading.current_thread().daemon

    def explode() -> None:
        raise OSError("no")

    async def main() -> tuple[str, bool]:
        var.set("from the caller")
        with pytest.raises(OSError, match="no"):
            await run_in_daemon_thread(explode)
        return await run_in_daemon_thread(work)

    assert asyncio.run(main()) == ("from the caller", True)
