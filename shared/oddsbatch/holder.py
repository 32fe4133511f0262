"""The holder: the invocation that holds the lock of one batch key, or of a group of keys of one
endpoint, and merges their queues.

A group (HeldKey per key: its own lock, pending queue and MERGE fence) is merged with ONE MERGE
per round over all its dates (sql.merge_sql's @game_dates); a single key is the group of one,
through the same code. Who forms groups: reconcile (--dates-per-merge), the backfill holder
(backfill.py) and the sweep. Every invariant of one key holds for each key of a group: the MERGE's
job id is recorded in every touched key's fence before it is inserted, and every touched key's
lock is renewed right before it (a holder that lost any of them stops before the MERGE, leaves
every marker queued and releases what it still holds); the ledger is written and the markers
removed per key; at the end every lock is released and every queue re-read.

It does the work of everyone who coalesced onto it: per round it reads the pending markers,
downloads and transforms those objects in parallel, loads ONE staging table, runs ONE MERGE,
quarantines the bad files, records the ledger and deletes the markers it finished; then it
releases the lock and re-reads the queue, taking the lock again if late work arrived
(pending.py says why nothing is lost in between). Data flows one way: event (event.py) ->
marker (pending.py) -> lock (lock.py) -> holder -> staging load and MERGE (warehouse.py).
"""

from __future__ import annotations

import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone

from . import faults, logs, reading
from .clients import storage_client
from .config import Settings
from .deadline import Deadline
from .documents import EXPIRE_AT_FIELD
from .errors import BadInputError, DeadlineReached, RejectedData, TerminalError, TransientError, classify
from .fence import Fenced, MergeFence
from .ledger import GONE, MERGED, QUARANTINED, Entry, Ledger
from .lock import BatchLock, LockLost
from .pending import Marker, PendingWork, key_of
from .quarantine import quarantine
from .staged_objects import StagedLocation, StagingObjects
from .tables import table_for_endpoint
from .warehouse import Warehouse

MAX_FILES_PER_ROUND = 2000
# How often a settling holder counts the queue (one aggregation query each).
SETTLE_POLL_SECONDS = 0.1
# The least time a round is assumed to need (download, load, MERGE on real BigQuery), until this
# invocation has timed one; capped at a quarter of the timeout.
ROUND_FLOOR_SECONDS = 30.0


@dataclass
class HeldKey:
    """One batch key of a holding: its date, its lock, its pending queue and (created by the
    holder when it first merges) its MERGE fence. Locks and fences are never shared between keys."""

    key: str
    game_date: date
    lock: BatchLock | None
    pending: PendingWork | None
    fence: MergeFence | None = None


@dataclass
class KeyTotals:
    """One key's share of a round (the ingest log's row of its date)."""

    files: int = 0
    rows: int = 0
    quarantined: int = 0
    gone: int = 0
    last_snapshot: datetime | None = None


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
    reused: int = 0  # files whose staging object an earlier attempt completed (no download, no transform)
    last_snapshot: datetime | None = None  # the newest snapshot among the merged files
    seconds: dict = field(default_factory=dict)
    entries: list = field(default_factory=list)
    game_dates: list = field(default_factory=list)  # the dates the round's MERGE touched
    last_snapshots: dict = field(default_factory=dict)  # batch key -> the newest snapshot it merged

    def totals(self) -> dict[str, KeyTotals]:
        """Per key, from the entries (and the newest snapshot among each key's merged files)."""
        by_key: dict[str, KeyTotals] = {}
        for entry in self.entries:
            key = key_of(entry.marker)
            totals = by_key.setdefault(key, KeyTotals(last_snapshot=self.last_snapshots.get(key)))
            if entry.outcome == MERGED:
                totals.files += 1
                totals.rows += entry.rows
            elif entry.outcome == QUARANTINED:
                totals.quarantined += 1
            else:
                totals.gone += 1
        return by_key


@dataclass(frozen=True)
class StagedFile:
    """One file of a round and where its staged rows are (staged_objects.py): a staging object
    of the staging bucket, loaded from its gs:// URI; none for a file without rows."""

    marker: Marker
    uri: str | None
    length: int
    rows: int
    snapshot: datetime | None  # the file's snapshot time (one per file)


def find_rejected(items: list, load, rejection: Exception | None = None) -> list[tuple[object, str]]:
    """The items whose rows a load refuses, with its reason, by bisection: `load(subset)` raises
    RejectedData when any item of the subset holds a value the load refuses. `rejection` is
    the refusal already known for the whole list (it is not loaded again). About 2 log2(n)
    loads per refused item; a clean half is loaded once."""
    if rejection is None:
        try:
            load(items)
            return []
        except RejectedData as exc:
            rejection = exc
    if len(items) == 1:
        return [(items[0], str(rejection))]
    middle = len(items) // 2
    left = find_rejected(items[:middle], load)
    # The whole list was refused: with a clean left half, the right half is known to be refused.
    right = find_rejected(items[middle:], load, rejection=None if left else rejection)
    return left + right


def _created(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(timezone.utc)
    except ValueError:
        return None


def settle_queue(settings: Settings, count, sleep) -> float:
    """Let the rest of a burst land before listing a queue: wait until `count()` (the markers
    queued) stood still for settle_quiet_seconds, at most settle_seconds. A burst that lands at
    once costs the quiet period only; files that trickle in over seconds still make one round.
    Both bounds count the slept time and the wall time, whichever is more: under load a count
    query takes a while itself, and the cap must still be a cap. Returns the seconds waited (the
    slept seconds count alone in simulated time, where the clock stands still). One date's
    holder counts its key's queue, the backfill holder (backfill.py) its endpoint's."""
    limit, quiet = settings.settle_seconds, settings.settle_quiet_seconds
    if not limit:
        return 0.0
    if not quiet or quiet >= limit:
        sleep(limit)
        return limit
    clock = time.monotonic
    started = clock()
    slept = still = 0.0
    seen = count()
    checked = clock()
    while still < quiet:
        waited = max(slept, clock() - started)
        if waited >= limit:
            break
        step = min(SETTLE_POLL_SECONDS, limit - waited)
        sleep(step)
        slept += step
        now_seen = count()
        now = clock()
        still = still + max(step, now - checked) if now_seen == seen else 0.0
        seen, checked = now_seen, now
    return round(max(slept, clock() - started), 3)


class BatchHolder:
    """The invocation that holds the locks of one batch key or of a group of keys of one
    endpoint (`BatchHolder.of_group`), and merges their queues."""

    def __init__(self, settings: Settings, key: str, game_date: date, lock: BatchLock | None,
                 pending: PendingWork | None, db, sleep=None, deadline: Deadline | None = None,
                 group: list[HeldKey] | None = None):
        self.settings = settings
        self.held: list[HeldKey] = list(group) if group else [HeldKey(key, game_date, lock, pending)]
        self.db = db
        self.sleep = sleep or time.sleep
        self.deadline = deadline or Deadline(settings.timeout_seconds)
        self.longest_round = 0.0  # seconds of this invocation's slowest round
        self.spec = table_for_endpoint(settings.endpoint)
        self._warehouse: Warehouse | None = None
        self._staging: StagingObjects | None = None
        self.results: list[RoundResult] = []
        self.ledger = Ledger.of(db, settings) if db else None
        self._regained = 0
        self.decision: str | None = None  # what run() returned, for whoever held a group (groups.py)

    @classmethod
    def of_group(cls, settings: Settings, group: list[HeldKey], db, sleep=None,
                 deadline: Deadline | None = None) -> "BatchHolder":
        """A holding of several keys of `settings.endpoint`, each lock already acquired."""
        if not group:
            raise ValueError("a group holds at least one key")
        first = group[0]
        return cls(settings, first.key, first.game_date, first.lock, first.pending, db, sleep=sleep,
                   deadline=deadline, group=group)

    # The first key of the holding (the only one of a single-key holding): names it in logs.
    @property
    def key(self) -> str:
        return self.held[0].key

    @property
    def game_date(self) -> date:
        return self.held[0].game_date

    @property
    def lock(self) -> BatchLock | None:
        return self.held[0].lock

    @property
    def pending(self) -> PendingWork | None:
        return self.held[0].pending

    @property
    def label(self) -> str:
        """The holding in one word for logs: its key, or its first key and how many more."""
        return self.key if len(self.held) == 1 else f"{self.key}+{len(self.held) - 1}"

    @property
    def warehouse(self) -> Warehouse:
        if self._warehouse is None:
            self._warehouse = Warehouse(self.settings, self.spec, deadline=self.deadline)
        return self._warehouse

    def fence_of(self, held: HeldKey) -> MergeFence | None:
        """The key's MERGE fence (fence.py); None without a lock (the per-file baseline)."""
        if held.fence is None and held.lock is not None and self.db is not None:
            held.fence = MergeFence(self.db.collection(self.settings.fence_collection), held.key, held.lock.owner,
                                    self.warehouse.client, self.settings.ttl, self.deadline,
                                    location=self.settings.bigquery_location, sleep=self.sleep)
        return held.fence

    def run(self) -> str:
        rounds = 0
        logs.log("batch_started", batch_key=self.key, batch_keys=[h.key for h in self.held],
                 owner=self.lock.owner, how=self.lock.how)
        try:
            while True:
                for held in self.held:
                    if held.fence is not None:
                        held.fence.forget()  # a new holding: whoever held the key since may have recorded a MERGE
                logs.log("settled", batch_key=self.label, seconds=round(self.settle(), 3))
                while True:
                    markers, more = self.list_round()
                    if not markers:
                        break
                    self.check_time_for_round(len(markers))
                    for held in self.held:
                        held.lock.renew()
                    self.merge_round(markers)
                    rounds += 1
                    if not more:
                        break
                faults.point("before_release")
                for held in self.held:
                    held.lock.release()
                late = [held for held in self.held if held.pending.has_any()]
                if not late:
                    return "merged" if rounds else "nothing_pending"
                regained = [held for held in late if held.lock.acquire()]
                if not regained:  # late work: someone else holds each of those keys now
                    logs.log("handed_over", batch_key=self.label, rounds=rounds)
                    return "handed_over"
                self.held = regained
                logs.log("late_work", batch_key=self.label, rounds=rounds)
        except LockLost as lost:
            # Someone else wrote a lock (took it over) or it vanished, or another holder recorded a
            # MERGE in a key's fence: this holder stops before any MERGE, leaves its markers queued
            # and deletes nothing. It gives back every lock it still holds (compare-and-set: a lost
            # one is left alone). A holder that has a key now sees its markers; a key nobody holds
            # is taken again (create() is exclusive) and the holding goes on with those.
            logs.log("lock_lost", severity="WARNING", batch_key=self.label, owner=self.lock.owner, rounds=rounds,
                     error=str(lost)[:300], fenced=isinstance(lost, Fenced))
            self._release_all()
            self._regained += 1
            if self._regained > 3:  # it keeps vanishing: let Eventarc retry the event later
                raise lost
            try:
                regained = [held for held in self.held if held.pending.has_any() and held.lock.acquire()]
            except Exception as exc:
                raise classify(exc) from exc
            if regained:
                self.held = regained
                return self.run()
            return "lock_lost"
        except Exception as exc:
            error = classify(exc)
            logs.log("failed", severity="ERROR", batch_key=self.label, error=str(error)[:500],
                     transient=isinstance(error, TransientError),
                     **({"fix": error.fix} if isinstance(error, TerminalError) else {}))
            self._release_all()
            raise error from exc

    def _release_all(self) -> None:
        """Give back every lock of the holding this invocation still holds (best effort)."""
        for held in self.held:
            try:
                held.lock.release()
            except Exception:  # noqa: BLE001 - the lease expires anyway
                pass

    def list_round(self) -> tuple[list[Marker], bool]:
        """The next round's markers: each held key's, at most MAX_FILES_PER_ROUND in all (a group
        costs no more memory per round than one key); and whether any key may have more."""
        markers: list[Marker] = []
        more = False
        for held in self.held:
            room = MAX_FILES_PER_ROUND - len(markers)
            if room <= 0:
                more = True  # this key's turn comes in the next round
                break
            listed = held.pending.list(limit=room)
            markers += listed
            more = more or len(listed) >= room
        return markers, more

    def count_pending(self) -> int:
        return sum(held.pending.count() for held in self.held)

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
            raise DeadlineReached(f"{self.label}: {self.deadline.remaining():.1f}s left before the "
                                  f"{self.settings.timeout_seconds:g}s "
                                  f"timeout, a round of {files} files needs ~{needed:.1f}s: left to the retried event")

    def settle(self) -> float:
        """Let the rest of a burst land before listing the queue (settle_queue over this
        holding's pending count)."""
        return settle_queue(self.settings, self.count_pending, self.sleep)

    @property
    def staging(self) -> StagingObjects:
        """The staging bucket (ODDSBATCH_STAGING_BUCKET): a TerminalError naming it when unset."""
        if self._staging is None:
            self._staging = StagingObjects(self.settings.staging_bucket, storage_client(self.settings.project))
        return self._staging

    def _read(self, marker: Marker) -> tuple[Marker, StagedLocation | None, str | None]:
        """One file to its staging object: (marker, where its rows are, bad-input reason). The
        staging object a previous attempt completed is used as it is (no download, no transform);
        otherwise the object is downloaded and transformed within the instance's memory budget
        (reading.py) and its rows written to the staging bucket as they come. None: the object
        is gone."""
        from google.api_core.exceptions import NotFound

        limit = self.settings.max_object_bytes
        if marker.size is not None and marker.size > limit:  # quarantined unread: never pulled into memory
            return marker, None, f"object of {marker.size} bytes exceeds ODDSBATCH_MAX_OBJECT_BYTES={limit}"
        staging = self.staging
        generation = marker.generation or 0
        found = staging.find(marker.name, generation)
        if found is not None:  # counted in the round's `merged` line (reused=N)
            return marker, found, None
        blob = storage_client(self.settings.project).bucket(marker.bucket).blob(marker.name,
                                                                               generation=marker.generation or None)

        def download() -> tuple[bytes, str | None]:
            try:
                return blob.download_as_bytes(raw_download=True), blob.content_encoding  # gzip as stored
            except NotFound:
                raise
            except Exception as exc:
                raise classify(exc) from exc

        try:
            staged = reading.read_object(self.settings, marker.name, marker.generation, _created(marker.created),
                                         marker.size, download, sink=staging.sink(marker.name, generation))
        except NotFound:
            return marker, None, None
        except BadInputError as bad:
            return marker, StagedLocation(None, 0, 0, None), bad.reason
        except (TransientError, TerminalError):  # the download's or the staging write's: the round raises
            raise
        except Exception as exc:  # noqa: BLE001 - confined to this file: it must not block its key
            logs.log("transform_error", severity="ERROR", batch_key=key_of(marker), object=marker.name,
                     generation=marker.generation, error=f"{type(exc).__name__}: {exc}"[:500])
            return marker, StagedLocation(None, 0, 0, None), " ".join(
                f"could not transform: {type(exc).__name__}: {exc}".split())[:500]
        if isinstance(staged.payload, bytes):  # read whole: one upload of the bytes it has
            return marker, staging.put(marker.name, generation, staged.payload, staged.rows, staged.snapshot), None
        return marker, staging.finish(marker.name, generation, staged.payload, staged.rows, staged.snapshot), None

    def merge_round(self, markers: list[Marker]) -> RoundResult:
        """One round: read and transform the files into their staging objects, load the good
        ones into one staging table from their gs:// URIs, one MERGE, then quarantine the bad
        ones, record the ledger, drop the markers and delete the round's staging objects.

        A file is quarantined alone whatever makes it bad: the transform refused it, it raised,
        or the load refused its rows (found by loading halves of the URIs, `find_rejected`).
        Quarantine copies are made after the MERGE, so a copy that fails (a transient error: the
        round raises, Eventarc retries) keeps only that file's marker queued, never the others'.
        A round that raises keeps its staging objects: the retry loads them as they are.

        The markers may belong to several held keys (a group): the MERGE covers their dates, is
        recorded in each of their fences and preceded by a renew of each of their locks; the
        ledger and the markers are written per key."""
        result = RoundResult(run_id=uuid.uuid4().hex[:16])
        by_key = {held.key: held for held in self.held}
        touched = [by_key[k] for k in dict.fromkeys(key_of(m) for m in markers)]  # KeyError: not held
        result.game_dates = sorted({held.game_date for held in touched})
        started = time.monotonic()
        to_quarantine: list[tuple[Marker, str]] = []
        spans: list[StagedFile] = []
        with ThreadPoolExecutor(max_workers=self.settings.download_workers + 1) as pool:
            # The staging table is created while the files download: one request off the latency.
            staging_table = pool.submit(self.warehouse.create_staging, result.run_id)
            for marker, staged, reason in pool.map(self._read, markers):
                if staged is None and reason is None:
                    result.gone += 1
                    result.entries.append(Entry(marker, GONE))
                    logs.log("object_gone", batch_key=key_of(marker), object=marker.name,
                             generation=marker.generation)
                elif reason is not None:
                    to_quarantine.append((marker, reason))
                else:
                    result.reused += staged.reused
                    spans.append(StagedFile(marker, staged.uri, staged.bytes, staged.rows, staged.snapshot))
            staging_id = staging_table.result()
        result.seconds["read"] = round(time.monotonic() - started, 3)
        staged_uris = [s.uri for s in spans if s.uri]
        if staged_uris:  # files without rows (no lines posted yet) have no staging object, need no load
            t = time.monotonic()
            spans = self._load(result.run_id, spans, to_quarantine)
            result.seconds["load"] = round(time.monotonic() - t, 3)
        for span in spans:
            result.files += 1
            result.rows += span.rows
            result.bytes += span.length
            result.entries.append(Entry(span.marker, MERGED, rows=span.rows))
        result.last_snapshot = max((s.snapshot for s in spans if s.rows and s.snapshot), default=None)
        for span in spans:
            if span.rows and span.snapshot:
                key = key_of(span.marker)
                newest = result.last_snapshots.get(key)
                result.last_snapshots[key] = span.snapshot if newest is None else max(newest, span.snapshot)
        if not result.rows:
            self.warehouse.drop_staging(staging_id)  # nothing to merge (every file bad, gone or empty)
            self._drop_staged(staged_uris, result)
        else:
            faults.point("after_load")
            # The fence: a conditional write of every touched key's lock right before the MERGE is
            # submitted, then the MERGE's job id recorded in every touched key's fence. A holder that
            # lost any key meanwhile learns it here (LockLost; Fenced, a LockLost, when another
            # holder burned the job id) and never runs its MERGE: its staging table goes, its
            # staging objects stay (another holder has the key, reads the same markers and reuses
            # them; deleting them under it would fail its load).
            try:
                for held in touched:
                    if held.lock:
                        held.lock.renew()
                fences = [f for f in (self.fence_of(held) for held in touched) if f is not None]
                t = time.monotonic()
                merged = self.warehouse.merge(result.run_id, staging_id, result.game_dates, fences=fences)
            except LockLost:
                self.warehouse.drop_staging(staging_id)
                raise
            result.seconds["merge"] = round(time.monotonic() - t, 3)
            result.merges, result.inserted, result.updated = 1, merged.inserted, merged.updated
            faults.point("after_merge")
            self.warehouse.drop_staging(staging_id)
            self._drop_staged(staged_uris, result)
        failed = self._quarantine_all(to_quarantine, result)
        try:
            for held in touched:
                entries = [e for e in result.entries if key_of(e.marker) == held.key]
                if self.ledger:
                    self.ledger.record(held.key, entries, result.run_id)
                if held.pending:
                    held.pending.remove([e.marker for e in entries])
        except Exception as exc:
            raise classify(exc) from exc
        result.seconds["total"] = round(time.monotonic() - started, 3)
        self.longest_round = max(self.longest_round, result.seconds["total"])
        if self.db:
            self._record(result)
            from .ingest_log import record_round  # readiness: one streamed row per round; never raises

            record_round(self, result)
        self.results.append(result)
        logs.log("merged", batch_key=self.label, batch_keys=[held.key for held in touched],
                 game_dates=[d.isoformat() for d in result.game_dates], run_id=result.run_id, mode=self.settings.mode,
                 files=result.files, rows=result.rows,
                 bytes=result.bytes, merges=result.merges, inserted=result.inserted, updated=result.updated,
                 quarantined=result.quarantined, gone=result.gone, reused=result.reused, seconds=result.seconds,
                 table=self.spec.name)
        if failed:
            raise failed[0]
        return result

    def _drop_staged(self, uris: list[str], result: RoundResult) -> None:
        """The round's staging objects, once its MERGE is DONE (or it had nothing to merge): best
        effort, a failure is logged (staging_delete_failed) and left to the lifecycle rule."""
        if uris:
            self.staging.delete(uris, workers=self.settings.download_workers, batch_key=self.label,
                                run_id=result.run_id)

    def _load(self, run_id: str, spans: list["StagedFile"],
              to_quarantine: list[tuple[Marker, str]]) -> list["StagedFile"]:
        """Load the staged files into the run's staging table from their staging objects' URIs;
        the files it holds. When the load refuses the rows, the refused files are found by
        loading halves of the URIs (nothing is read again here) and go to quarantine."""
        with_rows = [s for s in spans if s.uri]
        try:
            self.warehouse.stage(run_id, [s.uri for s in with_rows], created=True)
            return spans
        except RejectedData as rejected:
            probes = iter(range(1, 1_000_000))

            def load(subset: list[StagedFile]) -> None:
                self.warehouse.stage(run_id, [s.uri for s in subset], created=True, step=f"probe_{next(probes)}")

            refused = find_rejected(with_rows, load, rejection=rejected)
        logs.log("load_rejected", severity="WARNING", batch_key=self.label, run_id=run_id, files=len(with_rows),
                 refused=len(refused), loads=next(probes) - 1)
        bad = {id(span) for span, _ in refused}
        for span, reason in refused:
            to_quarantine.append((span.marker, " ".join(f"BigQuery's load refused its rows: {reason}".split())[:500]))
        good = [s for s in spans if id(s) not in bad]
        if any(s.uri for s in good):
            self.warehouse.stage(run_id, [s.uri for s in good if s.uri], created=True, step="load_good")
        return good

    def _quarantine_all(self, bad: list[tuple[Marker, str]], result: RoundResult) -> list[Exception]:
        """Copy each bad file aside; the failures (transient errors), whose markers stay queued."""
        failed = []
        for marker, reason in bad:
            try:
                quarantine(self.settings, marker.bucket, marker.name, marker.generation, reason)
            except Exception as exc:  # noqa: BLE001 - this file only; the round's others are done
                error = exc if isinstance(exc, TransientError) else TransientError(f"{type(exc).__name__}: {exc}")
                logs.log("quarantine_failed", severity="ERROR", batch_key=key_of(marker), object=marker.name,
                         generation=marker.generation, reason=reason, error=str(error)[:300], transient=True)
                failed.append(error)
                continue
            result.quarantined += 1
            result.entries.append(Entry(marker, QUARANTINED, reason=reason))
        return failed

    def _record(self, result: RoundResult) -> None:
        """A finished round, for `oddsbatch status` and the demo's counts (TTL-collected)."""
        now = datetime.now(timezone.utc)
        try:
            self.db.collection(self.settings.runs_collection).document(result.run_id).set({
                "batch_key": self.label, "batch_keys": sorted(result.totals()), "endpoint": self.settings.endpoint,
                "table": self.spec.name, "game_date": result.game_dates[0].isoformat() if result.game_dates else None,
                "game_dates": [d.isoformat() for d in result.game_dates],
                "owner": self.lock.owner if self.lock else None,
                "finished_at": now,
                "files": result.files, "rows": result.rows, "bytes": result.bytes, "merges": result.merges,
                "inserted": result.inserted, "updated": result.updated, "quarantined": result.quarantined,
                "gone": result.gone, "seconds": result.seconds, EXPIRE_AT_FIELD: now + timedelta(days=30),
            })
        except Exception as exc:  # noqa: BLE001 - bookkeeping must not fail a merged round
            logs.log("run_record_failed", severity="WARNING", run_id=result.run_id, error=str(exc)[:300])
