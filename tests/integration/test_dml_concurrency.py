"""The BigQuery emulator models BigQuery's snapshot isolation of mutating DML per (table, partition).

https://cloud.google.com/bigquery/docs/data-manipulation-language ("UPDATE, DELETE, MERGE DML
concurrency", "DML statement conflicts"): mutating statements that run at once conflict when they
mutate the same partition, and the later to commit fails with HTTP 400, reason invalidQuery,
"Could not serialize access to table P:D.T due to concurrent update"; statements on different
partitions both succeed. local-bigquery serializes writes per table, so the launcher
(bigquery_emulator.py, bigquery_dml.SnapshotIsolation) takes each statement's snapshot when it is
admitted (or leaves the queue of the 2 running) and checks it at commit. Driven here against the
emulator directly with the official client, with MERGEs shaped like ours (`ON T.game_date =
@game_date AND ...`). Negative controls: other partitions, one after the other, the model off.
"""

from __future__ import annotations

import re
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from google.api_core.exceptions import BadRequest
from google.cloud import bigquery

from oddsbatch import errors
from oddsbatch.local.bigquery_dml import WHOLE_TABLE, SnapshotIsolation
from oddsbatch.local.stack import Stack

pytestmark = pytest.mark.integration

MESSAGE = re.compile(r"^Could not serialize access to table (?P<table>\S+) due to concurrent update$")
ROWS = 400  # keys per partition; the source's self-join keeps each MERGE busy for a while


def make_table(client, project: str, name: str) -> str:
    table = f"{project}.odds_api.{name}"
    client.query(f"DROP TABLE IF EXISTS `{table}`").result()
    client.query(f"CREATE TABLE `{table}` (game_date DATE, k INT64, n INT64) PARTITION BY game_date "
                 f"OPTIONS (require_partition_filter = TRUE)").result()
    return table


def merge_sql(table: str, value: int) -> str:
    """Upsert every key of one game date to n = value (a self-join makes the source slow to build)."""
    return (f"MERGE `{table}` AS T USING (SELECT a AS k, {value} AS n FROM UNNEST(GENERATE_ARRAY(1, {ROWS})) AS a "
            f"CROSS JOIN UNNEST(GENERATE_ARRAY(1, {ROWS})) AS b WHERE a = b) AS S "
            f"ON T.game_date = @game_date AND T.k = S.k "
            f"WHEN MATCHED THEN UPDATE SET n = S.n "
            f"WHEN NOT MATCHED THEN INSERT (game_date, k, n) VALUES (@game_date, S.k, S.n)")


def run_merge(client, table: str, day: str, value: int, job_id: str) -> BaseException | None:
    config = bigquery.QueryJobConfig(query_parameters=[bigquery.ScalarQueryParameter("game_date", "DATE", day)])
    try:
        client.query(merge_sql(table, value), job_config=config, job_id=job_id, job_retry=None).result()
        return None
    except BadRequest as exc:
        return exc


def at_once(client, table: str, jobs: list[tuple[str, int]], tag: str) -> list[BaseException | None]:
    """Submit one MERGE per (day, value) from its own thread, all released together."""
    barrier = threading.Barrier(len(jobs))

    def go(i_job):
        i, (day, value) = i_job
        barrier.wait()
        return run_merge(client, table, day, value, f"conc_{tag}_{i}")

    with ThreadPoolExecutor(max_workers=len(jobs)) as pool:
        return list(pool.map(go, enumerate(jobs)))


def values(client, table: str, day: str) -> set[int]:
    rows = client.query(f"SELECT DISTINCT n FROM `{table}` WHERE game_date = '{day}'").result()
    return {r[0] for r in rows}


def check_conflict(exc: BaseException, project: str, name: str) -> None:
    assert exc.code == 400, exc
    assert [e.get("reason") for e in exc.errors] == ["invalidQuery"], exc.errors
    match = MESSAGE.match(exc.errors[0]["message"])
    assert match and match["table"] == f"{project}:odds_api.{name}", exc.errors[0]["message"]
    # what warehouse.py resubmits as a new job (errors.RetryInProcess), and logs as bigquery_retry
    assert isinstance(errors.classify(exc, job=True), errors.SerializationConflict)


@pytest.fixture(scope="module")
def conflicts_off(tmp_path_factory):
    st = Stack(tmp_path_factory.mktemp("dml-conflicts-off"), settle_seconds=0.5, dml_conflicts=False)
    st.start()
    try:
        yield st
    finally:
        st.stop()


def test_two_concurrent_merges_into_one_partition_exactly_one_fails(stack):
    client = stack.bigquery()
    table = make_table(client, stack.project, "conc_same")
    before = stack.log_text("bigquery").count("dml_conflict ")
    results = at_once(client, table, [("2025-01-21", 1), ("2025-01-21", 2)], "same")
    failed = [e for e in results if e is not None]
    assert len(failed) == 1, results
    check_conflict(failed[0], stack.project, "conc_same")
    winner = 1 if results[0] is None else 2
    assert values(client, table, "2025-01-21") == {winner}  # the loser changed nothing
    assert stack.log_text("bigquery").count("dml_conflict ") == before + 1
    # Resubmitted as a new job (what warehouse.py does), the loser now succeeds on the new snapshot.
    assert run_merge(client, table, "2025-01-21", 3 - winner, "conc_same_retry") is None
    assert values(client, table, "2025-01-21") == {3 - winner}


def test_different_partitions_both_succeed(stack):
    client = stack.bigquery()
    table = make_table(client, stack.project, "conc_other")
    results = at_once(client, table, [("2025-01-21", 1), ("2025-01-22", 2)], "other")
    assert results == [None, None]
    assert values(client, table, "2025-01-21") == {1} and values(client, table, "2025-01-22") == {2}


def test_one_after_the_other_both_succeed(stack):
    client = stack.bigquery()
    table = make_table(client, stack.project, "conc_serial")
    assert run_merge(client, table, "2025-01-21", 1, "conc_serial_0") is None
    assert run_merge(client, table, "2025-01-21", 2, "conc_serial_1") is None
    assert values(client, table, "2025-01-21") == {2}


def test_a_statement_queued_behind_the_two_running_starts_on_a_later_snapshot(stack):
    """Three at once on one partition: BigQuery runs 2 (one of them conflicts), the third waits
    as PENDING and starts after the first commit, so it succeeds: exactly one fails, not two."""
    client = stack.bigquery()
    table = make_table(client, stack.project, "conc_queued")
    results = at_once(client, table, [("2025-01-21", v) for v in (1, 2, 3)], "queued")
    failed = [e for e in results if e is not None]
    assert len(failed) == 1, results
    check_conflict(failed[0], stack.project, "conc_queued")


def test_the_model_switched_off_lets_both_commit(conflicts_off):
    """Negative control of the flag: `--dml-conflicts off` is local-bigquery's own behaviour."""
    client = conflicts_off.bigquery()
    table = make_table(client, conflicts_off.project, "conc_off")
    assert at_once(client, table, [("2025-01-21", 1), ("2025-01-21", 2)], "off") == [None, None]
    assert "conflicts=off" in conflicts_off.log_text("bigquery")
    assert "dml_conflict " not in conflicts_off.log_text("bigquery")


def test_the_model_per_table_and_partition():
    iso = SnapshotIsolation(running=2)
    day1, day2 = frozenset({"2025-01-21"}), frozenset({"2025-01-22"})
    iso.admit("t", "a", day1)
    iso.admit("t", "b", day1)
    iso.admit("t", "c", day2)  # queued (third), other partition
    iso.admit("u", "d", day1)  # another table
    assert iso.snapshot("c") is None and iso.snapshot("d") == 0
    assert iso.check("a") is None
    iso.commit("a")
    iso.finish("a")
    assert iso.snapshot("c") == 1  # left the queue after a's commit
    assert iso.check("b") == "Could not serialize access to table t due to concurrent update"
    iso.finish("b")
    assert iso.check("c") is None and iso.check("d") is None
    iso.admit("t", "e", WHOLE_TABLE)  # partitions unknown: conflicts with any later commit
    iso.commit("c")
    assert iso.check("e") is not None
    assert iso.conflicts == 2 and iso.committed == 2
    with pytest.raises(ValueError):
        SnapshotIsolation(running=0)


def test_the_holders_warehouse_resubmits_a_real_conflict_and_logs_it(stack, capsys):
    """Two holders' MERGEs of one partition at once (as after a takeover): the emulator fails one
    with the serialization error, warehouse.py logs `bigquery_retry` and resubmits it as a new job,
    and both end merged."""
    from oddsbatch.config import Settings
    from oddsbatch.tables import table_for_endpoint
    from oddsbatch.warehouse import Warehouse
    from oddsbatch import staging
    from tests.integration.test_merge_order import DAY, row

    settings = Settings.from_env("game-lines", {**stack.env, "ODDSBATCH_TABLE": "odds_api_game_lines"})
    spec = table_for_endpoint("game-lines")
    houses = [Warehouse(settings, spec) for _ in range(2)]
    barrier = threading.Barrier(2)

    def go(i):
        # Many rows keep each MERGE busy long enough for the other to be admitted meanwhile.
        rows = [row(spec, f"conflict-{i}-{n}", source_generation=5 + i) for n in range(300)]
        groups = [({c: r[c] for c in spec.head_columns}, [{c: r[c] for c in spec.line_columns if r[c] is not None}])
                  for r in rows]
        run_id = f"conflict{i}{threading.get_ident() % 10000}"
        staging_id = houses[i].stage(run_id, staging.encode(groups))
        barrier.wait()  # both staged: the two MERGEs are submitted together
        try:
            return houses[i].merge(run_id, staging_id, DAY)
        finally:
            houses[i].drop_staging(staging_id)

    before = stack.log_text("bigquery").count("dml_conflict ")
    with ThreadPoolExecutor(max_workers=2) as pool:
        results = list(pool.map(go, range(2)))
    assert [r.inserted for r in results] == [300, 300]
    retried = sum(h.retried.get("serializationConflict", 0) for h in houses)
    emulator = stack.log_text("bigquery").count("dml_conflict ") - before
    lines = [line for line in capsys.readouterr().out.splitlines() if '"bigquery_retry"' in line]
    print(f"dml concurrency: 2 holders' MERGEs of one partition at once, {retried} conflict(s) retried")
    assert retried == emulator >= 1 and len(lines) == retried
    assert all('"reason": "serializationConflict"' in line and '"retrying": true' in line for line in lines)
