"""The backfill holder: -history/ events merge many dates per MERGE.

The scraper backfills through the historical endpoint (`odds-api/{endpoint}-history/...`,
paths.py): a season lands at once, hundreds of dates per endpoint. Held date by date, that is
one MERGE per date on one table, far beyond BigQuery's 2 running + 20 queued mutating statements
per table. So a -history/ event writes its marker in its date's queue as every event does, then
tries, instead of its date's lock, the endpoint's backfill lock: a document `{endpoint}_backfill`
in the locks collection, the same BatchLock (compare-and-set, lease, heartbeat). A live event
(no -history/) keeps the per-date path.

The winner, one per endpoint at a time, settles on the endpoint's pending count, then works in
passes: list the endpoint's pending markers by date (one query), take the free locks of up to
ODDSBATCH_DATES_PER_MERGE dates that still have markers (groups.take_locks: a date a live holder
has is skipped, that holder re-reads its queue, history markers included), merge the group with
one MERGE per round (groups.hold: every date keeps its own lock, queue and fence), and again, until
every date with markers was tried once in the pass. Then it releases the backfill lock and
re-reads the queue.

Why nothing is lost: the handshake that makes per-date coalescing lossless (pending.py), one level
up. A -history/ marker M is written BEFORE its event tries the backfill lock. If the event gets
the lock, it is the holder and lists M. If not, a holder H has the lock at that moment; H releases
later, and re-reads after its release, so that re-read sees M unless M was merged already. H
then takes the lock again and makes another pass; if it cannot, someone took it after H's release,
and that one's own re-read after its release comes later still. A date whose lock was busy when a
pass tried it is covered by that date's holder, which re-reads the date's queue after its own
release, later than the attempt: so the re-read after the backfill release ignores exactly the
markers that were listed before an attempt found their date busy (marker ids, not dates: a marker
written to that date after the attempt is new and starts another pass). The re-read compares ids
from the same query the passes use.

Deadline: before each group, the time a group is expected to take (the slowest one so far, at
least holder.ROUND_FLOOR_SECONDS) must fit in what is left; if not, DeadlineReached (transient):
the backfill lock is released, the markers stay queued, and Eventarc retries the event with a
whole timeout.
"""

from __future__ import annotations

import time
from datetime import timedelta

from . import groups, logs
from .config import Settings
from .deadline import Deadline
from .documents import BATCH_KEY_FIELD
from .errors import DeadlineReached, classify
from .holder import ROUND_FLOOR_SECONDS, settle_queue
from .lock import BatchLock, LockLost
from .pending import key_of

BACKFILL_SUFFIX = "_backfill"


def backfill_key(endpoint: str) -> str:
    """The backfill lock's document id. It sorts outside the endpoint's date keys
    (`{endpoint}_YYYY-MM-DD`), and no marker is ever queued under it."""
    return f"{endpoint}{BACKFILL_SUFFIX}"


def endpoint_queue(db, settings: Settings):
    """The query of the endpoint's pending markers: a range on `batch_key`, which starts with the
    endpoint (sweep._endpoint_range)."""
    from google.cloud.firestore_v1.base_query import FieldFilter

    from .sweep import _endpoint_range

    low, high = _endpoint_range(settings.endpoint)
    return (db.collection(settings.pending_collection)
            .where(filter=FieldFilter(BATCH_KEY_FIELD, ">=", low))
            .where(filter=FieldFilter(BATCH_KEY_FIELD, "<", high)))


def pending_ids_by_key(db, settings: Settings) -> dict[str, set[str]]:
    """The endpoint's pending marker ids by date key, in one query (projected to the key)."""
    query = endpoint_queue(db, settings).select([BATCH_KEY_FIELD])
    found: dict[str, set[str]] = {}
    for snap in query.stream():
        found.setdefault(key_of(snap.id), set()).add(snap.id)
    return found


class BackfillTakenOver(LockLost):
    """The backfill lock was taken over (its lease passed) or deleted: its new holder lists the
    queue itself; this one stops between groups."""


class BackfillHolder:
    """Holds `{endpoint}_backfill` and merges the endpoint's pending dates in groups."""

    def __init__(self, settings: Settings, db, lock: BatchLock, owner: str, deadline: Deadline | None = None,
                 sleep=None):
        self.settings = settings
        self.db = db
        self.lock = lock
        self.owner = owner
        self.deadline = deadline or Deadline(settings.timeout_seconds)
        self.sleep = sleep or time.sleep
        self.per_merge = settings.dates_per_merge
        self.longest_group = 0.0
        self.groups = 0
        self.merges = 0
        self.holders: list = []

    def _date_lock(self, key: str) -> BatchLock:
        s = self.settings
        return BatchLock(self.db.collection(s.lock_collection), key, owner=self.owner,
                         lease=timedelta(seconds=s.lease_seconds), ttl=s.ttl,
                         heartbeat=timedelta(seconds=s.lock_heartbeat_seconds))

    def run(self) -> str:
        logs.log("backfill_started", endpoint=self.settings.endpoint, owner=self.owner, how=self.lock.how)
        try:
            while True:
                self.settle()
                covered = self.one_pass()
                self.lock.release()
                pending = pending_ids_by_key(self.db, self.settings)
                new = set().union(*pending.values()) - covered if pending else set()
                if not new:  # nothing, or only markers whose date's live holder re-reads them
                    logs.log("backfill_done", endpoint=self.settings.endpoint, groups=self.groups,
                             merges=self.merges, left_to_holders=len(set().union(*pending.values())) if pending else 0)
                    return "backfilled" if self.groups else "left_to_holders"
                if not self.lock.acquire():  # another backfill holder took it after the release
                    logs.log("backfill_handed_over", endpoint=self.settings.endpoint, groups=self.groups)
                    return "handed_over"
                logs.log("backfill_late_work", endpoint=self.settings.endpoint, markers=len(new))
        except BackfillTakenOver as lost:
            logs.log("backfill_lock_lost", severity="WARNING", endpoint=self.settings.endpoint, error=str(lost)[:300])
            return "lock_lost"
        except BaseException:  # the markers stay queued; give the backfill lock back (compare-and-set)
            try:
                self.lock.release()
            except Exception:  # noqa: BLE001 - the lease expires anyway
                pass
            raise

    def one_pass(self) -> set[str]:
        """Merge every pending date whose lock is free, N per group; the marker ids of dates that
        were busy (listed before the attempt that found their lock held)."""
        tried: set[str] = set()
        covered: set[str] = set()
        while True:
            try:
                pending = pending_ids_by_key(self.db, self.settings)
            except Exception as exc:
                raise classify(exc) from exc
            candidates = sorted(k for k in pending if k not in tried)
            if not candidates:
                return covered
            self.check_time_for_group(len(candidates))
            try:
                self.lock.renew()  # still ours?
            except LockLost as lost:
                raise BackfillTakenOver(str(lost)) from lost
            held, busy = groups.take_locks(self.settings, self.db, candidates, self._date_lock, self.per_merge)
            tried.update(k.key for k in held)
            tried.update(busy)
            for key in busy:
                covered |= pending[key]
            if not held:
                continue
            started = time.monotonic()
            holder = groups.hold(self.settings, self.db, held, deadline=self.deadline)
            self.holders.append(holder)
            self.groups += 1
            self.merges += sum(r.merges for r in holder.results)
            self.longest_group = max(self.longest_group, time.monotonic() - started)

    def check_time_for_group(self, dates: int) -> None:
        """Start no group the deadline would cut short (as the holder does for a round)."""
        needed = max(min(ROUND_FLOOR_SECONDS, self.settings.timeout_seconds / 4), self.longest_group)
        if not self.deadline.allows(needed):
            raise DeadlineReached(f"backfill of {self.settings.endpoint}: {self.deadline.remaining():.1f}s left, a "
                                  f"group needs ~{needed:.1f}s; {dates} dates left queued for the retried event")

    def settle(self) -> float:
        """Let the rest of a burst land: holder.settle_queue over the endpoint's pending count
        (the date holder's settle, one level up)."""
        return settle_queue(self.settings, self.count, self.sleep)

    def count(self) -> int:
        """The endpoint's pending markers, by an aggregation query."""
        try:
            return int(endpoint_queue(self.db, self.settings).count().get()[0][0].value)
        except Exception as exc:
            raise classify(exc) from exc
