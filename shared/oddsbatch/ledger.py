"""The ledger: which object generations a batch has finished, and how.

A table cannot say so on its own: a file with `bookmakers: []` adds no row, a re-upload
of identical bytes changes no row (the MERGE keeps the first provenance), a quarantined
file adds nothing. Reconcile skips what the table holds or the ledger lists, so it
converges instead of redoing those files forever. Written after the MERGE and before the
markers are deleted: a crash in between only means an idempotent redo.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Iterable

from .config import Settings
from .documents import BATCH_KEY_FIELD, EXPIRE_AT_FIELD, commit_in_batches
from .pending import Marker

MERGED, QUARANTINED, GONE = "merged", "quarantined", "gone"


@dataclass(frozen=True)
class Entry:
    marker: Marker
    outcome: str  # merged | quarantined | gone
    rows: int = 0
    reason: str | None = None


class Ledger:
    def __init__(self, db, collection_name: str, ttl: timedelta):
        self.db = db
        self.collection = db.collection(collection_name)
        self.ttl = ttl

    @classmethod
    def of(cls, db, settings: Settings) -> "Ledger":
        """The deployment's ledger: ODDSBATCH_LEDGER_COLLECTION, kept ODDSBATCH_LEDGER_TTL_DAYS."""
        return cls(db, settings.ledger_collection, timedelta(days=settings.ledger_ttl_days))

    def record(self, key: str, entries: Iterable[Entry], run_id: str) -> int:
        now = datetime.now(timezone.utc)

        def write(batch, entry: Entry) -> None:
            batch.set(self.collection.document(entry.marker.doc_id), {
                BATCH_KEY_FIELD: key, "bucket": entry.marker.bucket, "object": entry.marker.name,
                "generation": entry.marker.generation, "outcome": entry.outcome, "rows": entry.rows,
                "reason": entry.reason, "run_id": run_id, "finished_at": now, EXPIRE_AT_FIELD: now + self.ttl,
            })

        return commit_in_batches(self.db, list(entries), write)

    def finished(self, key: str) -> set[tuple[str, int]]:
        """(object, generation) pairs finished for one batch key."""
        from google.cloud.firestore_v1.base_query import FieldFilter

        query = self.collection.where(filter=FieldFilter(BATCH_KEY_FIELD, "==", key))
        done = set()
        for snap in query.stream():
            d = snap.to_dict() or {}
            done.add((d.get("object", ""), int(d.get("generation") or 0)))
        return done
