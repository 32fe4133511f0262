"""In-memory Firestore, BigQuery and Cloud Storage with the real services' semantics, whose
every call is a switch point of the scheduler.

Firestore: tests/unit/firestore_fake.py (exclusive create(), `last_update_time` and `exists`
preconditions, strictly increasing update times, atomic batch commits) on the virtual clock.

BigQuery, what the holder uses (warehouse.py): create_table, a load job (WRITE_TRUNCATE of
the staged NDJSON), a MERGE query job, jobs.get, delete_table. Jobs run server-side: the
scheduler decides when each finishes, and it finishes even if its invocation crashed. A
MERGE reads a snapshot of its target partition when it starts and commits when it
finishes; if another DML statement committed to the partition since the snapshot, the one
with changes to make fails with "Could not serialize access to table ... due to concurrent
update" (BigQuery runs DML under snapshot isolation, snapshot taken when the job starts:
https://cloud.google.com/blog/products/data-analytics/dml-without-limits-now-in-bigquery;
concurrent mutating DML on one partition conflicts and fails:
https://cloud.google.com/bigquery/docs/data-manipulation-language). The MERGE's effect is
oddsbatch.sql.merge_sql's rules in Python, keyed by the table's natural key: the staged
rows of @game_date, deduplicated to the newest (generation, object) per key; a new key is
inserted; a matched key is updated only when the source wins the (generation, object) order
and a data value differs. The fake refuses any statement that is not exactly merge_sql's,
so the rules cannot drift from the SQL the code sends.

Cloud Storage: tests/unit/storage_fake.py. Objects are read only, never written, in the
scenarios, so a read commutes with every other step and is not a switch point.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from types import SimpleNamespace

from google.api_core.exceptions import BadRequest, Conflict, NotFound

from oddsbatch import sql, staging
from oddsbatch.tables import PROVENANCE_COLUMNS, TableSpec

from tests.unit.firestore_fake import FakeFirestore

from .scheduler import Job, Scheduler

EPOCH = datetime(2025, 1, 21, 18, 0, tzinfo=timezone.utc)


def virtual_utc(sched: Scheduler) -> datetime:
    return EPOCH + timedelta(seconds=sched.now)


def _short(path: str) -> str:
    collection, _, doc = path.partition("/")
    collection = collection.replace("oddsbatch_", "")
    if "~" in doc:  # a marker or ledger id: key~digest
        doc = doc.split("~", 1)[1][:6]
    elif len(doc) > 24:
        doc = doc[:8]
    return f"{collection}/{doc}" if doc else collection


# What other invocations read: the lock, the pending markers and the MERGE fence. Runs records and the ledger are
# written for `oddsbatch status` and reconcile, never read by the protocol; `count` of the queue
# is read only for the ingest log's `pending_after` (and the settle, which is 0 here).
SHARED_COLLECTIONS = ("oddsbatch_locks", "oddsbatch_pending", "oddsbatch_fences")


def _shared(op: str, path: str) -> bool:
    return op != "count" and path.startswith(SHARED_COLLECTIONS)


class ExploredFirestore(FakeFirestore):
    def __init__(self, sched: Scheduler):
        super().__init__()
        self.sched = sched
        self.on_call = self._on_call

    def _on_call(self, op: str, path: str) -> None:
        shared = _shared(op, path)
        self.sched.point("firestore", f"{op} {_short(path)}", shared=shared)
        if shared:  # what this call reads: its answer is a function of it (see Scheduler.note)
            self.sched.note((op, path, self._read(path)))

    def _read(self, path: str) -> tuple:
        if path in self.docs or "/" in path.rstrip("/"):
            return (repr(self.docs.get(path)), self.update_time(path), self._last_stamp.get(path))
        return tuple((p, repr(d)) for p, d in sorted(self.docs.items()) if p.startswith(path))

    def shared_state(self) -> tuple:
        return tuple((p, repr(d), self.update_time(p)) for p, d in sorted(self.docs.items())
                     if p.startswith(SHARED_COLLECTIONS)) + tuple(
            sorted((p, t) for p, t in self._last_stamp.items() if p.startswith(SHARED_COLLECTIONS)))

    def now(self) -> datetime:  # the store's clock is the scheduler's
        return virtual_utc(self.sched)


class FakeJob:
    def __init__(self, bq: "FakeBigQuery", job_id: str, kind: str, query: str | None = None):
        self.bq, self.job_id, self.kind, self.query = bq, job_id, kind, query
        self.state = "RUNNING"
        self.error: Exception | None = None
        self.dml_stats = None
        self.num_dml_affected_rows = None
        self.server: Job | None = None

    def result(self, timeout=None):
        if self.server is None:  # a job that finished when inserted (the fence's placeholder)
            return self
        honoured = self.bq.timeouts and timeout is not None
        self.bq.sched.wait_job(self.server, timeout if honoured else None)
        if not self.server.done:  # the wait's timeout came first: what job.result(timeout) raises
            from concurrent.futures import TimeoutError as FutureTimeout

            raise FutureTimeout(f"job {self.job_id} still running after {timeout}s")
        self.bq.sched.note(("job", self.server.name, self.error is None, repr(self.dml_stats)))
        if self.error is not None:
            raise self.error
        return self

    def reload(self):
        self.bq.sched.point("bigquery", f"jobs.get {self.kind}")


class FakeBigQuery:
    def __init__(self, sched: Scheduler, spec: TableSpec, target: str, first_committer_wins: bool = True,
                 timeouts: bool = False):
        self.sched, self.spec = sched, spec
        self.timeouts = timeouts  # job.result(timeout) returns at the timeout (the deadline scenarios)
        self.target = target  # project.dataset.table, unquoted
        self.first_committer_wins = first_committer_wins
        self.tables: dict[str, list[dict]] = {}  # staging tables: flat staged rows
        self.partitions: dict[str, dict[tuple, dict]] = {}  # game_date -> natural key -> row
        self.versions: dict[str, int] = {}  # game_date -> commits so far
        self.writes: dict[tuple, int] = {}  # natural key -> rows inserted or updated for it
        self.jobs: dict[str, FakeJob] = {}
        self.merges: list[dict] = []  # every MERGE job: owner, start, end, ok
        self.streamed: dict[str, dict] = {}  # insertId -> row of the ingest log
        self.overlaps: list[str] = []  # why a MERGE started while another one of the key was in flight
        self.problems: list[str] = []  # found online (a schedule cut short by pruning still reports them)
        self._digest = 0  # of the partitions, the versions and the write counts: updated at each commit
        self._count = 0

    def _point(self, label: str, shared: bool = False) -> None:
        self.sched.point("bigquery", label, shared=shared)

    def _new_job(self, job_id: str, kind: str, finish) -> FakeJob:
        if job_id in self.jobs:
            raise Conflict(f"Already Exists: Job {job_id}")
        job = FakeJob(self, job_id, kind)
        self.jobs[job_id] = job
        self._count += 1
        owner = self.sched.me().name
        job.server = Job(f"{kind}{self._count}({owner})", finish, kind, owner)
        self.sched.jobs.append(job.server)
        return job

    # -- tables ---------------------------------------------------------------------------------

    def create_table(self, table, exists_ok=False):
        self._point("create staging table")
        table_id = f"{table.project}.{table.dataset_id}.{table.table_id}"
        if table_id in self.tables and not exists_ok:
            raise Conflict(f"Already Exists: Table {table_id}")
        self.tables.setdefault(table_id, [])
        return table

    def delete_table(self, table_id, not_found_ok=False):
        self._point("delete staging table")
        if self.tables.pop(str(table_id), None) is None and not not_found_ok:
            raise NotFound(f"Not found: Table {table_id}")

    def get_job(self, job_id, location=None):
        """jobs.get: NotFound for an id never inserted, else the job as it is now (RUNNING until the
        scheduler completes it). Its answer depends on other invocations' jobs: a switch point."""
        self._point("jobs.get", shared=True)
        job = self.jobs.get(job_id)
        self.sched.note(("jobs.get", job_id, job.state if job else None))
        if job is None:
            raise NotFound(f"Not found: Job p:{job_id}")
        return job

    def cancel_job(self, job_id, location=None):
        self._point("jobs.cancel")
        return self.jobs[job_id]

    def insert_rows_json(self, table, rows, row_ids=None, timeout=None):
        """The streamed ingest log (ingest_log.py): appends, deduplicated by insertId."""
        self._point("insertAll ingest log")
        for row_id, row in zip(row_ids or [None] * len(rows), rows):
            self.streamed.setdefault(row_id or f"row{len(self.streamed)}", row)
        return []

    # -- load -----------------------------------------------------------------------------------

    def load_table_from_file(self, source, destination, job_id=None, job_config=None, rewind=False):
        self._point("load job insert")
        if rewind:
            source.seek(0)
        payload = source.read()
        destination = str(destination)
        if job_config.write_disposition != "WRITE_TRUNCATE":
            raise AssertionError(f"the explorer models WRITE_TRUNCATE loads only, got {job_config.write_disposition}")

        def finish():
            self.tables[destination] = self._flatten(payload)  # WRITE_TRUNCATE: replaces the staged rows
            job.state = "DONE"

        job = self._new_job(job_id, "load", finish)
        return job

    def _flatten(self, payload: bytes) -> list[dict]:
        """The staged rows as the MERGE un-nests them: head columns repeated on each market row."""
        spec = self.spec
        return [{c: (r.get(c) if c in spec.line_columns else head.get(c)) for c in spec.staged_columns}
                for head, rows in staging.decode(payload) for r in rows]

    # -- MERGE ----------------------------------------------------------------------------------

    def query(self, statement, job_config=None, job_id=None, job_retry=None, location=None):
        from oddsbatch.fence import PLACEHOLDER_SQL

        if statement == PLACEHOLDER_SQL:  # the fence burns a recorded id: a SELECT that reads no table
            self._point("placeholder job insert", shared=True)
            if job_id in self.jobs:
                raise Conflict(f"Already Exists: Job p:{job_id}")
            job = self.jobs[job_id] = FakeJob(self, job_id, "placeholder", query=statement)
            job.state = "DONE"
            return job
        self._point("MERGE job insert", shared=True)  # reads the target partition's snapshot
        if job_id in self.jobs:  # jobs.insert of an id that exists: 409, nothing runs
            raise Conflict(f"Already Exists: Job p:{job_id}")
        found = re.search(r"\bFROM (`(?:[^`\\]|\\.)+`) AS M,", statement)
        if not found:
            raise AssertionError(f"the explorer models the holder's MERGE only, got: {statement[:200]}")
        staging_quoted = found.group(1)
        staging_id = staging_quoted[1:-1]
        expected = sql.merge_sql(self.spec, sql.quote(self.target), staging_quoted)
        if statement != expected:
            raise AssertionError("a MERGE other than oddsbatch.sql.merge_sql's: the fake's rules would not match it")
        (param,) = job_config.query_parameters
        game_date = str(param.value)
        if staging_id not in self.tables:
            raise NotFound(f"Not found: Table {staging_id}")
        # The snapshot: the job reads its source and target as they are when it starts.
        source = list(self.tables[staging_id])
        snapshot = dict(self.partitions.get(game_date, {}))
        version = self.versions.get(game_date, 0)
        record = {"owner": self.sched.me().name, "start": self.sched.step, "end": None, "ok": None}
        self.sched.note(("merge snapshot", self._digest))
        others = [m["owner"] for m in self.merges if m["end"] is None and m["owner"] != record["owner"]]
        if others:  # two MERGEs of the key in flight: only a lease passing or a holder dying explains it
            if self.sched.lease_in_merge:
                self.overlaps.append("lease_passed_during_merge")
            elif self.sched.crash_in_merge:
                self.overlaps.append("holder_died_during_merge")
            else:
                self.overlaps.append("unexplained")
                self.problems.append(f"two MERGEs in flight at once ({others[0]} and {record['owner']}) without a "
                                     "lease passing or a holder dying during a MERGE")
        self.merges.append(record)

        def finish():
            record["end"] = self.sched.step
            inserts, updates = self._effects(source, snapshot, game_date)
            if (inserts or updates) and self.first_committer_wins and self.versions.get(game_date, 0) != version:
                job.error = BadRequest(f"Could not serialize access to table {self.target} due to concurrent update",
                                       errors=[{"reason": "invalidQuery"}])
                job.state, record["ok"] = "DONE", False
                return
            rows = self.partitions.setdefault(game_date, {})
            now = (datetime(2025, 1, 21, tzinfo=timezone.utc) + timedelta(seconds=self.sched.now)).isoformat()
            for key, row in inserts:
                if key in rows and not self.first_committer_wins:  # what a lost update would do: a second row
                    key = key + (f"duplicate@{self.sched.step}",)
                rows[key] = {**row, "ingested_at": now}
                self.writes[key[:len(self.spec.natural_key)]] = self.writes.get(key[:len(self.spec.natural_key)], 0) + 1
            for key, row in updates:
                rows[key] = {**rows[key], **{c: row[c] for c in self.spec.value_columns}}
                self.writes[key] = self.writes.get(key, 0) + 1
            if inserts or updates:
                self.versions[game_date] = self.versions.get(game_date, 0) + 1
                self._digest = hash((tuple(sorted((k, repr(sorted(r.items()))) for k, r in rows.items())),
                                     tuple(sorted(self.versions.items())), tuple(sorted(self.writes.items()))))
                twice = [k for k, n in self.writes.items() if n > 1]
                if twice:
                    self.problems.append(f"{len(twice)} rows written twice (e.g. {twice[0][-1]}), by {record['owner']}")
            job.dml_stats = SimpleNamespace(inserted_row_count=len(inserts), updated_row_count=len(updates))
            job.num_dml_affected_rows = len(inserts) + len(updates)
            job.state, record["ok"] = "DONE", True

        job = self._new_job(job_id, "merge", finish)
        job.query = statement
        return job

    def shared_state(self) -> tuple:
        return (self._digest, tuple((m["owner"], m["end"] is None, m["ok"]) for m in self.merges))

    def key(self, row: dict) -> tuple:
        return tuple(row[c] for c in self.spec.natural_key)

    def _effects(self, source: list[dict], snapshot: dict, game_date: str):
        """merge_sql's rules on the snapshot: (inserts, updates) as lists of (key, source row)."""
        spec = self.spec
        best: dict[tuple, dict] = {}
        for row in source:  # USING: this date's staged rows, one per key (QUALIFY ROW_NUMBER() = 1)
            if str(row[spec.partition_field]) != game_date:
                continue
            key = self.key(row)
            kept = best.get(key)
            if kept is None or _order(row) > _order(kept):
                best[key] = row
        inserts, updates = [], []
        data = [c for c in spec.value_columns if c not in PROVENANCE_COLUMNS]
        for key, row in best.items():
            target = snapshot.get(key)
            if target is None:
                inserts.append((key, row))  # WHEN NOT MATCHED THEN INSERT
            elif _order(row) > _order(target) and any(row[c] != target[c] for c in data):
                updates.append((key, row))  # WHEN MATCHED AND source wins AND a value differs
        return inserts, updates


def _order(row: dict) -> tuple:
    """(generation, object): the order of the source dedup and of the MATCHED condition."""
    return (row["source_generation"], row["source_object"])
