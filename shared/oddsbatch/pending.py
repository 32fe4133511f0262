"""The pending-work queue of a batch key, on Firestore.

One marker per (object, generation), written by every event BEFORE it tries
the lock. A holder deletes only markers it merged, releases, then re-reads: a marker
written while it held the lock is either seen by that re-read or written by an event
whose own `create()` comes after the release and wins.

Why an event writes its marker first: the holder's re-read after its release and the late
event's own lock attempt cover each other, so no order of the two leaves a marker nobody
merges (tests/explore proves it over every interleaving, and catches the order swapped).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import timedelta
from typing import Iterable

from . import documents
from .documents import BATCH_KEY_FIELD, EXPIRE_AT_FIELD, commit_in_batches


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


def marker_id(key: str, bucket: str, name: str, generation: int) -> str:
    digest = hashlib.sha1(f"{bucket}/{name}#{generation}".encode()).hexdigest()[:24]
    return f"{key}~{digest}"


def key_of(marker: Marker | str) -> str:
    """The batch key a marker (or a marker's document id) was queued under: its id starts with
    it (`marker_id`)."""
    return (marker if isinstance(marker, str) else marker.doc_id).rsplit("~", 1)[0]


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
        now = documents.utcnow()
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
