"""The ingest log in the ZetaSQL catalog: the status function's columns, and a negative control;
the status function itself is analyzed with every routine (test_statements.py)."""

from __future__ import annotations

import pytest

from oddsbatch import ingest_log, sql
from tests.googlesql import GoogleSQLError

PROJECT, DATASET = "test-project", "odds_api"


def test_the_status_function_returns_the_readiness_columns(googlesql):
    checker = googlesql(PROJECT, DATASET)
    checker.create_routines()
    resolved = checker.analyze(
        f"SELECT * FROM {sql.table_path(PROJECT, DATASET, 'odds_api_ingest_status')}(@s, @e)", {"s": "DATE", "e": "DATE"})
    assert [c.name for c in resolved.output_column_list] == [
        "endpoint", "game_date", "rounds", "files_seen", "files_merged", "files_quarantined", "files_gone",
        "files_pending", "rows_merged", "last_snapshot", "first_round_at", "last_round_at", "complete_as_of"]


def test_the_log_in_the_catalog_rejects_a_reserved_column_name(googlesql):
    """Negative control: `rows` (what the brief called the column) is a reserved keyword of GoogleSQL."""
    checker = googlesql(PROJECT, DATASET)
    log = sql.table_path(PROJECT, DATASET, ingest_log.LOG_TABLE)
    checker.analyze(f"SELECT SUM(rows_merged) FROM {log} WHERE game_date = @d", {"d": "DATE"})
    with pytest.raises(GoogleSQLError):
        checker.analyze(f"SELECT SUM(rows) FROM {log} WHERE game_date = @d", {"d": "DATE"})
