"""What every protocol document on Firestore shares: the TTL field, the batch key field, the
clock its timestamps come from, and batched writes.

Terraform's TTL policies (terraform/firestore.tf) name EXPIRE_AT_FIELD on the lock, pending,
ledger and run collections. `utcnow` is looked up as `documents.utcnow` by the lock and the
queue, so one clock stamps both (the explorer swaps it for its virtual clock).
"""

from __future__ import annotations

from datetime import datetime, timezone

EXPIRE_AT_FIELD = "expireAt"
BATCH_KEY_FIELD = "batch_key"


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


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
