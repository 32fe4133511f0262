"""The BigQuery emulator models BigQuery's queue of mutating DML statements per table.

BigQuery runs 2 mutating DML statements (UPDATE, DELETE, MERGE) per table and queues 20; the
next one fails with reason resourcesExceeded and "Too many DML statements outstanding against
table ..., limit is 20":
https://cloud.google.com/bigquery/docs/data-manipulation-language ("UPDATE, DELETE, MERGE DML
concurrency"). Driven here against the emulator directly, with the official client: the
session stack has BigQuery's numbers; a stack of its own has small ones (1 + 2).
"""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor

import pytest
from google.api_core.exceptions import BadRequest
from google.cloud import bigquery

from oddsbatch import errors
from oddsbatch.local.bigquery_dml import DmlQueueLimit
from oddsbatch.local.stack import Stack

pytestmark = pytest.mark.integration

MESSAGE = re.compile(r"^Resources exceeded during query execution: Too many DML statements outstanding against "
                     r"table (?P<table>\S+), limit is (?P<limit>\d+)$")


@pytest.fixture(scope="module")
def small_stack(tmp_path_factory):
    st = Stack(tmp_path_factory.mktemp("dml-stack"), settle_seconds=0.5, dml_running=1, dml_queued=2)
    st.start()
    try:
        yield st
    finally:
        st.stop()


def make_table(client, project, name, rows=2000):
    table = f"{project}.odds_api.{name}"
    client.query(f"CREATE OR REPLACE TABLE `{table}` AS SELECT x, 0 AS n FROM UNNEST(GENERATE_ARRAY(1, {rows})) AS x"
                 ).result()
    return table


def storm(client, statements: list[str], tag: str) -> list[BaseException | None]:
    """Insert every statement at once (one thread each) and wait for each: its error or None."""
    def run(i_sql):
        i, sql = i_sql
        try:
            client.query(sql, job_id=f"dml_{tag}_{i}", job_retry=None).result()
            return None
        except BadRequest as exc:
            return exc

    with ThreadPoolExecutor(max_workers=len(statements)) as pool:
        return list(pool.map(run, enumerate(statements)))


def heavy_update(table):  # a self-join keeps each statement busy for a while on the emulator
    return (f"UPDATE `{table}` SET n = n + 1 WHERE x IN (SELECT a.x FROM `{table}` a CROSS JOIN `{table}` b "
            f"WHERE a.x = b.x + 0)")


def check_refusals(results, project, name, queued):
    """(refused by the queue limit, lost a serialization race). Every failure is one of the two:
    statements admitted together run at once, and BigQuery's snapshot isolation (modelled by the
    emulator, test_dml_concurrency.py) fails all but the first committer of a table."""
    refused, conflicts = [], []
    for exc in (e for e in results if e is not None):
        if errors.is_serialization_conflict(exc):
            conflicts.append(exc)
            continue
        assert [e.get("reason") for e in exc.errors] == ["resourcesExceeded"], exc.errors
        match = MESSAGE.match(exc.errors[0]["message"])
        assert match, exc.errors[0]["message"]
        assert match["table"] == f"{project}:odds_api.{name}" and int(match["limit"]) == queued
        assert isinstance(errors.classify(exc, job=True), errors.BigQueryLimit)
        refused.append(exc)
    return refused, conflicts


def test_the_statement_past_running_plus_queued_fails_with_bigquerys_reason(small_stack):
    client = small_stack.bigquery()
    table = make_table(client, small_stack.project, "dml_small")
    results = storm(client, [heavy_update(table)] * 12, "small")
    refused, conflicts = check_refusals(results, small_stack.project, "dml_small", queued=2)
    print(f"dml limit 1+2: 12 concurrent UPDATEs, {len(refused)} refused")
    assert refused, "12 concurrent statements against a limit of 3 outstanding: some must be refused"
    assert conflicts == []  # one running at a time: each queued statement snapshots after the one before
    done = 12 - len(refused)
    assert done >= 3  # the first three were admitted
    (count,) = client.query(f"SELECT MIN(n) = MAX(n) AND MIN(n) = {done} FROM `{table}`").result()
    assert count[0]  # every admitted statement ran exactly once; no refused one ran
    assert f"dml_limit running=1 queued=2" in small_stack.log_text("bigquery")
    assert small_stack.log_text("bigquery").count("dml_limit_rejected") == len(refused)


def test_the_limit_is_per_table_and_only_for_mutating_dml(small_stack):
    """Negative controls: the same storm spread over four tables (3 each: the limit) and a storm
    of SELECTs are never refused; statements one after another never are."""
    client = small_stack.bigquery()
    tables = [make_table(client, small_stack.project, f"dml_spread_{i}", rows=200) for i in range(4)]
    assert not [e for e in storm(client, [heavy_update(t) for t in tables for _ in range(3)], "spread") if e]
    assert not [e for e in storm(client, [f"SELECT COUNT(*) FROM `{tables[0]}`"] * 12, "select") if e]
    for i in range(6):
        client.query(heavy_update(tables[1]), job_id=f"dml_serial_{i}", job_retry=None).result()


def test_bigquerys_own_numbers_on_the_session_stack(stack):
    """2 + 20: 40 statements at once against one table; the ones past 22 outstanding fail."""
    client = stack.bigquery()
    table = make_table(client, stack.project, "dml_default")
    results = storm(client, [heavy_update(table)] * 40, "default")
    refused, conflicts = check_refusals(results, stack.project, "dml_default", queued=20)
    print(f"dml limit 2+20: 40 concurrent UPDATEs, {len(refused)} refused, {len(conflicts)} lost a serialization race")
    assert refused and 40 - len(refused) >= 22


def test_the_model_counts_outstanding_statements_per_table():
    limit = DmlQueueLimit(running=2, queued=1)
    assert [limit.admit("t", i) for i in range(3)] == [None] * 3
    refused = limit.admit("t", 3)
    assert refused == ("Resources exceeded during query execution: Too many DML statements outstanding against "
                       "table t, limit is 1")
    assert limit.admit("u", 9) is None  # another table has its own queue
    limit.finish(0)
    assert limit.admit("t", 4) is None and limit.rejected == 1 and limit.peak == {"t": 3, "u": 1}
    with pytest.raises(ValueError):
        DmlQueueLimit(running=0)
