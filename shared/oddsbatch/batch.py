"""One event's path: record its work in the queue, then hold the batch or leave it to the holder.

event.py turns the CloudEvent into a StorageEvent; here its object name gives the batch key,
its marker is written (pending.py) BEFORE the lock is tried (lock.py), and the invocation that
gets the lock becomes the holder (holder.py) for everyone who coalesced onto it. A -history/
object (a backfill) tries its endpoint's backfill lock instead of its date's: its holder merges
the endpoint's pending dates several per MERGE (backfill.py).
"""

from __future__ import annotations

from datetime import date, timedelta

from . import faults, logs
from .clients import firestore_client
from .config import Settings
from .deadline import Deadline
from .errors import BadInputError, TerminalError, classify
from .event import StorageEvent
from .backfill import BackfillHolder, backfill_key
from .holder import BatchHolder
from .lock import BatchLock
from .pending import Marker, PendingWork, marker_id
from .paths import parse_object_name
from .quarantine import quarantine


def handle_event(settings: Settings, event: StorageEvent) -> str:
    """Record the event's work, then hold the batch or leave it to the holder."""
    deadline = Deadline(settings.timeout_seconds)  # the invocation's clock starts with the event
    try:
        ref = parse_object_name(event.name)
    except BadInputError as bad:  # no date to batch under: quarantine on its own
        quarantine(settings, event.bucket, event.name, event.generation, bad.reason)
        return "quarantined"
    if settings.mode == "per_file":
        return merge_one_file(settings, event, ref.batch_key, ref.game_date, deadline)
    try:
        db = firestore_client(settings.project, settings.firestore_database)
        pending = PendingWork(db, settings.pending_collection, ref.batch_key, settings.ttl)
        faults.point("before_marker")
        faults.fail_point("firestore")
        pending.add(event.bucket, event.name, event.generation, event.event_id, event.created, event.size)
        # The marker is written: now the lock (a backfill's: the endpoint's backfill lock).
        lock_key = backfill_key(settings.endpoint) if ref.historical else ref.batch_key
        lock = BatchLock(db.collection(settings.lock_collection), lock_key, owner=event.event_id,
                         lease=timedelta(seconds=settings.lease_seconds), ttl=settings.ttl,
                         heartbeat=timedelta(seconds=settings.lock_heartbeat_seconds))
        acquired = lock.acquire()
    except Exception as exc:
        raise classify(exc) from exc
    if not acquired:
        # batch_key names the lock it coalesced onto (a backfill's: the endpoint's), date_key its queue.
        logs.log("coalesced", batch_key=lock_key, date_key=ref.batch_key, object=event.name, event_id=event.event_id)
        return "coalesced"
    try:
        if ref.historical:
            return BackfillHolder(settings, db, lock, owner=event.event_id, deadline=deadline).run()
        return BatchHolder(settings, ref.batch_key, ref.game_date, lock, pending, db, deadline=deadline).run()
    except TerminalError:
        # Logged with what to fix (`failed`); the markers stay queued. Retrying the same event cannot
        # help until someone fixes the cause, so it is acknowledged: the next event of the key, the
        # sweep or `oddsbatch reconcile` picks the work up again.
        return "failed_terminal"


def merge_one_file(settings: Settings, event: StorageEvent, key: str, game_date: date,
                   deadline: Deadline | None = None) -> str:
    """The old behaviour, kept only as the benchmark baseline (ODDSBATCH_MODE=per_file):
    one load and one MERGE per file, no lock, no queue."""
    marker = Marker(marker_id(key, event.bucket, event.name, event.generation), event.bucket, event.name,
                    event.generation, event.event_id, event.created, event.size)
    try:
        BatchHolder(settings, key, game_date, lock=None, pending=None, db=None, deadline=deadline).merge_round([marker])
    except Exception as exc:
        raise classify(exc) from exc
    return "merged"
