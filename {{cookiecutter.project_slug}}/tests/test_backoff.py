"""control.backoff: the one retry rule of Serving calls, HTTP requests and worker restarts."""

import pytest

from {{ cookiecutter.package_name }}.control.backoff import Backoff, delay


def test_delays_double_up_to_the_cap_without_jitter() -> None:
    """0.5, 1, 2, 4... capped at 30, exactly, when jitter is off (worker restarts)."""
    assert [delay(n, 0.5, 30, jitter=False) for n in range(8)] == [
        0.5,
        1.0,
        2.0,
        4.0,
        8.0,
        16.0,
        30.0,
        30.0,
    ]
    assert delay(10_000, 0.5, 30, jitter=False) == 30.0  # no overflow for long outages


@pytest.mark.parametrize("attempt", [0, 1, 3, 9])
def test_jitter_stays_in_the_upper_half(attempt: int) -> None:
    """With jitter a delay is drawn between half the ceiling and the ceiling."""
    ceiling = min(5.0, 0.2 * 2**attempt)
    draws = [delay(attempt, 0.2, 5.0) for _ in range(200)]
    assert all(ceiling / 2 <= d <= ceiling for d in draws)
    assert len(set(draws)) > 1


def test_backoff_grows_and_resets() -> None:
    """next() grows with each failure; reset() starts again from the base."""
    backoff = Backoff(1.0, 8.0, jitter=False)
    assert [backoff.next() for _ in range(5)] == [1.0, 2.0, 4.0, 8.0, 8.0]
    backoff.reset()
    assert backoff.next() == 1.0
    assert Backoff(50.0, 8.0, jitter=False).next() == 8.0  # a base above the cap is the cap
