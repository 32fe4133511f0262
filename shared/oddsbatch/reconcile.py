"""`oddsbatch reconcile`: merge whatever the bucket holds that the tables do not.

Belt and braces for lost events, and the backfill tool for whole seasons. Per (endpoint,
date) it lists the bucket's objects (name + generation) under both the live and the
-history prefix, subtracts what the target table holds (its source_object and
source_generation columns) and what the ledger says is finished, then queues the rest as
pending markers and works them off through the same locks and the same batch holder as the
functions. Dates are merged in groups (`--dates-per-merge N`, default ODDSBATCH_DATES_PER_MERGE,
16): once N dates of an endpoint are queued, reconcile takes the free locks among them (no wait)
and merges them with ONE MERGE, whatever the number of files (groups.py), so a range of D dates
costs ceil(D / N) MERGEs per table. If a function holds a date's lock at that moment, the markers
are enough: a holder re-reads the queue before it lets go (that date reports queued_for_holder).

Reconcile is a CLI, not a function: no platform timeout stops it. Each group still gets the
budget of one invocation (a fresh ODDSBATCH_TIMEOUT_SECONDS deadline): BigQuery's limits are
retried in-process within it, every wait is bounded by it. A group that runs out of it, or
meets another transient error, keeps its markers queued (the next event or reconcile run
merges them) and reconcile goes on with the next dates; it ends with exit status 1 and one
line naming how many dates to run again.

Runs anywhere the Google clients reach: against the emulators (it reads the local
stack's endpoints, only when no project is named at all: ODDSBATCH_PROJECT,
GOOGLE_CLOUD_PROJECT or GCLOUD_PROJECT) and, unchanged, against real GCP (application default
credentials). It prints the project it acts on before it acts.

Ctrl-C (SIGINT) and SIGTERM release the locks the run holds, leave its markers queued (the
sweep adopts them, or the next event or reconcile of that date merges them) and end with one
line and exit status 130 or 143.
"""

from __future__ import annotations

import os
import signal
import sys
import uuid
from dataclasses import dataclass, field
from datetime import date, timedelta

from . import groups, logs, sql
from .clients import bigquery_client, firestore_client, storage_client
from .config import ENDPOINTS, OBJECT_ROOT, Settings, dates_per_merge
from .deadline import Deadline
from .envfile import target_line, use_local_stack_if_unconfigured
from .errors import OddsbatchError, TransientError, classify
from .ledger import Ledger
from .lock import BatchLock
from .holder import BatchHolder
from .pending import PendingWork
from .paths import batch_key

MAX_DAYS = 400  # a season and then some


class Terminated(BaseException):
    """SIGTERM, raised in the main thread like KeyboardInterrupt is for SIGINT (not an
    Exception: no `except Exception` of the batch swallows it)."""

    exit_status = 143


def _raise_terminated(signum, frame):
    raise Terminated()


@dataclass
class DateReport:
    endpoint: str
    game_date: date
    objects: int = 0
    present: int = 0
    missing: list = field(default_factory=list)
    decision: str = "nothing_missing"
    files: int = 0
    rows: int = 0
    merges: int = 0  # MERGEs that touched this date (a group's one MERGE touches each of its dates)
    quarantined: int = 0
    retried: int = 0  # BigQuery jobs resubmitted in-process (limits, conflicts), counted on a group's first date
    error: str | None = None
    merge_runs: set = field(default_factory=set)  # run ids of those MERGEs: the summary counts each once


def date_range(start: date, end: date) -> list[date]:
    if end < start:
        raise ValueError(f"--to {end} is before --from {start}")
    days = (end - start).days + 1
    if days > MAX_DAYS:
        raise ValueError(f"{days} days asked; reconcile at most {MAX_DAYS} days per run")
    return [start + timedelta(days=i) for i in range(days)]


def bucket_objects(settings: Settings, bucket: str, game_date: date) -> dict[tuple[str, int], object]:
    """(name, generation) -> blob, for the live and -history prefixes of one date."""
    client = storage_client(settings.project)
    found = {}
    for suffix in ("", "-history"):
        prefix = f"{OBJECT_ROOT}{settings.endpoint}{suffix}/{game_date.isoformat()}/"
        for blob in client.list_blobs(bucket, prefix=prefix):
            if blob.name.endswith(".json"):
                found[(blob.name, int(blob.generation))] = blob
    return found


def table_objects(settings: Settings, game_date: date) -> set[tuple[str, int]]:
    from google.cloud import bigquery

    client = bigquery_client(settings.project, settings.bigquery_endpoint, settings.bigquery_location)
    target = sql.table_path(settings.project, settings.dataset, settings.table)
    config = bigquery.QueryJobConfig(
        query_parameters=[bigquery.ScalarQueryParameter("game_date", "DATE", game_date.isoformat())])
    rows = client.query(sql.source_objects_sql(target), job_config=config).result()
    return {(r["source_object"], int(r["source_generation"])) for r in rows}


def reconcile_date(settings: Settings, bucket: str, game_date: date, dry_run: bool = False) -> DateReport:
    """One date, held alone (the group of one). TransientError if it met one (its files stay queued)."""
    (report,) = reconcile_dates(settings, bucket, [game_date], dry_run=dry_run, per_merge=1)
    if report.error:
        raise TransientError(report.error)
    return report


def reconcile_dates(settings: Settings, bucket: str, days: list[date], dry_run: bool = False,
                    per_merge: int | None = None, on_date=None) -> list[DateReport]:
    """Queue what each date lacks, and merge the queued dates `per_merge` at a time (default
    settings.dates_per_merge) with one MERGE per group. A date's transient error is its report's
    `error` (its files stay queued); `on_date(report)` is called once each date is settled."""
    per_merge = per_merge or settings.dates_per_merge
    owner = f"reconcile-{uuid.uuid4().hex[:12]}"
    reports: list[DateReport] = []
    waiting: list[DateReport] = []

    def flush() -> None:
        hold_dates(settings, bucket, waiting, owner)
        for report in waiting:
            log_report(report)
            if on_date:
                on_date(report)
        waiting.clear()

    for day in days:
        try:
            report, queued = queue_date(settings, bucket, day, dry_run, owner)
        except TransientError as exc:  # this date's files stay queued; the other dates go on
            report, queued = DateReport(settings.endpoint, day, decision="retry_later", error=str(exc)[:300]), False
        reports.append(report)
        if queued:
            waiting.append(report)
            if len(waiting) >= per_merge:
                flush()
        else:
            log_report(report)
            if on_date:
                on_date(report)
    if waiting:
        flush()
    return reports


def queue_date(settings: Settings, bucket: str, game_date: date, dry_run: bool, owner: str) -> tuple[DateReport, bool]:
    """List one date's objects, subtract what the table and the ledger hold, and queue the rest
    as markers (before any lock is tried: a holder that has the date sees them). (report, whether
    markers were queued)."""
    report = DateReport(settings.endpoint, game_date)
    key = batch_key(settings.endpoint, game_date)
    try:
        objects = bucket_objects(settings, bucket, game_date)
        report.objects = len(objects)
        if not objects:
            return report, False
        db = firestore_client(settings.project, settings.firestore_database)
        done = table_objects(settings, game_date) | Ledger.of(db, settings).finished(key)
        report.missing = sorted(k for k in objects if k not in done)
        report.present = report.objects - len(report.missing)
        if not report.missing or dry_run:
            report.decision = "dry_run" if report.missing else report.decision
            return report, False
        pending = PendingWork(db, settings.pending_collection, key, settings.ttl)
        for name, generation in report.missing:
            blob = objects[(name, generation)]
            created = blob.time_created.isoformat() if blob.time_created else None
            pending.add(bucket, name, generation, owner, created, blob.size)
    except OddsbatchError:
        raise
    except Exception as exc:
        raise classify(exc) from exc
    report.decision = "queued"
    return report, True


def hold_dates(settings: Settings, bucket: str, reports: list[DateReport], owner: str) -> None:
    """Take the free locks of the queued dates (a date a live holder has is left to it) and merge
    them with one MERGE per round; fills each report. A transient error is every held date's."""
    db = firestore_client(settings.project, settings.firestore_database)
    by_key = {batch_key(settings.endpoint, r.game_date): r for r in reports}

    def make_lock(key: str) -> BatchLock:
        return BatchLock(db.collection(settings.lock_collection), key, owner,
                         lease=timedelta(seconds=settings.lease_seconds), ttl=settings.ttl)

    held: list = []
    try:
        held, busy = groups.take_locks(settings, db, list(by_key), make_lock, limit=len(by_key))
        for key in busy:
            by_key[key].decision = "queued_for_holder"
        if not held:
            return
        holder = None
        try:
            holder = BatchHolder.of_group(settings.with_(settle_seconds=0), held, db,
                                                 deadline=Deadline(settings.timeout_seconds))  # one invocation's budget
            decision = holder.run()
        except (KeyboardInterrupt, Terminated):
            # The holder releases on every Exception; an interrupt is not one: release here, so no
            # event of these dates coalesces onto a holder that is gone. The markers stay queued.
            groups.release(held)
            logs.log("reconcile_interrupted", severity="WARNING", batch_keys=[k.key for k in held])
            raise
        finally:
            if holder is not None and holder._warehouse is not None:
                by_key[held[0].key].retried += sum(holder._warehouse.retried.values())
    except TransientError as exc:  # the held dates' files stay queued (before any lock: every date's)
        for key in [k.key for k in held] or list(by_key):
            by_key[key].decision, by_key[key].error = "retry_later", str(exc)[:300]
            logs.log("reconcile_failed", severity="WARNING", endpoint=settings.endpoint, batch_key=key,
                     error=str(exc)[:300], transient=True)
        return
    for key in held:
        by_key[key.key].decision = decision
    for result in holder.results:
        for key, totals in result.totals().items():
            report = by_key[key]
            report.files += totals.files
            report.rows += totals.rows
            report.quarantined += totals.quarantined
            if result.merges and totals.files:
                report.merges += 1
                report.merge_runs.add(result.run_id)


def log_report(report: DateReport) -> None:
    logs.log("reconciled", endpoint=report.endpoint, game_date=report.game_date, objects=report.objects,
             missing=len(report.missing), decision=report.decision, files=report.files, rows=report.rows,
             merges=report.merges, error=report.error)


# --- dead letters --------------------------------------------------------------------------
# Events Eventarc gave up on are forwarded to the dead-letter topic of the trigger's Pub/Sub
# subscription (deploy.sh sets it; https://cloud.google.com/eventarc/docs/retry-events) and kept
# by its pull subscription (terraform output dead_letters_subscription). A dead letter is the
# trigger's Pub/Sub message: the object is named by the CloudEvent subject attribute
# (ce-subject = objects/NAME), by a Cloud Storage notification's objectId/bucketId attributes, or
# by the object resource in the data; all three are read. Replaying = reconciling the dates they
# name (the bucket is the truth, the ledger skips what is done), then acknowledging them.
PULL_BATCH = 500


def dead_letter_object(attributes: dict, data: bytes) -> tuple[str | None, str | None]:
    """(bucket, object name) a dead-lettered trigger message names, or (None, None)."""
    import json

    name = attributes.get("objectId") or None
    bucket = attributes.get("bucketId") or None
    subject = attributes.get("ce-subject") or attributes.get("subject") or ""
    if not name and subject.startswith("objects/"):
        name = subject[len("objects/"):]
    if not bucket:
        source = attributes.get("ce-source") or attributes.get("source") or ""
        if "/buckets/" in source:
            bucket = source.rsplit("/buckets/", 1)[1] or None
    if not name or not bucket:
        try:
            resource = json.loads(data or b"{}")
        except ValueError:
            resource = {}
        if isinstance(resource, dict):
            name = name or resource.get("name")
            bucket = bucket or resource.get("bucket")
    return bucket, name


def dead_letter_dates(messages) -> tuple[dict[tuple[str, date], list], list]:
    """{(endpoint, game date): [ack ids]} of the messages that name an object in the layout, and
    the ack ids of the others (nothing to replay: acknowledged as well)."""
    from .paths import parse_object_name

    dates: dict[tuple[str, date], list] = {}
    other = []
    for received in messages:
        message = received.message
        _, name = dead_letter_object(dict(message.attributes), bytes(message.data))
        try:
            ref = parse_object_name(name or "")
        except OddsbatchError:
            other.append(received.ack_id)
            continue
        dates.setdefault((ref.endpoint, ref.game_date), []).append(received.ack_id)
    return dates, other


def replay_dead_letters(subscription: str, bucket: str, dry_run: bool, subscriber=None) -> list[DateReport]:
    """Pull the dead letters, reconcile every (endpoint, date) they name, acknowledge those that
    converged (a date with a transient error keeps its messages for the next run)."""
    if subscriber is None:
        from google.cloud import pubsub_v1

        subscriber = pubsub_v1.SubscriberClient()
    reports = []
    while True:
        response = subscriber.pull(request={"subscription": subscription, "max_messages": PULL_BATCH})
        if not response.received_messages:
            return reports
        dates, other = dead_letter_dates(response.received_messages)
        done = list(other)
        for (endpoint, day), ack_ids in sorted(dates.items()):
            try:
                reports.append(reconcile_date(Settings.from_env(endpoint), bucket, day, dry_run=dry_run))
            except TransientError as exc:
                reports.append(DateReport(endpoint, day, decision="retry_later", error=str(exc)[:300]))
                continue
            done += ack_ids
        if dry_run:
            return reports  # nothing acknowledged: the messages come back after their ack deadline
        if done:
            subscriber.acknowledge(request={"subscription": subscription, "ack_ids": done})
        if len(done) < len(response.received_messages):
            return reports  # what is left comes back after its ack deadline: run again


def _release_quietly(lock: BatchLock) -> bool:
    try:
        return lock.release()
    except Exception:  # noqa: BLE001 - its heartbeat stopped: the sweep adopts it within a period
        return False


class _Progress:
    """A one-line progress bar on a terminal; silent otherwise (logs, CI)."""

    def __init__(self, total: int, stream=None):
        stream = sys.stderr if stream is None else stream  # the stream of now, not of import time
        self.total, self.stream, self.done = total, stream, 0
        self.enabled = total > 1 and hasattr(stream, "isatty") and stream.isatty()

    def step(self, label: str) -> None:
        self.done += 1
        if self.enabled:
            width = 30
            filled = int(width * self.done / self.total)
            self.stream.write(f"\rreconcile [{'#' * filled}{'.' * (width - filled)}] {self.done}/{self.total} {label}")
            self.stream.flush()
            if self.done == self.total:
                self.stream.write("\n")


def cmd_reconcile(args) -> int:
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        return _reconcile(args)
    except (KeyboardInterrupt, Terminated) as stop:
        status = 143 if isinstance(stop, Terminated) else 130
        name = "SIGTERM" if status == 143 else "SIGINT"
        print(f"oddsbatch reconcile: interrupted by {name}: lock released, files left queued "
              "(the sweep or the next reconcile merges them)", file=sys.stderr)
        return status
    finally:
        signal.signal(signal.SIGTERM, previous)


def _reconcile(args) -> int:
    given = getattr(args, "dates_per_merge", None)
    per_merge = dates_per_merge(given) if given is not None else None  # None: ODDSBATCH_DATES_PER_MERGE
    local = use_local_stack_if_unconfigured(args.state_dir)

    def announce() -> None:  # once the arguments hold, before anything is read or written
        print(target_line("reconcile", local, args.state_dir), file=sys.stderr)

    if getattr(args, "from_dead_letters", None):
        if args.date or args.date_from or args.date_to:
            raise ValueError("give --from-dead-letters, or dates, not both")
        bucket = args.bucket or os.environ.get("ODDSBATCH_BUCKET")
        if not bucket:
            raise ValueError("no bucket: pass --bucket or set ODDSBATCH_BUCKET")
        announce()
        reports = replay_dead_letters(args.from_dead_letters, bucket, args.dry_run)
        return _summary(reports, len({r.game_date for r in reports}), len({r.endpoint for r in reports}), args)
    if args.date and (args.date_from or args.date_to):
        raise ValueError("give --date, or --from and --to, not both")
    if args.date:
        days = [date.fromisoformat(args.date)]
    elif args.date_from and args.date_to:
        days = date_range(date.fromisoformat(args.date_from), date.fromisoformat(args.date_to))
    else:
        raise ValueError("give --date D, or --from D --to D")
    bucket = args.bucket or os.environ.get("ODDSBATCH_BUCKET")
    if not bucket:
        raise ValueError("no bucket: pass --bucket or set ODDSBATCH_BUCKET")
    endpoints = [args.endpoint] if args.endpoint else list(ENDPOINTS)
    settings = {e: Settings.from_env(e) for e in endpoints}
    announce()
    progress = _Progress(len(days) * len(endpoints))
    reports = []
    for endpoint in endpoints:  # an endpoint's dates together: its groups share one table
        reports += reconcile_dates(settings[endpoint], bucket, days, dry_run=args.dry_run, per_merge=per_merge,
                                   on_date=lambda r: progress.step(f"{r.endpoint} {r.game_date}"))
    reports.sort(key=lambda r: (r.game_date, endpoints.index(r.endpoint)))
    return _summary(reports, len(days), len(endpoints), args)


def _summary(reports: list[DateReport], n_days: int, n_endpoints: int, args) -> int:
    for r in reports:
        if r.error:
            print(f"{r.endpoint} {r.game_date}: transient error, files left queued -> {r.decision} ({r.error})")
        elif r.missing:
            print(f"{r.endpoint} {r.game_date}: {r.objects} objects, {len(r.missing)} missing -> {r.decision}"
                  + ("" if args.dry_run else f" ({r.files} files, {r.rows} rows, {r.merges} merges)"))
    print(f"reconcile: dates={n_days} endpoints={n_endpoints} objects={sum(r.objects for r in reports)} "
          f"missing={sum(len(r.missing) for r in reports)} merged_files={sum(r.files for r in reports)} "
          f"rows={sum(r.rows for r in reports)} merges={len(set().union(*(r.merge_runs for r in reports)))} "
          f"quarantined={sum(r.quarantined for r in reports)} retried={sum(r.retried for r in reports)} "
          f"failed={sum(1 for r in reports if r.error)} dry_run={str(bool(args.dry_run)).lower()}")
    failed = [r for r in reports if r.error]
    if failed:
        print(f"reconcile: {len(failed)} date(s) met transient errors; their files stay queued: run reconcile again",
              file=sys.stderr)
        return 1
    return 0
