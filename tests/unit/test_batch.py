"""The holder loop's branches, with Firestore, GCS and BigQuery replaced by in-memory fakes.

Pure logic only: the same paths run against the emulators in tests/integration.
"""

import math
from datetime import date, datetime, timedelta, timezone
from collections import Counter
from pathlib import Path

import pytest
from google.api_core.exceptions import ServiceUnavailable

from oddsbatch import batch, holder, staging
from oddsbatch.config import Settings
from oddsbatch.errors import TransientError
from oddsbatch.event import StorageEvent
from oddsbatch.lock import BatchLock, LockLost
from oddsbatch.pending import PendingWork

from .firestore_fake import FakeFirestore
from .storage_fake import STAGING_BUCKET, FakeBlob, FakeStorage, staged_text

DATA = Path(__file__).parent.parent / "data"
DAY = "2025-01-21"
KEY = f"game-lines_{DAY}"
GOOD = (DATA / "event_odds_game_lines_american_synthetic.json").read_bytes().replace(
    b'"a1b2c3d4e5f6g7h8i9j0"', b'"a1b2c3d4e5f6a7b8c9d0e1f2a3b4c5d6"')


def name(i):
    return f"odds-api/game-lines/{DAY}/a1b2c3d4e5f6a7b8c9d0e1f2a3b4c5d6-BOSLAL/20250120_18{i:02d}00-snap-18{i:02d}.json"



def staged_rows(payload: bytes) -> int:
    """Rows in one staged payload (staging NDJSON holds one line per market)."""
    return staging.row_count(staging.decode(payload))

class FakeJobs:
    """The project's jobs, shared by every FakeWarehouse of a test (job ids are unique per project):
    jobs.get for the fence's settle (every MERGE this fake ran is DONE) and the placeholder query."""

    shared: "FakeJobs"

    def __init__(self):
        self.ids = set()
        self.placeholders = []

    def query(self, statement, job_id=None, location=None, job_retry=None):
        from google.api_core.exceptions import Conflict

        if job_id in self.ids:
            raise Conflict(f"Already Exists: Job {job_id}")
        self.ids.add(job_id)
        self.placeholders.append(job_id)

    def get_job(self, job_id, location=None):
        if job_id not in self.ids:
            from google.api_core.exceptions import NotFound

            raise NotFound(f"Not found: Job {job_id}")
        return type("Job", (), {"state": "DONE", "job_id": job_id})()


class FakeWarehouse:
    staging: dict = {}  # the staging bucket's objects (the world fixture's)

    def __init__(self, fail_merges=0, on_merge=None):
        self.staged, self.merges, self.fail_merges, self.on_merge = [], 0, fail_merges, on_merge
        self.created, self.dropped = set(), set()
        self.client = FakeJobs.shared

    def create_staging(self, run_id):
        self.created.add(f"staging_{run_id}")
        return f"staging_{run_id}"

    def stage(self, run_id, uris, created=False, step="load"):
        assert created and f"staging_{run_id}" in self.created  # the holder created it during the reads
        self.staged.append(staged_text(self.staging, uris))  # BigQuery reads the staging objects
        return f"staging_{run_id}"

    def merge(self, run_id, staging_id, game_dates, fences=()):
        self.game_dates = list(game_dates)
        for fence in fences:  # as Warehouse.merge: the job id is recorded in every fence before the job exists
            fence.record(f"merge_{run_id}")
        self.client.ids.add(f"merge_{run_id}")  # inserted: it runs, and is DONE when this returns or raises
        if self.fail_merges:
            self.fail_merges -= 1
            raise TransientError("BigQuery 503")
        self.merges += 1
        if self.on_merge:
            self.on_merge()
        return type("MergeResult", (), {"inserted": 1, "updated": 0})()

    def drop_staging(self, staging_id):
        self.dropped.add(staging_id)


@pytest.fixture
def world(monkeypatch):
    FakeJobs.shared = FakeJobs()
    db = FakeFirestore()
    objects, staged, reads = {}, {}, {}
    quarantined = []
    monkeypatch.setattr(holder, "storage_client", lambda project: FakeStorage(objects, staged=staged, reads=reads))
    monkeypatch.setattr(FakeWarehouse, "staging", staged)
    monkeypatch.setattr(batch, "firestore_client", lambda project, database: db)
    for module in (batch, holder):  # an unparsable name (batch) and a bad file in a round (holder)
        monkeypatch.setattr(module, "quarantine", lambda s, b, n, g, reason: quarantined.append((n, reason)))
    settings = Settings.from_env("game-lines", {"ODDSBATCH_PROJECT": "p", "ODDSBATCH_SETTLE_SECONDS": "0",
                                                "ODDSBATCH_STAGING_BUCKET": STAGING_BUCKET})
    return type("World", (), {"db": db, "objects": objects, "quarantined": quarantined, "settings": settings,
                              "staged": staged, "reads": reads})


def make_holder(world, owner, warehouse):
    pending = PendingWork(world.db, world.settings.pending_collection, KEY, timedelta(days=7))
    lock = BatchLock(world.db.collection(world.settings.lock_collection), KEY, owner, timedelta(minutes=10),
                     timedelta(days=7), beat_in_background=False)
    assert lock.acquire()
    h = holder.BatchHolder(world.settings, KEY, date.fromisoformat(DAY), lock, pending, world.db, sleep=lambda s: None)
    h._warehouse = warehouse
    return h, pending


def add_file(world, pending, i, data=GOOD):
    world.objects[name(i)] = data
    pending.add("bucket", name(i), 1000 + i, f"event-{i}")


def test_late_work_arriving_during_the_merge_gets_a_second_round(world):
    arrived = []
    wh = FakeWarehouse(on_merge=lambda: arrived or (arrived.append(1), add_file(world, pending, 9)))
    h, pending = make_holder(world, "event-1", wh)
    for i in range(3):
        add_file(world, pending, i)
    assert h.run() == "merged"
    assert wh.merges == 2
    assert not pending.has_any()
    assert not any(k.startswith("oddsbatch_locks/") for k in world.db.docs)
    assert sum(map(staged_rows, wh.staged)) == 4 * 12  # 12 outcomes per file, all staged once


def test_a_burst_is_one_merge(world):
    wh = FakeWarehouse()
    h, pending = make_holder(world, "event-1", wh)
    for i in range(14):
        add_file(world, pending, i)
    assert h.run() == "merged"
    assert wh.merges == 1 and len(wh.staged) == 1


def test_late_work_taken_by_someone_else_is_handed_over(world):
    wh = FakeWarehouse()
    h, pending = make_holder(world, "event-1", wh)
    add_file(world, pending, 0)
    real_release = h.lock.release

    def release_then_other_event_wins():
        real_release()
        add_file(world, pending, 5)
        other = BatchLock(world.db.collection(world.settings.lock_collection), KEY, "event-5",
                          timedelta(minutes=10), timedelta(days=7), beat_in_background=False)
        assert other.acquire()

    h.lock.release = release_then_other_event_wins
    assert h.run() == "handed_over"
    assert pending.has_any()  # left for event-5, which holds the lock
    assert world.db.docs[f"oddsbatch_locks/{KEY}"]["owner"] == "event-5"


def test_transient_failure_releases_lock_keeps_markers_and_raises(world):
    wh = FakeWarehouse(fail_merges=1)
    h, pending = make_holder(world, "event-1", wh)
    add_file(world, pending, 0)
    with pytest.raises(TransientError):
        h.run()
    assert pending.has_any()
    assert f"oddsbatch_locks/{KEY}" not in world.db.docs
    # the retried event finishes the work
    h2, _ = make_holder(world, "event-1", FakeWarehouse())
    assert h2.run() == "merged" and not pending.has_any()


def lose_the_lock_after_the_load(world, wh, h, how):
    """The holder's lease passes during a slow load and event-7 takes the lock over (or it vanishes)."""
    real_stage, gone = wh.stage, []

    def stage_then_lose(run_id, payload, created=False):
        staged = real_stage(run_id, payload, created)
        if how == "taken_over":
            world.db.docs[f"oddsbatch_locks/{KEY}"]["lease_until"] = datetime(2000, 1, 1, tzinfo=timezone.utc)
            taker = BatchLock(world.db.collection(world.settings.lock_collection), KEY, "event-7",
                              timedelta(minutes=10), timedelta(days=7), beat_in_background=False)
            assert taker.acquire() and taker.how == "stale_takeover"
        elif how == "vanished" and not gone:
            gone.append(world.db.docs.pop(f"oddsbatch_locks/{KEY}"))
        return staged

    wh.stage = stage_then_lose


@pytest.mark.parametrize("how", ["taken_over", "kept"])
def test_a_holder_that_lost_the_lock_stops_at_the_fence_before_its_merge(world, how):
    wh = FakeWarehouse()
    h, pending = make_holder(world, "event-1", wh)
    add_file(world, pending, 0)
    lose_the_lock_after_the_load(world, wh, h, how)
    if how == "kept":  # negative control: the same holder, nobody took the lock: it merges
        assert h.run() == "merged" and wh.merges == 1 and not pending.has_any()
        return
    assert h.run() == "lock_lost"
    assert wh.merges == 0 and wh.dropped == wh.created  # no MERGE; its staging table dropped
    assert [m.name for m in pending.list()] == [name(0)]  # queued for the new holder
    assert world.db.docs[f"oddsbatch_locks/{KEY}"]["owner"] == "event-7"  # not deleted by the loser


def test_a_holder_whose_lock_vanished_takes_it_again_and_merges(world):
    wh = FakeWarehouse()
    h, pending = make_holder(world, "event-1", wh)
    add_file(world, pending, 0)
    lose_the_lock_after_the_load(world, wh, h, "vanished")
    assert h.run() == "merged"
    assert wh.merges == 1 and not pending.has_any()
    assert f"oddsbatch_locks/{KEY}" not in world.db.docs


def test_a_lock_that_keeps_vanishing_is_left_to_eventarcs_retry(world):
    wh = FakeWarehouse()
    h, pending = make_holder(world, "event-1", wh)
    add_file(world, pending, 0)
    real_stage = wh.stage

    def stage_then_vanish(*args, **kwargs):
        staged = real_stage(*args, **kwargs)
        world.db.docs.pop(f"oddsbatch_locks/{KEY}")
        return staged

    wh.stage = stage_then_vanish
    with pytest.raises(LockLost):  # transient: the event is retried later; the work stays queued
        h.run()
    assert wh.merges == 0 and pending.has_any()


@pytest.mark.parametrize("holder_alive", [True, False])
def test_a_duplicate_delivery_coalesces_onto_a_live_holder_and_reclaims_from_a_dead_one(world, monkeypatch,
                                                                                       holder_alive):
    settings = world.settings.with_(lock_heartbeat_seconds=0.4)
    merges = []
    monkeypatch.setattr(holder, "Warehouse", lambda *a, **k: merges.append(1) or FakeWarehouse())
    world.objects[name(0)] = GOOD
    first = BatchLock(world.db.collection(settings.lock_collection), KEY, "event-0", timedelta(minutes=10),
                      timedelta(days=7), heartbeat=timedelta(seconds=0.4), beat_in_background=holder_alive)
    assert first.acquire()  # the first delivery holds the lock (and, if alive, beats every 0.1 s)
    try:
        decision = batch.handle_event(settings, StorageEvent("event-0", "bucket", name(0), 1000))
    finally:
        first.release()
    if holder_alive:
        assert decision == "coalesced" and merges == []  # never a second holder
    else:
        assert decision == "merged" and merges == [1]  # the retry of a dead holder does its work


def test_bad_file_is_quarantined_and_the_rest_merges(world):
    wh = FakeWarehouse()
    h, pending = make_holder(world, "event-1", wh)
    add_file(world, pending, 0)
    add_file(world, pending, 1, data=b'{"id": "trunc')
    assert h.run() == "merged"
    assert [n for n, _ in world.quarantined] == [name(1)]
    assert wh.merges == 1 and staged_rows(wh.staged[0]) == 12
    assert not pending.has_any()
    assert wh.dropped == wh.created and len(wh.created) == 1  # staging created during the reads, dropped after


def test_round_of_only_bad_files_loads_nothing_and_drops_its_staging_table(world):
    wh = FakeWarehouse()
    h, pending = make_holder(world, "event-1", wh)
    add_file(world, pending, 1, data=b'{"id": "trunc')
    h.run()
    assert [n for n, _ in world.quarantined] == [name(1)]
    assert wh.merges == 0 and wh.staged == []
    assert wh.dropped == wh.created and len(wh.created) == 1
    assert not pending.has_any()


def test_object_gone_is_dropped_without_a_merge(world):
    wh = FakeWarehouse()
    h, pending = make_holder(world, "event-1", wh)
    pending.add("bucket", name(3), 7, "event-3")  # never uploaded / overwritten since
    assert h.run() == "merged"
    assert wh.merges == 0 and not pending.has_any()


def test_event_finding_the_lock_held_coalesces_without_bigquery(world, monkeypatch):
    monkeypatch.setattr(holder, "Warehouse", lambda *a, **k: pytest.fail("a coalesced event touched BigQuery"))
    BatchLock(world.db.collection(world.settings.lock_collection), KEY, "holder", timedelta(minutes=10),
              timedelta(days=7), beat_in_background=False).acquire()
    reads, writes = world.db.reads, world.db.writes
    event = StorageEvent("event-2", "bucket", name(2), 1002)
    assert batch.handle_event(world.settings, event) == "coalesced"
    assert world.db.writes - writes == 1  # the marker; the failed create() is not a write
    assert world.db.reads - reads == 1  # one get() of the lock to read its lease
    assert PendingWork(world.db, world.settings.pending_collection, KEY, timedelta(days=7)).has_any()


def test_unparseable_name_is_quarantined_without_lock(world):
    event = StorageEvent("event-x", "bucket", "odds-api/game-lines/2025-02-30/x.json", 1)
    assert batch.handle_event(world.settings, event) == "quarantined"
    assert "impossible game date" in world.quarantined[0][1]
    assert world.db.docs == {}


def test_firestore_unavailable_is_transient(world, monkeypatch):
    def down(*a, **k):
        raise ServiceUnavailable("firestore down")

    monkeypatch.setattr(PendingWork, "add", down)
    with pytest.raises(TransientError):
        batch.handle_event(world.settings, StorageEvent("e", "bucket", name(1), 1))


def test_every_finished_object_is_in_the_ledger_with_its_outcome(world):
    h, pending = make_holder(world, "event-1", FakeWarehouse())
    add_file(world, pending, 0)
    add_file(world, pending, 1, data=b"<html>502 Bad Gateway</html>")
    pending.add("bucket", name(2), 1002, "event-2")  # never uploaded
    assert h.run() == "merged"
    ledger = {(d["object"], d["outcome"], d["rows"]) for k, d in world.db.docs.items()
              if k.startswith("oddsbatch_merged/")}
    assert ledger == {(name(0), "merged", 12), (name(1), "quarantined", 0), (name(2), "gone", 0)}


def test_an_oversized_object_is_quarantined_unread(world, monkeypatch):
    settings = world.settings.with_(max_object_bytes=1000)
    h, pending = make_holder(world, "event-1", FakeWarehouse())
    h.settings = settings
    world.objects[name(0)] = GOOD
    pending.add("bucket", name(0), 1000, "event-0", size=50 * 1024 * 1024)
    monkeypatch.setattr(FakeBlob, "download_as_bytes", lambda self: pytest.fail("downloaded an oversized object"))
    assert h.run() == "merged"
    assert "exceeds ODDSBATCH_MAX_OBJECT_BYTES=1000" in world.quarantined[0][1]


def test_per_file_baseline_merges_each_event_alone_without_firestore(world, monkeypatch):
    merges = []
    monkeypatch.setattr(holder, "Warehouse", lambda settings, spec, deadline: merges.append(1) or FakeWarehouse())
    monkeypatch.setattr(batch, "firestore_client", lambda *a: pytest.fail("per-file mode touched Firestore"))
    settings = world.settings.with_(mode="per_file")
    for i in range(3):
        world.objects[name(i)] = GOOD
        assert batch.handle_event(settings, StorageEvent(f"e{i}", "bucket", name(i), 1000 + i)) == "merged"
    assert len(merges) == 3


def test_the_old_failure_files_arriving_for_two_minutes_after_the_first_are_all_merged(world, monkeypatch):
    """The old lock skipped every file that arrived while it existed ("all 9 later games were
    blocked"). Here files keep arriving every 10 s of simulated time for 2 minutes while the
    holder settles (5 s) and merges (20 s per MERGE): every one of them must be merged."""
    import datetime as dt

    from freezegun import freeze_time

    start = dt.datetime(2025, 1, 20, 18, 0, tzinfo=dt.timezone.utc)
    arrivals = [start + timedelta(seconds=10 * i) for i in range(13)]  # t = 0 .. 120 s
    settings = world.settings.with_(settle_seconds=5, settle_quiet_seconds=0)  # a fixed 5 s settle
    decisions = []

    with freeze_time(start) as clock:
        def deliver_due():
            while arrivals and arrivals[0] <= dt.datetime.now(dt.timezone.utc):  # looked up now: frozen
                i = 13 - len(arrivals)
                arrivals.pop(0)
                world.objects[name(i)] = GOOD
                decisions.append(batch.handle_event(settings, StorageEvent(f"event-{i}", "bucket", name(i), 1000 + i)))

        def advance(seconds):
            clock.tick(timedelta(seconds=seconds))
            deliver_due()

        class SimulatedTime:
            sleep = staticmethod(advance)
            monotonic = staticmethod(lambda: 0.0)

        merged_files = []

        class SlowWarehouse(FakeWarehouse):
            def merge(self, run_id, staging_id, game_dates, fences=()):
                merged_files.append(staged_rows(self.staged[-1]) // 12)
                advance(20)
                return super().merge(run_id, staging_id, game_dates, fences)

        monkeypatch.setattr(holder, "time", SimulatedTime)
        monkeypatch.setattr(holder, "Warehouse", lambda *a, **k: SlowWarehouse())
        deliver_due()  # the first file at t = 0 takes the lock
        while arrivals:  # the holder finished before the last arrivals: they start their own batch
            advance(1)

    print(f"merges={len(merged_files)} files_per_merge={merged_files} decisions={Counter(decisions)}")
    assert sum(merged_files) == 13, merged_files  # every file merged, none skipped
    assert decisions.count("coalesced") >= 9  # they arrived while the lock existed
    assert len(merged_files) <= 7  # a handful of MERGEs, not 13
    assert not any(k.startswith(("oddsbatch_locks/", "oddsbatch_pending/")) for k in world.db.docs)


def settling_holder(world, arrivals_per_poll):
    """A holder whose queue grows by arrivals_per_poll[i] markers at the i-th settle poll."""
    h, pending = make_holder(world, "event-1", FakeWarehouse())
    h.settings = world.settings.with_(settle_seconds=5, settle_quiet_seconds=0.5)
    polls = iter(arrivals_per_poll)
    next_file = iter(range(1, 1000))

    def sleep(seconds):
        for _ in range(next(polls, 0)):
            add_file(world, pending, next(next_file))

    h.sleep = sleep
    add_file(world, pending, 0)
    return h


def test_settle_ends_after_the_quiet_period_when_the_burst_has_landed(world):
    assert settling_holder(world, []).settle() == 0.5


def test_settle_waits_while_files_keep_arriving(world):
    poll = holder.SETTLE_POLL_SECONDS
    assert settling_holder(world, [3, 2, 4, 1]).settle() == pytest.approx(4 * poll + 0.5)  # 4 polls with arrivals, then 0.5 s quiet


def test_settle_is_capped_by_settle_seconds(world):
    assert settling_holder(world, [1] * 100).settle() == 5.0


def test_settle_without_a_quiet_period_is_a_fixed_delay(world):
    h = settling_holder(world, [])
    h.settings = h.settings.with_(settle_quiet_seconds=0)
    slept = []
    h.sleep = slept.append
    assert h.settle() == 5.0 and slept == [5.0]


def test_settle_cap_is_wall_time_when_count_queries_are_slow(world, monkeypatch):
    """Under load each count query took ~0.3 s and a '5 s' settle lasted 9 s: the cap counts
    the wall clock too, so the holder lists the queue after 5 s whatever the queries cost."""
    clock = [0.0]
    monkeypatch.setattr(holder, "time", type("Clock", (), {"monotonic": staticmethod(lambda: clock[0])}))
    h = settling_holder(world, [1] * 100)  # files keep arriving: only the cap ends the settle
    real_count = h.pending.count
    counts = []

    def slow_count():
        clock[0] += 0.75  # each query takes 0.75 s
        counts.append(clock[0])
        return real_count()

    h.pending.count = slow_count
    sleep = h.sleep
    h.sleep = lambda s: (clock.__setitem__(0, clock[0] + s), sleep(s))
    waited = h.settle()
    assert waited == pytest.approx(clock[0], abs=1e-3)  # the wall time
    assert 5.0 <= waited <= 5.0 + 0.75  # at most one query past the cap
    poll = holder.SETTLE_POLL_SECONDS
    # the first count (0.75 s), then one poll per (sleep + query) until the wall clock passes 5 s
    assert len(counts) == 1 + math.ceil((5.0 - 0.75) / (poll + 0.75) - 1e-9)


# -- the deadline (ODDSBATCH_TIMEOUT_SECONDS) -------------------------------------------------------
class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def timed_holder(world, clock, seconds_per_merge, timeout=540.0):
    from oddsbatch.deadline import Deadline

    class SlowWarehouse(FakeWarehouse):
        def merge(self, run_id, staging_id, game_dates, fences=()):
            clock.now += seconds_per_merge
            return super().merge(run_id, staging_id, game_dates, fences)

    wh = SlowWarehouse()
    h, pending = make_holder(world, "event-1", wh)
    h.settings = world.settings.with_(timeout_seconds=timeout)
    h.deadline = Deadline(timeout, clock=clock)
    return h, pending, wh


def test_a_round_that_cannot_finish_before_the_deadline_is_not_started(world, monkeypatch):
    """Rounds of 200 s under a 540 s timeout (530 s usable): two fit, the third would be cut
    off by the timeout, so the holder stops before it: transient, lock released, markers kept."""
    from oddsbatch.errors import DeadlineReached

    clock = Clock()
    monkeypatch.setattr(holder, "time", type("T", (), {"monotonic": staticmethod(clock), "sleep": time_sleep}))
    monkeypatch.setattr(holder, "MAX_FILES_PER_ROUND", 1)  # one file per round: three rounds of work
    h, pending, wh = timed_holder(world, clock, seconds_per_merge=200.0)
    for i in range(3):
        add_file(world, pending, i)
    with pytest.raises(DeadlineReached) as info:
        h.run()
    assert isinstance(info.value, TransientError)
    assert wh.merges == 2 and clock.now == 400.0  # the third round was never started
    assert pending.count() == 1 and f"oddsbatch_locks/{KEY}" not in world.db.docs
    assert "needs ~200.0s" in str(info.value)


def test_the_same_work_with_a_longer_timeout_finishes(world, monkeypatch):
    """Negative control of the test above: with 900 s, the three rounds fit."""
    clock = Clock()
    monkeypatch.setattr(holder, "time", type("T", (), {"monotonic": staticmethod(clock), "sleep": time_sleep}))
    monkeypatch.setattr(holder, "MAX_FILES_PER_ROUND", 1)
    h, pending, wh = timed_holder(world, clock, seconds_per_merge=200.0, timeout=900.0)
    for i in range(3):
        add_file(world, pending, i)
    assert h.run() == "merged" and wh.merges == 3 and not pending.has_any()


def test_no_round_starts_with_less_than_the_floor_left(world, monkeypatch):
    from oddsbatch.errors import DeadlineReached

    clock = Clock()
    monkeypatch.setattr(holder, "time", type("T", (), {"monotonic": staticmethod(clock), "sleep": time_sleep}))
    h, pending, wh = timed_holder(world, clock, seconds_per_merge=1.0)
    add_file(world, pending, 0)
    clock.now = 540 - 10 - holder.ROUND_FLOOR_SECONDS + 0.5  # 29.5 s usable left: under the 30 s floor
    with pytest.raises(DeadlineReached):
        h.run()
    assert wh.merges == 0 and pending.has_any()


def test_handle_event_starts_the_deadline_from_the_configured_timeout(world, monkeypatch):
    seen = []
    monkeypatch.setattr(holder, "Warehouse", lambda settings, spec, deadline: seen.append(deadline) or FakeWarehouse())
    settings = world.settings.with_(timeout_seconds=120.0)
    world.objects[name(0)] = GOOD
    assert batch.handle_event(settings, StorageEvent("e0", "bucket", name(0), 1000)) == "merged"
    assert seen and seen[0].seconds == 120.0 and 100.0 < seen[0].remaining() <= 110.0  # 120 s less a 10 s reserve


def time_sleep(seconds):
    return None
