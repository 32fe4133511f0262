"""Several game dates in ONE MERGE, on the emulators: every row once, the MERGEs counted, a date
another holder has left to it, and the backfill lock's handshake losing nothing.

Each test first lets the stack's functions merge its files (one date at a time, as events do),
then loses that work after the fact (rows and ledger, `forget`), so the grouped path under test
is the only one that merges them again, deterministically.
"""

from __future__ import annotations

import uuid
from collections import Counter
from datetime import date, timedelta

import pytest
from google.cloud import bigquery
from google.cloud.firestore_v1.base_query import FieldFilter

from oddsbatch import batch, cli, clients, sql, synth
from oddsbatch.backfill import BackfillHolder, backfill_key
from oddsbatch.config import Settings
from oddsbatch.event import StorageEvent
from oddsbatch.holder import BatchHolder
from oddsbatch.lock import BatchLock
from oddsbatch.paths import batch_key
from oddsbatch.pending import PendingWork
from oddsbatch.tables import table_for_endpoint

from .test_end_to_end import comparable, expected_rows, table_rows, upload_all

pytestmark = pytest.mark.integration

ENDPOINT = "game-lines"
SPEC = table_for_endpoint(ENDPOINT)


def days_from(first: str, n: int) -> list[date]:
    return [date.fromisoformat(first) + timedelta(days=i) for i in range(n)]


def land(stack, days: list[date], historical: bool = False, seed: int = 40) -> tuple[list, dict]:
    """Upload one game's snapshots per date and let the functions merge them."""
    files = [f for i, day in enumerate(days)
             for f in synth.synthesize_day(day, games=1, snapshots=2, seed=seed + i, historical=historical)
             if f[0].startswith(f"odds-api/{ENDPOINT}")]
    generations = upload_all(stack, files)
    stack.wait_idle(expected_events=len(files))
    return files, generations


def forget(stack, days: list[date]) -> None:
    """Lose the dates' work after the fact: their rows and ledger entries."""
    target = sql.table_path(stack.project, stack.dataset, SPEC.name)
    ledger = stack.firestore().collection("oddsbatch_merged")
    for day in days:
        params = bigquery.QueryJobConfig(
            query_parameters=[bigquery.ScalarQueryParameter("game_date", "DATE", day.isoformat())])
        stack.bigquery().query(f"DELETE FROM {target} WHERE game_date = @game_date", job_config=params).result()
        for snap in ledger.where(filter=FieldFilter("batch_key", "==", batch_key(ENDPOINT, day))).stream():
            snap.reference.delete()
    assert all(not table_rows(stack, ENDPOINT, d.isoformat()) for d in days)


def assert_exact(stack, files, generations, days) -> None:
    for day in days:
        prefix = (f"odds-api/{ENDPOINT}/{day.isoformat()}/", f"odds-api/{ENDPOINT}-history/{day.isoformat()}/")
        wanted = expected_rows([f for f in files if f[0].startswith(prefix)], generations, ENDPOINT)
        got = Counter(comparable(r, SPEC) for r in table_rows(stack, ENDPOINT, day.isoformat()))
        assert got == wanted and wanted, day  # every row, each once


def merge_jobs(stack) -> list:
    return [j for j in stack.bigquery().list_jobs(all_users=True)
            if getattr(j, "statement_type", None) == "MERGE" and SPEC.name in j.job_id]


def pending_keys(stack, days) -> list[str]:
    pending = stack.firestore().collection("oddsbatch_pending")
    keys = [batch_key(ENDPOINT, d) for d in days]
    return [s.id for s in pending.where(filter=FieldFilter("batch_key", "in", keys)).stream()]


def report_lines(capsys) -> list[str]:
    """reconcile's report (its per-date lines and the summary), without the JSON log lines."""
    return [line for line in capsys.readouterr().out.strip().splitlines() if not line.startswith("{")]


def test_reconcile_merges_n_dates_with_one_merge_and_every_row_once(stack, capsys):
    days = days_from("2025-07-01", 5)
    files, generations = land(stack, days)
    forget(stack, days)
    before = {j.job_id for j in merge_jobs(stack)}

    assert cli.main(["reconcile", "--from", days[0].isoformat(), "--to", days[-1].isoformat(),
                     "--endpoint", ENDPOINT, "--dates-per-merge", "5"]) == 0
    out = report_lines(capsys)
    summary = out[-1]
    assert f"missing={len(files)} merged_files={len(files)} " in summary and " merges=1 " in summary, summary
    assert len(out) == 1 + len(days)  # a line per date, each naming the one MERGE that touched it
    assert all("1 merges)" in line for line in out[:-1]), out
    new = [j for j in merge_jobs(stack) if j.job_id not in before]
    assert len(new) == 1  # ONE MERGE job for the five dates
    (dates,) = [p for p in new[0].query_parameters if p.name == "game_dates"]
    assert sorted(str(v) for v in dates.values) == [d.isoformat() for d in days]  # exactly the group's dates
    assert_exact(stack, files, generations, days)
    assert not pending_keys(stack, days)

    assert cli.main(["reconcile", "--from", days[0].isoformat(), "--to", days[-1].isoformat(),
                     "--endpoint", ENDPOINT]) == 0
    assert "missing=0 " in report_lines(capsys)[-1]


def test_groups_of_n_cost_ceil_dates_over_n_merges(stack, capsys):
    days = days_from("2025-07-10", 7)
    files, generations = land(stack, days, seed=60)
    forget(stack, days)
    before = {j.job_id for j in merge_jobs(stack)}
    assert cli.main(["reconcile", "--from", days[0].isoformat(), "--to", days[-1].isoformat(),
                     "--endpoint", ENDPOINT, "--dates-per-merge", "3"]) == 0
    assert " merges=3 " in report_lines(capsys)[-1]  # ceil(7 / 3)
    assert len([j for j in merge_jobs(stack) if j.job_id not in before]) == 3
    assert_exact(stack, files, generations, days)


def test_a_date_another_holder_has_is_skipped_and_merged_by_that_holder(stack, capsys):
    days = days_from("2025-07-20", 3)
    files, generations = land(stack, days, seed=80)
    forget(stack, days)
    settings = Settings.from_env(ENDPOINT)
    db = clients.firestore_client(settings.project, settings.firestore_database)
    busy_key = batch_key(ENDPOINT, days[1])
    other = BatchLock(db.collection(settings.lock_collection), busy_key, owner="a-live-holder",
                      lease=timedelta(seconds=60), ttl=settings.ttl)
    assert other.acquire()  # a live holder of the middle date (its heartbeat beats)

    assert cli.main(["reconcile", "--from", days[0].isoformat(), "--to", days[-1].isoformat(),
                     "--endpoint", ENDPOINT, "--dates-per-merge", "3"]) == 0
    out = report_lines(capsys)
    assert "-> queued_for_holder (" in [line for line in out if line.startswith(f"{ENDPOINT} {days[1]}: ")][0]
    assert " merges=1 " in out[-1]  # the two free dates, one MERGE
    assert not table_rows(stack, ENDPOINT, days[1].isoformat())  # left to its holder
    assert pending_keys(stack, [days[1]]) and not pending_keys(stack, [days[0], days[2]])

    # That holder merges its queue, reconcile's markers included, before it lets go.
    pending = PendingWork(db, settings.pending_collection, busy_key, settings.ttl)
    holder = BatchHolder(settings.with_(settle_seconds=0), busy_key, days[1], other, pending, db)
    assert holder.run() == "merged"
    assert_exact(stack, files, generations, days)
    assert not pending_keys(stack, days)


def test_dates_per_merge_is_validated_in_one_line(capsys):
    for bad in ("0", "-2", "abc", "101", "1.5"):
        assert cli.main(["reconcile", "--date", "2025-05-01", "--dates-per-merge", bad]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "--dates-per-merge" in err[0], err


class _ReleaseHook:
    """The backfill lock, with `before_release` run right before each release: the moment a
    history file lands just as the backfill holder lets go."""

    def __init__(self, lock: BatchLock, before_release):
        self._lock, self._before = lock, before_release

    def release(self):
        hook, self._before = self._before, None
        if hook:
            hook()
        return self._lock.release()

    def __getattr__(self, name):
        return getattr(self._lock, name)


def test_the_backfill_lock_handshake_loses_a_history_file_that_lands_at_the_release(stack):
    """A -history/ file's event writes its marker and finds the backfill lock held (coalesced) in
    the very last moment before the holder releases it: the holder's re-read after its release
    sees the marker, takes the lock again and merges it. Every row once, no marker or lock left."""
    days = days_from("2025-09-01", 4)
    files, generations = land(stack, days, historical=True, seed=90)
    assert all("-history/" in name for name, _ in files)
    forget(stack, days)
    settings = Settings.from_env(ENDPOINT).with_(settle_seconds=0, dates_per_merge=16)
    db = clients.firestore_client(settings.project, settings.firestore_database)
    early, late = [f for f in files if days[-1].isoformat() not in f[0]], \
        [f for f in files if days[-1].isoformat() in f[0]]
    for name, _ in early:  # the first three dates' markers, as their events wrote them
        key = batch_key(ENDPOINT, date.fromisoformat(name.split("/")[2]))
        PendingWork(db, settings.pending_collection, key, settings.ttl).add(stack.bucket, name, generations[name])
    owner = f"history-{uuid.uuid4().hex[:8]}"
    lock = BatchLock(db.collection(settings.lock_collection), backfill_key(ENDPOINT), owner=owner,
                     lease=timedelta(seconds=settings.lease_seconds), ttl=settings.ttl,
                     heartbeat=timedelta(seconds=settings.lock_heartbeat_seconds))
    assert lock.acquire()
    answers = []

    def land_late_files():  # their events run the real path: marker, then the backfill lock
        for name, _ in late:
            event = StorageEvent(f"late-{uuid.uuid4().hex[:8]}", stack.bucket, name, generations[name])
            answers.append(batch.handle_event(settings, event))

    before = {j.job_id for j in merge_jobs(stack)}
    holder = BackfillHolder(settings, db, _ReleaseHook(lock, land_late_files), owner=owner)
    assert holder.run() == "backfilled"
    assert answers == ["coalesced"] * len(late)  # they found the lock held: only the re-read can save them
    assert holder.groups == 2 and holder.merges == 2  # three dates in one MERGE, then the late date
    assert len([j for j in merge_jobs(stack) if j.job_id not in before]) == 2
    assert_exact(stack, files, generations, days)
    assert not pending_keys(stack, days)
    assert not db.collection(settings.lock_collection).document(backfill_key(ENDPOINT)).get().exists
