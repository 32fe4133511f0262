"""`odds_api_ingest_log`: one row per finished batch round, what readiness is read from.

The holder appends one row after each round with ONE streaming insert (tabledata.insertAll,
`insert_rows_json`), its insertId the round's run id, so a retried insert is deduplicated
best-effort (https://cloud.google.com/bigquery/streaming-data-into-bigquery: insertId is for
best-effort de-duplication only; the table function also keeps one row per run id).

Why a log and streaming, not a status table kept up to date: a status UPDATE/MERGE per round
would be one more mutating DML statement against a table, and BigQuery runs 2 of them at once
per table and queues 20 (the target tables' MERGEs need those), and a load job per round would
spend the 1,500 load jobs per table per day (https://cloud.google.com/bigquery/quotas).
Streaming is fine here only because nothing ever runs DML on this table: rows written by
tabledata.insertAll in the last 30 minutes cannot be modified by UPDATE, DELETE, MERGE or
TRUNCATE (https://cloud.google.com/bigquery/docs/data-manipulation-language, Limitations).
The target tables are still loaded by load jobs only, never streamed.

A failing insert never fails a merged round: it is logged as a warning (`ingest_log_failed`);
`oddsbatch ready` does not trust the log anyway (it compares the bucket with the table, the
ledger, the markers and the lock).

The table's definition is `schemas/ingest_log.json` (+ its schema file), read by Terraform
(bigquery.tf) and by `oddsbatch up` (local/provision.py); it is kept out of tables.json, which
describes MERGE targets with natural keys.
"""

from __future__ import annotations

import json
from datetime import date, datetime, timezone
from functools import lru_cache

from . import logs
from .tables import SCHEMA_DIR, TableSpec

LOG_TABLE = "odds_api_ingest_log"
LOG_DEFINITION = SCHEMA_DIR / "ingest_log.json"
# Longest the holder waits for the last-snapshot query or the insert (bookkeeping, not the MERGE).
BOOKKEEPING_TIMEOUT_SECONDS = 30.0


@lru_cache(maxsize=None)
def log_tables() -> dict[str, TableSpec]:
    """The tables of ingest_log.json as TableSpecs (no endpoint, no natural key: never merged into)."""
    meta = json.loads(LOG_DEFINITION.read_text())
    return {
        name: TableSpec(name=name, endpoint="", description=m["description"],
                        schema=tuple(json.loads((SCHEMA_DIR / m["schema_file"]).read_text())),
                        partition_field=m["partition_field"], require_partition_filter=m["require_partition_filter"],
                        clustering=tuple(m["clustering"]), natural_key=(), line_columns=())
        for name, m in meta.items()
    }


def log_table_spec() -> TableSpec:
    return log_tables()[LOG_TABLE]


def round_row(*, run_id: str, endpoint: str, table: str, game_date: date, finished_at: datetime,
              files_merged: int, quarantined: int, gone: int, rows: int,
              last_snapshot: datetime | None, pending_after: int | None) -> dict:
    """One log row, JSON-ready (insertAll takes RFC 3339 timestamps and ISO dates)."""
    def stamp(moment: datetime | None) -> str | None:
        return None if moment is None else moment.astimezone(timezone.utc).isoformat()

    return {"run_id": run_id, "endpoint": endpoint, "table_name": table, "game_date": game_date.isoformat(),
            "finished_at": stamp(finished_at), "files_merged": int(files_merged), "quarantined": int(quarantined),
            "gone": int(gone), "rows_merged": int(rows), "last_snapshot": stamp(last_snapshot),
            "pending_after": None if pending_after is None else int(pending_after)}


def _timeout(holder) -> float:
    remaining = holder.deadline.remaining() if holder.deadline else BOOKKEEPING_TIMEOUT_SECONDS
    return max(1.0, min(BOOKKEEPING_TIMEOUT_SECONDS, remaining / 4))


def record_round(holder, result) -> bool:
    """Append the round's rows to odds_api_ingest_log, one per game date it merged (a group's
    round merges several), in one insert; never raises (a warning instead).

    `holder` is the BatchHolder that finished `result` (its markers are already deleted, so
    each key's `pending.count()` is what is still queued for it). Each row's insertId is the run id
    and its date: rows of one round never deduplicate each other."""
    settings = holder.settings
    try:
        client = holder.warehouse.client  # the round's own BigQuery client (same endpoint and location)
        held = {h.key: h for h in holder.held}
        rows, row_ids = [], []
        for key, totals in sorted(result.totals().items()):
            pending_after = None
            pending = held[key].pending if key in held else None
            if pending is not None:
                try:
                    pending_after = pending.count()
                except Exception as exc:  # noqa: BLE001 - NULL: readiness reads the markers itself
                    logs.log("ingest_log_count_failed", severity="WARNING", run_id=result.run_id,
                             error=str(exc)[:300])
            game_date = held[key].game_date if key in held else holder.game_date
            rows.append(round_row(run_id=result.run_id, endpoint=settings.endpoint, table=holder.spec.name,
                                  game_date=game_date, finished_at=datetime.now(timezone.utc),
                                  files_merged=totals.files, quarantined=totals.quarantined, gone=totals.gone,
                                  rows=totals.rows, last_snapshot=totals.last_snapshot, pending_after=pending_after))
            row_ids.append(f"{result.run_id}_{game_date.isoformat()}")
        if not rows:
            return True
        errors = client.insert_rows_json(f"{settings.project}.{settings.dataset}.{LOG_TABLE}", rows,
                                         row_ids=row_ids, timeout=_timeout(holder))
        if errors:
            raise RuntimeError(f"insertAll refused the row: {json.dumps(errors)[:300]}")
    except Exception as exc:  # noqa: BLE001 - bookkeeping must not fail a merged round
        logs.log("ingest_log_failed", severity="WARNING", batch_key=holder.label, run_id=result.run_id,
                 error=f"{type(exc).__name__}: {exc}"[:300])
        return False
    return True
