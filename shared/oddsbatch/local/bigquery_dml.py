"""BigQuery's queue of mutating DML statements per table, as the emulator launcher models it.

Pure Python (no local-bigquery import), so it is unit-testable and loaded by the launcher
under the emulator's own Python. BigQuery runs up to 2 mutating DML statements (UPDATE,
DELETE, MERGE) per table at once and queues up to 20 more as PENDING; a statement past the
queue fails with reason resourcesExceeded:
https://cloud.google.com/bigquery/docs/data-manipulation-language ("UPDATE, DELETE, MERGE DML
concurrency"), https://cloud.google.com/bigquery/quotas (data manipulation language statements).
local-bigquery runs writes to one table one at a time anyway, so the model counts the
statements outstanding per table (submitted, not finished) and refuses the one past
running + queued.
"""

from __future__ import annotations

import threading

RUNNING, QUEUED = 2, 20  # BigQuery's numbers
REASON = "resourcesExceeded"


def message(table: str, queued: int) -> str:
    return (f"Resources exceeded during query execution: Too many DML statements outstanding against table "
            f"{table}, limit is {queued}")


class DmlQueueLimit:
    """Outstanding mutating DML statements per table: admit() or refuse, finish() when done."""

    def __init__(self, running: int = RUNNING, queued: int = QUEUED):
        if running < 1 or queued < 0:
            raise ValueError(f"running must be >= 1 and queued >= 0, got {running} and {queued}")
        self.running, self.queued = running, queued
        self._lock = threading.Lock()
        self._outstanding: dict[str, set] = {}  # table -> job keys
        self.rejected = 0
        self.peak: dict[str, int] = {}

    @property
    def limit(self) -> int:
        return self.running + self.queued

    def admit(self, table: str, job) -> str | None:
        """Count `job` as outstanding against `table`; returns BigQuery's error message instead
        when the table already has running + queued statements outstanding."""
        with self._lock:
            jobs = self._outstanding.setdefault(table, set())
            if len(jobs) >= self.limit:
                self.rejected += 1
                return message(table, self.queued)
            jobs.add(job)
            self.peak[table] = max(self.peak.get(table, 0), len(jobs))
            return None

    def finish(self, job) -> None:
        with self._lock:
            for jobs in self._outstanding.values():
                jobs.discard(job)

    def outstanding(self, table: str) -> int:
        with self._lock:
            return len(self._outstanding.get(table, ()))
