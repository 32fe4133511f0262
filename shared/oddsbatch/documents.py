"""What every protocol document on Firestore shares: the TTL field, the batch key field, the
clock its timestamps come from, the compare-and-set precondition (lock.py, fence.py), and
batched writes.

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


def last_update(update_time):
    """The precondition "the document was last written at update_time" (the official client's API:
    https://googleapis.dev/python/firestore/latest/_modules/google/cloud/firestore_v1/document.html)."""
    from google.cloud.firestore_v1.client import Client

    return Client.write_option(last_update_time=update_time)


def precondition_failed():
    """What a failed precondition raises: FAILED_PRECONDITION for a stale update_time, NOT_FOUND
    if the document is gone (https://cloud.google.com/ruby/docs/reference/google-cloud-errors/latest/Google-Cloud-FailedPreconditionError)."""
    from google.api_core.exceptions import FailedPrecondition, NotFound

    return (FailedPrecondition, NotFound)


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
