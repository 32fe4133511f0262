"""`oddsbatch reconcile` on the real stack: lost work is found and merged exactly once."""

from __future__ import annotations

from collections import Counter
from datetime import date

import pytest
from google.cloud import bigquery
from google.cloud.firestore_v1.base_query import FieldFilter

from oddsbatch import cli, sql, synth
from oddsbatch.config import ENDPOINT_TABLES
from oddsbatch.tables import table_for_endpoint

from .test_end_to_end import comparable, expected_rows, table_rows, upload_all

pytestmark = pytest.mark.integration


def forget_day(stack, day: str) -> None:
    """Lose a day's work after the fact: its rows and its ledger entries."""
    params = bigquery.QueryJobConfig(query_parameters=[bigquery.ScalarQueryParameter("game_date", "DATE", day)])
    for table in ENDPOINT_TABLES.values():
        target = sql.table_path(stack.project, stack.dataset, table)
        stack.bigquery().query(f"DELETE FROM {target} WHERE game_date = @game_date", job_config=params).result()
    ledger = stack.firestore().collection("oddsbatch_merged")
    for endpoint in ENDPOINT_TABLES:
        for snap in ledger.where(filter=FieldFilter("batch_key", "==", f"{endpoint}_{day}")).stream():
            snap.reference.delete()


def reconcile(capsys, *args) -> str:
    assert cli.main(["reconcile", *args]) == 0
    return capsys.readouterr().out.strip().splitlines()[-1]


def test_reconcile_restores_a_lost_day_exactly_and_then_finds_nothing(stack, capsys):
    day = "2025-04-01"
    files = list(synth.synthesize_day(date.fromisoformat(day), games=2, snapshots=2, seed=8))
    generations = upload_all(stack, files)
    stack.wait_idle(expected_events=len(files))
    forget_day(stack, day)
    assert all(not table_rows(stack, e, day) for e in ENDPOINT_TABLES)

    dry = reconcile(capsys, "--date", day, "--dry-run")
    assert f"missing={len(files)} " in dry and "merges=0" in dry and "dry_run=true" in dry
    assert all(not table_rows(stack, e, day) for e in ENDPOINT_TABLES)

    summary = reconcile(capsys, "--date", day)
    assert f"missing={len(files)} merged_files={len(files)} " in summary
    assert "merges=2 " in summary  # one MERGE per table, however many files
    for endpoint in ENDPOINT_TABLES:
        spec = table_for_endpoint(endpoint)
        assert Counter(comparable(r, spec) for r in table_rows(stack, endpoint, day)) == \
            expected_rows(files, generations, endpoint)

    again = reconcile(capsys, "--date", day)
    assert "missing=0 " in again and "merges=0 " in again


def test_reconcile_skips_files_that_add_no_rows_once_they_are_done(stack, capsys):
    day = "2025-04-02"
    empty = (f"odds-api/game-lines/{day}/0123456789abcdef0123456789abcdef-BOSLAL/20250402_180000-snap-1800.json",
             b'{"id": "0123456789abcdef0123456789abcdef", "sport_key": "basketball_nba", "commence_time": '
             b'"2025-04-02T23:30:00Z", "home_team": "Los Angeles Lakers", "away_team": "Boston Celtics", '
             b'"bookmakers": []}')
    upload_all(stack, [empty])
    stack.wait_idle(expected_events=1)
    assert not table_rows(stack, "game-lines", day)  # valid, no lines posted yet
    assert "missing=0 " in reconcile(capsys, "--from", day, "--to", day, "--endpoint", "game-lines")


def test_reconcile_argument_errors_are_one_line(capsys):
    assert cli.main(["reconcile", "--from", "2025-01-02", "--to", "2025-01-01"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "before" in err[0]


def test_reconcile_after_deleting_the_pending_work_of_a_replayed_day(stack, capsys):
    """The lost-event case itself: the markers of a replayed day vanish before any holder
    reads them (as if the events had never arrived), then reconcile restores the day."""
    import threading

    day = "2025-04-03"
    files = list(synth.synthesize_day(date.fromisoformat(day), games=2, snapshots=2, seed=13))
    pending = stack.firestore().collection("oddsbatch_pending")
    deleted, stop = [], threading.Event()

    def delete_markers():  # faster than the holders' settle delay (0.5 s)
        while not stop.is_set():
            for snap in pending.where(filter=FieldFilter("batch_key", "in",
                                                          [f"game-lines_{day}", f"player-props_{day}"])).stream():
                snap.reference.delete()
                deleted.append(snap.id)
            stop.wait(0.02)

    deleter = threading.Thread(target=delete_markers)
    deleter.start()
    try:
        generations = upload_all(stack, files)
        stack.wait_idle(expected_events=len(files))
    finally:
        stop.set()
        deleter.join()
    want = {e: expected_rows(files, generations, e) for e in ENDPOINT_TABLES}
    spec = {e: table_for_endpoint(e) for e in ENDPOINT_TABLES}
    before = {e: Counter(comparable(r, spec[e]) for r in table_rows(stack, e, day)) for e in ENDPOINT_TABLES}
    assert deleted and any(before[e] != want[e] for e in ENDPOINT_TABLES)  # work was really lost

    summary = reconcile(capsys, "--date", day)
    assert "missing=0 " not in summary
    for endpoint in ENDPOINT_TABLES:
        assert Counter(comparable(r, spec[endpoint]) for r in table_rows(stack, endpoint, day)) == want[endpoint]
    assert "missing=0 " in reconcile(capsys, "--date", day)

