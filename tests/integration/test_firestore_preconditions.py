"""Firestore's write preconditions and atomic commits on Google's own Firestore emulator (Cloud
SDK), through the official client, and the compare-and-set lock built on them.

Real Firestore: a precondition's `update_time` means "the target document must exist and have
been last updated at that time"
(https://cloud.google.com/ruby/docs/reference/google-cloud-firestore-v1/latest/Google-Cloud-Firestore-V1-Precondition);
a conditional update or delete whose condition does not match fails with gRPC FAILED_PRECONDITION
(https://cloud.google.com/ruby/docs/reference/google-cloud-errors/latest/Google-Cloud-FailedPreconditionError,
case (d); Firestore's own message "FAILED_PRECONDITION: the stored version (...) does not match
the required base version (...)": https://github.com/GoogleCloudPlatform/spring-cloud-gcp/issues/2163),
which google-api-core raises as `FailedPrecondition` (HTTP 400). `exists=True` on a missing
document answers NOT_FOUND, `exists=False` on an existing one ALREADY_EXISTS
(https://cloud.google.com/datastore/docs/concepts/errors, the same canonical codes).
A batched write is atomic: "In a set of atomic operations, either all of the operations succeed,
or none of them are applied" (https://cloud.google.com/firestore/docs/manage-data/transactions). The npm emulator the stack used before applied writes 1..k-1 of a batch whose
write k failed, and ignored `update_time` unless patched: these tests are why it was retired.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone
from pathlib import Path

import grpc
import pytest
from google.api_core.exceptions import AlreadyExists, FailedPrecondition, NotFound
from google.cloud import firestore

from oddsbatch.lock import BatchLock, LockLost

pytestmark = pytest.mark.integration
LEASE = timedelta(minutes=10)
TTL = timedelta(days=1)
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def db(stack):
    return stack.firestore()


@pytest.fixture
def collection(db):
    return db.collection(f"pre_{uuid.uuid4().hex[:10]}")


def test_a_stale_last_update_time_is_rejected_with_failed_precondition(db, collection):
    ref = collection.document("d")
    created = ref.create({"v": 0})
    read = ref.get()
    assert read.update_time == created.update_time
    # control: the precondition that matches passes
    fresh = ref.update({"v": 1}, option=db.write_option(last_update_time=read.update_time))
    assert fresh.update_time > read.update_time
    # the same precondition, now stale: rejected with the status real Firestore returns
    with pytest.raises(FailedPrecondition) as stale:
        ref.update({"v": 2}, option=db.write_option(last_update_time=read.update_time))
    assert stale.value.grpc_status_code == grpc.StatusCode.FAILED_PRECONDITION
    assert stale.value.code == 400
    with pytest.raises(FailedPrecondition):
        ref.delete(option=db.write_option(last_update_time=read.update_time))
    assert ref.get().to_dict() == {"v": 1}  # neither stale write landed
    ref.delete(option=db.write_option(last_update_time=fresh.update_time))
    assert not ref.get().exists
    # a document that is gone has no update time to match
    with pytest.raises((FailedPrecondition, NotFound)):
        ref.update({"v": 3}, option=db.write_option(last_update_time=fresh.update_time))
    assert not ref.get().exists


def test_a_batch_with_one_failing_write_applies_nothing(db, collection):
    first, guarded, untouched = (collection.document(n) for n in ("first", "guarded", "untouched"))
    guarded.create({"v": 0})
    stale = guarded.get().update_time
    guarded.update({"v": 1})
    untouched.create({"v": 0})
    batch = db.batch()
    batch.create(first, {"v": "new"})                        # would succeed alone
    batch.update(untouched, {"v": "changed"})                 # would succeed alone
    batch.update(guarded, {"v": 2}, option=db.write_option(last_update_time=stale))  # fails
    with pytest.raises(FailedPrecondition):
        batch.commit()
    assert not first.get().exists
    assert untouched.get().to_dict() == {"v": 0}
    assert guarded.get().to_dict() == {"v": 1}
    # control: the same batch without the stale write commits every write, at one update time
    batch = db.batch()
    batch.create(first, {"v": "new"})
    batch.update(untouched, {"v": "changed"})
    batch.commit()
    assert first.get().to_dict() == {"v": "new"} and untouched.get().to_dict() == {"v": "changed"}


def test_writes_in_quick_succession_get_increasing_update_times(db, collection):
    """Each write of a document is a new version with a later update time (microseconds on
    Google's emulator), so a precondition on any earlier version fails."""
    ref = collection.document("d")
    times = [ref.create({"n": 0}).update_time]
    for n in range(1, 30):
        times.append(ref.update({"n": n}, option=db.write_option(last_update_time=times[-1])).update_time)
    assert all(a < b for a, b in zip(times, times[1:]))
    with pytest.raises(FailedPrecondition):
        ref.update({"n": -1}, option=db.write_option(last_update_time=times[-2]))
    # a document deleted and created again is a new version: the old time does not match it
    ref.delete()
    ref.create({"n": 100})
    with pytest.raises(FailedPrecondition):
        ref.update({"n": -1}, option=db.write_option(last_update_time=times[-1]))


def test_exists_preconditions(db, collection):
    ref = collection.document("d")
    with pytest.raises(NotFound):
        ref.delete(option=db.write_option(exists=True))
    ref.create({"a": 1})  # create() is the exists=False precondition
    with pytest.raises(AlreadyExists):
        ref.create({"a": 2})
    with pytest.raises(AlreadyExists):
        ref.delete(option=db.write_option(exists=False))
    assert ref.get().to_dict() == {"a": 1}
    ref.delete(option=db.write_option(exists=True))
    assert not ref.get().exists


def stale_lock(collection, key):
    past = datetime.now(timezone.utc) - timedelta(hours=1)
    collection.document(key).create({"owner": "dead-holder", "nonce": "x", "lease_until": past,
                                     "heartbeat_at": past, "expireAt": past + TTL})


def test_threads_racing_takeover_of_stale_locks_exactly_one_wins_each(stack, collection):
    keys = [f"k{i}" for i in range(8)]
    for key in keys:
        stale_lock(collection, key)
    clients = [firestore.Client(project=stack.project) for _ in range(8)]  # one channel per taker
    start = threading.Barrier(len(clients))

    def taker(i):
        start.wait()
        won = []
        for key in keys:
            lock = BatchLock(clients[i].collection(collection.id), key, f"event-{i}", LEASE, TTL,
                             beat_in_background=False)
            if lock.acquire():
                won.append(key)
        return won

    with ThreadPoolExecutor(len(clients)) as pool:
        results = list(pool.map(taker, range(len(clients))))
    winners = sorted(k for won in results for k in won)
    assert winners == sorted(keys)  # each key: exactly one winner
    for key in keys:
        doc = collection.document(key).get().to_dict()
        assert doc["takeovers"] == 1 and doc["previous_owner"] == "dead-holder"


RACER = textwrap.dedent("""
    import sys, time
    from datetime import timedelta
    from google.cloud import firestore
    from oddsbatch.lock import BatchLock
    collection, owner, start = sys.argv[1], sys.argv[2], float(sys.argv[3])
    db = firestore.Client(project=sys.argv[4])
    lock = BatchLock(db.collection(collection), "key", owner, timedelta(minutes=10), timedelta(days=1),
                     beat_in_background=False)
    db.collection(collection).document("warm-up").get()
    time.sleep(max(0.0, start - time.time()))
    print("won" if lock.acquire() else "lost", lock.how)
""")


def test_processes_racing_takeover_of_one_stale_lock_exactly_one_wins(stack, collection):
    stale_lock(collection, "key")
    start = time.time() + 4.0  # every process connected and waiting by then
    env = {**os.environ, **stack.env, "PYTHONPATH": str(ROOT / "shared")}
    procs = [subprocess.Popen([sys.executable, "-c", RACER, collection.id, f"proc-{i}", str(start), stack.project],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for i in range(6)]
    outputs = [p.communicate(timeout=60) for p in procs]
    assert all(p.returncode == 0 for p in procs), [err for _, err in outputs]
    results = [out.strip().splitlines()[-1].split() for out, _ in outputs]  # the lock's JSON log lines come first
    assert sorted(r[0] for r in results) == ["lost"] * 5 + ["won"]
    assert [r[1] for r in results if r[0] == "won"] == ["stale_takeover"]
    doc = collection.document("key").get().to_dict()
    assert doc["owner"] == next(f"proc-{i}" for i, r in enumerate(results) if r[0] == "won")


def test_a_twin_delivery_of_a_live_holders_event_does_not_become_a_second_holder(collection):
    # A period no stall of a loaded machine reaches: the holder's beat, landing while the twin
    # waits for one (its sleep), decides; the twin's waits are counted, not timed.
    beat = timedelta(minutes=1)
    holder = BatchLock(collection, "key", "event-1", LEASE, TTL, heartbeat=beat)
    assert holder.acquire()
    try:
        waits = []

        def the_holder_beats_meanwhile(seconds: float) -> None:
            waits.append(seconds)
            holder.beat()

        twin = BatchLock(collection, "key", "event-1", LEASE, TTL, heartbeat=beat, sleep=the_holder_beats_meanwhile)
        assert twin.acquire() is False and not twin.held
        assert len(waits) == 1 and waits[0] < beat.total_seconds()  # it coalesced on the first beat it saw
        assert collection.document("key").get().to_dict()["nonce"] == holder.nonce
        holder.renew()  # the holder's compare-and-set chain is intact: it alone holds the key
    finally:
        assert holder.release() is True
    assert not collection.document("key").get().exists


def test_the_retry_of_a_holder_that_died_reclaims_and_the_dead_one_cannot_merge_or_delete(collection):
    beat = timedelta(seconds=1)
    dead = BatchLock(collection, "key", "event-1", LEASE, TTL, heartbeat=beat, beat_in_background=False)
    assert dead.acquire()  # then silent, as a crashed instance
    time.sleep(beat.total_seconds() + 0.1)  # Eventarc's retry comes after >= 10 s; here one period
    waits = []
    retry = BatchLock(collection, "key", "event-1", LEASE, TTL, heartbeat=beat, sleep=waits.append)
    assert retry.acquire() is True and retry.how == "reclaimed"
    assert waits == []  # at once: no waiting for a silent lock
    try:
        with pytest.raises(LockLost):  # a stalled-not-dead "dead" holder stops at its fence
            dead.renew()
        assert dead.release() is False
        assert collection.document("key").get().to_dict()["nonce"] == retry.nonce
    finally:
        assert retry.release() is True
