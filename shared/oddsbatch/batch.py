"""One event's path through the batch: record the work, then coalesce or hold the lock.

The holder does the work of everyone who coalesced onto it: per round it reads the
pending markers, downloads and transforms those objects in parallel, loads ONE staging
table, runs ONE MERGE, deletes the markers it merged; then releases the lock and re-reads
the queue, taking the lock again if late work arrived (see lock.py for why nothing is
lost in between).
"""

from __future__ import annotations

import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone

from . import faults, logs, staging, transform
from .clients import firestore_client, storage_client
from .config import Settings
from .deadline import Deadline
from .errors import BadInputError, DeadlineReached, TransientError, classify
from .handler import StorageEvent
from .ledger import GONE, MERGED, QUARANTINED, Entry, Ledger
from .lock import EXPIRE_AT_FIELD, BatchLock, LockLost, Marker, PendingWork, marker_id
from .paths import parse_object_name
from .tables import table_for_endpoint
from .warehouse import Warehouse

# Files per MERGE round: bounds the memory of one round on a backfill date.
MAX_FILES_PER_ROUND = 2000
# How often a settling holder counts the queue (one aggregation query each).
SETTLE_POLL_SECONDS = 0.1
# Staged NDJSON of one round kept in memory; beyond this it spools to a temporary file.
SPOOL_BYTES = 64 * 1024 * 1024
# The least time a round is assumed to need (download, load, MERGE on real BigQuery), until this
# invocation has timed one; capped at a quarter of the timeout.
ROUND_FLOOR_SECONDS = 30.0


@dataclass
class RoundResult:
    run_id: str
    files: int = 0
    rows: int = 0
    bytes: int = 0
    merges: int = 0
    inserted: int = 0
    updated: int = 0
    quarantined: int = 0
    gone: int = 0
    seconds: dict = field(default_factory=dict)
    entries: list = field(default_factory=list)


def _ttl(settings: Settings) -> timedelta:
    return timedelta(days=settings.ttl_days)


def _created(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(timezone.utc)
    except ValueError:
        return None


def quarantine(settings: Settings, bucket: str, name: str, generation: int, reason: str) -> None:
    """Copy an unreadable object aside with its reason; the original stays where it was."""
    from google.api_core.exceptions import NotFound

    client = storage_client(settings.project)
    source_bucket = client.bucket(bucket)
    target_bucket = client.bucket(settings.quarantine_bucket or bucket)
    target_name = f"{settings.quarantine_prefix}{name}"
    try:
        copy = source_bucket.copy_blob(source_bucket.blob(name), target_bucket, target_name,
                                       source_generation=generation or None)
        copy.metadata = {"oddsbatch-reason": reason[:1024], "oddsbatch-source-bucket": bucket,
                         "oddsbatch-source-generation": str(generation)}
        copy.patch()
    except NotFound:
        logs.log("quarantine_source_gone", severity="WARNING", object=name, generation=generation, reason=reason)
        return
    except Exception as exc:
        raise classify(exc) from exc
    logs.log("quarantined", severity="WARNING", endpoint=settings.endpoint, object=name, generation=generation,
             reason=reason, quarantine_object=f"gs://{target_bucket.name}/{target_name}")


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
        pending = PendingWork(db, settings.pending_collection, ref.batch_key, _ttl(settings))
        faults.point("before_marker")
        faults.fail_point("firestore")
        pending.add(event.bucket, event.name, event.generation, event.event_id, event.created, event.size)
        lock = BatchLock(db.collection(settings.lock_collection), ref.batch_key, owner=event.event_id,
                         lease=timedelta(seconds=settings.lease_seconds), ttl=_ttl(settings),
                         heartbeat=timedelta(seconds=settings.lock_heartbeat_seconds))
        acquired = lock.acquire()
    except Exception as exc:
        raise classify(exc) from exc
    if not acquired:
        logs.log("coalesced", batch_key=ref.batch_key, object=event.name, event_id=event.event_id)
        return "coalesced"
    return BatchHolder(settings, ref.batch_key, ref.game_date, lock, pending, db, deadline=deadline).run()


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


class BatchHolder:
    """The invocation that holds the lock of one batch key and merges its queue."""

    def __init__(self, settings: Settings, key: str, game_date: date, lock: BatchLock | None,
                 pending: PendingWork | None, db, sleep=None, deadline: Deadline | None = None):
        self.settings = settings
        self.key = key
        self.game_date = game_date
        self.lock = lock
        self.pending = pending
        self.db = db
        self.sleep = sleep or time.sleep
        self.deadline = deadline or Deadline(settings.timeout_seconds)
        self.longest_round = 0.0  # seconds of this invocation's slowest round
        self.spec = table_for_endpoint(settings.endpoint)
        self._warehouse: Warehouse | None = None
        self.results: list[RoundResult] = []
        self.ledger = Ledger(db, settings.ledger_collection, timedelta(days=settings.ledger_ttl_days)) if db else None

    @property
    def warehouse(self) -> Warehouse:
        if self._warehouse is None:
            self._warehouse = Warehouse(self.settings, self.spec, deadline=self.deadline)
        return self._warehouse

    def run(self) -> str:
        rounds = 0
        logs.log("batch_started", batch_key=self.key, owner=self.lock.owner, how=self.lock.how)
        try:
            while True:
                logs.log("settled", batch_key=self.key, seconds=round(self.settle(), 3))
                while True:
                    markers = self.pending.list(limit=MAX_FILES_PER_ROUND)
                    if not markers:
                        break
                    self.check_time_for_round(len(markers))
                    self.lock.renew()
                    self.merge_round(markers)
                    rounds += 1
                    if len(markers) < MAX_FILES_PER_ROUND:
                        break
                faults.point("before_release")
                self.lock.release()
                if not self.pending.has_any():
                    return "merged" if rounds else "nothing_pending"
                if not self.lock.acquire():  # late work: someone else holds it now
                    logs.log("handed_over", batch_key=self.key, rounds=rounds)
                    return "handed_over"
                logs.log("late_work", batch_key=self.key, rounds=rounds)
        except LockLost as lost:
            # Someone else wrote the lock (took it over) or it vanished: this holder stops before any
            # MERGE, leaves its markers queued and deletes nothing. A holder that has it now sees the
            # markers; if nobody does, take it again (create() is exclusive) and go on.
            logs.log("lock_lost", severity="WARNING", batch_key=self.key, owner=self.lock.owner, rounds=rounds,
                     error=str(lost)[:300])
            self._regained = getattr(self, "_regained", 0) + 1
            if self._regained > 3:  # it keeps vanishing: let Eventarc retry the event later
                raise lost
            try:
                if self.pending.has_any() and self.lock.acquire():
                    return self.run()
            except Exception as exc:
                raise classify(exc) from exc
            return "lock_lost"
        except Exception as exc:
            error = classify(exc)
            logs.log("failed", severity="ERROR", batch_key=self.key, error=str(error)[:500],
                     transient=isinstance(error, TransientError))
            try:
                self.lock.release()
            except Exception:  # noqa: BLE001 - the lease expires anyway
                pass
            raise error from exc

    def round_estimate(self) -> float:
        """Seconds a round is expected to take: the slowest one this invocation ran, and at
        least ROUND_FLOOR_SECONDS (a quarter of the timeout at most)."""
        floor = min(ROUND_FLOOR_SECONDS, self.settings.timeout_seconds / 4)
        return max(floor, self.longest_round)

    def check_time_for_round(self, files: int) -> None:
        """Start no round the deadline would cut short: raise DeadlineReached (transient: the
        lock is released, the markers stay, and Eventarc's retry starts with a whole timeout)."""
        needed = self.round_estimate()
        if not self.deadline.allows(needed):
            raise DeadlineReached(f"{self.deadline.remaining():.1f}s left before the {self.settings.timeout_seconds:g}s "
                                  f"timeout, a round of {files} files needs ~{needed:.1f}s: left to the retried event")

    def settle(self) -> float:
        """Let the rest of a burst land before listing the queue: wait until no new marker
        appeared for settle_quiet_seconds, at most settle_seconds. A burst that lands at once
        costs the quiet period only; files that trickle in over seconds still make one round.
        Both bounds count the slept time and the wall time, whichever is more: under load a
        count query takes a while itself, and the cap must still be a cap. Returns the seconds
        waited (the slept seconds count alone in simulated time, where the clock stands still)."""
        limit, quiet = self.settings.settle_seconds, self.settings.settle_quiet_seconds
        if not limit:
            return 0.0
        if not quiet or quiet >= limit:
            self.sleep(limit)
            return limit
        clock = time.monotonic
        started = clock()
        slept = still = 0.0
        seen = self.pending.count()
        checked = clock()
        while still < quiet:
            waited = max(slept, clock() - started)
            if waited >= limit:
                break
            step = min(SETTLE_POLL_SECONDS, limit - waited)
            self.sleep(step)
            slept += step
            now_seen = self.pending.count()
            now = clock()
            still = still + max(step, now - checked) if now_seen == seen else 0.0
            seen, checked = now_seen, now
        return round(max(slept, clock() - started), 3)

    def _read(self, marker: Marker) -> tuple[Marker, bytes | None, int, str | None]:
        """Download and transform one object: (marker, staging NDJSON, rows, bad-input reason)."""
        from google.api_core.exceptions import NotFound

        limit = self.settings.max_object_bytes
        too_large = f"exceeds ODDSBATCH_MAX_OBJECT_BYTES={limit}"
        if marker.size is not None and marker.size > limit:  # quarantined unread: never pulled into memory
            return marker, b"", 0, f"object of {marker.size} bytes {too_large}"
        blob = storage_client(self.settings.project).bucket(marker.bucket).blob(marker.name,
                                                                               generation=marker.generation or None)
        try:
            data = blob.download_as_bytes()
        except NotFound:
            return marker, None, 0, None
        except Exception as exc:
            raise classify(exc) from exc
        if len(data) > limit:  # the event did not say its size: checked before any parsing
            return marker, b"", 0, f"object of {len(data)} bytes {too_large}"
        try:
            groups = transform.markets_for_object(marker.name, data, marker.generation, _created(marker.created))
        except BadInputError as bad:
            return marker, b"", 0, bad.reason
        return marker, staging.encode(groups), staging.row_count(groups), None

    def merge_round(self, markers: list[Marker]) -> RoundResult:
        result = RoundResult(run_id=uuid.uuid4().hex[:16])
        started = time.monotonic()
        with tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES) as staged:
            with ThreadPoolExecutor(max_workers=self.settings.download_workers + 1) as pool:
                # The staging table is created while the files download: one request off the latency.
                staging_table = pool.submit(self.warehouse.create_staging, result.run_id)
                for marker, payload, rows, reason in pool.map(self._read, markers):
                    if payload is None:
                        result.gone += 1
                        result.entries.append(Entry(marker, GONE))
                        logs.log("object_gone", batch_key=self.key, object=marker.name, generation=marker.generation)
                    elif reason is not None:
                        quarantine(self.settings, marker.bucket, marker.name, marker.generation, reason)
                        result.quarantined += 1
                        result.entries.append(Entry(marker, QUARANTINED, reason=reason))
                    else:
                        staged.write(payload)
                        result.files += 1
                        result.rows += rows
                        result.bytes += len(payload)
                        result.entries.append(Entry(marker, MERGED, rows=rows))
                staging_id = staging_table.result()
            result.seconds["read"] = round(time.monotonic() - started, 3)
            if not result.rows:
                self.warehouse.drop_staging(staging_id)  # nothing to load (every file bad or gone)
            else:
                staged.seek(0)
                t = time.monotonic()
                # A round that outgrew the spool is on disk: stream it to the load, never read() it whole
                # (a 1,000-file date stages ~100 MB of props NDJSON).
                payload = staged if result.bytes > SPOOL_BYTES else staged.read()
                self.warehouse.stage(result.run_id, payload, created=True)
                result.seconds["load"] = round(time.monotonic() - t, 3)
                faults.point("after_load")
                if self.lock:
                    # The fence: a conditional write right before the MERGE is submitted. A holder that
                    # lost the lock meanwhile learns it here (LockLost) and never runs its MERGE.
                    try:
                        self.lock.renew()
                    except LockLost:
                        self.warehouse.drop_staging(staging_id)
                        raise
                t = time.monotonic()
                merged = self.warehouse.merge(result.run_id, staging_id, self.game_date)
                result.seconds["merge"] = round(time.monotonic() - t, 3)
                result.merges, result.inserted, result.updated = 1, merged.inserted, merged.updated
                faults.point("after_merge")
                self.warehouse.drop_staging(staging_id)
        try:
            if self.ledger:
                self.ledger.record(self.key, result.entries, result.run_id)
            if self.pending:
                self.pending.remove(markers)
        except Exception as exc:
            raise classify(exc) from exc
        result.seconds["total"] = round(time.monotonic() - started, 3)
        self.longest_round = max(self.longest_round, result.seconds["total"])
        if self.db:
            self._record(result)
        self.results.append(result)
        logs.log("merged", batch_key=self.key, run_id=result.run_id, mode=self.settings.mode,
                 files=result.files, rows=result.rows,
                 bytes=result.bytes, merges=result.merges, inserted=result.inserted, updated=result.updated,
                 quarantined=result.quarantined, gone=result.gone, seconds=result.seconds,
                 table=self.spec.name)
        return result

    def _record(self, result: RoundResult) -> None:
        """A finished round, for `oddsbatch status` and the demo's counts (TTL-collected)."""
        now = datetime.now(timezone.utc)
        try:
            self.db.collection(self.settings.runs_collection).document(result.run_id).set({
                "batch_key": self.key, "endpoint": self.settings.endpoint, "table": self.spec.name,
                "game_date": self.game_date.isoformat(), "owner": self.lock.owner if self.lock else None,
                "finished_at": now,
                "files": result.files, "rows": result.rows, "bytes": result.bytes, "merges": result.merges,
                "inserted": result.inserted, "updated": result.updated, "quarantined": result.quarantined,
                "gone": result.gone, "seconds": result.seconds, EXPIRE_AT_FIELD: now + timedelta(days=30),
            })
        except Exception as exc:  # noqa: BLE001 - bookkeeping must not fail a merged round
            logs.log("run_record_failed", severity="WARNING", run_id=result.run_id, error=str(exc)[:300])
