"""A backfill of 40 game dates at once meets BigQuery's DML queue limit and loses nothing.

40 dates x 2 endpoints land at once: 80 events, 80 holders (one per endpoint and date), all
MERGEing into the same two tables. The emulator models BigQuery's queue of mutating DML
statements per table, here with small numbers (1 running + 0 queued, BigQuery's are 2 + 20: Google's
Pub/Sub emulator pushes at most 2 messages of a subscription at once, so 2 holders of an endpoint
and the reconcile are the most statements a table can have outstanding here)
so a small backfill meets it; while the functions work, `oddsbatch reconcile --from --to`
runs over the same dates and competes for the same queue. Refused MERGEs are retried
in-process (errors.BigQueryLimit); every row lands once. Prints how many statements the
limit refused and how many were retried.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from datetime import date, timedelta

import pytest

from oddsbatch import cli, synth
from oddsbatch.config import ENDPOINT_TABLES
from oddsbatch.local.stack import Stack
from oddsbatch.tables import table_for_endpoint

from .test_end_to_end import comparable, expected_rows, table_rows, upload_all

pytestmark = pytest.mark.integration

DATES = [date(2025, 11, 1) + timedelta(days=i) for i in range(40)]


@pytest.fixture(scope="module")
def limited_stack(tmp_path_factory):
    # dml_latency_ms: every MERGE runs 1 s, as BigQuery's take seconds, so the statements of a table
    # overlap and the limit is met.
    st = Stack(tmp_path_factory.mktemp("backfill-stack"), settle_seconds=0.5, dml_running=1, dml_queued=0,
               dml_latency_ms=1000)
    st.start()
    try:
        yield st
    finally:
        st.stop()


@pytest.fixture(autouse=True)
def _limited_env(limited_stack, monkeypatch):
    from oddsbatch import clients

    for key, value in limited_stack.env.items():
        monkeypatch.setenv(key, value)
    clients.reset()


def retries(text: str) -> Counter:
    """bigquery_retry log lines by (reason, retrying)."""
    out = Counter()
    for line in text.splitlines():
        if '"bigquery_retry"' in line:
            record = json.loads(line[line.index("{"):])
            out[(record["reason"], record["retrying"])] += 1
    return out


def test_forty_dates_at_once_through_events_and_reconcile(limited_stack, capsys):
    stack = limited_stack
    files = [f for i, day in enumerate(DATES) for f in synth.synthesize_day(day, games=1, snapshots=1, seed=100 + i)]
    generations = {}
    t0 = time.monotonic()
    generations = upload_all(stack, files, concurrency=40)
    uploaded = time.monotonic() - t0
    # the functions' holders are busy with the 80 events: reconcile the same dates meanwhile
    code = cli.main(["reconcile", "--from", DATES[0].isoformat(), "--to", DATES[-1].isoformat()])
    out = capsys.readouterr().out
    assert code == 0, out[-2000:]
    summary = out.strip().splitlines()[-1]
    reconciled = time.monotonic() - t0
    stack.wait_idle(expected_events=len(files), timeout=180)
    idle = time.monotonic() - t0

    for endpoint in ENDPOINT_TABLES:
        spec = table_for_endpoint(endpoint)
        for day in DATES:
            got = Counter(comparable(r, spec) for r in table_rows(stack, endpoint, day.isoformat()))
            assert got == _expected_for_day(files, generations, endpoint, day), (endpoint, day)

    rejected = stack.log_text("bigquery").count("dml_limit_rejected")
    logged = retries(stack.log_text("game_lines")) + retries(stack.log_text("player_props")) + retries(out)
    retried = logged[("resourcesExceeded", True)]
    with capsys.disabled():
        print(f"\nbackfill: dates={len(DATES)} files={len(files)} dml_limit=1+0 rejected={rejected} retried={retried} "
              f"gave_up={logged[('resourcesExceeded', False)]} uploaded={uploaded:.1f}s reconciled={reconciled:.1f}s "
              f"idle={idle:.1f}s\n  {summary}")
    assert rejected > 0, "80 holders and a reconcile against 1 statement per table: the limit must have refused some"
    assert retried == rejected and logged[("resourcesExceeded", False)] == 0  # every refusal retried, none given up
    assert "missing=0 " in _reconcile_again(capsys)


def _expected_for_day(files, generations, endpoint, day):
    prefix = f"odds-api/{endpoint}/{day.isoformat()}/"
    return expected_rows([f for f in files if f[0].startswith(prefix)], generations, endpoint)


def _reconcile_again(capsys) -> str:
    assert cli.main(["reconcile", "--from", DATES[0].isoformat(), "--to", DATES[-1].isoformat()]) == 0
    return capsys.readouterr().out.strip().splitlines()[-1]


def _forget(stack, days) -> None:
    """Lose the dates' work after the fact (rows and ledger entries of both tables)."""
    from google.cloud import bigquery
    from google.cloud.firestore_v1.base_query import FieldFilter

    from oddsbatch import sql

    ledger = stack.firestore().collection("oddsbatch_merged")
    for endpoint, table in ENDPOINT_TABLES.items():
        target = sql.table_path(stack.project, stack.dataset, table)
        params = bigquery.QueryJobConfig(query_parameters=[
            bigquery.ScalarQueryParameter("first", "DATE", days[0].isoformat()),
            bigquery.ScalarQueryParameter("last", "DATE", days[-1].isoformat())])
        stack.bigquery().query(f"DELETE FROM {target} WHERE game_date BETWEEN @first AND @last",
                               job_config=params).result()
        for day in days:
            for snap in ledger.where(filter=FieldFilter("batch_key", "==", f"{endpoint}_{day}")).stream():
                snap.reference.delete()


def _merge_jobs(stack) -> dict[str, set[str]]:
    jobs = {t: set() for t in ENDPOINT_TABLES.values()}
    for job in stack.bigquery().list_jobs(all_users=True):
        if getattr(job, "statement_type", None) == "MERGE":
            for table in jobs:
                if f"_{table}_" in job.job_id:
                    jobs[table].add(job.job_id)
    return jobs


def test_reconcile_dates_per_merge_costs_ceil_dates_over_n_merges_per_table(limited_stack, capsys):
    """The same 40 dates again, lost after the fact: `--dates-per-merge 8` merges them with
    ceil(40 / 8) = 5 MERGEs per table under the 1-statement limit, every row once."""
    stack = limited_stack
    files = [f for i, day in enumerate(DATES) for f in synth.synthesize_day(day, games=1, snapshots=1, seed=100 + i)]
    bucket = stack.storage().bucket(stack.bucket)
    if any(bucket.get_blob(name) is None for name, _ in files):  # run alone: land them first
        upload_all(stack, files, concurrency=40)
        stack.wait_idle(expected_events=len(files), timeout=180)
    generations = {name: bucket.get_blob(name).generation for name, _ in files}
    _forget(stack, DATES)
    before = _merge_jobs(stack)
    t0 = time.monotonic()
    assert cli.main(["reconcile", "--from", DATES[0].isoformat(), "--to", DATES[-1].isoformat(),
                     "--dates-per-merge", "8"]) == 0
    seconds = time.monotonic() - t0
    summary = [line for line in capsys.readouterr().out.strip().splitlines() if not line.startswith("{")][-1]
    new = {t: jobs - before[t] for t, jobs in _merge_jobs(stack).items()}
    with capsys.disabled():
        print(f"\nreconcile --dates-per-merge 8: dates={len(DATES)} merges_per_table="
              f"{ {t: len(j) for t, j in new.items()} } seconds={seconds:.1f}\n  {summary}")
    assert all(len(jobs) == 5 for jobs in new.values()), new
    assert f"merged_files={len(files)} " in summary and " merges=10 " in summary
    for endpoint in ENDPOINT_TABLES:
        spec = table_for_endpoint(endpoint)
        for day in DATES:
            got = Counter(comparable(r, spec) for r in table_rows(stack, endpoint, day.isoformat()))
            assert got == _expected_for_day(files, generations, endpoint, day), (endpoint, day)


HISTORY_DATES = [date(2025, 12, 15) + timedelta(days=i) for i in range(40)]


def test_a_history_backfill_of_forty_dates_costs_far_fewer_merges_than_dates(limited_stack, capsys):
    """40 dates of -history/ files land at once: their events queue markers and coalesce onto
    each endpoint's backfill holder, which merges up to ODDSBATCH_DATES_PER_MERGE (16) dates per
    MERGE: far fewer MERGEs per table than dates, under the 1-statement limit, every row once."""
    stack = limited_stack
    files = [f for i, day in enumerate(HISTORY_DATES)
             for f in synth.synthesize_day(day, games=1, snapshots=1, seed=300 + i, historical=True)]
    assert all("-history/" in name for name, _ in files)
    before = _merge_jobs(stack)
    t0 = time.monotonic()
    generations = upload_all(stack, files, concurrency=40)
    stack.wait_idle(expected_events=len(files), timeout=300)
    seconds = time.monotonic() - t0
    new = {t: len(jobs - before[t]) for t, jobs in _merge_jobs(stack).items()}
    with capsys.disabled():
        print(f"\nhistory backfill: dates={len(HISTORY_DATES)} files={len(files)} merges_per_table={new} "
              f"idle={seconds:.1f}s")
    for endpoint in ENDPOINT_TABLES:
        spec = table_for_endpoint(endpoint)
        for day in HISTORY_DATES:
            prefix = f"odds-api/{endpoint}-history/{day.isoformat()}/"
            wanted = expected_rows([f for f in files if f[0].startswith(prefix)], generations, endpoint)
            got = Counter(comparable(r, spec) for r in table_rows(stack, endpoint, day.isoformat()))
            assert got == wanted, (endpoint, day)
    assert all(0 < n <= len(HISTORY_DATES) // 4 for n in new.values()), new  # 40 dates, at most 10 MERGEs a table
    pending = stack.firestore().collection("oddsbatch_pending")
    assert not list(pending.limit(1).stream())  # nothing left queued
