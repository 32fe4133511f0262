"""The MERGE fence (fence.py) on the stack's emulators: Firestore's compare-and-set and BigQuery's
job ids, through the official clients.

- a recorded job id that nobody inserted is burned by the next holder (a placeholder job), and the
  late insert of the real MERGE under it gets 409 and stops its invocation (Fenced);
- a recorded MERGE still running keeps the next holder waiting until it is DONE (jobs.get), held
  before its commit by the emulator's test gate (no time window decides anything);
- of two holders that read one fence version, one records.
"""

from __future__ import annotations

import threading
import uuid
from datetime import timedelta

import pytest
from google.api_core.exceptions import Conflict

from oddsbatch import sql
from oddsbatch.deadline import Deadline
from oddsbatch.fence import PLACEHOLDER_SQL, Fenced, MergeFence, is_placeholder
from tests.integration.test_dml_models import EmulatorRun
from tests.waiting import GUARD_SECONDS

pytestmark = pytest.mark.integration


def fence(stack, key: str, owner: str, sleep=None) -> MergeFence:
    return MergeFence(stack.firestore().collection("oddsbatch_fences"), key, owner, stack.bigquery(),
                      timedelta(days=7), Deadline(540), sleep=sleep or (lambda s: None))


def recorded(stack, key: str) -> str:
    return stack.firestore().collection("oddsbatch_fences").document(key).get().to_dict()["job_id"]


def test_an_id_recorded_but_never_inserted_is_burned_and_the_late_merge_stops(stack):
    tag = uuid.uuid4().hex[:8]
    key, never_run = f"game-lines_fence_{tag}", f"merge_{tag}_dead_1"
    fence(stack, key, "e1").record(never_run)  # e1 recorded its MERGE, then stalled before jobs.insert
    fence(stack, key, "e2").record(f"merge_{tag}_next_1")
    placeholder = stack.bigquery().get_job(never_run)
    assert is_placeholder(placeholder) and placeholder.query == PLACEHOLDER_SQL
    assert recorded(stack, key) == f"merge_{tag}_next_1"
    # e1 wakes and inserts its MERGE under the recorded id: BigQuery says 409, the warehouse says Fenced
    run = EmulatorRun(stack, "2031-02-03", tag)
    staging_id = run.warehouse.create_staging(f"{tag}late")
    statement = sql.merge_sql(run.warehouse.spec, run.warehouse.target, sql.quote(staging_id))
    with pytest.raises(Conflict):
        stack.bigquery().query(statement, job_id=never_run, job_retry=None)
    with pytest.raises(Fenced):
        run.warehouse._insert(lambda job_id: stack.bigquery().query(statement, job_id=job_id, job_retry=None),
                              never_run)
    run.warehouse.drop_staging(staging_id)


def test_the_next_holder_waits_for_a_recorded_merge_still_running(stack):
    tag = uuid.uuid4().hex[:8]
    key = f"game-lines_fence_{tag}"
    run = EmulatorRun(stack, "2031-02-04", tag)
    fence(stack, key, "e1").record(run.job_id("a"))
    run.merge("a", [("g1", 5, 1.5)])  # e1's MERGE, held by the emulator before its commit; e1 dies
    assert run.state("a") == "RUNNING"
    polled, done = threading.Event(), threading.Event()

    def sleep(seconds):  # the next holder's poll: the MERGE is still running
        polled.set()

    taker = fence(stack, key, "e2", sleep=sleep)
    worker = threading.Thread(target=lambda: (taker.record(f"merge_{tag}_b"), done.set()), daemon=True)
    worker.start()
    assert polled.wait(GUARD_SECONDS), "the next holder never polled the running MERGE"
    assert not done.is_set() and recorded(stack, key) == run.job_id("a")  # nothing recorded over it
    run.commit("a")
    assert done.wait(GUARD_SECONDS), "the next holder did not record once the MERGE was DONE"
    worker.join(GUARD_SECONDS)
    assert recorded(stack, key) == f"merge_{tag}_b"
    assert stack.bigquery().get_job(run.job_id("a")).error_result is None  # the real MERGE ran, not burned
    run.outcome()


def test_of_two_holders_that_read_one_version_one_records(stack):
    tag = uuid.uuid4().hex[:8]
    key = f"game-lines_fence_{tag}"
    first, second = fence(stack, key, "e1"), fence(stack, key, "e2")
    first._read(), second._read()
    first.record(f"merge_{tag}_1")
    with pytest.raises(Fenced):
        second.record(f"merge_{tag}_2")
    assert recorded(stack, key) == f"merge_{tag}_1"
