"""The same concurrent DML scenarios against the explorer's BigQuery fake and the emulator: same outcome.

Both models claim to follow BigQuery's DML page rule by rule
(https://cloud.google.com/bigquery/docs/data-manipulation-language, "UPDATE, DELETE, MERGE DML
concurrency" and "DML statement conflicts"; the quotes are in oddsbatch/local/bigquery_dml.py). A
model checked against nothing proves nothing, so each scenario below runs the holder's own MERGE
(oddsbatch.sql.merge_sql over a staged file) on both, one step at a time, and both must end with the
outcome the documentation gives, written down in the scenario:

- each MERGE job: DONE and its error (None, or the serialization conflict), and how many runs it
  took (BigQuery "tries to rerun failed statements up to three times": 1 to 4 runs);
- the table's rows of the scenario's partition, counted per (game, generation, price): a key stored
  twice counts 2.

How a step is driven, so the outcome is certain (no race left to the clock):
- fake (tests/explore/fakes.py): a MERGE's run ends when the test completes its server job, as the
  explorer's scheduler does;
- emulator: each MERGE carries the label oddsbatch-hold=NAME; the launcher holds every run of it
  before its commit (log line `dml_hold name=NAME job=ID attempt=N`) until the test creates the file
  <bigquery data dir>/dml-holds/NAME.N. The test waits on those log lines and on jobs.get, not on
  time windows.
"""

from __future__ import annotations

import re
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from types import SimpleNamespace

import pytest
from google.api_core.exceptions import BadRequest, Conflict, NotFound
from google.cloud import bigquery

from .staged_upload import stage_bytes
from oddsbatch import errors, sql, staging
from oddsbatch.config import Settings
from oddsbatch.tables import table_for_endpoint
from oddsbatch.warehouse import Warehouse
from tests.explore.fakes import FakeBigQuery
from tests.integration.test_merge_order import row

pytestmark = pytest.mark.integration

SPEC = table_for_endpoint("game-lines")
CONFLICT = re.compile(r"^Could not serialize access to table \S+ due to concurrent update$")


# -- scenarios --------------------------------------------------------------------------------------
# Steps: ("merge", job, rows)  insert the holder's MERGE of these staged rows (rows: (game, generation, price))
#        ("commit", job)        let the job's current run reach its commit (it commits, or conflicts and reruns)
#        ("state", job, state)  jobs.get says PENDING / RUNNING / DONE
@dataclass
class Scenario:
    name: str
    day: str
    steps: list
    jobs: dict  # job -> (error: None | "conflict", runs)
    rows: dict  # (game, generation, price) -> rows stored
    why: str = ""


SEED = [("merge", "seed", [("g1", 5, 1.5)]), ("commit", "seed")]  # g1 exists before the race
SCENARIOS = [
    Scenario(
        "insert_only_merges_of_one_new_key", "2031-01-01",
        [("merge", "a", [("g1", 5, 1.5)]), ("merge", "b", [("g1", 5, 1.5)]),
         ("state", "a", "RUNNING"), ("state", "b", "RUNNING"),
         ("commit", "a"), ("state", "a", "DONE"), ("state", "b", "RUNNING"), ("commit", "b")],
        jobs={"a": (None, 1), "b": (None, 1)}, rows={("g1", 5, 1.5): 2},
        why='"A MERGE DML statement does not conflict with other concurrently running DML statements as long as '
            'the statement only inserts rows": both commit, BigQuery enforces no key, g1 is stored twice'),
    Scenario(
        "insert_vs_update", "2031-01-02",
        SEED + [("merge", "ins", [("g2", 5, 2.0)]), ("merge", "upd", [("g1", 6, 1.8)]),
                ("commit", "ins"), ("commit", "upd")],
        jobs={"seed": (None, 1), "ins": (None, 1), "upd": (None, 1)},
        rows={("g1", 6, 1.8): 1, ("g2", 5, 2.0): 1},
        why='an insert-only statement "doesn\'t conflict with any other concurrently running DML statement": '
            'the update committing after it does not conflict'),
    Scenario(
        "update_vs_insert", "2031-01-03",
        SEED + [("merge", "ins", [("g2", 5, 2.0)]), ("merge", "upd", [("g1", 6, 1.8)]),
                ("commit", "upd"), ("commit", "ins")],
        jobs={"seed": (None, 1), "ins": (None, 1), "upd": (None, 1)},
        rows={("g1", 6, 1.8): 1, ("g2", 5, 2.0): 1},
        why="the insert-only MERGE committing after an update of its partition does not conflict either"),
    Scenario(
        "update_vs_update_one_rerun", "2031-01-04",
        SEED + [("merge", "a", [("g1", 6, 1.6)]), ("merge", "b", [("g1", 7, 1.7)]),
                ("commit", "a"), ("commit", "b"), ("state", "b", "RUNNING"), ("commit", "b")],
        jobs={"seed": (None, 1), "a": (None, 1), "b": (None, 2)}, rows={("g1", 7, 1.7): 1},
        why="b updates g1 on a snapshot that a's update made stale: it conflicts, BigQuery reruns it on a "
            "fresh snapshot, and the rerun commits (the client sees no error)"),
    Scenario(
        "update_vs_update_reruns_exhausted", "2031-01-05",
        SEED + [("merge", "b", [("g1", 10, 2.0)])]
        + [s for i in range(1, 5) for s in (("merge", f"a{i}", [("g1", 5 + i, 1.0 + i / 10)]), ("commit", f"a{i}"),
                                            ("commit", "b"))],
        jobs={"seed": (None, 1), "a1": (None, 1), "a2": (None, 1), "a3": (None, 1), "a4": (None, 1),
              "b": ("conflict", 4)},
        rows={("g1", 9, 1.4): 1},
        why='each of b\'s 4 runs meets an update of g1 committed after its snapshot: "BigQuery tries to rerun '
            'failed statements up to three times", then the client gets "Could not serialize access"'),
    Scenario(
        "queued_statement_snapshot_at_start", "2031-01-06",
        SEED + [("merge", "a", [("g1", 6, 1.6)]), ("merge", "b", [("g2", 5, 2.0)]), ("merge", "c", [("g1", 7, 1.7)]),
                ("state", "c", "PENDING"), ("commit", "a"), ("state", "c", "RUNNING"),
                ("commit", "c"), ("commit", "b")],
        jobs={"seed": (None, 1), "a": (None, 1), "b": (None, 1), "c": (None, 1)},
        rows={("g1", 7, 1.7): 1, ("g2", 5, 2.0): 1},
        why="2 run, c waits as PENDING; it starts (takes its snapshot) when a is done, so a's update is in its "
            "snapshot and c commits without a rerun (a snapshot taken at insertion would have conflicted)"),
]


def payload(rows, day: str) -> bytes:
    staged = [row(SPEC, game, game_date=day, source_generation=gen, price_decimal=price, source_object=f"{game}-{gen}.json")
              for game, gen, price in rows]
    return staging.encode([({c: r[c] for c in SPEC.head_columns},
                            [{c: r[c] for c in SPEC.line_columns if r[c] is not None}]) for r in staged])


def merge_config(day: str, labels: dict | None = None):
    """The holder's MERGE parameters for the one date (warehouse.merge_job_config)."""
    from datetime import date

    from oddsbatch.warehouse import merge_job_config

    config = merge_job_config([date.fromisoformat(day)])
    config.labels = labels or {}
    return config


def date_config(day: str):
    return bigquery.QueryJobConfig(query_parameters=[bigquery.ScalarQueryParameter("game_date", "DATE", day)])


# -- the fake, driven step by step ----------------------------------------------------------------------
class _Server:
    """What FakeBigQuery needs of the explorer's scheduler: jobs it runs, switch points (none here)."""

    def __init__(self):
        self.jobs, self.step, self.now = [], 0, 0.0
        self.lease_in_merge = self.crash_in_merge = False

    def point(self, *args, **kwargs):
        pass

    def note(self, entry):
        pass

    def me(self):
        return SimpleNamespace(name="test")

    def take_fault(self):  # no faults are injected here
        return None


class FakeRun:
    def __init__(self, day: str):
        self.day, self.server = day, _Server()
        self.bq = FakeBigQuery(self.server, SPEC, "p.odds_api.game_lines")
        self.jobs = {}

    def merge(self, name: str, rows) -> None:
        staging_id = f"p.odds_api._staging_{name}"
        self.bq.tables[staging_id] = self.bq._flatten(payload(rows, self.day))
        statement = sql.merge_sql(SPEC, sql.quote(self.bq.target), sql.quote(staging_id))
        self.jobs[name] = self.bq.query(statement, job_config=merge_config(self.day), job_id=f"merge_{name}")

    def commit(self, name: str) -> None:
        run = self.jobs[name].server
        assert run in self.server.jobs and not run.done, f"{name} is not running"
        run.finish()
        run.done = True
        self.server.step += 1

    def state(self, name: str) -> str:
        return self.bq.get_job(f"merge_{name}").state

    def outcome(self):
        jobs = {n: (_kind(j.error), j.runs) for n, j in self.jobs.items()}
        rows = Counter((r["game_id"], r["source_generation"], r["price_decimal"])
                       for r in self.bq.partitions.get(self.day, {}).values())
        return jobs, dict(rows)


def _kind(error) -> str | None:
    if error is None:
        return None
    assert isinstance(error, BadRequest) and [e.get("reason") for e in error.errors] == ["invalidQuery"], error
    assert CONFLICT.match(error.errors[0]["message"] if error.errors[0].get("message") else error.message), error
    assert isinstance(errors.classify(error, job=True), errors.SerializationConflict)
    return "conflict"


# -- the emulator, driven step by step ----------------------------------------------------------------
def wait_until(condition, what: str, timeout: float = 60.0):
    """Wait for an event the emulator reports (a log line, a job state); the timeout only bounds a hang."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


class EmulatorRun:
    def __init__(self, stack, day: str, tag: str):
        self.stack, self.day, self.tag = stack, day, tag
        settings = Settings.from_env("game-lines", {**stack.env, "ODDSBATCH_TABLE": "odds_api_game_lines"})
        self.warehouse = Warehouse(settings, SPEC)
        self.client = stack.bigquery()
        self.holds = stack.state_dir / "bigquery" / "dml-holds"
        self.jobs, self.staged, self.released = {}, [], Counter()

    def hold_name(self, name: str) -> str:
        return f"{self.tag}-{name}"

    def job_id(self, name: str) -> str:
        return f"merge_{self.tag}_{name}"

    def at_gate(self, name: str, attempt: int) -> bool:
        return f"dml_hold name={self.hold_name(name)} job={self.job_id(name)} attempt={attempt}" in \
            self.stack.log_text("bigquery")

    def merge(self, name: str, rows) -> None:
        staging_id = stage_bytes(self.warehouse, f"{self.tag}{name}", payload(rows, self.day))
        self.staged.append(staging_id)
        statement = sql.merge_sql(SPEC, self.warehouse.target, sql.quote(staging_id))
        self.jobs[name] = self.client.query(statement, job_config=merge_config(self.day, {
            "oddsbatch-hold": self.hold_name(name)}), job_id=self.job_id(name), job_retry=None)

    def commit(self, name: str) -> None:
        attempt = self.released[name] + 1
        wait_until(lambda: self.at_gate(name, attempt), f"{name} at its commit (run {attempt})")
        (self.holds / f"{self.hold_name(name)}.{attempt}").touch()
        self.released[name] = attempt
        wait_until(lambda: self.client.get_job(self.job_id(name)).state == "DONE" or self.at_gate(name, attempt + 1),
                   f"{name} committed or rerun")

    def state(self, name: str) -> str:
        if self.released[name] == 0 and self.client.get_job(self.job_id(name)).state != "PENDING":
            wait_until(lambda: self.at_gate(name, 1), f"{name} running")  # it runs: on its snapshot, held
        return self.client.get_job(self.job_id(name)).state

    def outcome(self):
        jobs = {}
        for name in self.jobs:
            job = self.client.get_job(self.job_id(name))
            error = BadRequest(job.error_result["message"], errors=[job.error_result]) if job.error_result else None
            runs = len(re.findall(rf"dml_hold name={re.escape(self.hold_name(name))} ", self.stack.log_text("bigquery")))
            jobs[name] = (_kind(error), runs)
        query = (f"SELECT game_id, source_generation, price_decimal FROM {self.warehouse.target} "
                 f"WHERE game_date = @game_date")
        rows = Counter(tuple(r.values()) for r in self.client.query(query, job_config=date_config(self.day)).result())
        for staging_id in self.staged:
            self.warehouse.drop_staging(staging_id)
        return jobs, dict(rows)


def play(model, steps) -> tuple:
    states = []
    for step in steps:
        if step[0] == "merge":
            model.merge(step[1], step[2])
        elif step[0] == "commit":
            model.commit(step[1])
        else:
            states.append((step[1], model.state(step[1])))
            assert states[-1][1] == step[2], (step, states)
    return model.outcome() + (states,)


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.name)
def test_fake_and_emulator_agree_with_the_documented_rule(scenario, stack):
    fake = play(FakeRun(scenario.day), scenario.steps)
    emulated = play(EmulatorRun(stack, scenario.day, uuid.uuid4().hex[:8]), scenario.steps)
    print(f"dml model {scenario.name}: fake={fake[:2]} emulator={emulated[:2]}")
    assert fake[:2] == (scenario.jobs, scenario.rows), scenario.why
    assert emulated[:2] == (scenario.jobs, scenario.rows), scenario.why
    assert fake[2] == emulated[2]


# -- job ids: what the fencing relies on ----------------------------------------------------------------
def job_id_steps(model, new_id, insert_placeholder, insert_merge, get_job):
    """jobs.get of an unknown id -> NotFound; a placeholder takes the id; a late MERGE under it -> 409."""
    with pytest.raises(NotFound):
        get_job(new_id)
    insert_placeholder(new_id)
    with pytest.raises(Conflict) as late:
        insert_merge(new_id)
    assert late.value.code == 409 and "Already Exists" in str(late.value)
    return get_job(new_id).state


def test_job_ids_on_the_fake():
    run = FakeRun("2031-01-07")
    run.merge("a", [("g1", 5, 1.5)])
    statement = sql.merge_sql(SPEC, sql.quote(run.bq.target), sql.quote("p.odds_api._staging_a"))
    state = job_id_steps(
        run, "fenced_1", lambda i: run.bq.query("SELECT 1", job_id=i),
        lambda i: run.bq.query(statement, job_config=merge_config(run.day), job_id=i), run.bq.get_job)
    assert state == "DONE"
    with pytest.raises(Conflict):  # the MERGE's own id, while it runs
        run.bq.query("SELECT 1", job_id="merge_a")
    assert run.state("a") == "RUNNING"
    run.commit("a")
    assert run.state("a") == "DONE" and run.bq.get_job("merge_a").error_result is None


def test_job_ids_on_the_emulator(stack):
    run = EmulatorRun(stack, "2031-01-07", uuid.uuid4().hex[:8])
    run.merge("a", [("g1", 5, 1.5)])
    statement = sql.merge_sql(SPEC, run.warehouse.target, sql.quote(run.staged[0]))
    fenced = f"fenced_{run.tag}"
    state = job_id_steps(
        run, fenced, lambda i: run.client.query("SELECT 1", job_id=i, job_retry=None).result(),
        lambda i: run.client.query(statement, job_config=merge_config(run.day), job_id=i, job_retry=None),
        run.client.get_job)
    assert state == "DONE"
    with pytest.raises(Conflict):  # the MERGE's own id, while it runs
        run.client.query("SELECT 1", job_id=run.job_id("a"), job_retry=None)
    assert run.state("a") == "RUNNING"  # held before its commit: jobs.get says RUNNING until it commits
    run.commit("a")
    job = run.client.get_job(run.job_id("a"))
    assert job.state == "DONE" and job.error_result is None and job.num_dml_affected_rows == 1
    run.outcome()
