"""After the integration tests: every query job the BigQuery emulator ran, and every table
function it holds, analyzed by ZetaSQL (tests/googlesql.py) as it was stored there.

The static checks (tests/conformance/) analyze what the builders return; this one analyzes
what really reached BigQuery, parameters included, so no statement escapes the check. It
runs after every other integration test of the session (tests/integration/conftest.py
orders it last), and first ingests a day of its own so it has MERGEs to read even alone.
It also shows the table functions meet the base tables' partition filter on the emulator.
"""

from __future__ import annotations

from datetime import date

import pytest
from google.cloud import bigquery

from oddsbatch import routines, sql, synth
from oddsbatch.tables import all_tables
from tests.googlesql import analyze_emulator

from .test_end_to_end import table_rows, upload_all

pytestmark = [pytest.mark.integration, pytest.mark.after_integration]

DAY = "2025-03-09"


def _params(start: str, end: str):
    return bigquery.QueryJobConfig(query_parameters=[bigquery.ScalarQueryParameter("start_date", "DATE", start),
                                                     bigquery.ScalarQueryParameter("end_date", "DATE", end)])


def test_table_functions_read_the_latest_line_within_the_partition_filter(stack):
    files = list(synth.synthesize_day(date.fromisoformat(DAY), games=1, snapshots=2, seed=11))
    upload_all(stack, files)
    stack.wait_idle(expected_events=len(files))
    bq = stack.bigquery()
    for table, spec in all_tables().items():
        rows = table_rows(stack, spec.endpoint, DAY)
        key = [c for c in spec.natural_key if c != "snapshot_timestamp"]
        newest = {}
        for row in rows:
            k = tuple(row[c] for c in key)
            if k not in newest or (row["snapshot_timestamp"], row["source_generation"], row["source_object"]) > \
                    (newest[k]["snapshot_timestamp"], newest[k]["source_generation"], newest[k]["source_object"]):
                newest[k] = row
        latest = sql.table_path(stack.project, stack.dataset, f"{table}_latest")
        got = [dict(r) for r in bq.query(f"SELECT * FROM {latest}(@start_date, @end_date)",
                                         job_config=_params(DAY, DAY)).result()]
        assert len(newest) < len(rows)  # two snapshots: the function really picks one per key
        assert sorted(map(repr, got)) == sorted(map(repr, newest.values()))
        # the base table still refuses a query without its partition filter
        with pytest.raises(Exception, match="without a filter over column"):
            bq.query(f"SELECT COUNT(*) FROM {sql.table_path(stack.project, stack.dataset, table)}").result()


def test_every_statement_the_emulator_ran_is_valid_googlesql(stack, googlesql):
    bq = stack.bigquery()
    # The DML limit, concurrency and load-from-Cloud-Storage tests send their own DDL, UPDATEs, MERGEs
    # and SELECTs to scratch tables (dml_*, conc_*, load_from_gcs_*) that they or a later reset drop:
    # the tests' SQL, not the package's (whose tables are odds_api_* and _staging_*). Every other
    # job, among them every one the functions, reconcile, the sweep and the CLIs sent, is analyzed.
    seen = analyze_emulator(googlesql(stack.project, stack.dataset), bq,
                            scratch_tables=("dml_", "conc_", "load_from_gcs_"))
    print(f"\ngooglesql: analyzed {seen} from the integration stack")
    assert seen.get("MERGE", 0) >= 2  # at least this file's own day, one MERGE per table
    assert seen.get("ROUTINE", 0) == len(routines.all_routines())
