"""Runs the batch's BigQuery work: one load job (from the round's staging objects in Cloud Storage)
into an expiring staging table, one MERGE.

Loads, never streaming inserts (streamed rows block DML for ~30 minutes). Every job goes
through one runner (`_run_job`) with deterministic job ids, one per attempt:

- inserting a job that fails with a 5xx or a dropped connection is retried with the SAME
  job id (BigQuery may have created it); a 409 on that id means the job exists: resume it.
  The Python client populates jobReference.jobId so that retrying jobs.insert is safe:
  https://googleapis.dev/python/bigquery/latest/design/query-retries.html
- a job that FAILED for a reason that passes by itself (errors.RetryInProcess: a
  serialization conflict, the per-table DML queue, rate limits, job quotas, backendError)
  is resubmitted as a NEW job (waiting again on a failed job returns the same failure),
  after a jittered exponential backoff, while the invocation's deadline leaves time; then
  it is raised, and Eventarc retries the event.
- every wait is bounded by the deadline: a job still running when it comes is cancelled
  (best effort: it may still commit) and DeadlineReached is raised, instead of the invocation
  being killed mid-wait. A MERGE that outlives its invocation this way (or by a crash) is
  settled by the key's next holder before it merges: each MERGE attempt's job id is recorded
  in the key's fence before it is inserted (fence.py), and a 409 whose job is the fence's
  placeholder means another holder burned the id: this invocation stops (Fenced).
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from typing import Callable

from . import faults, logs, sql
from .clients import bigquery_client
from .config import Settings
from .deadline import Deadline
from .fence import Fenced, is_placeholder
from .errors import (BigQueryUnavailable, DeadlineReached, RejectedData, RetryInProcess, SerializationConflict,
                     TerminalError, TransientError, classify, is_missing_uri, is_rejected_data)
from .tables import TableSpec

STAGING_TTL = timedelta(hours=6)
# Source URIs one load job may name (https://cloud.google.com/bigquery/quotas, "Load jobs").
MAX_SOURCE_URIS = 10_000
# Backoff between attempts of a job: 1 s, 2 s, 4 s ... at most 30 s, each drawn in [d/2, d].
BACKOFF_FIRST, BACKOFF_CAP = 1.0, 30.0
# Attempts to insert one job id (5xx / connection errors on jobs.insert) before giving up.
INSERT_ATTEMPTS = 5
# The least time a job is given: no attempt is started with less left than this.
MIN_JOB_SECONDS = 2.0


@dataclass(frozen=True)
class MergeResult:
    job_id: str
    inserted: int
    updated: int
    attempts: int
    seconds: float
    retried: dict | None = None  # BigQuery reason -> attempts it failed (and was retried)


def merge_job_config(game_dates):
    """The MERGE job's parameters (sql.merge_parameters): @game_dates ARRAY<DATE>, and the range."""
    from google.cloud import bigquery

    parameters = []
    for name, value in sql.merge_parameters(game_dates).items():
        if isinstance(value, list):
            parameters.append(bigquery.ArrayQueryParameter(name, "DATE", [d.isoformat() for d in value]))
        else:
            parameters.append(bigquery.ScalarQueryParameter(name, "DATE", value.isoformat()))
    return bigquery.QueryJobConfig(query_parameters=parameters)


def staging_table_name(spec: TableSpec, run_id: str) -> str:
    return f"_staging_{spec.name}_{run_id}".replace("-", "_")


class Warehouse:
    """BigQuery side of one target table."""

    def __init__(self, settings: Settings, spec: TableSpec, client=None,
                 sleep: Callable[[float], None] = time.sleep, deadline: Deadline | None = None,
                 jitter: Callable[[], float] = random.random):
        self.settings = settings
        self.spec = spec
        self.client = client or bigquery_client(settings.project, settings.bigquery_endpoint,
                                                settings.bigquery_location)
        self.sleep = sleep
        self.deadline = deadline or Deadline(settings.timeout_seconds)
        self.jitter = jitter
        self.retried: dict[str, int] = {}  # BigQuery reason -> jobs resubmitted for it, all jobs
        self.target = sql.table_path(settings.project, settings.dataset, settings.table)
        self.staging_schema = spec.bigquery_schema(spec.staging_schema())

    def _staging_id(self, run_id: str) -> str:
        return f"{self.settings.project}.{self.settings.dataset}.{staging_table_name(self.spec, run_id)}"

    def _job_id(self, run_id: str, step: str) -> str:
        return f"oddsbatch_{self.spec.name}_{run_id}_{step}".replace("-", "_")

    def create_staging(self, run_id: str) -> str:
        """Create this run's staging table, which expires by itself (a crashed run leaves
        nothing behind for long); returns its id. The holder calls it while it still
        downloads the round's files, so the table is ready when the load starts."""
        from google.cloud import bigquery

        staging_id = self._staging_id(run_id)
        try:
            table = bigquery.Table(staging_id, schema=self.staging_schema)
            table.expires = datetime.now(timezone.utc) + STAGING_TTL
            self.client.create_table(table, exists_ok=True)
        except Exception as exc:
            raise classify(exc) from exc
        return staging_id

    def stage(self, run_id: str, uris: list[str], created: bool = False, step: str = "load") -> str:
        """Load staged NDJSON from its staging objects (gs:// URIs, staged_objects.py) into this
        run's staging table, creating it first unless `created`; returns its id. BigQuery reads
        the objects itself: nothing passes through this process. Each load of one run needs its
        own `step` (its job ids). RejectedData when the load refuses the rows; a staging object
        that vanished (a twin holder merged the same files and deleted it) is transient: the
        retried event finds the files merged, or stages them again.

        BigQuery's limits for a load from Cloud Storage (https://cloud.google.com/bigquery/quotas,
        "Load jobs"): at most 10,000 source URIs per job configuration (more fails jobs.insert with
        400 "Too many sources provided: N. Limit is 10000.", as met in MobilityData/mobility-feed-api#1609),
        15 TB per job and terabytes per uncompressed JSON file (the same page; Apache Beam's
        bigquery_file_loads keeps the same two numbers, 10,000 URIs and 15 TB), each URI naming one
        object here (no wildcard: JobConfigurationLoad.sourceUris allows one '*' after the bucket
        name, we never need it). A round has at most holder.MAX_FILES_PER_ROUND = 2,000 files, each
        one URI of at most a few hundred MB (a 32 MiB source stages less than that): always within."""
        from google.cloud import bigquery

        if not uris:
            raise ValueError("a load needs at least one staging object")
        if len(uris) > MAX_SOURCE_URIS:
            raise ValueError(f"{len(uris)} URIs in one load: BigQuery takes at most {MAX_SOURCE_URIS}")
        staging_id = self._staging_id(run_id) if created else self.create_staging(run_id)
        config = bigquery.LoadJobConfig(
            source_format=bigquery.SourceFormat.NEWLINE_DELIMITED_JSON,
            schema=self.staging_schema,
            write_disposition=bigquery.WriteDisposition.WRITE_TRUNCATE,  # a resubmitted load replaces, never appends
        )

        def submit(job_id):
            return self.client.load_table_from_uri(list(uris), staging_id, job_id=job_id, job_config=config)

        try:
            self._run_job(run_id, step, submit)
        except TerminalError as error:
            if is_rejected_data(error.__cause__):
                raise RejectedData(str(error)) from error
            if is_missing_uri(error.__cause__):
                raise TransientError(f"a staging object of run {run_id} is gone (deleted by a holder that "
                                     f"merged the same files?): {error}") from error
            raise
        return staging_id

    def merge(self, run_id: str, staging_id: str, game_dates, fences=()) -> MergeResult:
        """One MERGE of the staged rows into the target's partitions of `game_dates` (one date, or
        a holder's group of several). With `fences` (fence.MergeFence, one per batch key the
        MERGE touches: every holder passes its keys'), each attempt's job id is recorded in every
        one of them before the job is inserted (Fenced, and no job, if any record fails), and each
        job seen DONE is reported to them all."""
        statement = sql.merge_sql(self.spec, self.target, sql.quote(staging_id))
        config = merge_job_config([game_dates] if isinstance(game_dates, date) else game_dates)
        fences = list(fences)

        def record(job_id: str) -> None:
            for fence in fences:
                fence.record(job_id)

        def finished(job_id: str) -> None:
            for fence in fences:
                fence.finished(job_id)

        started = time.monotonic()
        faults.fail_point("bigquery")  # an outage that outlasts the in-process retries: Eventarc retries

        def submit(job_id):
            job = self.client.query(statement, job_config=config, job_id=job_id, job_retry=None)
            faults.point("during_merge")  # chaos: the process dies while its MERGE job runs on
            return job

        job, attempts, retried = self._run_job(run_id, "merge", submit, before_attempt=faults.maybe_fail_merge,
                                               before_insert=record if fences else None,
                                               on_done=finished if fences else None)
        stats = job.dml_stats
        inserted = int(stats.inserted_row_count) if stats else int(job.num_dml_affected_rows or 0)
        updated = int(stats.updated_row_count) if stats else 0
        return MergeResult(job.job_id, inserted, updated, attempts, time.monotonic() - started, retried)

    def _backoff(self, attempt: int) -> float:
        """Jittered exponential backoff before attempt `attempt + 1`: in [d/2, d], d = 1, 2, 4 ... 30 s."""
        delay = min(BACKOFF_FIRST * 2 ** (attempt - 1), BACKOFF_CAP)
        return delay / 2 + delay / 2 * self.jitter()

    def _run_job(self, run_id: str, step: str, submit: Callable[[str], object],
                 before_attempt: Callable[[int], None] | None = None,
                 before_insert: Callable[[str], None] | None = None,
                 on_done: Callable[[str], None] | None = None):
        """Insert and wait on one job until it succeeds: (job, attempts, {reason: retries}).
        Attempt n has job id <run>_<step>_<n>. Serialization conflicts get
        settings.merge_attempts attempts; the other RetryInProcess reasons as many as the
        deadline allows. `before_insert(job_id)` runs before each attempt's job is inserted
        (the fence's record), `on_done(job_id)` once that job is seen DONE, failed or not."""
        retried: dict[str, int] = {}
        attempt = 0
        while True:
            attempt += 1
            job_id = self._job_id(run_id, f"{step}_{attempt}")
            job = None
            try:
                if not self.deadline.allows(MIN_JOB_SECONDS):
                    raise DeadlineReached(f"{step} of run {run_id}: {self.deadline.remaining():.1f}s left, "
                                          f"not enough for another BigQuery job")
                if before_attempt:
                    before_attempt(attempt)
                if before_insert:
                    before_insert(job_id)
                job = self._insert(submit, job_id)
                self._wait(job, job_id, step)
                if on_done:
                    on_done(job_id)
                return job, attempt, retried
            except DeadlineReached:
                raise
            except Exception as exc:
                if on_done and job is not None and getattr(job, "state", None) == "DONE":
                    on_done(job_id)  # it failed (_wait reloaded it): the next attempt's record need not ask
                error = classify(exc, job=True)
                if not isinstance(error, RetryInProcess):
                    raise error from exc
                pause = self._backoff(attempt)
                out_of_attempts = isinstance(error, SerializationConflict) and attempt >= self.settings.merge_attempts
                out_of_time = not self.deadline.allows(pause + MIN_JOB_SECONDS)
                logs.log("bigquery_retry", severity="WARNING", table=self.spec.name, run_id=run_id, step=step,
                         job_id=job_id, attempt=attempt, reason=error.reason, transient=True,
                         retrying=not (out_of_attempts or out_of_time), backoff_seconds=round(pause, 3),
                         remaining_seconds=round(min(self.deadline.remaining(), 1e9), 1), error=str(exc)[:300])
                if out_of_attempts or out_of_time:
                    raise error from exc
                retried[error.reason] = retried.get(error.reason, 0) + 1
                self.retried[error.reason] = self.retried.get(error.reason, 0) + 1
                self.sleep(pause)

    def _insert(self, submit: Callable[[str], object], job_id: str):
        """jobs.insert of one job id: a 5xx or a dropped connection is retried with the same id,
        and a 409 means an earlier try created the job: resume it."""
        from google.api_core.exceptions import Conflict

        for attempt in range(1, INSERT_ATTEMPTS + 1):
            try:
                return submit(job_id)
            except Conflict:  # ids are unique per run and attempt: it is this very job, or the fence's placeholder
                job = self.client.get_job(job_id, location=self.settings.bigquery_location)
                if is_placeholder(job):
                    logs.log("fenced", severity="WARNING", table=self.spec.name, job_id=job_id,
                             why="the job id was burned by the key's next holder: this MERGE never runs")
                    raise Fenced(f"job {job_id} was burned by another holder of the key (fence placeholder)")
                return job
            except Exception as exc:
                error = classify(exc, job=True)
                # 5xx, dropped connections, timeouts: the job may exist. Limits (the job was refused)
                # and terminal errors go to the caller.
                if not (isinstance(error, BigQueryUnavailable) or type(error) is TransientError):
                    raise
                if attempt == INSERT_ATTEMPTS or not self.deadline.allows(self._backoff(attempt) + MIN_JOB_SECONDS):
                    raise
                logs.log("bigquery_insert_retry", severity="WARNING", table=self.spec.name, job_id=job_id,
                         attempt=attempt, transient=True, error=str(exc)[:300])
                self.sleep(self._backoff(attempt))
        raise TransientError("unreachable")  # pragma: no cover

    def _wait(self, job, job_id: str, step: str) -> None:
        """job.result(), bounded by the deadline; a job still unfinished then is cancelled. A
        failed job raises (the caller resubmits it as a new job, or not); a failure of the
        polling itself, on a job that has not finished, waits again on the same job."""
        from concurrent.futures import TimeoutError as FutureTimeout

        polls = 0
        while True:
            timeout = self.deadline.remaining()
            try:
                job.result(timeout=None if timeout == float("inf") else timeout)
                return
            except (FutureTimeout, TimeoutError) as exc:
                try:
                    self.client.cancel_job(job_id, location=self.settings.bigquery_location)
                except Exception as cancel_exc:  # noqa: BLE001 - best effort, the MERGE is idempotent
                    logs.log("bigquery_cancel_failed", severity="WARNING", job_id=job_id, error=str(cancel_exc)[:300])
                raise DeadlineReached(f"{step} job {job_id} unfinished at the deadline ({timeout:.1f}s waited): "
                                      "cancelled, left to the retried event") from exc
            except Exception as exc:
                if self._finished(job):
                    raise
                polls += 1
                error = classify(exc, job=True)
                pause = self._backoff(polls)
                if not isinstance(error, TransientError) or not self.deadline.allows(pause + MIN_JOB_SECONDS):
                    raise error from exc
                logs.log("bigquery_wait_retry", severity="WARNING", job_id=job_id, attempt=polls, transient=True,
                         error=str(exc)[:300])
                self.sleep(pause)

    @staticmethod
    def _finished(job) -> bool:
        """Whether the job itself is DONE (it failed), as opposed to the polling having failed."""
        try:
            job.reload()
        except Exception:  # noqa: BLE001 - unknown: treat as unfinished, the deadline bounds the waiting
            return False
        return getattr(job, "state", None) == "DONE"

    def drop_staging(self, staging_id: str) -> None:
        """Best effort: the table expires by itself anyway."""
        try:
            self.client.delete_table(staging_id, not_found_ok=True)
        except Exception as exc:  # noqa: BLE001 - cleanup must not fail a merged batch
            logs.log("staging_drop_failed", severity="WARNING", table=staging_id, error=str(exc)[:300])
