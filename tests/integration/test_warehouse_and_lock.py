"""The MERGE and the lock against the real emulators, through the official clients."""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import date, timedelta

import pytest
from google.api_core.exceptions import BadRequest
from google.cloud import bigquery

from .staged_upload import stage_bytes
from oddsbatch import clients, sql, staging
from oddsbatch.config import Settings
from oddsbatch.lock import BatchLock
from oddsbatch.pending import PendingWork
from oddsbatch.tables import table_for_endpoint
from oddsbatch.warehouse import Warehouse

pytestmark = pytest.mark.integration
DAY = date(2025, 2, 1)


def base_row(spec, **values):
    row = {c: None for c in spec.staged_columns}
    row.update(game_date=DAY.isoformat(), game_id="g1", snapshot_timestamp="2025-02-01T18:00:00Z",
               snapshot_source="object_name", bookmaker_key="draftkings", market_key="h2h", outcome_name="LAL",
               price_decimal=1.5, price_american=-200, price_format="american", source_object="a.json",
               source_generation=5)
    row.update(values)
    return row


@pytest.fixture
def warehouse(stack):
    settings = Settings.from_env("game-lines", {**stack.env, "ODDSBATCH_TABLE": "odds_api_game_lines"})
    return Warehouse(settings, table_for_endpoint("game-lines"))


def staged(spec, rows) -> bytes:
    """Full rows in the staging format, each row its own market (NULL row columns left out)."""
    groups = [({c: row[c] for c in spec.head_columns},
               [{c: row[c] for c in spec.line_columns if row[c] is not None}]) for row in rows]
    return staging.encode(groups)


def merge(warehouse, rows):
    run_id = uuid.uuid4().hex[:12]
    staging_id = stage_bytes(warehouse, run_id, staged(warehouse.spec, rows))
    try:
        return warehouse.merge(run_id, staging_id, DAY)
    finally:
        warehouse.drop_staging(staging_id)


def read(stack, warehouse):
    query = (f"SELECT market_key, outcome_point, price_decimal, source_generation, ingested_at "
             f"FROM {warehouse.target} WHERE game_date = @game_date ORDER BY market_key, outcome_point")
    config = bigquery.QueryJobConfig(query_parameters=[bigquery.ScalarQueryParameter("game_date", "DATE", DAY)])
    return [tuple(r.values()) for r in stack.bigquery().query(query, job_config=config).result()]


def test_merge_inserts_dedups_ignores_replays_and_older_rows_and_takes_newer(stack, warehouse):
    spec = warehouse.spec
    h2h = base_row(spec)
    spread = base_row(spec, market_key="spreads", outcome_point=-4.5)
    no_point_twice = [h2h, spread, dict(spread)]  # a duplicate source key must not fail the MERGE
    first = merge(warehouse, no_point_twice)
    assert (first.inserted, first.updated) == (2, 0)
    after_first = read(stack, warehouse)
    replay = merge(warehouse, no_point_twice)
    assert (replay.inserted, replay.updated) == (0, 0)  # NULL outcome_point still matched
    reupload = merge(warehouse, [dict(h2h, source_generation=9), dict(spread, source_generation=9)])
    assert (reupload.inserted, reupload.updated) == (0, 0)  # same values, new generation: no change
    assert read(stack, warehouse) == after_first
    older = merge(warehouse, [dict(h2h, price_decimal=1.7, source_generation=4)])
    assert older.updated == 0
    newer = merge(warehouse, [dict(h2h, price_decimal=1.6, source_generation=6)])
    assert newer.updated == 1
    rows = read(stack, warehouse)
    assert [(r[0], r[1], r[2], r[3]) for r in rows] == [("h2h", None, 1.6, 6), ("spreads", -4.5, 1.5, 5)]
    assert rows[0][4] == after_first[0][4]  # ingested_at set on insert only


def test_emulator_still_rejects_a_merge_without_partition_filter(stack, warehouse):
    statement = (f"MERGE {warehouse.target} AS T USING (SELECT 'x' AS game_id) AS S ON T.game_id = S.game_id "
                 f"WHEN MATCHED THEN DELETE")
    with pytest.raises(BadRequest, match="partition elimination"):
        stack.bigquery().query(statement).result()


def test_only_one_of_many_racing_events_gets_the_lock(stack):
    key = f"player-props_{uuid.uuid4().hex[:8]}"

    def contend(i):
        db = clients.firestore_client(stack.project)
        lock = BatchLock(db.collection("oddsbatch_locks"), key, f"event-{i}", timedelta(minutes=10),
                         timedelta(days=7))
        return lock.acquire()

    with ThreadPoolExecutor(max_workers=16) as pool:
        results = list(pool.map(contend, range(32)))
    assert results.count(True) == 1
    db = clients.firestore_client(stack.project)
    db.collection("oddsbatch_locks").document(key).delete()


def test_pending_markers_round_trip_on_the_emulator(stack):
    db = clients.firestore_client(stack.project)
    key = f"game-lines_{uuid.uuid4().hex[:8]}"
    queue = PendingWork(db, "oddsbatch_pending", key, timedelta(days=7))
    for i in range(450):  # more than one write batch on removal
        queue.add("bucket", f"odds-api/game-lines/2025-02-01/{i:04d}.json", 1000 + i, f"e{i}")
    queue.add("bucket", "odds-api/game-lines/2025-02-01/0000.json", 1000, "e0-again")
    markers = queue.list()
    assert len(markers) == 450 and markers[0].name.endswith("0000.json")
    assert queue.remove(markers) == 450
    assert not queue.has_any()


def test_a_dead_holders_lock_is_taken_over_as_soon_as_its_lease_passed_while_its_ttl_document_exists(stack):
    from datetime import datetime, timezone

    from oddsbatch import synth

    from .test_end_to_end import table_rows, upload_all

    day = "2025-05-10"
    key = f"player-props_{day}"
    now = datetime.now(timezone.utc)
    locks = stack.firestore().collection("oddsbatch_locks")
    locks.document(key).set({"owner": "dead-holder", "batch_key": key, "acquired_at": now - timedelta(minutes=11),
                              "lease_until": now - timedelta(seconds=1), "expireAt": now + timedelta(days=7)})
    files = [f for f in synth.synthesize_day(date.fromisoformat(day), games=1, snapshots=2, seed=2)
             if f[0].startswith("odds-api/player-props/")]
    upload_all(stack, files)
    stack.wait_idle(expected_events=len(files))
    assert table_rows(stack, "player-props", day)
    assert '"how": "stale_takeover"' in stack.log_text("player_props")
    assert not locks.document(key).get().exists  # released by the new holder, not left to TTL
