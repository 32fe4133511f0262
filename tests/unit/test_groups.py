"""Several dates in one MERGE, with the in-memory fakes of test_batch: a group holder's MERGE,
fences, ledger and markers per key; a fence lost on one key; who takes which locks; the backfill
holder's passes, its handshake at the release, and its deadline."""

from datetime import date, timedelta

import pytest

from oddsbatch import backfill, batch, groups, holder
from oddsbatch.errors import DeadlineReached
from oddsbatch.event import StorageEvent
from oddsbatch.lock import BatchLock
from oddsbatch.paths import batch_key
from oddsbatch.pending import PendingWork

from .test_batch import GOOD, FakeJobs, FakeWarehouse, world  # noqa: F401 - world is the fixture

DAYS = [date(2025, 1, 21) + timedelta(days=i) for i in range(4)]
KEYS = [batch_key("game-lines", d) for d in DAYS]
ID = "a1b2c3d4e5f6a7b8c9d0e1f2a3b4c5d6"


def object_name(day: date, i: int, history: bool = False) -> str:
    root = "game-lines-history" if history else "game-lines"
    return f"odds-api/{root}/{day.isoformat()}/{ID}-BOSLAL/20250120_18{i:02d}00-snap-18{i:02d}.json"


def queue(world, day: date, i: int, history: bool = False) -> PendingWork:
    """A file of `day` in the bucket and its marker, as its event wrote it."""
    pending = PendingWork(world.db, world.settings.pending_collection, batch_key("game-lines", day), timedelta(days=7))
    world.objects[object_name(day, i, history)] = GOOD
    pending.add("bucket", object_name(day, i, history), 1000 + i, f"event-{day}-{i}")
    return pending


def lock(world, key: str, owner: str) -> BatchLock:
    return BatchLock(world.db.collection(world.settings.lock_collection), key, owner, timedelta(minutes=10),
                     timedelta(days=7), beat_in_background=False)


def group_holder(world, keys, owner="reconcile-1", warehouse=None):
    held, busy = groups.take_locks(world.settings, world.db, keys, lambda k: lock(world, k, owner), limit=len(keys))
    assert not busy
    h = holder.BatchHolder.of_group(world.settings, held, world.db, sleep=lambda s: None)
    h._warehouse = warehouse or FakeWarehouse()
    return h


def docs(world, collection: str) -> dict:
    return {path.split("/", 1)[1]: data for path, data in world.db.docs.items() if path.startswith(collection + "/")}


def test_a_group_is_one_merge_over_its_dates_with_fences_ledger_and_markers_per_key(world):
    for day in DAYS[:3]:
        for i in range(2):
            queue(world, day, i)
    h = group_holder(world, KEYS[:3])
    assert h.run() == "merged"
    wh = h._warehouse
    assert wh.merges == 1 and wh.game_dates == DAYS[:3]  # ONE MERGE for the three dates
    (result,) = h.results
    fences = docs(world, world.settings.fence_collection)
    assert sorted(fences) == KEYS[:3]  # its job id recorded in every key's fence before it ran
    assert {f["job_id"] for f in fences.values()} == {f"merge_{result.run_id}"}
    ledger = docs(world, world.settings.ledger_collection)
    assert sorted(d["batch_key"] for d in ledger.values()) == sorted(KEYS[:3] * 2)  # per key
    assert not docs(world, world.settings.pending_collection)  # every marker removed
    assert not docs(world, world.settings.lock_collection)  # every lock released
    totals = result.totals()
    assert sorted(totals) == KEYS[:3] and all(t.files == 2 and t.rows == 24 for t in totals.values())


def test_a_single_key_is_the_group_of_one(world):
    queue(world, DAYS[0], 0)
    h = group_holder(world, KEYS[:1])
    assert h.run() == "merged" and h._warehouse.game_dates == DAYS[:1] and h.label == KEYS[0]


def test_a_fence_lost_on_one_key_stops_the_group_before_its_merge(world, monkeypatch):
    """Another holder records a MERGE in the second key's fence after this holder read it: the
    compare-and-set fails, no MERGE job is inserted, nothing is deleted, every lock is given back.
    The next holding settles EVERY key's fence: the first key's recorded (never inserted) id is
    burned, the other holder's job waited for; then one MERGE lands all three."""
    from oddsbatch import fence as fence_module

    for day in DAYS[:3]:
        queue(world, day, 0)
    h = group_holder(world, KEYS[:3])
    FakeJobs.shared.ids.add("other_holders_merge")  # a job that exists and is DONE
    real_read = fence_module.MergeFence._read
    raced = []

    def read_then_another_holder_records(self):
        real_read(self)
        if self.key == KEYS[1] and not raced:
            raced.append(1)
            world.db.collection(world.settings.fence_collection).document(self.key).set(
                {"job_id": "other_holders_merge", "owner": "event-9", "batch_key": self.key})

    monkeypatch.setattr(fence_module.MergeFence, "_read", read_then_another_holder_records)
    logged = []
    real_release = BatchLock.release
    monkeypatch.setattr(BatchLock, "release", lambda self: logged.append(self.key) or real_release(self))
    assert h.run() == "merged"
    wh = h._warehouse
    assert wh.merges == 1  # the fenced attempt inserted no job; the next holding's MERGE did
    assert set(logged[:3]) == set(KEYS[:3])  # the fenced holding gave every lock back first
    first_id = FakeJobs.shared.placeholders[0]
    assert first_id.startswith("merge_") and len(FakeJobs.shared.placeholders) == 1  # burned: it can never run
    assert not docs(world, world.settings.pending_collection) and not docs(world, world.settings.lock_collection)


def test_take_locks_leaves_a_live_holders_key_and_stops_at_the_limit(world):
    other = lock(world, KEYS[1], "event-live")
    assert other.acquire()
    held, busy = groups.take_locks(world.settings, world.db, KEYS, lambda k: lock(world, k, "sweep-1"), limit=2)
    assert [k.key for k in held] == [KEYS[0], KEYS[2]] and busy == [KEYS[1]]  # KEYS[3] not tried
    assert [k.game_date for k in held] == [DAYS[0], DAYS[2]]
    assert docs(world, world.settings.lock_collection)[KEYS[1]]["owner"] == "event-live"
    groups.release(held)
    assert sorted(docs(world, world.settings.lock_collection)) == [KEYS[1]]


def test_a_group_round_takes_at_most_max_files_in_all(world, monkeypatch):
    monkeypatch.setattr(holder, "MAX_FILES_PER_ROUND", 3)
    for day in DAYS[:2]:
        for i in range(2):
            queue(world, day, i)
    h = group_holder(world, KEYS[:2])
    assert h.run() == "merged"
    assert [r.files for r in h.results] == [3, 1]  # the memory of a round does not grow with the group


# -- the backfill holder ---------------------------------------------------------------------------


def backfill_holder(world, owner="event-h", warehouse=None, deadline=None, **settings):
    settings = world.settings.with_(settle_seconds=0, **settings)
    lk = lock(world, backfill.backfill_key("game-lines"), owner)
    assert lk.acquire()
    made = []

    def new_warehouse(*args, **kwargs):
        made.append(warehouse or FakeWarehouse())
        return made[-1]

    h = backfill.BackfillHolder(settings, world.db, lk, owner=owner, deadline=deadline)
    h._date_lock = lambda key: lock(world, key, owner)
    return h, made


def test_the_backfill_holder_merges_pending_dates_n_per_merge_and_leaves_a_busy_one(world, monkeypatch):
    made = []
    monkeypatch.setattr(holder, "Warehouse", lambda *a, **k: made.append(FakeWarehouse()) or made[-1])
    for day in DAYS:
        queue(world, day, 0, history=True)
    live = lock(world, KEYS[2], "event-live")
    assert live.acquire()  # a live holder has the third date
    h, _ = backfill_holder(world, dates_per_merge=2)
    assert h.run() == "backfilled"
    assert [w.game_dates for w in made] == [DAYS[:2], DAYS[3:]]  # N per MERGE, the busy date skipped
    left = docs(world, world.settings.pending_collection)
    assert [d["batch_key"] for d in left.values()] == [KEYS[2]]  # left to its live holder, which re-reads
    assert sorted(docs(world, world.settings.lock_collection)) == [KEYS[2]]  # backfill and date locks released


@pytest.mark.parametrize("reread", [True, False])
def test_a_history_file_landing_at_the_backfill_release_is_merged(world, monkeypatch, reread):
    """The handshake: the late file's event writes its marker and finds the backfill lock held
    (coalesced) right before the release; the holder's re-read after the release merges it.
    Negative control (reread=False): with the re-read answering nothing, the marker is stranded."""
    made = []
    monkeypatch.setattr(holder, "Warehouse", lambda *a, **k: made.append(FakeWarehouse()) or made[-1])
    queue(world, DAYS[0], 0, history=True)
    h, _ = backfill_holder(world)
    answers = []
    real_release = h.lock.release

    def late_file_then_release():
        if not answers:
            world.objects[object_name(DAYS[1], 5, history=True)] = GOOD
            event = StorageEvent("event-late", "bucket", object_name(DAYS[1], 5, history=True), 1005)
            answers.append(batch.handle_event(world.settings.with_(settle_seconds=0), event))
        return real_release()

    h.lock.release = late_file_then_release
    if not reread:
        real_ids = backfill.pending_ids_by_key
        calls = []

        def blind_after_release(db, settings):
            calls.append(1)
            return {} if len(calls) == 3 else real_ids(db, settings)  # the pass's 2 listings, then the re-read

        monkeypatch.setattr(backfill, "pending_ids_by_key", blind_after_release)
    assert h.run() == "backfilled"
    assert answers == ["coalesced"]  # the late event found the backfill lock held
    left = docs(world, world.settings.pending_collection)
    if reread:
        assert [w.game_dates for w in made] == [DAYS[:1], DAYS[1:2]] and not left
    else:
        assert [d["batch_key"] for d in left.values()] == [KEYS[1]]  # stranded: the re-read is what saves it
    assert not docs(world, world.settings.lock_collection)


def test_the_backfill_holder_starts_no_group_the_deadline_would_cut(world, monkeypatch):
    from oddsbatch.deadline import Deadline

    class Clock:
        now = 0.0

        def __call__(self):
            return self.now

    clock = Clock()
    monkeypatch.setattr(holder, "Warehouse", lambda *a, **k: FakeWarehouse())
    queue(world, DAYS[0], 0, history=True)
    h, _ = backfill_holder(world, deadline=Deadline(540, clock=clock))
    clock.now = 540 - 10  # 10 s left, a group needs the 30 s floor
    with pytest.raises(DeadlineReached):
        h.run()
    assert len(docs(world, world.settings.pending_collection)) == 1  # queued for the retried event
    assert not docs(world, world.settings.lock_collection)  # backfill lock released, no date lock taken


def test_history_events_take_the_backfill_lock_and_live_ones_their_dates(world, monkeypatch):
    monkeypatch.setattr(holder, "Warehouse", lambda *a, **k: FakeWarehouse())
    held = lock(world, backfill.backfill_key("game-lines"), "event-h")
    assert held.acquire()
    world.objects[object_name(DAYS[0], 1, history=True)] = GOOD
    world.objects[object_name(DAYS[0], 2)] = GOOD
    settings = world.settings.with_(settle_seconds=0)
    history = StorageEvent("e-hist", "bucket", object_name(DAYS[0], 1, history=True), 1001)
    live = StorageEvent("e-live", "bucket", object_name(DAYS[0], 2), 1002)
    assert batch.handle_event(settings, history) == "coalesced"  # onto the backfill holder
    assert batch.handle_event(settings, live) == "merged"  # its date's lock: both markers of the date
    assert not docs(world, world.settings.pending_collection)


def test_dates_per_merge_is_a_whole_number_from_1_to_100():
    from oddsbatch.config import Settings, dates_per_merge

    assert dates_per_merge(None) == 16 and dates_per_merge("1") == 1 and dates_per_merge(" 100 ") == 100
    for bad in ("0", "101", "-3", "2.5", "many"):
        with pytest.raises(ValueError, match="--dates-per-merge"):
            dates_per_merge(bad)
    env = {"ODDSBATCH_PROJECT": "p", "ODDSBATCH_DATES_PER_MERGE": "8"}
    assert Settings.from_env("game-lines", env).dates_per_merge == 8
    with pytest.raises(ValueError, match="ODDSBATCH_DATES_PER_MERGE"):
        Settings.from_env("game-lines", {**env, "ODDSBATCH_DATES_PER_MERGE": "0"})
