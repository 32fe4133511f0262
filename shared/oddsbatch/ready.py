"""`oddsbatch ready --date D [--endpoint E] [--wait SECONDS]`: what a prediction job waits on.

Ready means, per endpoint of the date: every object under its live and -history prefixes is
finished (its (object, generation) is in the target table or in the ledger as merged,
quarantined or gone: a quarantined file is finished, not missing), no pending marker is queued
for the key, and no live lock is held on it (a holder may be between its MERGE and its
release). The truth is the bucket against what finished, read with reconcile's own functions,
not odds_api_ingest_log (a lost event never reaches the log).

Exit status: 0 ready; 1 not ready once --wait seconds of polling have passed (one line: per
endpoint how many files are pending and missing, the newest missing object, a held lock);
2 on bad input (a bad date, an unknown endpoint, a negative wait), with one line.

Each poll reads Firestore first (one count aggregation and one lock read per key): while work
is queued or a lock is held, the bucket and the table are not read. Only a key that looks
idle is listed and queried, and the line printed at the end always comes from a full check.
Local stack vs a real project: exactly as reconcile (envfile.use_local_stack_if_unconfigured).
"""

from __future__ import annotations

import math
import os
import sys
import time
from dataclasses import dataclass, field
from datetime import date, datetime, timezone

from .config import ENDPOINTS, Settings
from .errors import TransientError, classify
from .paths import batch_key

FIRST_POLL_SECONDS = 1.0
MAX_POLL_SECONDS = 15.0
MAX_WAIT_SECONDS = 24 * 3600.0


@dataclass
class KeyState:
    """One (endpoint, date) as a check saw it."""

    endpoint: str
    game_date: date
    pending: int = 0
    lock_owner: str | None = None
    objects: int | None = None  # None: not listed (pending work or a lock already said "not ready")
    missing: list = field(default_factory=list)  # (name, generation) not in table or ledger, newest first
    error: str | None = None

    @property
    def ready(self) -> bool:
        return (self.error is None and self.pending == 0 and self.lock_owner is None and self.objects is not None
                and not self.missing)

    def describe(self) -> str:
        if self.error:
            return f"{self.endpoint}: could not check ({self.error})"
        if self.ready:
            return f"{self.endpoint}: ready ({self.objects} files finished)"
        parts = [f"{self.pending} pending"]
        if self.objects is not None:
            parts.append(f"{len(self.missing)} missing of {self.objects}")
            if self.missing:
                parts.append(f"newest missing {self.missing[0][0]}")
        if self.lock_owner is not None:
            parts.append(f"lock held by {self.lock_owner}")
        return f"{self.endpoint}: " + ", ".join(parts)


class CloudSources:
    """What a check reads, on the emulators or on Google Cloud: reconcile's functions, the
    ledger, the pending markers and the lock document."""

    def __init__(self, settings: Settings, bucket: str):
        from .clients import firestore_client

        self.settings, self.bucket = settings, bucket
        self.db = firestore_client(settings.project, settings.firestore_database)

    def pending(self, key: str) -> int:
        from .pending import PendingWork

        return PendingWork(self.db, self.settings.pending_collection, key, self.settings.ttl).count()

    def lock(self, key: str) -> dict | None:
        snap = self.db.collection(self.settings.lock_collection).document(key).get()
        return snap.to_dict() if snap.exists else None

    def objects(self, game_date: date) -> dict[tuple[str, int], datetime | None]:
        from .reconcile import bucket_objects

        return {k: blob.time_created for k, blob in bucket_objects(self.settings, self.bucket, game_date).items()}

    def finished(self, key: str, game_date: date) -> set[tuple[str, int]]:
        from .ledger import Ledger
        from .reconcile import table_objects

        ledger = Ledger.of(self.db, self.settings)
        return table_objects(self.settings, game_date) | ledger.finished(key)


def live_owner(lock: dict | None, now: datetime) -> str | None:
    """The owner of a lock whose lease has not passed; None for no lock or a stale one (its
    markers, if any, still count as pending)."""
    if not lock:
        return None
    lease_until = lock.get("lease_until")
    if lease_until is not None and lease_until <= now:
        return None
    return str(lock.get("owner") or "?")


def check_key(endpoint: str, game_date: date, sources, full: bool = False, now: datetime | None = None) -> KeyState:
    """One key's state. Firestore first; the bucket and the table only when the key looks idle
    (or `full`). The objects are listed before what finished is read: an object can only go
    from unfinished to finished, so a stale read errs towards "not ready"."""
    state = KeyState(endpoint, game_date)
    key = batch_key(endpoint, game_date)
    try:
        state.pending = sources.pending(key)
        state.lock_owner = live_owner(sources.lock(key), now or datetime.now(timezone.utc))
        if not full and (state.pending or state.lock_owner is not None):
            return state
        objects = sources.objects(game_date)
        state.objects = len(objects)
        done = sources.finished(key, game_date) if objects else set()
        missing = [k for k in objects if k not in done]
        epoch = datetime.min.replace(tzinfo=timezone.utc)
        missing.sort(key=lambda k: (objects[k] or epoch, k), reverse=True)
        state.missing = missing
    except Exception as exc:  # noqa: BLE001 - classified: transient is "not ready yet", terminal ends the run
        error = classify(exc)
        if not isinstance(error, TransientError):
            raise error from exc
        state.error = " ".join(str(error).split())[:200]
    return state


def wait_until_ready(check, wait_seconds: float, clock=time.monotonic, sleep=time.sleep) -> tuple[bool, list[KeyState]]:
    """Poll `check(full)` (-> KeyStates) until every key is ready or `wait_seconds` have passed,
    sleeping 1 s, then 1.5x longer each time, at most 15 s. Returns (ready, the last states,
    from a full check when not ready)."""
    end = clock() + wait_seconds
    interval = FIRST_POLL_SECONDS
    while True:
        states = check(False)
        if all(s.ready for s in states):
            return True, states
        left = end - clock()
        if left <= 0:
            states = check(True)  # what the line reports: counted in full, and maybe ready by now
            return all(s.ready for s in states), states
        sleep(min(interval, left))
        interval = min(interval * 1.5, MAX_POLL_SECONDS)


def _parse(args) -> tuple[date, list[str], float]:
    if not args.date:
        raise ValueError("give --date YYYY-MM-DD")
    try:
        day = date.fromisoformat(args.date)
    except ValueError:
        raise ValueError(f"--date {args.date!r} is not a date YYYY-MM-DD") from None
    if args.endpoint and args.endpoint not in ENDPOINTS:
        raise ValueError(f"unknown endpoint {args.endpoint!r}; expected one of {', '.join(ENDPOINTS)}")
    try:
        wait = float(args.wait)
    except (TypeError, ValueError):
        raise ValueError(f"--wait {args.wait!r} is not a number of seconds") from None
    if not math.isfinite(wait) or wait < 0 or wait > MAX_WAIT_SECONDS:
        raise ValueError(f"--wait {args.wait!r}: give 0 to {MAX_WAIT_SECONDS:g} seconds")
    return day, [args.endpoint] if args.endpoint else list(ENDPOINTS), wait


def cmd_ready(args) -> int:
    from .envfile import target_line, use_local_stack_if_unconfigured

    day, endpoints, wait = _parse(args)  # bad input: exit 2 before anything is contacted
    local = use_local_stack_if_unconfigured(args.state_dir)
    print(target_line("ready", local, args.state_dir), file=sys.stderr)
    bucket = args.bucket or os.environ.get("ODDSBATCH_BUCKET")
    if not bucket:
        raise ValueError("no bucket: pass --bucket or set ODDSBATCH_BUCKET")
    sources = {e: CloudSources(Settings.from_env(e), bucket) for e in endpoints}
    started = time.monotonic()
    ready, states = wait_until_ready(lambda full: [check_key(e, day, sources[e], full) for e in endpoints], wait)
    waited = time.monotonic() - started
    detail = "; ".join(s.describe() for s in states)
    if ready:
        print(f"ready {day}: {detail}")
        return 0
    print(f"not ready {day} after {waited:.0f}s: {detail}")
    return 1
