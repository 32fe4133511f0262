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
# https://cloud.google.com/bigquery/docs/data-manipulation-language, section "DML statement
# conflicts", rule by rule:
#   "Mutating DML statements that run concurrently on a table cause DML statement conflicts when the
#    statements try to mutate the same partition. The statements succeed as long as they don't modify
#    the same partition. BigQuery tries to rerun failed statements up to three times."
#   "An INSERT DML statement that inserts rows to a table doesn't conflict with any other concurrently
#    running DML statement."
#   "A MERGE DML statement does not conflict with other concurrently running DML statements as long as
#    the statement only inserts rows and does not delete or update any existing rows. This can include
#    MERGE statements with UPDATE or DELETE clauses, as long as those clauses aren't invoked when the
#    query runs."
# So a conflict needs two statements that each update or delete existing rows of one partition: a
# statement that only inserts (an INSERT, a MERGE whose UPDATE/DELETE clauses were not invoked) neither
# fails nor makes another fail ("doesn't conflict with any other concurrently running DML statement"),
# so a concurrent INSERT into the partition does NOT count as "another mutation" for an UPDATE.
# The snapshot is taken when the statement starts running ("When a job starts, BigQuery determines the
# snapshot timestamp to use to read the tables used in the query":
# https://cloud.google.com/blog/products/data-analytics/dml-without-limits-now-in-bigquery), i.e. when
# it leaves the PENDING queue of the 2 running, however long it waited there.
# The error the client sees after the reruns: HTTP 400, reason invalidQuery, "Could not serialize
# access to table PROJECT:DATASET.TABLE due to concurrent update" (public reports of the exact answer:
# confluentinc/kafka-connect-bigquery#279, m-lab/etl-gardener#272).
CONFLICT_REASON = "invalidQuery"
RERUNS = 3  # "BigQuery tries to rerun failed statements up to three times"
WHOLE_TABLE = None  # the partitions of a statement whose partitions are unknown: it overlaps all


def conflict_message(table: str) -> str:
    return f"Could not serialize access to table {table} due to concurrent update"


class SnapshotIsolation:
    """Commit versions of mutating DML per table, and each outstanding statement's snapshot.

    `admit` records a statement with the partitions it touches (a frozenset of partition values, or
    WHOLE_TABLE) in admission order; it runs once it is among the first `running` outstanding
    statements of its table (`wait_started` blocks until then, without limit: BigQuery's PENDING
    queue), and `start` takes its snapshot (the table's commit count) at each run (the first, and each
    rerun). At commit, `conflict(job, mutates)` says whether it must fail: only when it updated or
    deleted existing rows (`mutates`) and another statement that did so committed to an overlapping
    partition after its snapshot. `commit` records its commit (and whether it mutated rows), `finish`
    ends it either way. `write` records a commit of a statement the model does not track (an INSERT
    statement, a load): it never conflicts, and it is a commit all the same.
    """

    def __init__(self, running: int = RUNNING):
        if running < 1:
            raise ValueError(f"running must be >= 1, got {running}")
        self.running = running
        self._lock = threading.Lock()
        self._started = threading.Condition(self._lock)
        self._version: dict[str, int] = {}  # table -> commits so far
        self._commits: dict[str, list[tuple[int, frozenset | None, bool | None]]] = {}  # (version, partitions, mutated)
        self._jobs: dict[object, list] = {}  # job -> [table, partitions, snapshot or None (queued)]
        self._order: dict[str, list] = {}  # table -> outstanding jobs in admission order
        self.conflicts = 0  # every conflict met, reruns included
        self.failed = 0  # conflicts the client saw (after the reruns)
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

    def wait_started(self, job) -> None:
        """Block a queued statement until it runs (it left BigQuery's PENDING queue), however long."""
        with self._started:
            self._started.wait_for(lambda: job not in self._jobs or self._jobs[job][2] is not None)

    def started(self, job) -> bool:
        with self._lock:
            entry = self._jobs.get(job)
            return entry is not None and entry[2] is not None

    def start(self, job) -> int:
        """A run (the first or a rerun) begins: its snapshot is the table as committed now."""
        with self._lock:
            entry = self._jobs[job]
            entry[2] = self._version.get(entry[0], 0)
            return entry[2]

    def snapshot(self, job) -> int | None:
        with self._lock:
            entry = self._jobs.get(job)
            return entry[2] if entry else None

    def table(self, job) -> str | None:
        with self._lock:
            entry = self._jobs.get(job)
            return entry[0] if entry else None

    def tracks(self, job, table: str | None = None) -> bool:
        with self._lock:
            entry = self._jobs.get(job)
            return entry is not None and (table is None or entry[0].casefold() == table.casefold())

    def since_snapshot(self, job) -> list[tuple[int, frozenset | None, bool | None]]:
        """The commits to its table after its snapshot: (version, partitions, mutated or None if unknown)."""
        with self._lock:
            table, _, snapshot = self._jobs[job]
            return [c for c in self._commits.get(table, ()) if c[0] > (snapshot or 0)]

    def conflict(self, job, mutates: bool) -> str | None:
        """At commit: BigQuery's serialization error when this statement updated or deleted rows and
        another one that did too committed to an overlapping partition after its snapshot."""
        with self._lock:
            table, partitions, snapshot = self._jobs[job]
            if not mutates:
                return None
            for version, theirs, mutated in self._commits.get(table, ()):
                if version > snapshot and mutated and _overlap(partitions, theirs):
                    self.conflicts += 1
                    return conflict_message(table)
            return None

    def gave_up(self) -> None:
        with self._lock:
            self.failed += 1

    def commit(self, job, mutated: bool) -> None:
        with self._lock:
            table, partitions, _ = self._jobs[job]
            self._record(table, partitions, mutated)
            self.committed += 1

    def write(self, table: str, mutated: bool | None = None) -> None:
        with self._lock:
            if any(self._jobs[j][2] is not None for j in self._order.get(table, ())):  # only a run it overlaps cares
                self._record(table, WHOLE_TABLE, mutated)

    def _record(self, table: str, partitions, mutated) -> None:
        version = self._version[table] = self._version.get(table, 0) + 1
        self._commits.setdefault(table, []).append((version, partitions, mutated))

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
