"""Every branch of the lock and the pending queue, with time frozen (freezegun).

The fake honours Firestore's write preconditions (firestore_fake.py); the same cases run
against the patched emulator in tests/integration/test_firestore_preconditions.py.
"""

import threading
from datetime import timedelta

import pytest
from freezegun import freeze_time

from oddsbatch.documents import EXPIRE_AT_FIELD
from oddsbatch.lock import DEFAULT_HEARTBEAT, BatchLock, LockLost, NotAcquired
from oddsbatch.pending import PendingWork, marker_id

from tests.waiting import GUARD_SECONDS

from . import firestore_fake
from .firestore_fake import FakeFirestore

LEASE = timedelta(minutes=10)
TTL = timedelta(days=7)
DOC = "locks/game-lines_2025-01-21"


def no_sleep(seconds):
    pytest.fail(f"acquire() waited {seconds}s where it must decide at once")


def make_lock(db, owner, key="game-lines_2025-01-21", sleep=no_sleep, **kw):
    return BatchLock(db.collection("locks"), key, owner=owner, lease=LEASE, ttl=TTL, beat_in_background=False,
                     sleep=sleep, **kw)


def test_first_acquire_creates_with_lease_ttl_nonce_and_heartbeat():
    db = FakeFirestore()
    with freeze_time("2025-01-20 18:00:00"):
        lock = make_lock(db, "event-1")
        assert lock.acquire() is True
        assert lock.how == "created"
    doc = db.docs[DOC]
    assert doc["owner"] == "event-1" and doc["nonce"] == lock.nonce
    assert doc["lease_until"].isoformat() == "2025-01-20T18:10:00+00:00"
    assert doc["heartbeat_at"].isoformat() == "2025-01-20T18:00:00+00:00"
    assert doc[EXPIRE_AT_FIELD].isoformat() == "2025-01-27T18:00:00+00:00"


def test_second_owner_is_refused_while_lease_runs():
    db = FakeFirestore()
    with freeze_time("2025-01-20 18:00:00") as clock:
        assert make_lock(db, "event-1").acquire()
        clock.tick(timedelta(minutes=9, seconds=59))
        other = make_lock(db, "event-2")
        assert other.acquire() is False
        assert other.held is False
    assert db.docs[DOC]["owner"] == "event-1"


def test_stale_lock_is_taken_over_as_soon_as_lease_passes_while_ttl_document_exists():
    db = FakeFirestore()
    with freeze_time("2025-01-20 18:00:00") as clock:
        assert make_lock(db, "dead-holder").acquire()
        clock.tick(LEASE)  # lease_until == now: passed
        taker = make_lock(db, "event-2")
        assert taker.acquire() is True
        assert taker.how == "stale_takeover"
    doc = db.docs[DOC]
    assert doc["owner"] == "event-2" and doc["previous_owner"] == "dead-holder" and doc["takeovers"] == 1


def test_retry_of_a_holder_that_died_reclaims_at_once():
    """Eventarc retries no sooner than 10 s: the dead holder's lock is silent for longer than the
    heartbeat period, so the retry of the same event id reclaims it without waiting."""
    db = FakeFirestore()
    with freeze_time("2025-01-20 18:00:00") as clock:
        dead = make_lock(db, "event-1")
        assert dead.acquire()
        clock.tick(timedelta(seconds=10))
        retry = make_lock(db, "event-1")  # no_sleep: waiting would fail the test
        assert retry.acquire() is True
        assert retry.how == "reclaimed"
        assert db.docs[DOC]["nonce"] == retry.nonce
        with pytest.raises(LockLost):  # were the dead one still running, its next renew stops it
            dead.renew()
        assert dead.release() is False
    assert db.docs[DOC]["nonce"] == retry.nonce


def test_twin_delivery_of_a_live_holders_event_never_becomes_a_second_holder():
    db = FakeFirestore()
    with freeze_time("2025-01-20 18:00:00") as clock:
        holder = make_lock(db, "event-1")
        assert holder.acquire()
        clock.tick(timedelta(seconds=1))
        slept = []

        def holder_keeps_beating(seconds):  # the twin waits; meanwhile the live holder's thread beats
            slept.append(seconds)
            clock.tick(timedelta(seconds=seconds))
            holder.beat()

        twin = make_lock(db, "event-1", sleep=holder_keeps_beating)
        assert twin.acquire() is False and not twin.held
        assert sum(slept) <= DEFAULT_HEARTBEAT.total_seconds() / 4  # it learned within one beat
        assert db.docs[DOC]["nonce"] == holder.nonce
        holder.renew()  # still the only holder
        assert holder.release() is True
    assert DOC not in db.docs


def test_twin_of_a_holder_that_died_a_moment_ago_reclaims_within_one_period():
    db = FakeFirestore()
    with freeze_time("2025-01-20 18:00:00") as clock:
        assert make_lock(db, "event-1").acquire()  # dies now: never beats again
        clock.tick(timedelta(seconds=2))
        slept = []
        twin = make_lock(db, "event-1", sleep=lambda s: (slept.append(s), clock.tick(timedelta(seconds=s))))
        assert twin.acquire() is True and twin.how == "reclaimed"
        assert 0 < sum(slept) <= DEFAULT_HEARTBEAT.total_seconds()


def test_negative_control_without_the_heartbeat_check_a_twin_is_a_second_holder(monkeypatch):
    """The old rule (same event id reclaims at once) makes twins: both would list and MERGE."""
    monkeypatch.setattr(BatchLock, "_wait_for_heartbeat", lambda self, snapshot: ("reclaimed", snapshot))
    db = FakeFirestore()
    with freeze_time("2025-01-20 18:00:00"):
        holder, twin = make_lock(db, "event-1"), make_lock(db, "event-1")
        assert holder.acquire() and twin.acquire()
        with pytest.raises(LockLost):  # with compare-and-set the first at least learns it at its renew
            holder.renew()


def test_two_takers_of_one_stale_lock_exactly_one_wins():
    db = FakeFirestore()
    with freeze_time("2025-01-20 18:00:00") as clock:
        assert make_lock(db, "dead-holder").acquire()
        clock.tick(LEASE + timedelta(seconds=1))
        first, second = make_lock(db, "event-2"), make_lock(db, "event-3")
        real_update = first.ref.update

        def second_takes_it_in_between(data, option=None):
            if not second.held:
                assert second.acquire() is True  # read the same stale lock, wrote first
            return real_update(data, option=option)

        first.ref.update = second_takes_it_in_between
        assert first.acquire() is False  # its update carried a stale update_time: rejected
        assert second.held and db.docs[DOC]["owner"] == "event-3" and db.docs[DOC]["takeovers"] == 1


def test_negative_control_without_preconditions_both_takers_hold(monkeypatch):
    monkeypatch.setattr(firestore_fake._Doc, "_check", lambda self, option: None)  # the unpatched emulator
    db = FakeFirestore()
    with freeze_time("2025-01-20 18:00:00") as clock:
        assert make_lock(db, "dead-holder").acquire()
        clock.tick(LEASE + timedelta(seconds=1))
        first, second = make_lock(db, "event-2"), make_lock(db, "event-3")
        real_update = first.ref.update

        def second_takes_it_in_between(data, option=None):
            if not second.held:
                assert second.acquire()
            return real_update(data, option=option)

        first.ref.update = second_takes_it_in_between
        assert first.acquire() is True and second.held  # two holders of one key
        second.renew()  # and nobody notices


def test_release_deletes_only_own_lock():
    db = FakeFirestore()
    with freeze_time("2025-01-20 18:00:00") as clock:
        first = make_lock(db, "event-1")
        assert first.acquire()
        clock.tick(LEASE + timedelta(seconds=1))
        second = make_lock(db, "event-2")
        assert second.acquire()
        assert first.release() is False  # taken over: must not delete the new holder's lock
        assert db.docs[DOC]["owner"] == "event-2"
        assert second.release() is True
    assert DOC not in db.docs


def test_release_by_a_twin_of_the_same_event_id_leaves_the_holders_lock():
    """Owner equality is not enough: release is conditioned on this invocation's own last write."""
    db = FakeFirestore()
    with freeze_time("2025-01-20 18:00:00") as clock:
        old = make_lock(db, "event-1")
        assert old.acquire()
        clock.tick(timedelta(seconds=30))  # silent: reclaimed by the retry
        new = make_lock(db, "event-1")
        assert new.acquire() and new.how == "reclaimed"
        assert old.release() is False
        assert db.docs[DOC]["nonce"] == new.nonce


def test_renew_extends_lease_and_detects_takeover():
    db = FakeFirestore()
    with freeze_time("2025-01-20 18:00:00") as clock:
        lock = make_lock(db, "event-1")
        assert lock.acquire()
        clock.tick(timedelta(minutes=8))
        lock.renew()
        assert db.docs[DOC]["lease_until"].isoformat() == "2025-01-20T18:18:00+00:00"
        clock.tick(timedelta(minutes=5))  # would have expired without the renewal
        assert make_lock(db, "event-2").acquire() is False
        clock.tick(timedelta(minutes=6))
        assert make_lock(db, "event-3").acquire() is True
        with pytest.raises(LockLost):
            lock.renew()
        assert lock.held is False
        with pytest.raises(NotAcquired):
            lock.renew()


def test_renew_detects_a_write_by_anyone_even_with_our_owner_and_nonce():
    """Compare-and-set on update_time, not on the owner field: any foreign write is a loss."""
    db = FakeFirestore()
    lock = make_lock(db, "event-1")
    assert lock.acquire()
    db.docs[DOC] = dict(db.docs[DOC])  # rewritten by someone else, same fields
    with pytest.raises(LockLost):
        lock.renew()


def test_a_lock_that_vanished_under_its_holder_is_lost_not_recreated():
    db = FakeFirestore()
    lock = make_lock(db, "event-1")
    assert lock.acquire()
    db.docs.pop(DOC)  # deleted under it (an operator, or TTL after a very long stall)
    with pytest.raises(LockLost):
        lock.renew()
    assert DOC not in db.docs and lock.held is False
    assert lock.release() is False


def test_renew_and_context_manager_misuse():
    db = FakeFirestore()
    lock = make_lock(db, "event-1")
    with pytest.raises(NotAcquired):
        lock.renew()
    assert lock.release() is False
    with make_lock(db, "event-2"):
        with pytest.raises(NotAcquired):
            with make_lock(db, "event-3"):
                pass
    assert db.docs == {}


def test_acquire_retries_create_when_holder_released_in_between():
    db = FakeFirestore()
    lock = make_lock(db, "event-2")
    original_get = lock.ref.get
    db.docs[DOC] = {"owner": "event-1"}

    def get_after_release():
        db.docs.pop(DOC, None)  # the holder releases right now
        return original_get()

    lock.ref.get = get_after_release
    assert lock.acquire() is True
    assert lock.how == "created"


def counted_beats(lock) -> threading.Semaphore:
    """A semaphore released after each beat of `lock` lands: the test waits on beats, not on time."""
    landed = threading.Semaphore(0)
    beat = lock.beat

    def counted():
        beat()
        landed.release()

    lock.beat = counted  # the heartbeat thread calls self.beat()
    return landed


def test_heartbeat_thread_keeps_the_lock_written_and_stops_on_release():
    db = FakeFirestore()
    lock = BatchLock(db.collection("locks"), "game-lines_2025-01-21", "event-1", LEASE, TTL,
                     heartbeat=timedelta(seconds=0.2))
    beats = counted_beats(lock)
    assert lock.acquire()
    first = db.docs[DOC]["heartbeat_at"]
    for n in range(2):  # the thread's beats, however late a loaded machine runs it
        assert beats.acquire(timeout=GUARD_SECONDS), f"beat {n + 1} never came"
    assert db.docs[DOC]["heartbeat_at"] > first
    lock.renew()  # the beats did not break the holder's own compare-and-set chain
    beater = lock._beater
    assert beater is not None and beater.is_alive()
    assert lock.release() is True
    assert DOC not in db.docs
    assert not beater.is_alive()


def test_heartbeat_thread_finds_a_takeover_and_the_next_renew_raises():
    db = FakeFirestore()
    lock = BatchLock(db.collection("locks"), "game-lines_2025-01-21", "event-1", LEASE, TTL,
                     heartbeat=timedelta(seconds=0.2))
    assert lock.acquire()
    beater = lock._beater
    db.docs[DOC] = {**db.docs[DOC], "owner": "event-9", "nonce": "other"}  # taken over
    beater.join(timeout=GUARD_SECONDS)  # the thread ends only when a beat finds the lock lost
    assert not beater.is_alive(), "the heartbeat thread never found the takeover"
    assert lock.held is False  # the beat learned it
    with pytest.raises(LockLost):
        lock.renew()
    assert lock.release() is False and db.docs[DOC]["owner"] == "event-9"


def test_heartbeat_period_must_be_positive():
    with pytest.raises(ValueError):
        make_lock(FakeFirestore(), "event-1", heartbeat=timedelta(0))


def test_pending_markers_are_idempotent_per_generation_and_scoped_per_key():
    db = FakeFirestore()
    with freeze_time("2025-01-20 18:00:00"):
        queue = PendingWork(db, "pending", "game-lines_2025-01-21", TTL)
        a = queue.add("b", "odds-api/game-lines/2025-01-21/x.json", 1, "e1")
        again = queue.add("b", "odds-api/game-lines/2025-01-21/x.json", 1, "e1-redelivered")
        newer = queue.add("b", "odds-api/game-lines/2025-01-21/x.json", 2, "e2")
        PendingWork(db, "pending", "game-lines_2025-01-22", TTL).add("b", "other.json", 1)
    assert a.doc_id == again.doc_id != newer.doc_id
    assert a.doc_id == marker_id("game-lines_2025-01-21", "b", "odds-api/game-lines/2025-01-21/x.json", 1)
    listed = queue.list()
    assert [(m.name, m.generation) for m in listed] == [("odds-api/game-lines/2025-01-21/x.json", 1),
                                                        ("odds-api/game-lines/2025-01-21/x.json", 2)]
    assert queue.has_any()
    assert queue.remove(listed) == 2
    assert not queue.has_any()
    assert PendingWork(db, "pending", "game-lines_2025-01-22", TTL).has_any()
