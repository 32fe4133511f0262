"""The invocation's deadline: the deployed function timeout (ODDSBATCH_TIMEOUT_SECONDS).

Cloud Run functions stop an invocation at its timeout (540 s as deployed), and Eventarc then
retries the event. Work that would still run then is lost work that the retry repeats, so
the holder bounds every BigQuery wait by the time left and starts no round it cannot finish.
A reserve is kept at the end for releasing the lock and answering.
"""

from __future__ import annotations

import math
import time
from typing import Callable

# Kept at the end of an invocation for releasing the lock and answering: at most 10 s, at
# most a tenth of a short timeout.
RESERVE_SECONDS = 10.0


class Deadline:
    """Seconds left before `seconds` (minus the reserve) have passed since `started`."""

    def __init__(self, seconds: float | None, clock: Callable[[], float] = time.monotonic,
                 started: float | None = None):
        self.clock = clock
        self.seconds = seconds
        self.started = clock() if started is None else started
        self.reserve = 0.0 if seconds is None else min(RESERVE_SECONDS, seconds / 10)

    @classmethod
    def unbounded(cls) -> "Deadline":
        return cls(None)

    def remaining(self) -> float:
        if self.seconds is None:
            return math.inf
        return max(0.0, self.started + self.seconds - self.reserve - self.clock())

    def allows(self, seconds: float) -> bool:
        """True when `seconds` of work fit before the deadline."""
        return self.remaining() >= seconds

    def __repr__(self) -> str:
        return f"Deadline(seconds={self.seconds}, remaining={self.remaining():.1f})"
