"""The batch lock, on Firestore: one holder per batch key, taken and given back by compare-and-set.

Lock: one document per batch key, written only by compare-and-set. `acquire` creates it
(`create()` is the `exists=False` precondition); if it exists, it is taken over when its
lease has passed (expiry is read, never waited for: Firestore TTL deletion lags up to a
day), or when its owner is this very event and the holder's heartbeat is stale (Eventarc
retrying an invocation that died holding it). A takeover is an update conditioned on the
`update_time` the taker read, so of two takers exactly one wins; renew, heartbeat and
release are conditioned on the `update_time` of the holder's own last write, so a holder
that lost the lock learns it at its next write (LockLost) and never deletes a lock it no
longer holds. The renew right before each MERGE is the MERGE's fence.

Twins: every BatchLock has its own nonce, and a holder's background thread rewrites
`heartbeat_at` every quarter of the heartbeat period. A second delivery of a live holder's
event (Eventarc is at-least-once) finds the lock written within the period (server time:
the snapshot's read_time minus its update_time) and coalesces; if it is not written within
the period, its holder is dead and the delivery reclaims it. Eventarc's smallest retry
backoff is 10 s (https://cloud.google.com/functions/docs/writing/retries), longer than the
default period, so the retry of a holder that died reclaims at once.

The pending queue the lock guards is pending.py; why the two together lose nothing is said there.
"""

from __future__ import annotations

import logging
import math
import threading
import time
import uuid
from datetime import datetime, timedelta, timezone
from typing import Callable

from . import documents, logs
from .documents import BATCH_KEY_FIELD, EXPIRE_AT_FIELD, last_update, precondition_failed
from .errors import OddsbatchError, TransientError

logger = logging.getLogger("oddsbatch.lock")

# A lock not written by its holder for this long belongs to a dead holder (ODDSBATCH_LOCK_HEARTBEAT_SECONDS).
DEFAULT_HEARTBEAT = timedelta(seconds=8)
BEATS_PER_PERIOD = 4
ACQUIRE_ATTEMPTS = 5


class NotAcquired(OddsbatchError):
    """renew() or release() on a lock this owner does not hold."""


class LockLost(TransientError):
    """A conditional write of the holder failed: someone else wrote (took over) or deleted the
    lock since the holder's last write. Stop before any MERGE; the markers stay queued."""


def _as_utc(value) -> datetime | None:
    if value is None:
        return None
    if value.tzinfo is None:
        return value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc)


class BatchLock:
    """A lease lock on `{collection}/{key}` owned by `owner` (the CloudEvent id)."""

    def __init__(self, collection, key: str, owner: str, lease: timedelta, ttl: timedelta, run_id: str = "",
                 heartbeat: timedelta = DEFAULT_HEARTBEAT, beat_in_background: bool = True,
                 sleep: Callable[[float], None] = time.sleep):
        if heartbeat <= timedelta(0):
            raise ValueError("the lock heartbeat period must be positive")
        self.ref = collection.document(key)
        self.key = key
        self.owner = owner
        self.lease = lease
        self.ttl = ttl
        self.run_id = run_id
        self.heartbeat = heartbeat
        self.beat_in_background = beat_in_background
        self.sleep = sleep
        self.nonce = uuid.uuid4().hex  # this invocation: tells a live twin of our event id from us
        self.how: str | None = None  # created | stale_takeover | reclaimed, once acquired
        self._held = False
        self._update_time = None  # update_time of our own last write: the precondition of the next
        self._lost: str | None = None
        self._mutex = threading.Lock()  # one conditional write at a time (main thread vs heartbeat)
        self._stop = threading.Event()
        self._beater: threading.Thread | None = None

    def _document(self, now: datetime, previous: dict | None = None) -> dict:
        doc = {
            "owner": self.owner,
            "nonce": self.nonce,
            "run_id": self.run_id,
            BATCH_KEY_FIELD: self.key,
            "acquired_at": now,
            "heartbeat_at": now,
            "lease_until": now + self.lease,
            EXPIRE_AT_FIELD: now + self.ttl,
            "previous_owner": None,
            "takeovers": 0,
        }
        if previous:
            doc["previous_owner"] = previous.get("owner")
            doc["takeovers"] = int(previous.get("takeovers") or 0) + 1
        return doc

    # -- acquiring -----------------------------------------------------------------------------

    def acquire(self) -> bool:
        """Try once; True if this owner now holds the lock."""
        from google.api_core.exceptions import AlreadyExists

        if self._held:
            return True
        for _ in range(ACQUIRE_ATTEMPTS):  # a holder may release, or another taker win, in between
            try:
                result = self.ref.create(self._document(documents.utcnow()))
            except AlreadyExists:
                pass
            else:
                self._won("created", result.update_time, None)
                return True
            snapshot = self.ref.get()
            if not snapshot.exists:
                continue
            how, snapshot = self._judge(snapshot)
            if how == "again":
                continue
            if how is None:
                return False
            current = snapshot.to_dict() or {}
            try:
                # Compare-and-set: only if nobody wrote the lock since we read it.
                result = self.ref.update(self._document(documents.utcnow(), current),
                                         option=last_update(snapshot.update_time))
            except precondition_failed():
                continue  # another taker won (or the holder wrote/released): read and judge again
            self._won(how, result.update_time, current)
            logger.info("lock %s %s (previous owner %s)", self.key, how, current.get("owner"))
            return True
        return False

    def _judge(self, snapshot):
        """(how, snapshot): stale_takeover, reclaimed, None (a live holder has it) or again (gone)."""
        current = snapshot.to_dict() or {}
        lease_until = _as_utc(current.get("lease_until"))
        if lease_until is None or lease_until <= documents.utcnow():
            return "stale_takeover", snapshot
        if current.get("owner") != self.owner:
            return None, snapshot
        if current.get("nonce") == self.nonce:
            return "reclaimed", snapshot  # our own write whose answer we never saw
        return self._wait_for_heartbeat(snapshot)

    def _wait_for_heartbeat(self, snapshot):
        """Our event id holds the lock in another invocation: alive (it writes the lock within a
        heartbeat period: coalesce) or dead (it does not: reclaim). Waits at most one period."""
        period = self.heartbeat.total_seconds()
        step = period / BEATS_PER_PERIOD / 2
        waited = 0.0
        for _ in range(math.ceil(period / step) + 2):
            silent = max(waited, self._silence(snapshot))  # server time; the wait itself as a floor
            if silent >= period:
                logger.info("lock %s: heartbeat of %s silent for %.1f s: its holder died", self.key, self.owner, silent)
                return "reclaimed", snapshot
            pause = min(step, period - silent)
            self.sleep(pause)
            waited += pause
            later = self.ref.get()
            if not later.exists:
                return "again", later
            if later.update_time != snapshot.update_time:
                logger.info("lock %s: a live holder of %s beats: twin delivery coalesces", self.key, self.owner)
                return None, later
        return "reclaimed", snapshot

    @staticmethod
    def _silence(snapshot) -> float:
        read_time = _as_utc(getattr(snapshot, "read_time", None)) or documents.utcnow()
        update_time = _as_utc(snapshot.update_time)
        return max(0.0, (read_time - update_time).total_seconds()) if update_time else math.inf

    def _won(self, how: str, update_time, previous: dict | None) -> None:
        self.how, self._held, self._lost, self._update_time = how, True, None, update_time
        # One line per holding (acquired / lost / released, with this invocation's nonce): the chaos
        # suite checks from them that no key had two holders at once except by a takeover.
        logs.log("lock_acquired", batch_key=self.key, owner=self.owner, nonce=self.nonce, how=how,
                 previous_owner=(previous or {}).get("owner"))
        if self.beat_in_background:
            self._stop = threading.Event()
            self._beater = threading.Thread(target=self._beat_loop, name=f"lock-heartbeat-{self.key}", daemon=True)
            self._beater.start()

    # -- holding -------------------------------------------------------------------------------

    def _write(self, fields: dict) -> None:
        """A write conditioned on our own last write; LockLost if someone else wrote since."""
        with self._mutex:
            if self._lost:
                raise LockLost(self._lost)
            try:
                result = self.ref.update(fields, option=last_update(self._update_time))
            except precondition_failed() as exc:
                self._lost = f"lock {self.key} of {self.owner} was written by another owner or deleted: {exc}"
                self._stop.set()
                logs.log("lock_write_lost", severity="WARNING", batch_key=self.key, owner=self.owner, nonce=self.nonce)
                raise LockLost(self._lost) from exc
            self._update_time = result.update_time

    def beat(self) -> None:
        """Prove this holder alive (what the background thread does every quarter period)."""
        self._write({"heartbeat_at": documents.utcnow()})

    def _beat_loop(self) -> None:
        interval = self.heartbeat.total_seconds() / BEATS_PER_PERIOD
        while not self._stop.wait(interval):
            try:
                self.beat()
            except LockLost:
                logger.warning("lock %s: heartbeat found the lock lost", self.key)
                return
            except Exception as exc:  # noqa: BLE001 - a transient error: the next beat tries again
                logger.warning("lock %s: heartbeat failed: %s", self.key, exc)

    def _stop_beating(self) -> None:
        self._stop.set()
        beater, self._beater = self._beater, None
        if beater is not None and beater is not threading.current_thread():
            beater.join(timeout=self.heartbeat.total_seconds())

    def renew(self) -> None:
        """Push the lease out again; LockLost if someone else wrote or deleted the lock meanwhile.
        Called between phases and right before each MERGE is submitted (its fence)."""
        if not self._held:
            raise NotAcquired(f"renew of {self.key} by {self.owner}, which does not hold it")
        now = documents.utcnow()
        try:
            self._write({"lease_until": now + self.lease, "renewed_at": now, "heartbeat_at": now,
                         EXPIRE_AT_FIELD: now + self.ttl})
        except LockLost:
            self._held = False
            self._stop_beating()
            raise

    def release(self) -> bool:
        """Delete the lock if this invocation still holds it; True if it did."""
        if not self._held:
            return False
        self._held = False
        self._stop_beating()
        with self._mutex:  # a beat still in flight lands before the delete, or fails after it
            if self._lost:
                return False
            # Logged before the delete: no other holder can have created the lock before this line.
            logs.log("lock_released", batch_key=self.key, owner=self.owner, nonce=self.nonce)
            try:
                self.ref.delete(option=last_update(self._update_time))
            except precondition_failed():
                return False  # someone else's lock now: left alone
            return True

    @property
    def held(self) -> bool:
        return self._held and not self._lost

    def __enter__(self) -> "BatchLock":
        if not self.acquire():
            raise NotAcquired(f"lock {self.key} is held by another owner")
        return self

    def __exit__(self, *exc) -> None:
        self.release()
