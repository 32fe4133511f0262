"""The BigQuery emulator follows BigQuery's DML conflict rules, with plain UPDATE / INSERT statements.

https://cloud.google.com/bigquery/docs/data-manipulation-language, "DML statement conflicts" (quoted
rule by rule in oddsbatch/local/bigquery_dml.py): statements that update or delete existing rows of
one partition conflict; "BigQuery tries to rerun failed statements up to three times" and then the
client gets HTTP 400, reason invalidQuery, "Could not serialize access to table P:D.T due to concurrent
update"; "An INSERT DML statement that inserts rows to a table doesn't conflict with any other
concurrently running DML statement"; statements on other partitions both succeed. The holder's own
MERGE is driven through the same rules against the explorer's fake in test_dml_models.py; here the
emulator alone, with UPDATE and INSERT, and the model switched off (its bookkeeping:
tests/unit/test_bigquery_dml.py).

Each statement that must overlap another carries the label oddsbatch-hold=NAME: the launcher holds
each of its runs before the commit (log `dml_hold name=NAME job=ID attempt=N`) until the test creates
<bigquery data dir>/dml-holds/NAME.N, so every interleaving below is certain.
"""

from __future__ import annotations

import re
import uuid

import pytest
from google.api_core.exceptions import BadRequest
from google.cloud import bigquery

from oddsbatch import errors
from oddsbatch.local.bigquery_dml import RERUNS
from oddsbatch.local.stack import Stack
from tests.integration.test_dml_models import wait_until

pytestmark = pytest.mark.integration

MESSAGE = re.compile(r"^Could not serialize access to table (?P<table>\S+) due to concurrent update$")


def make_table(client, project: str, name: str) -> str:
    table = f"{project}.odds_api.{name}"
    client.query(f"DROP TABLE IF EXISTS `{table}`").result()
    client.query(f"CREATE TABLE `{table}` (game_date DATE, k INT64, n INT64) PARTITION BY game_date").result()
    client.query(f"INSERT INTO `{table}` VALUES ('2025-01-21', 1, 0), ('2025-01-22', 1, 0)").result()
    return table


class Held:
    """Statements whose every run waits before its commit until the test releases it."""

    def __init__(self, stack, client, table: str):
        self.stack, self.client, self.table = stack, client, table
        self.tag = uuid.uuid4().hex[:8]
        self.holds = stack.state_dir / "bigquery" / "dml-holds"
        self.jobs = {}

    def submit(self, name: str, statement: str, hold: bool = True):
        labels = {"oddsbatch-hold": f"{self.tag}-{name}"} if hold else {}
        job_id = f"conc_{self.tag}_{name}"
        self.jobs[name] = self.client.query(statement.format(t=f"`{self.table}`"), job_id=job_id, job_retry=None,
                                            job_config=bigquery.QueryJobConfig(labels=labels))
        return self.jobs[name]

    def at_gate(self, name: str, attempt: int) -> bool:
        return f"dml_hold name={self.tag}-{name} job=conc_{self.tag}_{name} attempt={attempt}" in \
            self.stack.log_text("bigquery")

    def release(self, name: str, attempt: int) -> None:
        wait_until(lambda: self.at_gate(name, attempt), f"{name} at its commit (run {attempt})")
        (self.holds / f"{self.tag}-{name}.{attempt}").touch()

    def outcome(self, name: str) -> BaseException | None:
        try:
            self.jobs[name].result()
            return None
        except BadRequest as exc:
            return exc


def values(client, table: str, day: str) -> list[tuple]:
    return [tuple(r.values()) for r in client.query(
        f"SELECT k, n FROM `{table}` WHERE game_date = '{day}' ORDER BY k").result()]


def check_conflict(exc: BaseException, project: str, name: str) -> None:
    assert exc.code == 400, exc
    assert [e.get("reason") for e in exc.errors] == ["invalidQuery"], exc.errors
    match = MESSAGE.match(exc.errors[0]["message"])
    assert match and match["table"] == f"{project}:odds_api.{name}", exc.errors[0]["message"]
    # what warehouse.py resubmits as a new job (errors.RetryInProcess), and logs as bigquery_retry
    assert isinstance(errors.classify(exc, job=True), errors.SerializationConflict)


def test_an_update_that_keeps_meeting_newer_updates_fails_after_three_reruns(stack):
    client = stack.bigquery()
    table = make_table(client, stack.project, "conc_exhausted")
    held = Held(stack, client, table)
    held.submit("b", "UPDATE {t} SET n = 100 WHERE game_date = '2025-01-21'")
    for run in range(1, RERUNS + 2):  # each run of b meets an update committed after its snapshot
        held.submit(f"a{run}", f"UPDATE {{t}} SET n = {run} WHERE game_date = '2025-01-21'", hold=False).result()
        held.release("b", run)
    check_conflict(held.outcome("b"), stack.project, "conc_exhausted")
    assert values(client, table, "2025-01-21") == [(1, RERUNS + 1)]  # b changed nothing
    log = stack.log_text("bigquery")
    assert len(re.findall(rf"dml_conflict table=\S+ job=conc_{held.tag}_b ", log)) == RERUNS + 1


def test_an_update_rerun_on_a_fresh_snapshot_commits(stack):
    client = stack.bigquery()
    table = make_table(client, stack.project, "conc_rerun")
    held = Held(stack, client, table)
    held.submit("b", "UPDATE {t} SET n = n + 10 WHERE game_date = '2025-01-21'")
    held.submit("a", "UPDATE {t} SET n = n + 1 WHERE game_date = '2025-01-21'", hold=False).result()
    held.release("b", 1)  # conflicts with a: rerun on the snapshot a committed
    held.release("b", 2)
    assert held.outcome("b") is None
    assert values(client, table, "2025-01-21") == [(1, 11)]  # both increments: the rerun read a's


def test_an_insert_never_conflicts_and_the_update_keeps_its_snapshot(stack):
    """The INSERT commits while the UPDATE runs: neither fails, and the UPDATE does not touch the
    inserted row (it was not in the snapshot the UPDATE started on)."""
    client = stack.bigquery()
    table = make_table(client, stack.project, "conc_insert")
    held = Held(stack, client, table)
    held.submit("u", "UPDATE {t} SET n = 7 WHERE game_date = '2025-01-21'")
    wait_until(lambda: held.at_gate("u", 1), "the update running")
    client.query(f"INSERT INTO `{table}` VALUES ('2025-01-21', 2, 0)", job_retry=None).result()
    held.release("u", 1)
    assert held.outcome("u") is None
    assert values(client, table, "2025-01-21") == [(1, 7), (2, 0)]
    assert f"dml_conflict table={stack.project}:odds_api.conc_insert job=conc_{held.tag}_u " \
        not in stack.log_text("bigquery")


def test_updates_of_different_partitions_both_commit(stack):
    client = stack.bigquery()
    table = make_table(client, stack.project, "conc_other")
    held = Held(stack, client, table)
    held.submit("d1", "UPDATE {t} SET n = 1 WHERE game_date = '2025-01-21'")
    held.submit("d2", "UPDATE {t} SET n = 2 WHERE game_date = '2025-01-22'")
    held.release("d1", 1)
    assert held.outcome("d1") is None
    held.release("d2", 1)
    assert held.outcome("d2") is None
    assert values(client, table, "2025-01-21") == [(1, 1)] and values(client, table, "2025-01-22") == [(1, 2)]


@pytest.fixture(scope="module")
def conflicts_off(tmp_path_factory):
    st = Stack(tmp_path_factory.mktemp("dml-conflicts-off"), settle_seconds=0.5, dml_conflicts=False)
    st.start()
    try:
        yield st
    finally:
        st.stop()


def test_the_model_switched_off_is_local_bigquery_alone(conflicts_off):
    """Negative control of the flag: `--dml-conflicts off` runs statements one after the other, no rule."""
    client = conflicts_off.bigquery()
    table = make_table(client, conflicts_off.project, "conc_off")
    for n in (1, 2):
        client.query(f"UPDATE `{table}` SET n = {n} WHERE game_date = '2025-01-21'", job_retry=None).result()
    assert values(client, table, "2025-01-21") == [(1, 2)]
    assert "conflicts=off" in conflicts_off.log_text("bigquery")
    assert "dml_conflict " not in conflicts_off.log_text("bigquery")


def _group_merge(held: "Held", name: str, days: list[str], n: int):
    """An updating MERGE restricted to several partitions by `IN UNNEST(@game_dates)`, the form of
    oddsbatch.sql.merge_sql for a group of dates, held before its commit."""
    statement = (f"MERGE `{held.table}` AS T USING (SELECT d AS game_date FROM UNNEST(@game_dates) AS d) AS S\n"
                 "ON T.game_date IN UNNEST(@game_dates) AND T.game_date = S.game_date\n"
                 f"WHEN MATCHED THEN UPDATE SET n = {n}")
    config = bigquery.QueryJobConfig(labels={"oddsbatch-hold": f"{held.tag}-{name}"}, query_parameters=[
        bigquery.ArrayQueryParameter("game_dates", "DATE", days)])
    held.jobs[name] = held.client.query(statement, job_id=f"conc_{held.tag}_{name}", job_retry=None,
                                        job_config=config)


@pytest.mark.parametrize("other_day, conflicts", [("2025-01-23", False), ("2025-01-22", True)])
def test_a_merge_of_several_dates_conflicts_only_within_its_dates(stack, other_day, conflicts):
    """The partitions of `game_date IN UNNEST(@game_dates)` are the array's dates: an update of a
    date outside the group commits beside the group's updating MERGE; one of its dates conflicts."""
    client = stack.bigquery()
    name = f"conc_group_{other_day[-2:]}"
    table = make_table(client, stack.project, name)
    client.query(f"INSERT INTO `{table}` VALUES ('2025-01-23', 1, 0)").result()
    held = Held(stack, client, table)
    _group_merge(held, "g", ["2025-01-21", "2025-01-22"], 5)
    wait_until(lambda: held.at_gate("g", 1), "the group's MERGE ran on its snapshot")
    held.submit("o", f"UPDATE {{t}} SET n = 9 WHERE game_date = '{other_day}'", hold=False).result()
    held.release("g", 1)
    if conflicts:  # rerun on a fresh snapshot (it then commits)
        held.release("g", 2)
        assert f"dml_conflict table={stack.project}:odds_api.{name} job=conc_{held.tag}_g " in stack.log_text("bigquery")
    else:  # it commits at its first run (a conflict would hold a second run at its gate)
        job = held.jobs["g"]
        wait_until(lambda: held.at_gate("g", 2) or job.done(), "the group's MERGE committed or reran")
        assert not held.at_gate("g", 2), "the update of a date outside the group conflicted with its MERGE"
    assert held.outcome("g") is None
    assert values(client, table, "2025-01-21") == [(1, 5)] and values(client, table, "2025-01-22") == [(1, 5)]
    assert values(client, table, "2025-01-23") == [(1, 9 if other_day == "2025-01-23" else 0)]
