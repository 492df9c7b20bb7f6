"""Retry delays: exponential, capped, with optional jitter (one rule for every retry loop).

Serving calls, outgoing HTTP requests (``lib/requests.py``) and worker restarts
(``deploy/launcher.py``) all wait ``base``, 2x, 4x... up to ``cap`` seconds between
attempts. With jitter, a delay is drawn from the upper half of that ceiling, so that
many processes failing together do not retry in step.
"""

import random


def delay(attempt: int, base: float, cap: float, *, jitter: bool = True) -> float:
    """The wait before retry number ``attempt`` (0 for the first retry)."""
    ceiling = min(cap, base * 2 ** min(attempt, 62))
    if not jitter:
        return ceiling
    return ceiling / 2 + random.uniform(0, ceiling / 2)


class Backoff:
    """Successive delays for one retry loop: ``next()`` grows until ``reset()``."""

    def __init__(self, base: float, cap: float, *, jitter: bool = True) -> None:
        self.base = min(base, cap)
        self.cap = cap
        self.jitter = jitter
        self.failures = 0

    def next(self) -> float:
        """The delay before the next attempt (grows with each call until ``reset``)."""
        wait = delay(self.failures, self.base, self.cap, jitter=self.jitter)
        self.failures += 1
        return wait

    def reset(self) -> None:
        """Back to ``base`` after a success."""
        self.failures = 0
