"""The MERGE fence (fence.py): at most one MERGE job of a batch key in flight, whoever holds it.

Pure unit tests: the Firestore fake of the unit tests (exclusive create, `last_update_time`
preconditions) and a stand-in jobs API with BigQuery's documented job-id rules (an id that
exists answers 409 Already Exists; jobs.get says RUNNING until DONE:
https://cloud.google.com/bigquery/docs/running-jobs). The same protocol runs against every
interleaving in tests/explore/ and on the emulators in the chaos suite.
"""

from datetime import date, timedelta

import pytest
from google.api_core.exceptions import Conflict, NotFound

from oddsbatch.config import Settings
from oddsbatch.deadline import Deadline
from oddsbatch.errors import DeadlineReached
from oddsbatch.fence import PLACEHOLDER_SQL, Fenced, MergeFence, is_placeholder
from oddsbatch.tables import table_for_endpoint
from oddsbatch.warehouse import Warehouse

from .firestore_fake import FakeFirestore

KEY = "game-lines_2025-01-21"


class Job:
    def __init__(self, job_id, query, polls_until_done=0):
        self.job_id, self.query = job_id, query
        self.polls_left = polls_until_done
        self.error = None
        self.dml_stats = None
        self.num_dml_affected_rows = 0

    @property
    def state(self):
        return "DONE" if self.polls_left <= 0 else "RUNNING"

    def result(self, timeout=None):
        self.polls_left = 0
        return self

    def reload(self):
        pass


class Jobs:
    """The project's jobs: ids are unique (409 on a second insert), jobs.get counts polls."""

    def __init__(self):
        self.jobs: dict[str, Job] = {}
        self.gets = 0

    def query(self, statement, job_config=None, job_id=None, location=None, job_retry=None):
        if job_id in self.jobs:
            raise Conflict(f"Already Exists: Job p:{job_id}")
        self.jobs[job_id] = job = Job(job_id, statement, polls_until_done=getattr(self, "running_polls", 0))
        return job

    def get_job(self, job_id, location=None):
        self.gets += 1
        job = self.jobs.get(job_id)
        if job is None:
            raise NotFound(f"Not found: Job p:{job_id}")
        job.polls_left -= 1
        return job

    def cancel_job(self, job_id, location=None):
        pass


def fence(db, jobs, owner, deadline=None, sleeps=None):
    return MergeFence(db.collection("oddsbatch_fences"), KEY, owner, jobs, timedelta(days=7),
                      deadline or Deadline(540), sleep=(sleeps.append if sleeps is not None else lambda s: None))


def recorded(db):
    return db.docs[f"oddsbatch_fences/{KEY}"]["job_id"]


def test_the_first_record_of_a_key_creates_its_fence_and_asks_bigquery_nothing():
    db, jobs = FakeFirestore(), Jobs()
    fence(db, jobs, "e1").record("merge_a_1")
    assert recorded(db) == "merge_a_1" and jobs.gets == 0


def test_the_next_holder_waits_until_the_recorded_merge_is_done_before_recording_its_own():
    db, jobs = FakeFirestore(), Jobs()
    fence(db, jobs, "e1").record("merge_a_1")
    jobs.running_polls = 3
    jobs.query("MERGE ...", job_id="merge_a_1")  # e1's MERGE runs on after e1 died
    sleeps = []
    fence(db, jobs, "e2", sleeps=sleeps).record("merge_b_1")
    assert jobs.gets == 3 and len(sleeps) == 2  # RUNNING, RUNNING, DONE
    assert recorded(db) == "merge_b_1"


def test_a_recorded_job_never_inserted_is_burned_and_its_late_insert_is_fenced():
    db, jobs = FakeFirestore(), Jobs()
    fence(db, jobs, "e1").record("merge_a_1")  # e1 recorded, then stalled before jobs.insert
    fence(db, jobs, "e2").record("merge_b_1")
    assert is_placeholder(jobs.jobs["merge_a_1"]) and jobs.jobs["merge_a_1"].query == PLACEHOLDER_SQL
    # e1 wakes up and inserts its MERGE under the recorded id: 409, and the job behind it is the placeholder
    settings = Settings.from_env("game-lines", {"ODDSBATCH_PROJECT": "p"})
    wh = Warehouse(settings, table_for_endpoint("game-lines"), client=jobs, sleep=lambda s: None)
    with pytest.raises(Fenced):
        wh._insert(lambda job_id: jobs.query("MERGE ...", job_id=job_id), "merge_a_1")


def test_a_placeholder_that_meets_the_real_insert_waits_for_the_real_job():
    db, jobs = FakeFirestore(), Jobs()
    fence(db, jobs, "e1").record("merge_a_1")
    original = jobs.query

    def real_insert_wins(statement, **kw):
        # e1's insert lands between e2's jobs.get (NotFound) and e2's placeholder: 409 for e2
        if statement == PLACEHOLDER_SQL and kw["job_id"] not in jobs.jobs:
            original("MERGE ...", job_id=kw["job_id"])
        return original(statement, **kw)

    jobs.query = real_insert_wins
    f = fence(db, jobs, "e2")
    f.record("merge_b_1")
    assert not is_placeholder(jobs.jobs["merge_a_1"])  # e1's MERGE runs, and e2 waited for it
    assert jobs.gets == 2 and recorded(db) == "merge_b_1"


def test_two_holders_that_read_one_version_cannot_both_record():
    db, jobs = FakeFirestore(), Jobs()
    fence(db, jobs, "e0").record("merge_0_1")
    jobs.query("MERGE ...", job_id="merge_0_1")
    first, second = fence(db, jobs, "e1"), fence(db, jobs, "e2")
    first._read(), second._read()
    first.record("merge_a_1")
    with pytest.raises(Fenced):
        second.record("merge_b_1")
    assert recorded(db) == "merge_a_1"


def test_two_holders_of_a_new_key_cannot_both_create_its_fence():
    db, jobs = FakeFirestore(), Jobs()
    first, second = fence(db, jobs, "e1"), fence(db, jobs, "e2")
    first._read(), second._read()
    first.record("merge_a_1")
    with pytest.raises(Fenced):
        second.record("merge_b_1")


def test_a_holder_that_saw_its_own_job_done_records_the_next_attempt_without_asking():
    db, jobs = FakeFirestore(), Jobs()
    f = fence(db, jobs, "e1")
    f.record("merge_a_1")
    jobs.query("MERGE ...", job_id="merge_a_1")
    f.finished("merge_a_1")
    f.record("merge_a_2")
    assert jobs.gets == 0 and recorded(db) == "merge_a_2"
    f.record("merge_a_3")  # merge_a_2 was never seen DONE: asked (and burned, it was never inserted)
    assert jobs.gets == 1 and is_placeholder(jobs.jobs["merge_a_2"])


def test_settling_is_bounded_by_the_deadline():
    db, jobs = FakeFirestore(), Jobs()
    fence(db, jobs, "e1").record("merge_a_1")
    jobs.running_polls = 10 ** 6
    jobs.query("MERGE ...", job_id="merge_a_1")
    now = [0.0]
    deadline = Deadline(10, clock=lambda: now[0])

    def sleep(seconds):
        now[0] += seconds

    late = MergeFence(db.collection("oddsbatch_fences"), KEY, "e2", jobs, timedelta(days=7), deadline, sleep=sleep)
    with pytest.raises(DeadlineReached):
        late.record("merge_b_1")
    assert recorded(db) == "merge_a_1"  # nothing recorded over a MERGE still running
    assert now[0] <= 10


def test_warehouse_records_each_attempt_before_inserting_it():
    db, jobs = FakeFirestore(), Jobs()
    settings = Settings.from_env("game-lines", {"ODDSBATCH_PROJECT": "p"})
    seen = []
    real_query = jobs.query

    def query(statement, job_config=None, job_id=None, job_retry=None, location=None):
        seen.append((job_id, recorded(db)))  # what the fence held when the job was inserted
        return real_query(statement, job_config=job_config, job_id=job_id, job_retry=job_retry)

    jobs.query = query
    wh = Warehouse(settings, table_for_endpoint("game-lines"), client=jobs, sleep=lambda s: None)
    wh.merge("run1", "p.d.staging", [date(2025, 1, 21)], fences=[fence(db, jobs, "e1")])
    assert seen == [(seen[0][0], seen[0][0])] and seen[0][0].endswith("_merge_1")
