"""Every branch of the lock and the pending queue, with time frozen (freezegun)."""

from datetime import timedelta

import pytest
from freezegun import freeze_time

from oddsbatch.lock import EXPIRE_AT_FIELD, BatchLock, LockLost, NotAcquired, PendingWork, marker_id

from .firestore_fake import FakeFirestore

LEASE = timedelta(minutes=10)
TTL = timedelta(days=7)


def make_lock(db, owner, key="game-lines_2025-01-21"):
    return BatchLock(db.collection("locks"), key, owner=owner, lease=LEASE, ttl=TTL)


def test_first_acquire_creates_with_lease_and_ttl():
    db = FakeFirestore()
    with freeze_time("2025-01-20 18:00:00"):
        lock = make_lock(db, "event-1")
        assert lock.acquire() is True
        assert lock.how == "created"
    doc = db.docs["locks/game-lines_2025-01-21"]
    assert doc["owner"] == "event-1"
    assert doc["lease_until"].isoformat() == "2025-01-20T18:10:00+00:00"
    assert doc[EXPIRE_AT_FIELD].isoformat() == "2025-01-27T18:00:00+00:00"


def test_second_owner_is_refused_while_lease_runs():
    db = FakeFirestore()
    with freeze_time("2025-01-20 18:00:00") as clock:
        assert make_lock(db, "event-1").acquire()
        clock.tick(timedelta(minutes=9, seconds=59))
        other = make_lock(db, "event-2")
        assert other.acquire() is False
        assert other.held is False
    assert db.docs["locks/game-lines_2025-01-21"]["owner"] == "event-1"


def test_stale_lock_is_taken_over_as_soon_as_lease_passes_while_ttl_document_exists():
    db = FakeFirestore()
    with freeze_time("2025-01-20 18:00:00") as clock:
        assert make_lock(db, "dead-holder").acquire()
        clock.tick(LEASE)  # lease_until == now: passed
        taker = make_lock(db, "event-2")
        assert taker.acquire() is True
        assert taker.how == "stale_takeover"
    doc = db.docs["locks/game-lines_2025-01-21"]
    assert doc["owner"] == "event-2" and doc["previous_owner"] == "dead-holder" and doc["takeovers"] == 1


def test_same_event_retried_by_eventarc_reclaims_at_once():
    db = FakeFirestore()
    with freeze_time("2025-01-20 18:00:00") as clock:
        assert make_lock(db, "event-1").acquire()
        clock.tick(timedelta(seconds=5))
        retry = make_lock(db, "event-1")
        assert retry.acquire() is True
        assert retry.how == "reclaimed"


def test_release_deletes_only_own_lock():
    db = FakeFirestore()
    with freeze_time("2025-01-20 18:00:00") as clock:
        first = make_lock(db, "event-1")
        assert first.acquire()
        clock.tick(LEASE + timedelta(seconds=1))
        second = make_lock(db, "event-2")
        assert second.acquire()
        assert first.release() is False  # taken over: must not delete the new holder's lock
        assert db.docs["locks/game-lines_2025-01-21"]["owner"] == "event-2"
        assert second.release() is True
    assert "locks/game-lines_2025-01-21" not in db.docs


def test_renew_extends_lease_and_detects_takeover():
    db = FakeFirestore()
    with freeze_time("2025-01-20 18:00:00") as clock:
        lock = make_lock(db, "event-1")
        assert lock.acquire()
        clock.tick(timedelta(minutes=8))
        lock.renew()
        assert db.docs["locks/game-lines_2025-01-21"]["lease_until"].isoformat() == "2025-01-20T18:18:00+00:00"
        clock.tick(timedelta(minutes=5))  # would have expired without the renewal
        assert make_lock(db, "event-2").acquire() is False
        clock.tick(timedelta(minutes=6))
        assert make_lock(db, "event-3").acquire() is True
        with pytest.raises(LockLost):
            lock.renew()


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
    db.docs["locks/game-lines_2025-01-21"] = {"owner": "event-1"}

    def get_after_release():
        db.docs.pop("locks/game-lines_2025-01-21", None)  # the holder releases right now
        return original_get()

    lock.ref.get = get_after_release
    assert lock.acquire() is True
    assert lock.how == "created"


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


def test_renew_recreates_a_lock_that_vanished_under_its_holder():
    db = FakeFirestore()
    with freeze_time("2025-01-20 18:00:00") as clock:
        lock = make_lock(db, "event-1")
        twin = make_lock(db, "event-1")  # the same event delivered twice: both hold it
        assert lock.acquire() and twin.acquire() and twin.how == "reclaimed"
        assert twin.release() is True  # the twin finished first and deleted the lock
        clock.tick(timedelta(minutes=1))
        lock.renew()  # nobody holds it: taken again with create()
        doc = db.docs["locks/game-lines_2025-01-21"]
        assert doc["owner"] == "event-1" and doc["lease_until"].isoformat() == "2025-01-20T18:11:00+00:00"
        # but if someone else created it meanwhile, the holder learns it lost the lock
        db.docs.pop("locks/game-lines_2025-01-21")
        original_create = lock.ref.create

        def someone_else_first(data):
            db.docs["locks/game-lines_2025-01-21"] = {"owner": "event-9"}
            return original_create(data)

        lock.ref.create = someone_else_first
        with pytest.raises(LockLost):
            lock.renew()
