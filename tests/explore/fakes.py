"""In-memory Firestore, BigQuery and Cloud Storage with the real services' semantics, whose
every call is a switch point of the scheduler.

Firestore: tests/unit/firestore_fake.py (exclusive create(), `last_update_time` and `exists`
preconditions, strictly increasing update times, atomic batch commits) on the virtual clock.

BigQuery, what the holder uses (warehouse.py): create_table, a load job (WRITE_TRUNCATE of
the staged NDJSON), a MERGE query job, jobs.get, delete_table, and a `SELECT 1` query job (a
placeholder that takes a job id). Jobs run server-side: the scheduler decides when each
finishes, and it finishes even if its invocation crashed. Job ids are unique: an insertion
under an id that exists raises Conflict (409 Already Exists), jobs.get of an unknown id
NotFound, as the real client does; jobs.get says PENDING (queued), RUNNING, then DONE.
The MERGE follows the DML page (https://cloud.google.com/bigquery/docs/data-manipulation-language,
"UPDATE, DELETE, MERGE DML concurrency" and "DML statement conflicts"; the rules are quoted in
oddsbatch/local/bigquery_dml.py, which the emulator runs):
- 2 mutating statements of a table run at once, the others wait as PENDING, however long; a
  statement reads its snapshot when it starts running (at insertion, or when it leaves the queue);
- one that only inserts rows (WHEN NOT MATCHED; WHEN MATCHED ... UPDATE not invoked) never
  conflicts: two such MERGEs of one new key both commit, and the key is stored twice;
- one that updates existing rows fails when another statement that updated rows committed to the
  partition after its snapshot; BigQuery reruns it on a fresh snapshot up to three times (each
  rerun is a job step of its own here), then the client gets "Could not serialize access to table
  ... due to concurrent update".
The MERGE's effect is oddsbatch.sql.merge_sql's rules in Python, keyed by the table's natural
key: the staged rows of each of @game_dates (one date, or a group's), deduplicated to the newest (generation, object) per key; a
new key is inserted; a matched key is updated only when the source wins the (generation, object)
order and a data value differs. The fake refuses any statement that is not exactly merge_sql's
(or the placeholder), so the rules cannot drift from the SQL the code sends.

Cloud Storage: tests/unit/storage_fake.py. Source objects are read only, never written, in the
scenarios, so a read commutes with every other step and is not a switch point. The staging
bucket's objects (one per source object and generation) are written by holders with the same
text whatever the holder, and deleted after a MERGE: a load job reads them when it runs (a job
step), and fails with notFound when one is gone by then.
"""

from __future__ import annotations

import re
import threading
from datetime import datetime, timedelta, timezone
from types import SimpleNamespace

from google.api_core.exceptions import BadRequest, Conflict, NotFound

from oddsbatch import sql, staging
from oddsbatch.tables import PROVENANCE_COLUMNS, TableSpec

from tests.unit.firestore_fake import FakeFirestore
from tests.unit.storage_fake import STAGING_BUCKET

from .scheduler import Job, Scheduler

RUNNING = 2  # mutating DML statements of a table running at once; the others wait as PENDING
RERUNS = 3  # "BigQuery tries to rerun failed statements up to three times" (DML page)
PLACEHOLDER = re.compile(r"^\s*SELECT\s+1\s*;?\s*$", re.IGNORECASE)

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


def unavailable(service: str, lost: bool = False):
    from google.api_core.exceptions import ServiceUnavailable

    return ServiceUnavailable(f"{service} unavailable (explored fault{': the call took effect' if lost else ''})")


class _LosingLock:
    """The store's lock: a call applies its effect inside it; when the controller chose to lose
    the call's answer, leaving the outermost block raises the 503 after the effect."""

    def __init__(self, store: "ExploredFirestore"):
        self.store, self.inner, self.depth = store, threading.RLock(), 0

    def __enter__(self):
        self.inner.acquire()
        self.depth += 1
        return self

    def __exit__(self, kind, value, tb):
        self.depth -= 1
        self.inner.release()
        if self.depth == 0 and kind is None and self.store.lose_answer:
            self.store.lose_answer = False
            raise unavailable("firestore", lost=True)
        return False


class ExploredFirestore(FakeFirestore):
    def __init__(self, sched: Scheduler):
        super().__init__()
        self.sched = sched
        self.on_call = self._on_call
        self.lock = _LosingLock(self)
        self.lose_answer = False

    def _on_call(self, op: str, path: str) -> None:
        shared = _shared(op, path)
        self.sched.point("firestore", f"{op} {_short(path)}", shared=shared)
        fault = self.sched.take_fault()
        if fault == "fail":
            raise unavailable("firestore")
        self.lose_answer = fault == "lose"
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
        self.runs = 0  # runs of a MERGE: 1, plus BigQuery's reruns after a conflict

    @property
    def error_result(self) -> dict | None:
        if self.error is None:
            return None
        return {"reason": (getattr(self.error, "errors", None) or [{}])[0].get("reason"), "message": str(self.error)}

    def done(self, retry=None, timeout=None, reload=True) -> bool:
        return self.state == "DONE"

    def result(self, timeout=None):
        honoured = self.bq.timeouts and timeout is not None
        until = self.bq.sched.now + timeout if honoured else None
        while self.state != "DONE":  # a queued statement starts, a rerun replaces its run: wait on the next
            server = self.server
            self.bq.sched.wait_job(server, None if until is None else max(0.0, until - self.bq.sched.now))
            if not server.done:  # the wait's timeout came first: what job.result(timeout) raises
                from concurrent.futures import TimeoutError as FutureTimeout

                raise FutureTimeout(f"job {self.job_id} still running after {timeout}s")
        self.bq.sched.note(("job", self.server.name, self.error is None, repr(self.dml_stats)))
        if self.error is not None:
            raise self.error
        return self

    def reload(self):
        self.bq.sched.point("bigquery", f"jobs.get {self.kind}")


class FakeBigQuery:
    def __init__(self, sched: Scheduler, spec: TableSpec, target: str, running: int = RUNNING,
                 timeouts: bool = False):
        self.sched, self.spec = sched, spec
        self.timeouts = timeouts  # job.result(timeout) returns at the timeout (the deadline scenarios)
        self.target = target  # project.dataset.table, unquoted
        self.running = running  # mutating statements of the table that run at once (BigQuery's 2)
        self.started: list[FakeJob] = []  # MERGE jobs running (snapshot taken, not finished)
        self.queued: list = []  # (job, start): MERGE jobs waiting as PENDING, in insertion order
        self.commits: dict[str, list[tuple[int, bool]]] = {}  # game_date -> (version, it updated rows)
        self.conflicts = 0  # conflicts met, reruns included
        self.tables: dict[str, list[dict]] = {}  # staging tables: flat staged rows
        self.partitions: dict[str, dict[tuple, dict]] = {}  # game_date -> natural key -> row
        self.versions: dict[str, int] = {}  # game_date -> commits so far
        self.writes: dict[tuple, int] = {}  # natural key -> rows inserted or updated for it
        self.jobs: dict[str, FakeJob] = {}
        self.merges: list[dict] = []  # every MERGE job: owner, start, end, ok
        self.streamed: dict[str, dict] = {}  # insertId -> row of the ingest log
        self.overlaps: list[str] = []  # why a MERGE started while another one of the key was in flight
        self.problems: list[str] = []  # found online (a schedule cut short by pruning still reports them)
        self.staging: dict = {}  # the staging bucket's objects (tests/unit/storage_fake.py), set by the world
        self._digest = 0  # of the partitions, the versions and the write counts: updated at each commit
        self._count = 0

    def _point(self, label: str, shared: bool = False) -> None:
        self.sched.point("bigquery", label, shared=shared)

    def _new_job(self, job_id: str, kind: str, finish, queued: bool = False) -> FakeJob:
        if job_id in self.jobs:  # job ids are unique per project: 409 Already Exists
            raise Conflict(f"Already Exists: Job {self.sched_project()}:{job_id}")
        job = FakeJob(self, job_id, kind)
        self.jobs[job_id] = job
        self._count += 1
        job.owner = self.sched.me().name
        if queued:  # PENDING: its run is scheduled when it leaves the queue
            job.state = "PENDING"
            job.server = Job(f"{kind}{self._count}({job.owner}) queued", lambda: None, kind, job.owner)
        else:
            job.server = Job(f"{kind}{self._count}({job.owner})", finish, kind, job.owner)
            self.sched.jobs.append(job.server)
        return job

    def sched_project(self) -> str:
        return self.target.split(".", 1)[0]

    def _run_again(self, job: FakeJob, finish, why: str) -> None:
        """The job's next run (it left the queue, or BigQuery reruns it): a job step of its own. The
        run it replaces is over, so whoever waited on it waits on this one."""
        previous = job.server
        job.server = Job(f"{previous.name.split(' ')[0]} {why}", finish, job.kind, job.owner)
        self.sched.jobs.append(job.server)
        previous.done = True

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

    def get_job(self, job_id, project=None, location=None, retry=None, timeout=None):
        self._point("jobs.get", shared=True)  # a job another invocation may have inserted
        if self.sched.take_fault():
            raise unavailable("bigquery")
        job = self.jobs.get(job_id)
        self.sched.note(("jobs.get", job_id, job.state if job else None))
        if job is None:
            raise NotFound(f"Not found: Job {self.sched_project()}:{job_id}")
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

    def load_table_from_uri(self, source_uris, destination, job_id=None, job_config=None):
        """A load from the staging bucket's objects (staged_objects.py): read when the job runs,
        and an object gone by then fails the job with reason notFound, "Not found: URI gs://...",
        as BigQuery reports it (googleapis/google-cloud-node#1177)."""
        self._point("load job insert")
        destination = str(destination)
        if job_config.write_disposition != "WRITE_TRUNCATE":
            raise AssertionError(f"the explorer models WRITE_TRUNCATE loads only, got {job_config.write_disposition}")
        uris = list(source_uris)

        def finish():
            prefix = f"gs://{STAGING_BUCKET}/"
            missing = [u for u in uris if u[len(prefix):] not in self.staging]
            if missing:
                job.error = NotFound(f"Not found: URI {missing[0]}", errors=[{"reason": "notFound"}])
            else:  # WRITE_TRUNCATE: replaces the staged rows
                self.tables[destination] = self._flatten(b"".join(self.staging[u[len(prefix):]][0] for u in uris))
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

        if statement == PLACEHOLDER_SQL or PLACEHOLDER.match(statement):  # a job that only takes its id
            self._point("placeholder job insert", shared=True)
            fault = self.sched.take_fault()
            if fault == "fail":
                raise unavailable("bigquery")
            job = self._new_job(job_id, "placeholder", lambda: None)
            job.query = statement
            job.state, job.server.done = "DONE", True
            self.sched.jobs.remove(job.server)
            if fault == "lose":
                raise unavailable("bigquery", lost=True)
            return job
        self._point("MERGE job insert", shared=True)  # reads the target partition's snapshot
        fault = self.sched.take_fault()
        if fault == "fail":
            raise unavailable("bigquery")
        if job_id in self.jobs:  # jobs.insert of an id that exists: 409, nothing runs (no record below)
            raise Conflict(f"Already Exists: Job {self.sched_project()}:{job_id}")
        found = re.search(r"\bFROM (`(?:[^`\\]|\\.)+`) AS M,", statement)
        if not found:
            raise AssertionError(f"the explorer models the holder's MERGE only, got: {statement[:200]}")
        staging_quoted = found.group(1)
        staging_id = staging_quoted[1:-1]
        expected = sql.merge_sql(self.spec, sql.quote(self.target), staging_quoted)
        if statement != expected:
            raise AssertionError("a MERGE other than oddsbatch.sql.merge_sql's: the fake's rules would not match it")
        parameters = {p.name: p for p in job_config.query_parameters}
        game_dates = sorted(str(d) for d in parameters[sql.GAME_DATES].values)  # the group's dates (one or more)
        if [str(parameters[sql.FIRST_GAME_DATE].value), str(parameters[sql.LAST_GAME_DATE].value)] != \
                [game_dates[0], game_dates[-1]]:
            raise AssertionError("the MERGE's range parameters are not its dates' least and greatest")
        if staging_id not in self.tables:
            raise NotFound(f"Not found: Table {staging_id}")
        source = list(self.tables[staging_id])  # the staging table is this round's alone
        record = {"owner": self.sched.me().name, "start": self.sched.step, "end": None, "ok": None,
                  "dates": frozenset(game_dates)}
        self.sched.note(("merge snapshot", self._digest))
        others = [m["owner"] for m in self.merges if m["end"] is None and m["owner"] != record["owner"]
                  and m["dates"] & record["dates"]]
        if others:  # two MERGEs of one key in flight: only a lease passing or a holder dying explains it
            if self.sched.lease_in_merge:
                self.overlaps.append("lease_passed_during_merge")
            elif self.sched.crash_in_merge:
                self.overlaps.append("holder_died_during_merge")
            else:
                self.overlaps.append("unexplained")
                self.problems.append(f"two MERGEs in flight at once ({others[0]} and {record['owner']}) without a "
                                     "lease passing or a holder dying during a MERGE")
        self.merges.append(record)
        run = {}

        def start():
            """The run reads its snapshot of the target partitions (BigQuery: when the job starts)."""
            run["snapshot"] = {d: dict(self.partitions.get(d, {})) for d in game_dates}
            run["version"] = {d: self.versions.get(d, 0) for d in game_dates}
            job.runs += 1
            job.state = "RUNNING"

        def finish():
            effects = {d: self._effects(source, run["snapshot"][d], d) for d in game_dates}
            updated_dates = [d for d, (_, updates) in effects.items() if updates]
            if any(v > run["version"][d] and updated for d in updated_dates for v, updated in self.commits.get(d, ())):
                self.conflicts += 1
                if job.runs <= RERUNS:  # BigQuery reruns it on a fresh snapshot
                    start()
                    self._run_again(job, finish, f"rerun{job.runs - 1}")
                    return
                job.error = BadRequest(f"Could not serialize access to table {self.sched_project()}:"
                                       f"{self.target.split('.', 1)[1]} due to concurrent update",
                                       errors=[{"reason": "invalidQuery"}])
                self._end(job, record, ok=False)
                return
            for d, (inserts, updates) in effects.items():
                self._apply(d, inserts, updates, record)
            inserted = sum(len(i) for i, _ in effects.values())
            updated = sum(len(u) for _, u in effects.values())
            job.dml_stats = SimpleNamespace(inserted_row_count=inserted, updated_row_count=updated,
                                            deleted_row_count=0)
            job.num_dml_affected_rows = inserted + updated
            self._end(job, record, ok=True)

        queued = len(self.started) >= self.running
        job = self._new_job(job_id, "merge", finish, queued=queued)
        job.query = statement
        if queued:
            self.queued.append((job, lambda: (start(), self._run_again(job, finish, "started"))))
        else:
            start()
            self.started.append(job)
        if fault == "lose":  # jobs.insert created the job, the answer never came back
            raise unavailable("bigquery", lost=True)
        return job

    def _end(self, job: FakeJob, record: dict, ok: bool) -> None:
        """The job is DONE: its slot goes to the first statement queued (it starts now)."""
        job.state, record["ok"], record["end"] = "DONE", ok, self.sched.step
        if job in self.started:
            self.started.remove(job)
        while self.queued and len(self.started) < self.running:
            waiting, begin = self.queued.pop(0)
            self.started.append(waiting)
            begin()

    def _apply(self, game_date: str, inserts: list, updates: list, record: dict) -> None:
        """The commit: inserted rows are appended (BigQuery enforces no key: a key inserted by two
        MERGEs is stored twice), updated rows take the source's values."""
        rows = self.partitions.setdefault(game_date, {})
        now = (datetime(2025, 1, 21, tzinfo=timezone.utc) + timedelta(seconds=self.sched.now)).isoformat()
        natural = len(self.spec.natural_key)
        for key, row in inserts:
            stored = key
            while stored in rows:  # the same key inserted again: a second row
                stored = stored + (f"duplicate@{self.sched.step}",)
            rows[stored] = {**row, "ingested_at": now}
            self.writes[key[:natural]] = self.writes.get(key[:natural], 0) + 1
        for key, row in updates:
            rows[key] = {**rows[key], **{c: row[c] for c in self.spec.value_columns}}
            self.writes[key] = self.writes.get(key, 0) + 1
        if inserts or updates:
            version = self.versions[game_date] = self.versions.get(game_date, 0) + 1
            self.commits.setdefault(game_date, []).append((version, bool(updates)))
            self._digest = hash((tuple(sorted((k, repr(sorted(r.items()))) for k, r in rows.items())),
                                 tuple(sorted(self.versions.items())), tuple(sorted(self.writes.items()))))
            twice = [k for k, n in self.writes.items() if n > 1]
            if twice:
                self.problems.append(f"{len(twice)} rows written twice (e.g. {twice[0][-1]}), by {record['owner']}")

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
