"""Operator commands that fail safe: an interrupted reconcile releases its lock (and a later
event merges), and reconcile/status read the local stack only when no project is named."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections import Counter
from datetime import date

import pytest
from google.cloud import bigquery
from google.cloud.firestore_v1.base_query import FieldFilter

from oddsbatch import sql, synth
from oddsbatch.tables import table_for_endpoint

from tests.waiting import wait_for

from .test_end_to_end import comparable, expected_rows, table_rows, upload_all

pytestmark = pytest.mark.integration

CLI = [sys.executable, "-m", "oddsbatch.cli"]
ENDPOINT = "game-lines"


def _forget_merged(stack, day: str) -> None:
    """Make the date's game-lines files missing again: no rows, no ledger entries."""
    spec = table_for_endpoint(ENDPOINT)
    job = stack.bigquery().query(
        f"DELETE FROM {sql.table_path(stack.project, stack.dataset, spec.name)} WHERE game_date = @game_date",
        job_config=bigquery.QueryJobConfig(query_parameters=[bigquery.ScalarQueryParameter("game_date", "DATE", day)]))
    job.result()
    ledger = stack.firestore().collection("oddsbatch_merged")
    for snap in ledger.where(filter=FieldFilter("batch_key", "==", f"{ENDPOINT}_{day}")).stream():
        snap.reference.delete()


@pytest.mark.parametrize("sig,status,name", [(signal.SIGTERM, 143, "SIGTERM"), (signal.SIGINT, 130, "SIGINT")])
def test_an_interrupted_reconcile_releases_its_lock_and_a_later_event_merges(clean_stack, tmp_path, sig, status, name):
    stack = clean_stack
    day = "2025-08-02" if sig == signal.SIGTERM else "2025-08-03"  # dates no other test uses
    files = [f for f in synth.synthesize_day(date.fromisoformat(day), games=2, snapshots=2, seed=41)
             if f[0].startswith(f"odds-api/{ENDPOINT}/")]
    generations = upload_all(stack, files)
    stack.wait_idle(expected_events=len(files), timeout=120)
    _forget_merged(stack, day)
    key = f"{ENDPOINT}_{day}"
    pause = tmp_path / "pause"
    pause.mkdir()
    # reconcile's holder stays at after_load (inside its round, the lock held) until the signal
    env = {**os.environ, "ODDSBATCH_FAULT_PAUSE_AT": "after_load", "ODDSBATCH_FAULT_PAUSE_DIR": str(pause)}
    # Ctrl-C reaches a command started from a terminal, whose SIGINT is the default; a suite run in
    # the background (CI, `make test &`) ignores SIGINT, and a child would inherit that
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        proc = subprocess.Popen([*CLI, "reconcile", "--date", day, "--endpoint", ENDPOINT, "--bucket", stack.bucket,
                                 "--state-dir", str(tmp_path / "no-stack")], env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
    finally:
        signal.signal(signal.SIGINT, previous)
    try:
        wait_for(lambda: (pause / "after_load.paused").exists() or proc.poll() is not None, "reconcile's round")
        if proc.poll() is not None:
            pytest.fail(f"reconcile ended before its round: {proc.communicate()[1][-2000:]}")
        lock = stack.firestore().collection("oddsbatch_locks").document(key)
        assert lock.get().exists, "reconcile is in its round without the lock"
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:  # a failed test leaves no paused reconcile holding the lock
            proc.kill()
            proc.communicate()
    assert proc.returncode == status, (out[-2000:], err)
    lines = err.strip().splitlines()
    assert lines[0] == f"oddsbatch reconcile: project {stack.project} on emulators named by STORAGE_EMULATOR_HOST, " \
                       "FIRESTORE_EMULATOR_HOST"
    assert len(lines) == 2 and lines[1].startswith(f"oddsbatch reconcile: interrupted by {name}: lock released"), err
    assert "Traceback" not in err
    assert not lock.get().exists, "the interrupted reconcile kept its lock"
    pending = stack.firestore().collection("oddsbatch_pending").where(filter=FieldFilter("batch_key", "==", key))
    assert len(list(pending.stream())) == len(files)  # its work stays queued
    # A later event of that date takes the free lock at once and merges everything queued.
    late = [f for f in synth.synthesize_day(date.fromisoformat(day), games=3, snapshots=2, seed=42)
            if f[0].startswith(f"odds-api/{ENDPOINT}/") and f[0] not in generations][:1]
    generations.update(upload_all(stack, late))
    stack.wait_idle(expected_events=1, timeout=120)
    spec = table_for_endpoint(ENDPOINT)
    got = Counter(comparable(r, spec) for r in table_rows(stack, ENDPOINT, day))
    assert got == expected_rows(files + late, generations, ENDPOINT)


def test_a_named_project_is_never_the_local_stack(stack, tmp_path):
    # GOOGLE_CLOUD_PROJECT names a project: neither command may read the stack's local.env, and
    # both say which project they act on before failing (no credentials here) in one line.
    env = {k: v for k, v in os.environ.items() if not k.startswith("ODDSBATCH_") and not k.endswith("_EMULATOR_HOST")}
    env.update(GOOGLE_CLOUD_PROJECT="prod-odds", GOOGLE_APPLICATION_CREDENTIALS=str(tmp_path / "none.json"))
    assert (stack.state_dir / "local.env").exists()
    for args in (["status"], ["reconcile", "--date", "2025-01-21", "--bucket", "b", "--dry-run"]):
        r = subprocess.run([*CLI, *args, "--state-dir", str(stack.state_dir)], capture_output=True, text=True,
                           timeout=120, env=env)
        lines = r.stderr.strip().splitlines()
        assert lines[0] == f"oddsbatch {args[0]}: project prod-odds on Google Cloud", r.stderr
        assert "test-project" not in r.stdout + r.stderr
        assert "Traceback" not in r.stderr
        if args[0] == "status":
            assert r.returncode == 2 and len(lines) == 2, r.stderr
        else:  # reconcile reports the date as failed and ends with its one-line summary
            assert r.returncode in (1, 2), r.stderr
