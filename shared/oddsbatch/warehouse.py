"""Runs the batch's BigQuery work: one load job into an expiring staging table, one MERGE.

Loads, never streaming inserts (streamed rows block DML for ~30 minutes). Job ids are
deterministic per run so a resubmitted load that already ran is found, not repeated. A
MERGE that loses a serialization race is resubmitted as a new job with backoff: waiting
again on the failed job would only return the same failure.
"""

from __future__ import annotations

import io
import time
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from typing import BinaryIO, Callable

from . import faults, logs, sql
from .clients import bigquery_client
from .config import Settings
from .errors import SerializationConflict, TransientError, classify, is_serialization_conflict
from .tables import TableSpec

STAGING_TTL = timedelta(hours=6)


@dataclass(frozen=True)
class MergeResult:
    job_id: str
    inserted: int
    updated: int
    attempts: int
    seconds: float


def staging_table_name(spec: TableSpec, run_id: str) -> str:
    return f"_staging_{spec.name}_{run_id}".replace("-", "_")


class Warehouse:
    """BigQuery side of one target table."""

    def __init__(self, settings: Settings, spec: TableSpec, client=None,
                 sleep: Callable[[float], None] = time.sleep):
        self.settings = settings
        self.spec = spec
        self.client = client or bigquery_client(settings.project, settings.bigquery_endpoint,
                                                settings.bigquery_location)
        self.sleep = sleep
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

    def stage(self, run_id: str, payload: bytes | BinaryIO, created: bool = False) -> str:
        """Load staging NDJSON (staging.py; bytes, or a binary file read from its start) into
        this run's staging table, creating it first unless `created`; returns its id. A file is
        streamed in chunks, so a large round is never held in memory whole."""
        from google.api_core.exceptions import Conflict
        from google.cloud import bigquery

        staging_id = self._staging_id(run_id) if created else self.create_staging(run_id)
        try:
            config = bigquery.LoadJobConfig(
                source_format=bigquery.SourceFormat.NEWLINE_DELIMITED_JSON,
                schema=self.staging_schema,
                write_disposition=bigquery.WriteDisposition.WRITE_TRUNCATE,
            )
            job_id = self._job_id(run_id, "load")
            try:
                source = io.BytesIO(payload) if isinstance(payload, (bytes, bytearray)) else payload
                job = self.client.load_table_from_file(source, staging_id, job_id=job_id,
                                                       job_config=config, rewind=True)
            except Conflict:  # this run's load already ran (a retried call): resume it
                job = self.client.get_job(job_id)
            job.result()
        except Exception as exc:
            raise classify(exc) from exc
        return staging_id

    def merge(self, run_id: str, staging_id: str, game_date: date) -> MergeResult:
        """One MERGE of the staged rows into the target's game_date partition."""
        from google.cloud import bigquery

        statement = sql.merge_sql(self.spec, self.target, sql.quote(staging_id))
        config = bigquery.QueryJobConfig(
            query_parameters=[bigquery.ScalarQueryParameter("game_date", "DATE", game_date.isoformat())]
        )
        started = time.monotonic()
        delay = 1.0
        for attempt in range(1, self.settings.merge_attempts + 1):
            try:
                faults.maybe_fail_merge(attempt)
                faults.fail_point("bigquery")
                job = self.client.query(statement, job_config=config,
                                        job_id=self._job_id(run_id, f"merge_{attempt}"), job_retry=None)
                job.result()
                stats = job.dml_stats
                inserted = int(stats.inserted_row_count) if stats else int(job.num_dml_affected_rows or 0)
                updated = int(stats.updated_row_count) if stats else 0
                return MergeResult(job.job_id, inserted, updated, attempt, time.monotonic() - started)
            except Exception as exc:
                if not is_serialization_conflict(exc):
                    raise classify(exc) from exc
                logs.log("merge_conflict_retry", severity="WARNING", table=self.spec.name, run_id=run_id,
                         attempt=attempt, error=str(exc)[:300])
                if attempt == self.settings.merge_attempts:
                    raise SerializationConflict(str(exc)) from exc
                self.sleep(delay)
                delay = min(delay * 2, 30.0)
        raise TransientError("unreachable")  # pragma: no cover

    def drop_staging(self, staging_id: str) -> None:
        """Best effort: the table expires by itself anyway."""
        try:
            self.client.delete_table(staging_id, not_found_ok=True)
        except Exception as exc:  # noqa: BLE001 - cleanup must not fail a merged batch
            logs.log("staging_drop_failed", severity="WARNING", table=staging_id, error=str(exc)[:300])
