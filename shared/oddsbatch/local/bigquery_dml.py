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


# -- snapshot isolation of mutating DML per (table, partition) -----------------------------------
# https://cloud.google.com/bigquery/docs/data-manipulation-language ("UPDATE, DELETE, MERGE DML
# concurrency"; "DML statement conflicts"): BigQuery runs each mutating statement on the snapshot
# of the table taken when it starts, and concurrently running mutating statements conflict when
# they mutate the same partition; statements on different partitions both succeed. The loser fails
# with HTTP 400, reason invalidQuery, "Could not serialize access to table PROJECT:DATASET.TABLE due
# to concurrent update" (reasons and statuses: https://cloud.google.com/bigquery/docs/error-messages).
# BigQuery may rerun a conflicting statement itself before it reports the failure; the model does
# not: every conflict reaches the client (the pessimistic case, so the client's retry really runs).
CONFLICT_REASON = "invalidQuery"
WHOLE_TABLE = None  # the partitions of a statement whose partitions are unknown: it conflicts with all


def conflict_message(table: str) -> str:
    return f"Could not serialize access to table {table} due to concurrent update"


class SnapshotIsolation:
    """Commit versions of mutating DML per table, and each outstanding statement's snapshot.

    A statement is admitted (`admit`) with the partitions it touches (a frozenset of partition
    values, or WHOLE_TABLE). It takes its snapshot (the table's commit count) when it starts
    running: at once if fewer than `running` statements of the table are outstanding ahead of it
    (BigQuery's 2), else when one ahead of it ends (it was queued as PENDING), or at the latest
    when it reaches its commit. At commit (`check`, called while the emulator's per-table write lock
    is held, so nothing else commits in between) it fails when another statement committed to an
    overlapping partition after its snapshot; else `commit` records its own commit. `finish` ends it
    either way. The emulator serializes writes, so "started" must not mean "got the lock": two
    statements admitted together both start at admission, exactly as 2 run at once on BigQuery.
    """

    def __init__(self, running: int = RUNNING):
        if running < 1:
            raise ValueError(f"running must be >= 1, got {running}")
        self.running = running
        self._lock = threading.Lock()
        self._started = threading.Condition(self._lock)
        self._version: dict[str, int] = {}  # table -> commits so far
        self._commits: dict[str, list[tuple[int, frozenset | None]]] = {}  # table -> (version, partitions)
        self._jobs: dict[object, list] = {}  # job -> [table, partitions, snapshot or None]
        self._order: dict[str, list] = {}  # table -> outstanding jobs in admission order
        self.conflicts = 0
        self.committed = 0

    def admit(self, table: str, job, partitions: frozenset | None) -> None:
        with self._lock:
            self._jobs[job] = [table, partitions, None]
            self._order.setdefault(table, []).append(job)
            self._start_runnable(table)

    def _start_runnable(self, table: str) -> None:
        for job in self._order.get(table, [])[:self.running]:
            if self._jobs[job][2] is None:
                self._jobs[job][2] = self._version.get(table, 0)
        self._started.notify_all()

    def wait_started(self, job, timeout: float) -> bool:
        """Block a queued statement until it runs (BigQuery's PENDING queue), at most `timeout`
        seconds (the emulator's thread pool may hold the statements ahead of it back: then it
        starts anyway, at its commit). True if it started in time."""
        with self._started:
            return self._started.wait_for(lambda: job not in self._jobs or self._jobs[job][2] is not None, timeout)

    def snapshot(self, job) -> int | None:
        with self._lock:
            entry = self._jobs.get(job)
            return entry[2] if entry else None

    def tracks(self, job, table: str) -> bool:
        with self._lock:
            entry = self._jobs.get(job)
            return entry is not None and entry[0].casefold() == table.casefold()

    def check(self, job) -> str | None:
        """At commit: BigQuery's serialization error if an overlapping commit came after the
        snapshot, else None."""
        with self._lock:
            table, partitions, snapshot = self._jobs[job]
            if snapshot is None:  # it ran ahead of the statements queued before it: starts now
                snapshot = self._jobs[job][2] = self._version.get(table, 0)
            for version, theirs in self._commits.get(table, ()):
                if version > snapshot and _overlap(partitions, theirs):
                    self.conflicts += 1
                    return conflict_message(table)
            return None

    def commit(self, job) -> None:
        with self._lock:
            table, partitions, _ = self._jobs[job]
            version = self._version[table] = self._version.get(table, 0) + 1
            self._commits.setdefault(table, []).append((version, partitions))
            self.committed += 1

    def finish(self, job) -> None:
        with self._lock:
            entry = self._jobs.pop(job, None)
            if entry is None:
                return
            table = entry[0]
            order = self._order.get(table, [])
            if job in order:
                order.remove(job)
            self._start_runnable(table)
            # Commits no outstanding snapshot predates can never conflict again: forget them.
            oldest = min((self._jobs[j][2] for j in order if self._jobs[j][2] is not None),
                         default=self._version.get(table, 0))
            self._commits[table] = [c for c in self._commits.get(table, []) if c[0] > oldest]


def _overlap(mine: frozenset | None, theirs: frozenset | None) -> bool:
    return mine is WHOLE_TABLE or theirs is WHOLE_TABLE or bool(mine & theirs)
