"""A holder that dies mid-batch, or meets a transient fault, loses nothing and duplicates nothing.

A second local stack whose functions crash (os._exit, as a killed instance) once after
the staging load and once after the MERGE. functions-framework's gunicorn respawns the
worker, the bridge retries the dead request as Eventarc does, the same event id reclaims
the lock at once, and the batch completes. A BigQuery or Firestore 503 answers 500, so the
bridge retries the event, and the retry succeeds.
"""

from __future__ import annotations

from collections import Counter
from datetime import date

import pytest

from oddsbatch import synth
from oddsbatch.config import ENDPOINT_TABLES
from oddsbatch.local.stack import Stack
from oddsbatch.tables import table_for_endpoint

from .test_end_to_end import comparable, expected_rows, table_rows, upload_all

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def crashing_stack(tmp_path_factory):
    once = tmp_path_factory.mktemp("fault-once")
    st = Stack(tmp_path_factory.mktemp("oddsbatch-crash-stack"), settle_seconds=0.5, extra_env={
        "ODDSBATCH_FAULT_CRASH_AT": "after_load,after_merge",
        "ODDSBATCH_FAULT_ONCE_DIR": str(once),
        "ODDSBATCH_FAULT_FAIL_AT": "bigquery,firestore",
    })
    st.start()
    try:
        yield st, once
    finally:
        st.stop()


def test_crashes_and_transient_faults_lose_and_duplicate_nothing(crashing_stack):
    stack, once = crashing_stack
    day = "2025-03-01"
    files = list(synth.synthesize_day(date.fromisoformat(day), games=2, snapshots=2, seed=21))
    generations = upload_all(stack, files)
    stack.wait_idle(expected_events=len(files), timeout=180)
    # both crashes and both transient faults (BigQuery 503, Firestore 503) happened once
    assert sorted(p.name for p in once.iterdir()) == ["after_load", "after_merge", "fail-bigquery", "fail-firestore"]
    answered_500 = [line for line in stack.log_text("bridge").splitlines() if '"status": 500' in line]
    assert len(answered_500) >= 2  # the transient faults answered 5xx, so the bridge retried them
    crashes = stack.log_text("game_lines").count("fault_crash") + stack.log_text("player_props").count("fault_crash")
    assert crashes == 2
    assert stack.bridge_status()["failed"] == 0  # every event ended 2xx after retries
    for endpoint in ENDPOINT_TABLES:
        spec = table_for_endpoint(endpoint)
        got = Counter(comparable(r, spec) for r in table_rows(stack, endpoint, day))
        want = expected_rows(files, generations, endpoint)
        assert got == want, f"{endpoint}: {sum((want - got).values())} lost, {sum((got - want).values())} duplicated"
    db = stack.firestore()
    assert not list(db.collection("oddsbatch_locks").limit(1).stream())
    assert not list(db.collection("oddsbatch_pending").limit(1).stream())
