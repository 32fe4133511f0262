"""End to end on the local stack: files uploaded to the GCS emulator, events delivered by
the bridge to both functions under functions-framework, rows read back from the BigQuery
emulator with the official clients.

Each test uses its own game date, so tests never see each other's rows or locks.
"""

from __future__ import annotations

from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import date

import pytest
from google.cloud import bigquery

from oddsbatch import sql, synth, transform
from oddsbatch.config import ENDPOINT_TABLES
from oddsbatch.tables import table_for_endpoint

pytestmark = pytest.mark.integration


def upload_all(stack, files: list[tuple[str, bytes]], concurrency: int = 14) -> dict[str, int]:
    """Upload at once, like the scraper; returns object name -> generation."""
    bucket = stack.storage().bucket(stack.bucket)

    def put(item):
        name, data = item
        blob = bucket.blob(name)
        blob.upload_from_string(data, content_type="application/json")
        return name, blob.generation

    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        return dict(pool.map(put, files))


def table_rows(stack, endpoint: str, day: str) -> list[dict]:
    spec = table_for_endpoint(endpoint)
    query = f"SELECT * FROM {sql.table_path(stack.project, stack.dataset, spec.name)} WHERE game_date = @game_date"
    config = bigquery.QueryJobConfig(query_parameters=[bigquery.ScalarQueryParameter("game_date", "DATE", day)])
    return [dict(row) for row in stack.bigquery().query(query, job_config=config).result()]


def merge_jobs(stack, table: str) -> set[str]:
    return {j.job_id for j in stack.bigquery().list_jobs(all_users=True)
            if getattr(j, "statement_type", None) == "MERGE" and table in j.job_id}


def comparable(row: dict, spec) -> tuple:
    """A row as staged by transform and as read back from BigQuery, in one form."""
    def norm(value):
        if hasattr(value, "isoformat"):
            text = value.isoformat().replace("+00:00", "Z")
            return text
        return value

    return tuple(norm(row[c]) for c in spec.staged_columns)


def expected_rows(files: list[tuple[str, bytes]], generations: dict[str, int], endpoint: str) -> Counter:
    spec = table_for_endpoint(endpoint)
    by_key = {}
    for name, data in files:
        if not name.startswith(f"odds-api/{endpoint}"):
            continue
        for row in transform.rows_for_object(name, data, generations[name]):
            key = transform.natural_key(row, spec)
            if key not in by_key or (row["source_generation"], row["source_object"]) > (
                    by_key[key]["source_generation"], by_key[key]["source_object"]):
                by_key[key] = row
    return Counter(comparable(_as_bq(r), spec) for r in by_key.values())


def _as_bq(row: dict) -> dict:
    from datetime import datetime

    out = {}
    for k, v in row.items():
        if isinstance(v, str) and len(v) >= 20 and v[4] == "-" and v[10] == "T" and v.endswith("Z"):
            out[k] = datetime.fromisoformat(v.replace("Z", "+00:00"))
        elif isinstance(v, str) and len(v) == 10 and v[4] == "-" and v[7] == "-":
            out[k] = date.fromisoformat(v)
        else:
            out[k] = v
    return out


def log_offsets(stack) -> dict[str, int]:
    """Where each function's log ends now, by endpoint."""
    return {e: len(stack.log_text(e.replace("-", "_"))) for e in ENDPOINT_TABLES}


def settle_merge_bound(stack, endpoint: str, offset: int) -> tuple[int, int]:
    """(the MERGEs a burst may cost, the lock keys its events named), from the endpoint's log since
    `offset`: a holder lists the queue once per settle window, so 2 when the burst landed within
    one window and one more per window a loaded machine spread it over (merge_bound in
    tests/chaos/test_chaos.py): the events decide the bound, not how fast they came."""
    from tests.chaos.test_chaos import merge_bound, records_since  # it imports this module

    return merge_bound(records_since(stack, endpoint.replace("-", "_"), offset), stack.settle_seconds, 0)


def test_a_day_lands_in_both_tables_exactly(stack):
    day = "2025-01-21"
    files = list(synth.synthesize_day(date.fromisoformat(day), games=3, snapshots=2, seed=11))
    before = {t: merge_jobs(stack, t) for t in ENDPOINT_TABLES.values()}
    offsets = log_offsets(stack)
    generations = upload_all(stack, files)
    stack.wait_idle(expected_events=len(files))
    for endpoint, table in ENDPOINT_TABLES.items():
        spec = table_for_endpoint(endpoint)
        got = Counter(comparable(r, spec) for r in table_rows(stack, endpoint, day))
        want = expected_rows(files, generations, endpoint)
        assert sum(want.values()) > 0
        assert got == want, f"{table}: {sum((want - got).values())} lost, {sum((got - want).values())} extra"
        new_merges = merge_jobs(stack, table) - before[table]
        bound, keys = settle_merge_bound(stack, endpoint, offsets[endpoint])
        # one burst: one MERGE, two if files kept coming
        assert keys == 1 and 1 <= len(new_merges) <= bound, (new_merges, bound)


def test_replaying_the_same_day_twice_leaves_tables_identical(stack):
    day = "2025-01-22"
    files = list(synth.synthesize_day(date.fromisoformat(day), games=2, snapshots=2, seed=5))
    upload_all(stack, files)
    stack.wait_idle(expected_events=len(files))
    first = {e: sorted(map(repr, table_rows(stack, e, day))) for e in ENDPOINT_TABLES}
    upload_all(stack, files)  # new generations, same bytes
    stack.wait_idle(expected_events=len(files))
    second = {e: sorted(map(repr, table_rows(stack, e, day))) for e in ENDPOINT_TABLES}
    assert all(first[e] for e in ENDPOINT_TABLES)
    assert first == second


def test_objects_outside_the_layout_cost_no_batch(stack):
    before = {t: merge_jobs(stack, t) for t in ENDPOINT_TABLES.values()}
    upload_all(stack, [("scraper-logs/2025-01-23/run.json", b"{}"), ("odds-api/other-endpoint/x.json", b"{}")])
    stack.wait_idle(expected_events=2)
    assert {t: merge_jobs(stack, t) for t in ENDPOINT_TABLES.values()} == before
    assert not list(stack.firestore().collection("oddsbatch_pending").limit(1).stream())
    for fn in ("game_lines", "player_props"):
        assert '"message": "ignored"' in stack.log_text(fn)


def test_a_bad_file_is_quarantined_and_the_rest_of_its_batch_merges(stack):
    day = "2025-01-24"
    files = list(synth.synthesize_day(date.fromisoformat(day), games=1, snapshots=2, seed=3))
    props = [f for f in files if f[0].startswith("odds-api/player-props/")]
    bad_name = props[0][0].replace(".json", "-broken.json")
    generations = upload_all(stack, props + [(bad_name, b'{"id": "trunc')])
    stack.wait_idle(expected_events=len(props) + 1)
    spec = table_for_endpoint("player-props")
    got = Counter(comparable(r, spec) for r in table_rows(stack, "player-props", day))
    assert got == expected_rows(props, generations, "player-props")
    copy = stack.storage().bucket(stack.bucket).get_blob(f"quarantine/{bad_name}")
    assert copy is not None and copy.download_as_bytes() == b'{"id": "trunc'
    assert "JSON" in copy.metadata["oddsbatch-reason"] or "truncated" in copy.metadata["oddsbatch-reason"]
