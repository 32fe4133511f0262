"""The sweep: nothing stranded, nobody babysitting.

Cloud Scheduler publishes to a Pub/Sub topic every few minutes; an Eventarc trigger delivers
that message to both functions (type google.cloud.pubsub.topic.v1.messagePublished), and each
function sweeps its own endpoint:

1. ONE Firestore query lists the endpoint's pending markers (a range on `batch_key`, which
   starts with the endpoint), projected to `batch_key` and `recorded_at`. It logs
   `sweep_pending` with `oldest_pending_seconds` (the log-based metric and its alert read it).
2. Every key whose oldest marker is older than ODDSBATCH_SWEEP_STALE_SECONDS and that has no
   live lock is adopted through the same BatchLock (compare-and-set) and BatchHolder as an
   event, up to ODDSBATCH_DATES_PER_MERGE keys per holding, merged with one MERGE (groups.py): a lock whose lease passed, or whose heartbeat has been silent for a whole
   heartbeat period (its holder died: a crashed instance, an interrupted reconcile, an event
   Eventarc gave up on), is taken over; a live holder is left alone (it re-reads the queue).
3. Today and the ODDSBATCH_SWEEP_DAYS - 1 days before it (UTC game dates) are reconciled
   against the bucket: objects older than the stale threshold that are neither pending nor
   in the ledger get a marker and are merged (a lost event). The names and generations of
   those objects are fingerprinted per date in the sweep's own document; an unchanged
   fingerprint costs no ledger read and no BigQuery job.

Idle (nothing pending, no new object): one query and one document read (the sweep document),
one write (its last run, for `oddsbatch status`), the bucket listings, and no BigQuery job.
"""

from __future__ import annotations

import hashlib
import time
import warnings
import uuid
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone

from . import groups, logs
from .config import Settings
from .deadline import Deadline
from .errors import TransientError, classify
from .documents import BATCH_KEY_FIELD, EXPIRE_AT_FIELD
from .lock import BatchLock
from .pending import PendingWork
from .paths import batch_key

SWEEP_EVENT = "google.cloud.pubsub.topic.v1.messagePublished"
SWEEP_DOC_TTL = timedelta(days=30)
# Least invocation time left to adopt one more key (a round on real BigQuery).
ADOPT_FLOOR_SECONDS = 30.0


class SweepLock(BatchLock):
    """BatchLock that also takes over a lock whose heartbeat stopped: its holder is dead.

    A live holder rewrites its lock every quarter of the heartbeat period (lock.py); silence
    for a whole period, measured in server time (read_time - update_time), means the process
    that held it is gone. The takeover is the same compare-and-set on the update_time read,
    and a holder that was only slow learns it at its next write (LockLost, before any MERGE)."""

    def _judge(self, snapshot):
        how, snapshot = super()._judge(snapshot)
        if how is None and self._silence(snapshot) >= self.heartbeat.total_seconds():
            return "adopted", snapshot
        return how, snapshot


@dataclass
class SweepReport:
    endpoint: str
    markers: int = 0
    keys: int = 0
    oldest_pending_seconds: float = 0.0
    stale_keys: list = field(default_factory=list)
    adopted: list = field(default_factory=list)
    left_to_holder: list = field(default_factory=list)
    lost_objects: int = 0
    files: int = 0
    rows: int = 0
    merges: int = 0
    errors: list = field(default_factory=list)
    seconds: float = 0.0

    @property
    def decision(self) -> str:
        if self.errors:
            return "sweep_partial"
        return "sweep_merged" if self.merges else "sweep_idle"


def _endpoint_range(endpoint: str) -> tuple[str, str]:
    """[low, high) of every batch key of an endpoint: `{endpoint}_YYYY-MM-DD`."""
    low = batch_key(endpoint, "")  # "game-lines_"
    return low, low[:-1] + chr(ord(low[-1]) + 1)


def _as_utc(value) -> datetime | None:
    if value is None:
        return None
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)


def pending_by_key(db, settings: Settings) -> tuple[dict[str, datetime], set[str], int]:
    """The one query: {key: oldest recorded_at}, every marker id, and the marker count."""
    from google.cloud.firestore_v1.base_query import FieldFilter

    low, high = _endpoint_range(settings.endpoint)
    query = (db.collection(settings.pending_collection)
             .where(filter=FieldFilter(BATCH_KEY_FIELD, ">=", low))
             .where(filter=FieldFilter(BATCH_KEY_FIELD, "<", high))
             .select([BATCH_KEY_FIELD, "recorded_at"]))
    oldest: dict[str, datetime] = {}
    ids: set[str] = set()
    now = datetime.now(timezone.utc)
    for snap in query.stream():
        d = snap.to_dict() or {}
        key = d.get(BATCH_KEY_FIELD)
        if not key:
            continue
        ids.add(snap.id)
        recorded = _as_utc(d.get("recorded_at")) or now
        if key not in oldest or recorded < oldest[key]:
            oldest[key] = recorded
    return oldest, ids, len(ids)


def fingerprint(objects) -> str:
    digest = hashlib.sha256()
    for name, generation in sorted(objects):
        digest.update(f"{name}#{generation}\n".encode())
    return digest.hexdigest()[:32]


class Sweep:
    def __init__(self, settings: Settings, db=None, deadline: Deadline | None = None, now=None):
        from .clients import firestore_client

        self.settings = settings
        self.db = db or firestore_client(settings.project, settings.firestore_database)
        self.deadline = deadline or Deadline(settings.timeout_seconds)
        self.now = now or datetime.now(timezone.utc)
        self.owner = f"sweep-{uuid.uuid4().hex[:12]}"
        self.report = SweepReport(settings.endpoint)
        self.doc = self.db.collection(settings.sweep_collection).document(settings.endpoint)

    # -- adoption -----------------------------------------------------------------------------
    def _lock(self, key: str) -> SweepLock:
        s = self.settings
        return SweepLock(self.db.collection(s.lock_collection), key, self.owner,
                         lease=timedelta(seconds=s.lease_seconds), ttl=s.ttl,
                         heartbeat=timedelta(seconds=s.lock_heartbeat_seconds))

    def hold(self, key: str, reason: str = "stale") -> str:
        """Take the key's lock (free, passed or silent) and merge its queue as a holder does."""
        return self.hold_group([key], reason)

    def hold_group(self, keys: list[str], reason: str = "stale") -> str:
        """Take the locks of these keys that are free, passed or silent (a live holder's are left
        to it) and merge their queues as one holding: one MERGE per round (groups.py)."""
        s = self.settings
        held, busy = groups.take_locks(s, self.db, keys, self._lock, limit=len(keys))
        for key in busy:
            self.report.left_to_holder.append(key)
            logs.log("sweep_left_to_holder", endpoint=s.endpoint, batch_key=key)
        if not held:
            return "left_to_holder"
        for key in held:
            logs.log("sweep_adopted", severity="WARNING", endpoint=s.endpoint, batch_key=key.key, how=key.lock.how,
                     reason=reason)
        holder = groups.hold(s, self.db, held, deadline=self.deadline)
        self.report.adopted += [key.key for key in held]
        for result in holder.results:
            self.report.files += result.files
            self.report.rows += result.rows
            self.report.merges += result.merges
        return holder.decision

    def _guarded(self, key: str, what) -> None:
        if not self.deadline.allows(min(ADOPT_FLOOR_SECONDS, self.settings.timeout_seconds / 4)):
            self.report.errors.append(f"{key}: no time left in this invocation")
            return
        try:
            what()
        except TransientError as exc:  # its markers stay queued: the next sweep tries again
            self.report.errors.append(f"{key}: {str(exc)[:200]}")
            logs.log("sweep_key_failed", severity="WARNING", endpoint=self.settings.endpoint, batch_key=key,
                     error=str(exc)[:300])

    # -- lost events ----------------------------------------------------------------------------
    def sweep_days(self) -> list[date]:
        today = self.now.date()
        return [today - timedelta(days=i) for i in range(self.settings.sweep_days)]

    def reconcile_day(self, game_date: date, pending_ids: set[str], fingerprints: dict) -> None:
        """Queue and merge the objects of one date that no event brought (older than the threshold)."""
        from .ledger import Ledger
        from .pending import marker_id
        from .reconcile import bucket_objects

        s = self.settings
        if not s.bucket:
            return
        key = batch_key(s.endpoint, game_date)
        cutoff = self.now - timedelta(seconds=s.sweep_stale_seconds)
        objects = {k: b for k, b in bucket_objects(s, s.bucket, game_date).items()
                   if b.time_created is None or _as_utc(b.time_created) <= cutoff}
        seen = fingerprint(objects)
        if not objects or fingerprints.get(game_date.isoformat()) == seen:
            fingerprints[game_date.isoformat()] = seen
            return  # nothing there, or nothing new since the last sweep that found this date complete
        done = Ledger.of(self.db, s).finished(key)
        lost = [k for k in objects if k not in done and marker_id(key, s.bucket, *k) not in pending_ids]
        if lost:
            self.report.lost_objects += len(lost)
            pending = PendingWork(self.db, s.pending_collection, key, s.ttl)
            for name, generation in sorted(lost):
                blob = objects[(name, generation)]
                pending.add(s.bucket, name, generation, self.owner,
                            blob.time_created.isoformat() if blob.time_created else None, blob.size)
            logs.log("sweep_lost_objects", severity="WARNING", endpoint=s.endpoint, batch_key=key, objects=len(lost))
            errors = len(self.report.errors)
            self._guarded(key, lambda: self.hold(key, "lost_objects"))
            if len(self.report.errors) > errors:
                return  # fingerprint left unchanged: the next sweep looks again
        fingerprints[game_date.isoformat()] = seen

    # -- the whole sweep ------------------------------------------------------------------------
    def run(self) -> SweepReport:
        started = time.monotonic()
        s, r = self.settings, self.report
        try:
            oldest, pending_ids, r.markers = pending_by_key(self.db, s)
        except Exception as exc:
            raise classify(exc) from exc
        r.keys = len(oldest)
        ages = {key: (self.now - moment).total_seconds() for key, moment in oldest.items()}
        r.oldest_pending_seconds = round(max(ages.values(), default=0.0), 3)
        oldest_key = max(ages, key=ages.get) if ages else None
        # The metric's line: logged before anything is adopted, so it reports the age the work reached.
        logs.log("sweep_pending", endpoint=s.endpoint, oldest_pending_seconds=r.oldest_pending_seconds,
                 oldest_pending_minutes=round(r.oldest_pending_seconds / 60, 3), oldest_key=oldest_key, pending_keys=r.keys, pending_markers=r.markers)
        r.stale_keys = sorted((k for k, age in ages.items() if age >= s.sweep_stale_seconds), key=ages.get, reverse=True)
        per_merge = s.dates_per_merge
        for start in range(0, len(r.stale_keys), per_merge):  # the stalest first, N keys per holding
            group = r.stale_keys[start:start + per_merge]
            self._guarded(", ".join(group), lambda group=group: self.hold_group(group))
        try:
            state = self.doc.get()
            fingerprints = dict((state.to_dict() or {}).get("fingerprints") or {}) if state.exists else {}
        except Exception as exc:
            raise classify(exc) from exc
        fingerprints = {d: f for d, f in fingerprints.items() if d in {x.isoformat() for x in self.sweep_days()}}
        for day in self.sweep_days():
            try:
                self.reconcile_day(day, pending_ids, fingerprints)
            except TransientError as exc:
                r.errors.append(f"{day}: {str(exc)[:200]}")
            except Exception as exc:  # noqa: BLE001 - classified, recorded, the other dates go on
                r.errors.append(f"{day}: {str(classify(exc))[:200]}")
        r.seconds = round(time.monotonic() - started, 3)
        self._record(fingerprints)
        logs.log("swept", severity="WARNING" if r.errors else "INFO", endpoint=s.endpoint, decision=r.decision,
                 oldest_pending_seconds=r.oldest_pending_seconds, pending_keys=r.keys, stale_keys=len(r.stale_keys),
                 adopted=r.adopted, left_to_holder=r.left_to_holder, lost_objects=r.lost_objects, files=r.files,
                 rows=r.rows, merges=r.merges, errors=r.errors[:5], seconds=r.seconds)
        return r

    def _record(self, fingerprints: dict) -> None:
        r = self.report
        now = datetime.now(timezone.utc)
        try:
            self.doc.set({
                "endpoint": r.endpoint, "finished_at": now, "owner": self.owner, "decision": r.decision,
                "oldest_pending_seconds": r.oldest_pending_seconds, "pending_keys": r.keys,
                "pending_markers": r.markers, "stale_keys": r.stale_keys, "adopted": r.adopted,
                "left_to_holder": r.left_to_holder, "lost_objects": r.lost_objects, "files": r.files,
                "rows": r.rows, "merges": r.merges, "errors": r.errors[:10], "seconds": r.seconds,
                "fingerprints": fingerprints, EXPIRE_AT_FIELD: now + SWEEP_DOC_TTL,
            })
        except Exception as exc:  # noqa: BLE001 - bookkeeping must not fail a sweep that merged
            logs.log("sweep_record_failed", severity="WARNING", endpoint=r.endpoint, error=str(exc)[:300])


# -- dead letters ---------------------------------------------------------------------------------
# Events Pub/Sub gave up on wait on the dead-letter subscription (deploy.sh, reconcile.py). The sweep
# drains them itself, so no operator command is needed: it pulls, keeps the messages of its own
# endpoint for the time of their reconcile (an ack deadline extended to Pub/Sub's maximum, 600 s),
# hands the other endpoint's back at once (ack deadline 0 "might immediately make the message
# available for delivery to another subscriber client"; both bounds:
# https://cloud.google.com/python/docs/reference/pubsub/2.15.1/google.cloud.pubsub_v1.types.ModifyAckDeadlineRequest), reconciles each date they name whatever its age, and acknowledges a date's
# messages once its reconcile converged; a date that met a transient error keeps them for the next sweep.
DEAD_LETTER_LEASE_SECONDS = 600
DEAD_LETTER_PULL = 100


def drain_dead_letters(settings: Settings, subscription: str, subscriber=None,
                       deadline: Deadline | None = None) -> dict:
    """Reconcile the dates of this endpoint that dead letters name; returns counts for the log."""
    from .reconcile import dead_letter_dates, reconcile_date

    if subscriber is None:
        from google.cloud import pubsub_v1

        subscriber = pubsub_v1.SubscriberClient()
    deadline = deadline or Deadline(settings.timeout_seconds)
    done = {"dates": [], "acknowledged": 0, "handed_back": 0, "errors": []}
    while deadline.remaining() > ADOPT_FLOOR_SECONDS:
        with warnings.catch_warnings():  # deprecated for streaming consumers; an empty subscription
            warnings.simplefilter("ignore", DeprecationWarning)  # must not hold the sweep until a timeout
            response = subscriber.pull(request={"subscription": subscription, "max_messages": DEAD_LETTER_PULL,
                                                "return_immediately": True}, timeout=30)
        if not response.received_messages:
            break
        dates, other = dead_letter_dates(response.received_messages)
        mine = {day: ids for (endpoint, day), ids in dates.items() if endpoint == settings.endpoint}
        theirs = [i for (endpoint, _), ids in dates.items() if endpoint != settings.endpoint for i in ids]
        if theirs:
            subscriber.modify_ack_deadline(request={"subscription": subscription, "ack_ids": theirs,
                                                    "ack_deadline_seconds": 0})
            done["handed_back"] += len(theirs)
        if other:  # names no object of the layout: nothing to replay
            subscriber.acknowledge(request={"subscription": subscription, "ack_ids": other})
            done["acknowledged"] += len(other)
        if not mine:
            break  # only the other endpoint's letters are left: its own sweep drains them
        subscriber.modify_ack_deadline(request={"subscription": subscription, "ack_deadline_seconds":
                                                DEAD_LETTER_LEASE_SECONDS,
                                                "ack_ids": [i for ids in mine.values() for i in ids]})
        for day, ack_ids in sorted(mine.items()):
            try:
                reconcile_date(settings, settings.bucket, day)
            except TransientError as exc:
                subscriber.modify_ack_deadline(request={"subscription": subscription, "ack_ids": ack_ids,
                                                        "ack_deadline_seconds": 0})
                done["errors"].append(f"{day}: {str(exc)[:200]}")
                continue
            subscriber.acknowledge(request={"subscription": subscription, "ack_ids": ack_ids})
            done["dates"].append(day.isoformat())
            done["acknowledged"] += len(ack_ids)
    return done


def run_sweep(settings: Settings) -> str:
    """The handler's entry point: never raises (the next scheduled sweep is the retry)."""
    try:
        decision = Sweep(settings).run().decision
    except Exception as exc:  # noqa: BLE001 - a failed sweep is logged; raising would pile up retries
        logs.log("sweep_failed", severity="ERROR", endpoint=settings.endpoint, error=str(exc)[:500])
        return "sweep_failed"
    subscription = settings.dead_letter_subscription
    if subscription and settings.bucket:
        try:
            drained = drain_dead_letters(settings, subscription)
            if drained["dates"] or drained["errors"] or drained["acknowledged"]:
                logs.log("sweep_dead_letters", severity="WARNING" if drained["errors"] else "INFO",
                         endpoint=settings.endpoint, subscription=subscription, **drained)
        except Exception as exc:  # noqa: BLE001 - the letters stay on the subscription for the next sweep
            logs.log("sweep_dead_letters_failed", severity="ERROR", endpoint=settings.endpoint, error=str(exc)[:500])
    return decision
