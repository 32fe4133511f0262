"""The instance's memory budget: bytes the files being downloaded and transformed may take at once.

One function instance serves up to THREADS requests in one process, and each holder reads
ODDSBATCH_DOWNLOAD_WORKERS files at once: without a shared bound, eight holders of large dates
reach the instance's memory limit together, and Cloud Run stops the instance with every
request on it ("Instances that exceed their allowed memory limit are terminated",
https://cloud.google.com/run/docs/configuring/memory-limits). Here every file is admitted at
its estimated cost (reading.py: its size times a measured expansion factor) into one budget per
process, waiting while the files in flight leave no room; a file whose cost exceeds the whole
budget can never be admitted, and is quarantined instead (never retried into an OOM loop).
"""

from __future__ import annotations

import threading
from contextlib import contextmanager
from typing import Iterator


class OverBudget(Exception):
    """A cost larger than the whole budget: it would wait forever."""


class MemoryBudget:
    """A counting semaphore over bytes: `hold(cost)` waits until `cost` fits beside the bytes
    already held, holds them for the `with` block, then gives them back."""

    def __init__(self, limit: int):
        self.limit = int(limit)
        self.held = 0
        self.peak = 0  # the most bytes ever held at once (tests, bench)
        self._changed = threading.Condition()

    @contextmanager
    def hold(self, cost: int) -> Iterator[None]:
        cost = max(0, int(cost))
        if cost > self.limit:
            raise OverBudget(f"needs ~{cost} bytes, more than the whole budget of {self.limit}")
        with self._changed:
            while self.held + cost > self.limit:
                self._changed.wait()
            self.held += cost
            self.peak = max(self.peak, self.held)
        try:
            yield
        finally:
            with self._changed:
                self.held -= cost
                self._changed.notify_all()


_budgets: dict[int, MemoryBudget] = {}
_budgets_lock = threading.Lock()


def budget_of(limit: int) -> MemoryBudget:
    """The process-wide budget of that size: every holder of this instance shares it."""
    with _budgets_lock:
        budget = _budgets.get(limit)
        if budget is None:
            budget = _budgets[limit] = MemoryBudget(limit)
        return budget
