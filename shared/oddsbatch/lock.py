"""The batch lock and the pending-work queue, on Firestore.

Correctness rests only on what the Firestore emulator really provides: an exclusive
`create()`, plain get/set/delete and equality queries. No transactions (the emulator does
not isolate them), no preconditions.

Lock: one document per batch key. `acquire` creates it; if it exists, it is taken over at
once when its lease has passed (expiry is read, never waited for: Firestore TTL deletion
lags up to a day) or when its owner is this very event (Eventarc retrying an invocation
that died holding it). Two holders at once are possible after a takeover race; that only
costs work, because the MERGE is idempotent.

Pending work: one marker per (object, generation), written by every event BEFORE it tries
the lock. A holder deletes only markers it merged, releases, then re-reads: a marker
written while it held the lock is either seen by that re-read or written by an event
whose own `create()` comes after the release and wins.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Iterable

from .errors import OddsbatchError, TransientError

logger = logging.getLogger("oddsbatch.lock")

# Fields every protocol document carries; Terraform's TTL policies name EXPIRE_AT_FIELD.
EXPIRE_AT_FIELD = "expireAt"
BATCH_KEY_FIELD = "batch_key"


class NotAcquired(OddsbatchError):
    """renew() or release() on a lock this owner does not hold."""


class LockLost(TransientError):
    """The lease passed and another owner took the lock over while we worked."""


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def _as_utc(value) -> datetime | None:
    if value is None:
        return None
    if value.tzinfo is None:
        return value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc)


class BatchLock:
    """A lease lock on `{collection}/{key}` owned by `owner` (the CloudEvent id)."""

    def __init__(self, collection, key: str, owner: str, lease: timedelta, ttl: timedelta, run_id: str = ""):
        self.ref = collection.document(key)
        self.key = key
        self.owner = owner
        self.lease = lease
        self.ttl = ttl
        self.run_id = run_id
        self.how: str | None = None  # created | stale_takeover | reclaimed, once acquired
        self._held = False

    def _document(self, now: datetime, previous: dict | None = None) -> dict:
        doc = {
            "owner": self.owner,
            "run_id": self.run_id,
            BATCH_KEY_FIELD: self.key,
            "acquired_at": now,
            "lease_until": now + self.lease,
            EXPIRE_AT_FIELD: now + self.ttl,
        }
        if previous:
            doc["previous_owner"] = previous.get("owner")
            doc["takeovers"] = int(previous.get("takeovers") or 0) + 1
        return doc

    def acquire(self) -> bool:
        """Try once; True if this owner now holds the lock."""
        from google.api_core.exceptions import AlreadyExists

        for _ in range(3):  # the holder may delete between our create() and get()
            now = utcnow()
            try:
                self.ref.create(self._document(now))
                self.how, self._held = "created", True
                return True
            except AlreadyExists:
                pass
            snapshot = self.ref.get()
            if not snapshot.exists:
                continue
            current = snapshot.to_dict() or {}
            lease_until = _as_utc(current.get("lease_until"))
            if current.get("owner") == self.owner:
                how = "reclaimed"
            elif lease_until is None or lease_until <= now:
                how = "stale_takeover"
            else:
                return False
            self.ref.set(self._document(now, current))
            # Another taker may have overwritten us in between: whoever reads itself wins.
            confirmed = self.ref.get()
            if confirmed.exists and (confirmed.to_dict() or {}).get("owner") == self.owner:
                self.how, self._held = how, True
                logger.info("lock %s %s (previous owner %s)", self.key, how, current.get("owner"))
                return True
            return False
        return False

    def renew(self) -> None:
        """Push the lease out again; LockLost if someone took the lock over meanwhile."""
        if not self._held:
            raise NotAcquired(f"renew of {self.key} by {self.owner}, which does not hold it")
        from google.api_core.exceptions import AlreadyExists

        snapshot = self.ref.get()
        current = snapshot.to_dict() if snapshot.exists else None
        if current is None:
            # Gone: released by a twin delivery of our own event id (Eventarc is at-least-once)
            # or collected by TTL. Nobody holds it, so take it again the only safe way.
            try:
                self.ref.create(self._document(utcnow()))
                return
            except AlreadyExists:
                current = (self.ref.get().to_dict() or {})
        if current.get("owner") != self.owner:
            self._held = False
            raise LockLost(f"lock {self.key} was taken over by {current.get('owner')}")
        now = utcnow()
        self.ref.update({"lease_until": now + self.lease, "renewed_at": now, EXPIRE_AT_FIELD: now + self.ttl})

    def release(self) -> bool:
        """Delete the lock if this owner still holds it; True if it did."""
        if not self._held:
            return False
        self._held = False
        snapshot = self.ref.get()
        if snapshot.exists and (snapshot.to_dict() or {}).get("owner") == self.owner:
            self.ref.delete()
            return True
        return False

    @property
    def held(self) -> bool:
        return self._held

    def __enter__(self) -> "BatchLock":
        if not self.acquire():
            raise NotAcquired(f"lock {self.key} is held by another owner")
        return self

    def __exit__(self, *exc) -> None:
        self.release()


@dataclass(frozen=True)
class Marker:
    """One unit of pending work: an object generation waiting to be merged."""

    doc_id: str
    bucket: str
    name: str
    generation: int
    event_id: str = ""
    created: str | None = None  # the object's timeCreated (RFC 3339), from the event
    size: int | None = None  # bytes, from the event


WRITE_BATCH = 400  # Firestore allows 500 writes per batch


def commit_in_batches(db, items: list, write) -> int:
    """Apply write(batch, item) to every item, committing every WRITE_BATCH writes.

    Atomicity is not needed by the callers (the emulator does not give it anyway): each
    write stands on its own, and a missed one costs one idempotent redo."""
    for start in range(0, len(items), WRITE_BATCH):
        batch = db.batch()
        for item in items[start:start + WRITE_BATCH]:
            write(batch, item)
        batch.commit()
    return len(items)


def marker_id(key: str, bucket: str, name: str, generation: int) -> str:
    digest = hashlib.sha1(f"{bucket}/{name}#{generation}".encode()).hexdigest()[:24]
    return f"{key}~{digest}"


class PendingWork:
    """The queue of markers of one batch key."""

    def __init__(self, db, collection_name: str, key: str, ttl: timedelta):
        self.db = db
        self.collection = db.collection(collection_name)
        self.key = key
        self.ttl = ttl

    def add(self, bucket: str, name: str, generation: int, event_id: str = "", created: str | None = None,
            size: int | None = None) -> Marker:
        """Idempotent: a redelivered event rewrites the same document."""
        marker = Marker(marker_id(self.key, bucket, name, generation), bucket, name, int(generation), event_id,
                        created, size)
        now = utcnow()
        self.collection.document(marker.doc_id).set({
            BATCH_KEY_FIELD: self.key,
            "bucket": bucket,
            "object": name,
            "generation": int(generation),
            "event_id": event_id,
            "created": created,
            "size": size,
            "recorded_at": now,
            EXPIRE_AT_FIELD: now + self.ttl,
        })
        return marker

    def _query(self):
        from google.cloud.firestore_v1.base_query import FieldFilter

        return self.collection.where(filter=FieldFilter(BATCH_KEY_FIELD, "==", self.key))

    def list(self, limit: int | None = None) -> list[Marker]:
        query = self._query()
        if limit:
            query = query.limit(limit)
        markers = []
        for snap in query.stream():
            d = snap.to_dict() or {}
            markers.append(Marker(snap.id, d.get("bucket", ""), d.get("object", ""), int(d.get("generation") or 0),
                                  d.get("event_id", ""), d.get("created"), d.get("size")))
        markers.sort(key=lambda m: (m.name, m.generation))
        return markers

    def count(self) -> int:
        """Markers of this key, by an aggregation query (no documents read)."""
        result = self._query().count().get()
        return int(result[0][0].value)

    def has_any(self) -> bool:
        return any(True for _ in self._query().limit(1).stream())

    def remove(self, markers: Iterable[Marker]) -> int:
        """Delete merged markers in write batches."""
        return commit_in_batches(self.db, list(markers),
                                 lambda batch, marker: batch.delete(self.collection.document(marker.doc_id)))
