"""Several game dates of one endpoint in ONE MERGE: who takes which dates' locks, and how.

A backfill lands many dates at once on one table per endpoint, and BigQuery runs 2 mutating DML
statements per table and queues 20 (the 23rd fails "Too many DML statements outstanding":
https://cloud.google.com/bigquery/quotas, DML statements). One MERGE per date makes a season cost
160 statements per table. A holder that holds the locks of several dates merges their pending
files with one MERGE over all of them (holder.py, sql.merge_sql's @game_dates), so the same season
costs ceil(160 / N) MERGEs per table, N = ODDSBATCH_DATES_PER_MERGE or `--dates-per-merge`.

Who groups: `oddsbatch reconcile --from --to` (reconcile.py), the backfill holder of -history/
events (backfill.py), and the sweep adopting several stale dates (sweep.py). Each takes date locks
the way any event does, one by one and without waiting (`take_locks`): a date whose lock a live
holder has is left to it, since that holder re-reads its queue after its release and the markers
are already written. Then the group is one BatchHolder (`hold`), the same class and code path as
the holder of one date.
"""

from __future__ import annotations

from datetime import date
from typing import Callable, Iterable

from . import logs
from .deadline import Deadline
from .errors import classify
from .holder import BatchHolder, HeldKey
from .lock import BatchLock
from .pending import PendingWork


def date_of(key: str) -> date:
    """The game date of a batch key `{endpoint}_{YYYY-MM-DD}` (paths.batch_key)."""
    return date.fromisoformat(key.rsplit("_", 1)[1])


def take_locks(settings, db, keys: Iterable[str], make_lock: Callable[[str], BatchLock],
               limit: int) -> tuple[list[HeldKey], list[str]]:
    """Try the lock of each key once, in order, until `limit` are held: (the keys now held, as
    HeldKey, and the keys a live holder has: left to it). Keys after the last one tried are
    neither. A failed attempt waits for nothing (BatchLock.acquire is one compare-and-set)."""
    held: list[HeldKey] = []
    busy: list[str] = []
    for key in keys:
        if len(held) >= limit:
            break
        lock = make_lock(key)
        try:
            acquired = lock.acquire()
        except Exception as exc:
            release(held)
            raise classify(exc) from exc
        if acquired:
            held.append(HeldKey(key, date_of(key), lock, PendingWork(db, settings.pending_collection, key, settings.ttl)))
        else:
            busy.append(key)
            logs.log("group_left_to_holder", endpoint=settings.endpoint, batch_key=key)
    return held, busy


def release(held: list[HeldKey]) -> None:
    """Give back the locks of a group that will not be held after all (best effort: each lock's
    lease and heartbeat let the sweep adopt a key whose release failed)."""
    for key in held:
        try:
            key.lock.release()
        except Exception:  # noqa: BLE001 - see above
            pass


def hold(settings, db, held: list[HeldKey], deadline: Deadline | None = None) -> BatchHolder:
    """Merge the queues of the held keys as one holding: one MERGE per round over all of them,
    no settle (their markers are already written). Returns the holder after its run (its
    `decision` and `results`); its errors are raised as BatchHolder.run raises them, every lock
    released."""
    holder = BatchHolder.of_group(settings.with_(settle_seconds=0), held, db, deadline=deadline)
    logs.log("group_held", endpoint=settings.endpoint, batch_keys=[k.key for k in held], dates=len(held))
    holder.decision = holder.run()
    return holder
