"""`oddsbatch ready` and odds_api_ingest_status on the emulator stack.

A day is uploaded with one unreadable file; `ready` answers 0 only once everything finished, 1
while a lock is held, while work is queued, or while an object is in the bucket that neither
the table nor the ledger holds (a lost event), and the status function's rows equal what this
test computes from the uploaded files and the quarantine they caused.
"""

from __future__ import annotations

import threading
from datetime import date, datetime, timedelta, timezone

import pytest
from google.cloud import bigquery
from google.cloud.firestore_v1.base_query import FieldFilter

from oddsbatch import cli, sql, synth, transform
from oddsbatch import ready as readiness
from oddsbatch.config import ENDPOINTS
from oddsbatch.errors import BadInputError
from oddsbatch.pending import PendingWork
from oddsbatch.paths import batch_key
from oddsbatch.ready import check_key

from tests.waiting import GUARD_SECONDS, wait_for

from .test_end_to_end import upload_all

pytestmark = pytest.mark.integration

DAY = "2025-05-11"
BAD = (f"odds-api/game-lines/{DAY}/0123456789abcdef0123456789abcdef-BOSNYK/20250511_170000-snap-1700.json",
       b'{"id": "0123456789abcdef0123456789abcdef", "bookmakers": [')


def ready(capsys, *args) -> tuple[int, str]:
    code = cli.main(["ready", "--date", DAY, *args])
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1, out
    return code, out[0]


def status_rows(stack) -> dict[str, dict]:
    statement = f"SELECT * FROM {sql.table_path(stack.project, stack.dataset, 'odds_api_ingest_status')}(@s, @e)"
    config = bigquery.QueryJobConfig(query_parameters=[bigquery.ScalarQueryParameter("s", "DATE", DAY),
                                                       bigquery.ScalarQueryParameter("e", "DATE", DAY)])
    return {r["endpoint"]: dict(r) for r in stack.bigquery().query(statement, job_config=config).result()}


def expected_status(files, generations) -> dict[str, dict]:
    """Per endpoint, from the files themselves: what finished, how, the rows staged, the newest snapshot."""
    out = {e: {"files_merged": 0, "files_quarantined": 0, "files_gone": 0, "rows_merged": 0, "last_snapshot": None}
           for e in ENDPOINTS}
    for name, data in files:
        endpoint = name.split("/")[1].removesuffix("-history")
        try:
            rows = transform.rows_for_object(name, data, generations[name])
        except BadInputError:
            out[endpoint]["files_quarantined"] += 1
            continue
        out[endpoint]["files_merged"] += 1
        out[endpoint]["rows_merged"] += len(rows)
        for row in rows:
            snap = datetime.fromisoformat(row["snapshot_timestamp"].replace("Z", "+00:00"))
            last = out[endpoint]["last_snapshot"]
            out[endpoint]["last_snapshot"] = snap if last is None else max(last, snap)
    for e in out.values():
        e["files_seen"] = e["files_merged"] + e["files_quarantined"]
    return out


def _wait_for_markers(db, key: str, n: int) -> None:
    pending = PendingWork(db, "oddsbatch_pending", key, timedelta(days=1))
    wait_for(lambda: pending.count() >= n, f"{n} markers of {key}", poll=0.1)


class StillClock:
    """A clock that stands still."""

    @staticmethod
    def monotonic() -> float:
        return 0.0


def test_ready_follows_the_bucket_the_lock_and_the_queue(stack, capsys, monkeypatch):
    files = [*synth.synthesize_day(date.fromisoformat(DAY), games=2, snapshots=2, seed=11), BAD]
    generations = upload_all(stack, files)
    stack.wait_idle(expected_events=len(files))

    code, line = ready(capsys, "--wait", "30")
    n_lines = sum(1 for name, _ in files if "/game-lines/" in name)
    assert code == 0, line
    assert line == (f"ready {DAY}: game-lines: ready ({n_lines} files finished); "
                    f"player-props: ready ({len(files) - n_lines} files finished)")

    # The status function: what the files and the quarantine say, and complete once nothing is queued.
    rows, expected = status_rows(stack), expected_status(files, generations)
    assert set(rows) == set(ENDPOINTS)
    for endpoint in ENDPOINTS:
        got = rows[endpoint]
        assert {k: got[k] for k in expected[endpoint]} == expected[endpoint], endpoint
        assert got["files_pending"] == 0 and got["files_gone"] == 0 and got["rounds"] >= 1
        assert got["complete_as_of"] == got["last_round_at"] and got["complete_as_of"] is not None
    assert rows["game-lines"]["files_quarantined"] == 1  # the truncated file: finished, not missing

    db = stack.firestore()
    key = batch_key("game-lines", DAY)
    lock = db.collection("oddsbatch_locks").document(key)
    now = datetime.now(timezone.utc)
    lock.create({"owner": "test-holder", "batch_key": key, "acquired_at": now, "heartbeat_at": now,
                 "lease_until": now + timedelta(minutes=5), "expireAt": now + timedelta(days=1)})
    try:
        # A held lock: a holder may be between its MERGE and its release. The line's "after Ns" is
        # the time the command took; without --wait that is its queries' time, which a loaded
        # machine stretches: measured on a clock that stands still, it must say 0s.
        with monkeypatch.context() as still:
            still.setattr(readiness, "time", StillClock)
            code, line = ready(capsys, "--endpoint", "game-lines")
        assert code == 1 and line.startswith(f"not ready {DAY} after 0s: game-lines: 0 pending, 0 missing of "), line
        assert line.endswith("lock held by test-holder")

        # A late file while the lock is held: its event coalesces, its marker stays queued.
        uploaded = {n for n, _ in files}
        late = next((n, d) for n, d in synth.synthesize_day(date.fromisoformat(DAY), games=3, snapshots=3, seed=12)
                    if "/game-lines/" in n and n not in uploaded)
        generations.update(upload_all(stack, [late]))
        _wait_for_markers(db, key, 1)
        code, line = ready(capsys, "--endpoint", "game-lines", "--wait", "1")
        assert code == 1 and "game-lines: 1 pending, 1 missing of " in line and f"newest missing {late[0]}" in line
    finally:
        lock.delete()

    # The lock goes, a holder takes the queue (reconcile here, as the sweep would): a `ready --wait`
    # started before sees it (reconcile takes signals: it runs in the main thread, ready beside it).
    # The waiter's checks are recorded: the test goes on once one said "not ready", not after a sleep.
    checks, not_ready_seen = [], threading.Event()

    def recorded_check(endpoint, game_date, sources, full=False, now=None):
        state = check_key(endpoint, game_date, sources, full, now)
        checks.append((full, state.ready, state.pending))
        if not state.ready:
            not_ready_seen.set()
        return state

    answer = {}

    def wait_for_it():
        # --wait longer than the guard: the wait running out can never decide this test
        wait = str(GUARD_SECONDS * 5)
        answer["code"] = cli.main(["ready", "--date", DAY, "--endpoint", "game-lines", "--wait", wait])

    with monkeypatch.context() as recording:
        recording.setattr(readiness, "check_key", recorded_check)
        waiter = threading.Thread(target=wait_for_it, daemon=True)
        waiter.start()
        assert not_ready_seen.wait(GUARD_SECONDS), "ready --wait never checked the key"
        assert "code" not in answer and checks[0] == (False, False, 1)  # still waiting: the marker is queued
        assert cli.main(["reconcile", "--date", DAY, "--endpoint", "game-lines"]) == 0
        waiter.join(timeout=GUARD_SECONDS)
    captured = capsys.readouterr()
    assert not waiter.is_alive() and answer["code"] == 0, (captured.out, captured.err[-2000:], answer, checks)
    # it answered from a poll that found the key ready, not from the last check when --wait ran out
    assert checks[-1] == (False, True, 0) and not any(full for full, _, _ in checks), checks
    stack.wait_idle(expected_events=1)

    # A lost event: the object is in the bucket, but neither its rows nor its ledger entry exist.
    target = sql.table_path(stack.project, stack.dataset, "odds_api_game_lines")
    params = bigquery.QueryJobConfig(query_parameters=[bigquery.ScalarQueryParameter("game_date", "DATE", DAY),
                                                       bigquery.ScalarQueryParameter("name", "STRING", late[0])])
    stack.bigquery().query(f"DELETE FROM {target} WHERE game_date = @game_date AND source_object = @name",
                           job_config=params).result()
    for snap in db.collection("oddsbatch_merged").where(filter=FieldFilter("object", "==", late[0])).stream():
        snap.reference.delete()
    code, line = ready(capsys, "--endpoint", "game-lines")
    assert code == 1 and f"game-lines: 0 pending, 1 missing of {n_lines + 1}, newest missing {late[0]}" in line

    cli.main(["reconcile", "--date", DAY, "--endpoint", "game-lines"])
    capsys.readouterr()
    code, line = ready(capsys)
    assert code == 0, line

    # The log has every round: the status function still counts each file once per round it finished in.
    after = status_rows(stack)["game-lines"]
    assert after["files_merged"] == expected["game-lines"]["files_merged"] + 2  # the late file, merged twice
    assert after["files_pending"] == 0 and after["complete_as_of"] == after["last_round_at"]


def test_a_stale_lock_with_nothing_queued_does_not_block(stack, capsys):
    """A lease that has passed is taken over by the next event: with no marker left it is no obstacle."""
    db = stack.firestore()
    key = batch_key("player-props", "2025-05-12")
    lock = db.collection("oddsbatch_locks").document(key)
    past = datetime.now(timezone.utc) - timedelta(minutes=20)
    lock.create({"owner": "dead-holder", "batch_key": key, "acquired_at": past, "heartbeat_at": past,
                 "lease_until": past + timedelta(minutes=10), "expireAt": past + timedelta(days=1)})
    try:
        assert cli.main(["ready", "--date", "2025-05-12", "--endpoint", "player-props"]) == 0
        assert capsys.readouterr().out.startswith("ready 2025-05-12: player-props: ready (0 files finished)")
    finally:
        lock.delete()
