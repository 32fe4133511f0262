"""Nothing stranded: the sweep merges what a dead holder and a lost event left behind.

A stack of its own whose functions crash for good: once before an event writes its marker
(a lost event: no marker at all) and once in a holder after its staging load (a stranded key:
markers and a lock whose heartbeat stops), while the trigger retries nothing (the bridge's
--no-retry: a trigger with retries off acknowledges each event after one attempt). The crash
also kills every request in flight on that worker. The bridge's sweep timer plays Cloud
Scheduler (a message on the sweep topic, pushed by Pub/Sub); the sweep must merge every file,
every row exactly once, within one sweep period of the holder's death (plus the heartbeat
period that proves it dead).
"""

from __future__ import annotations

import json
import time
from collections import Counter
from datetime import datetime, timezone

import pytest

from oddsbatch import synth
from oddsbatch.config import ENDPOINT_TABLES, Settings
from oddsbatch.local.stack import Stack
from oddsbatch.tables import table_for_endpoint

from tests.waiting import wait_for

from .test_end_to_end import comparable, expected_rows, table_rows, upload_all

pytestmark = pytest.mark.integration

SWEEP_SECONDS = 3.0
HEARTBEAT_SECONDS = 1.0
STALE_SECONDS = 1.0


@pytest.fixture(scope="module")
def stranding_stack(tmp_path_factory):
    once = tmp_path_factory.mktemp("fault-once")
    st = Stack(tmp_path_factory.mktemp("oddsbatch-sweep-stack"), settle_seconds=0.5, sweep_seconds=SWEEP_SECONDS,
               bridge_args=["--no-retry"], extra_env={
                   "ODDSBATCH_FAULT_CRASH_AT": "before_marker,after_load",
                   "ODDSBATCH_FAULT_ONCE_DIR": str(once),
                   "ODDSBATCH_LOCK_HEARTBEAT_SECONDS": str(HEARTBEAT_SECONDS),
                   "ODDSBATCH_SWEEP_STALE_SECONDS": str(STALE_SECONDS),
               })
    st.start()
    try:
        yield st, once
    finally:
        st.stop()


def _log_lines(stack, name):
    out = []
    for line in stack.log_text(name).splitlines():
        if line.startswith("{"):
            try:
                out.append(json.loads(line))
            except ValueError:
                pass
    return out


LOG_TIME_RESOLUTION = 0.001  # log lines carry milliseconds, truncated


def _logged_at(line: dict) -> float:
    return datetime.fromisoformat(line["time"].replace("Z", "+00:00")).timestamp()


def _sweep_runs_before(lines: list[dict], adoption: dict) -> list[dict]:
    """The sweep_pending lines (one per sweep run) of the adoption's endpoint up to that adoption:
    the last one is the run that adopted."""
    own = [x for x in lines if x.get("endpoint") == adoption["endpoint"]]  # one function's log, in order
    return [x for x in own[:own.index(adoption)] if x.get("message") == "sweep_pending"]


def test_sweep_merges_a_dead_holders_files_and_a_lost_event_exactly_once(stranding_stack):
    stack, once = stranding_stack
    day = datetime.now(timezone.utc).date()  # today: the sweep reconciles it against the bucket
    files = list(synth.synthesize_day(day, games=2, snapshots=2, seed=31))
    generations = upload_all(stack, files)
    wait_for((once / "after_load").exists, "the holder's crash after its load")
    assert (once / "before_marker").exists(), sorted(p.name for p in once.iterdir())
    died = (once / "after_load").stat().st_mtime  # the holder's death (wall clock)
    stack.wait_idle(expected_events=len(files), timeout=120, poll=0.1)  # no lock, no marker left
    merged_after = time.time() - died
    assert stack.bridge_status()["failed"] >= 1  # the crashed requests were never retried
    for endpoint in ENDPOINT_TABLES:
        spec = table_for_endpoint(endpoint)
        got = Counter(comparable(r, spec) for r in table_rows(stack, endpoint, day.isoformat()))
        want = expected_rows(files, generations, endpoint)
        assert got == want, f"{endpoint}: {sum((want - got).values())} lost, {sum((got - want).values())} duplicated"
    lines = _log_lines(stack, "game_lines") + _log_lines(stack, "player_props")
    adopted = [x for x in lines if x.get("message") == "sweep_adopted" and x.get("reason") == "stale"]
    lost = [x for x in lines if x.get("message") == "sweep_lost_objects"]
    assert adopted and lost, "the sweep adopted the dead holder's key and queued the lost event's object"
    # The first sweep that runs once the heartbeat has been silent a whole period adopts the key:
    # checked on the order of the sweeps' own lines, not on a window of seconds (the bridge's
    # timer, standing in for Cloud Scheduler, runs late on a loaded machine; the sweep must not).
    proven_dead = died + HEARTBEAT_SECONDS + LOG_TIME_RESOLUTION
    for adoption in adopted:
        runs = _sweep_runs_before(lines, adoption)
        assert runs, f"no sweep_pending line before {adoption}"
        missed = [run for run in runs[:-1] if _logged_at(run) >= proven_dead]
        assert missed == [], f"sweeps after the holder was proven dead that left {adoption['batch_key']}: {missed}"
    print(f"\nsweep: holder death -> files merged in {merged_after:.2f}s (period {SWEEP_SECONDS:g}s, "
          f"heartbeat {HEARTBEAT_SECONDS:g}s); adopted {len(adopted)}, lost objects queued "
          f"{sum(x['objects'] for x in lost)}")
    assert stack.sweep_status()["sweeps"] >= 1


def test_the_metric_line_reports_the_age_before_the_sweep_merges(stranding_stack):
    stack, _ = stranding_stack
    lines = _log_lines(stack, "game_lines") + _log_lines(stack, "player_props")
    by_endpoint = {}
    for endpoint in ENDPOINT_TABLES:
        own = [x for x in lines if x.get("endpoint") == endpoint or str(x.get("batch_key", "")).startswith(endpoint)]
        by_endpoint[endpoint] = own
    checked = 0
    for endpoint, own in by_endpoint.items():
        for i, line in enumerate(own):
            if line.get("message") != "sweep_adopted" or line.get("reason") != "stale":
                continue
            before = [x for x in own[:i] if x.get("message") == "sweep_pending"]
            assert before, f"{endpoint}: no sweep_pending line before the adoption"
            last = before[-1]
            assert last["oldest_pending_seconds"] >= STALE_SECONDS, last
            assert last["oldest_key"] == line["batch_key"]
            after = [x for x in own[i:] if x.get("message") == "merged" and x.get("batch_key") == line["batch_key"]]
            assert after, "the adopted key merged after the line reported its age"
            checked += 1
    assert checked >= 1
    # and once everything is merged, the next sweeps report nothing pending: the bridge sends one
    # sweep at a time, so once two more have finished, the last one started after this line
    sent = stack.sweep_status()["sweeps"]
    wait_for(lambda: stack.sweep_status()["sweeps"] >= sent + 2, "a whole sweep after everything merged", poll=0.2)
    lines = _log_lines(stack, "game_lines")
    pending = [x for x in lines if x.get("message") == "sweep_pending"]
    assert pending[-1]["oldest_pending_seconds"] == 0 and pending[-1]["pending_markers"] == 0


def test_status_shows_the_sweeps_last_run(stranding_stack, monkeypatch, capsys):
    from oddsbatch.status import pipeline_status, print_status

    stack, _ = stranding_stack
    stack.apply_env()
    status = pipeline_status(Settings.from_env("game-lines", stack.env), stack.bucket)
    assert {s["endpoint"] for s in status["sweeps"]} == set(ENDPOINT_TABLES)
    assert all(s["decision"] in ("sweep_idle", "sweep_merged") and s["pending_markers"] == 0 for s in status["sweeps"])
    print_status(status)
    out = capsys.readouterr().out
    assert "last sweep: 2 endpoints" in out and "game-lines" in out


class _Counter:
    """Counts the Firestore calls of a sweep in this process: documents read by queries (a query
    that returns nothing is billed one read), document gets and writes."""

    def __init__(self, monkeypatch):
        from google.cloud.firestore_v1 import document, query

        self.queries = self.query_docs = self.gets = self.sets = 0
        stream, get, set_ = query.Query.stream, document.DocumentReference.get, document.DocumentReference.set

        def counted_stream(q, *a, **k):
            self.queries += 1
            for snap in stream(q, *a, **k):
                self.query_docs += 1
                yield snap

        def counted_get(ref, *a, **k):
            self.gets += 1
            return get(ref, *a, **k)

        def counted_set(ref, *a, **k):
            self.sets += 1
            return set_(ref, *a, **k)

        monkeypatch.setattr(query.Query, "stream", counted_stream)
        monkeypatch.setattr(document.DocumentReference, "get", counted_get)
        monkeypatch.setattr(document.DocumentReference, "set", counted_set)

    @property
    def billed_reads(self) -> int:
        return max(self.queries, self.query_docs) + self.gets


def _jobs(stack) -> int:
    return sum(1 for _ in stack.bigquery().list_jobs(all_users=True))


def test_an_idle_sweep_costs_one_query_one_read_and_no_bigquery_job(clean_stack, monkeypatch):
    from oddsbatch.sweep import Sweep

    stack = clean_stack
    day = datetime.now(timezone.utc).date()
    files = [f for f in synth.synthesize_day(day, games=1, snapshots=1, seed=51) if f[0].startswith("odds-api/game-lines/")]
    upload_all(stack, files)
    stack.wait_idle(expected_events=len(files), timeout=120)
    settings = Settings.from_env("game-lines", stack.env).with_(sweep_stale_seconds=0)
    first = _Counter(monkeypatch)
    jobs = _jobs(stack)
    report = Sweep(settings).run()  # a new object of today: checked against the ledger once
    assert report.lost_objects == 0 and report.merges == 0 and _jobs(stack) == jobs
    assert first.queries == 2  # the pending markers, and the ledger of today's key
    monkeypatch.undo()
    idle = _Counter(monkeypatch)
    report = Sweep(settings).run()
    idle_jobs = _jobs(stack) - jobs
    assert (report.decision, report.markers) == ("sweep_idle", 0)
    assert idle.queries == 1 and idle.query_docs == 0 and idle.gets == 1 and idle.sets == 1, vars(idle)
    assert idle_jobs == 0
    print(f"\nsweep idle cost per endpoint: {idle.queries} query ({idle.billed_reads} billed Firestore reads "
          f"incl. {idle.gets} document get), {idle.sets} write, {idle_jobs} BigQuery jobs; "
          f"first sweep of a new object: {first.queries} queries, {first.query_docs} documents read")
    # negative control: a lost object (no event, no marker, older than the threshold) is no longer idle
    db = stack.firestore()
    for snap in db.collection("oddsbatch_merged").stream():
        snap.reference.delete()
    db.collection(settings.sweep_collection).document("game-lines").delete()
    lost = Sweep(settings).run()
    assert lost.lost_objects == len(files) and lost.merges == 1
