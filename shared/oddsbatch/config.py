"""Configuration of one function instance, read once from environment variables.

Every knob of a deployed function is here, with its variable name and default, so the
README's configuration reference and Terraform's environment block have one source.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Mapping

# endpoint (object-name segment) -> default target table
ENDPOINT_TABLES: dict[str, str] = {
    "game-lines": "odds_api_game_lines",
    "player-props": "odds_api_player_props",
}
ENDPOINTS = tuple(ENDPOINT_TABLES)
OBJECT_ROOT = "odds-api/"

# name -> (default, help). The README's configuration table is generated from this.
SETTINGS_HELP: dict[str, tuple[str, str]] = {
    "ODDSBATCH_PROJECT": ("$GOOGLE_CLOUD_PROJECT", "GCP project of the BigQuery dataset and Firestore database."),
    "ODDSBATCH_BUCKET": ("(any)", "Landing bucket; when set, events from any other bucket are acknowledged and ignored."),
    "ODDSBATCH_DATASET": ("odds_api", "BigQuery dataset holding the target and staging tables."),
    "ODDSBATCH_TABLE": ("per endpoint", "Target table (odds_api_game_lines / odds_api_player_props)."),
    "ODDSBATCH_BIGQUERY_LOCATION": ("US", "Location of the dataset, used for jobs."),
    "ODDSBATCH_FIRESTORE_DATABASE": ("(default)", "Firestore database id."),
    "ODDSBATCH_LOCK_COLLECTION": ("oddsbatch_locks", "Collection of batch locks, one document per (endpoint, date)."),
    "ODDSBATCH_PENDING_COLLECTION": ("oddsbatch_pending", "Collection of pending-work markers, one per (object, generation)."),
    "ODDSBATCH_RUNS_COLLECTION": ("oddsbatch_runs", "Collection of finished batch records (status, demo counts)."),
    "ODDSBATCH_LEDGER_COLLECTION": ("oddsbatch_merged", "Collection recording every object generation a batch finished (merged, quarantined or gone): what reconcile skips."),
    "ODDSBATCH_LEDGER_TTL_DAYS": ("400", "expireAt offset of ledger documents: how far back reconcile can trust the ledger."),
    "ODDSBATCH_SETTLE_SECONDS": ("5", "Longest the lock holder waits for the rest of a burst before it lists pending work."),
    "ODDSBATCH_SETTLE_QUIET_SECONDS": ("0.5", "The holder stops waiting once no new file arrived for this long (0: always wait the whole settle delay)."),
    "ODDSBATCH_LEASE_SECONDS": ("600", "Lock lease: a lock older than this is taken over at once."),
    "ODDSBATCH_LOCK_HEARTBEAT_SECONDS": ("8", "Lock heartbeat period (> 0): the holder rewrites its lock every quarter of it; a redelivery of the holder's own event reclaims the lock only if it was not written for this long (its holder died), else coalesces. Keep it below Eventarc's 10 s minimum retry backoff."),
    "ODDSBATCH_TIMEOUT_SECONDS": ("540", "The deployed function timeout: the holder bounds every BigQuery wait and retry by the time left and starts no round it cannot finish."),
    "ODDSBATCH_TTL_DAYS": ("7", "expireAt offset of lock and marker documents (Firestore TTL garbage collection only)."),
    "ODDSBATCH_QUARANTINE_BUCKET": ("source bucket", "Bucket that receives copies of unreadable files."),
    "ODDSBATCH_QUARANTINE_PREFIX": ("quarantine/", "Object-name prefix of quarantined copies."),
    "ODDSBATCH_STAGING_BUCKET": ("(required by a holder)", "Bucket of the staged rows: each source object's staged NDJSON is written there once (named by object and generation, reused by a retry) and BigQuery loads it from gs://, so staged rows never sit in the function's memory or /tmp; deleted after the MERGE, and by a lifecycle rule. Its own bucket: an object written to the landing bucket would fire a finalize event to both functions."),
    "ODDSBATCH_DOWNLOAD_WORKERS": ("8", "Parallel object downloads per batch."),
    "ODDSBATCH_MERGE_ATTEMPTS": ("5", "Attempts of a MERGE that hits a serialization conflict."),
    "ODDSBATCH_MODE": ("batch", "batch (one MERGE per burst) or per_file (the old one-MERGE-per-file behaviour, benchmark baseline only)."),
    "ODDSBATCH_MAX_OBJECT_BYTES": ("33554432", "Objects larger than this are quarantined unread (real snapshots are ~100 KB)."),
    "ODDSBATCH_STREAM_OBJECT_BYTES": ("1048576", "Objects larger than this (and every gzip-compressed one) are transformed one bookmaker at a time from an incremental parser, in memory that does not grow with the file; smaller ones are parsed whole (faster)."),
    "ODDSBATCH_MEMORY_BUDGET_BYTES": ("40% of ODDSBATCH_INSTANCE_MEMORY", "Bytes the files being downloaded and transformed may take at once on one instance, shared by all its requests (each file is admitted at its size times a measured expansion factor; a file that can never fit is quarantined)."),
    "ODDSBATCH_INSTANCE_MEMORY": ("512Mi", "The deployed memory tier (deploy.sh --memory), from which the memory budget is derived when ODDSBATCH_MEMORY_BUDGET_BYTES is not set."),
    "ODDSBATCH_SWEEP_COLLECTION": ("oddsbatch_sweeps", "Collection of the sweep's last run, one document per endpoint (`oddsbatch status` shows it)."),
    "ODDSBATCH_FENCE_COLLECTION": ("oddsbatch_fences", "Collection of MERGE fences, one document per batch key: the job id of its last MERGE, settled by every next holder so two MERGEs of one key are never in flight (fence.py)."),
    "ODDSBATCH_SWEEP_STALE_SECONDS": ("600", "The sweep adopts a key whose oldest pending marker is older than this and that has no live lock, and reconciles bucket objects older than this."),
    "ODDSBATCH_SWEEP_DAYS": ("2", "Game dates the sweep reconciles against the bucket: today and the days before it (UTC), 2 = today and yesterday."),
    "ODDSBATCH_DEAD_LETTER_SUBSCRIPTION": ("(none)", "Pull subscription of the triggers' dead letters (projects/P/subscriptions/S, Terraform's dead_letters_subscription): each sweep drains it, reconciling the dates they name (sweep.py); unset, the sweep leaves them to `oddsbatch reconcile --from-dead-letters`."),
    "ODDSBATCH_DATES_PER_MERGE": ("16", "Game dates of an endpoint one MERGE may cover (1-100): the backfill holder of -history/ objects, the sweep and `oddsbatch reconcile` (its --dates-per-merge overrides it) merge up to this many dates' pending files at once, so a backfill costs about dates / N MERGEs per table (groups.py)."),
    "ODDSBATCH_BIGQUERY_ENDPOINT": ("(Google)", "Local only: BigQuery API endpoint of the emulator (anonymous credentials)."),
}


def _float(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if raw in (None, ""):
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"{name} must be a number, got {raw!r}") from None
    if value < 0:
        raise ValueError(f"{name} must be >= 0, got {raw!r}")
    return value


def _positive(env: Mapping[str, str], name: str, default: float) -> float:
    value = _float(env, name, default)
    if value <= 0:
        raise ValueError(f"{name} must be > 0, got {env.get(name)!r}")
    return value


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    value = _float(env, name, default)
    if value != int(value) or value < 1:
        raise ValueError(f"{name} must be a positive whole number, got {env.get(name)!r}")
    return int(value)


MODES = ("batch", "per_file")

# Game dates one MERGE may cover (groups.py). BigQuery lets one job modify thousands of partitions
# (the partitioned-table limits of https://cloud.google.com/bigquery/quotas); the cap keeps a group's
# round, its staging and its retry small.
DEFAULT_DATES_PER_MERGE, MAX_DATES_PER_MERGE = 16, 100


def dates_per_merge(raw: str | int | None, name: str = "--dates-per-merge") -> int:
    """A count of game dates per MERGE: a whole number 1..MAX_DATES_PER_MERGE (default 16)."""
    if raw in (None, ""):
        return DEFAULT_DATES_PER_MERGE
    try:
        value = int(str(raw).strip())
    except ValueError:
        raise ValueError(f"{name} must be a whole number of dates (1-{MAX_DATES_PER_MERGE}), got {raw!r}") from None
    if not 1 <= value <= MAX_DATES_PER_MERGE:
        raise ValueError(f"{name} must be between 1 and {MAX_DATES_PER_MERGE}, got {raw!r}")
    return value


# The units deploy.sh's --memory accepts (512Mi, 1Gi, 512M, 1G, 512MB, 1GB).
_MEMORY_UNITS = {"m": 1000 ** 2, "g": 1000 ** 3, "mb": 1000 ** 2, "gb": 1000 ** 3, "mi": 1024 ** 2, "gi": 1024 ** 3}
# The share of an instance's memory the files in flight may take: the rest holds the interpreter
# and clients (~80-100 MiB per idle worker, bench/RESULTS.md) and the requests' buffers (staged rows
# leave the process for the staging bucket: staged_objects.py).
BUDGET_SHARE_OF_INSTANCE = 0.4
DEFAULT_INSTANCE_MEMORY = "512Mi"  # deploy.sh's default --memory


def memory_bytes(text: str, name: str = "ODDSBATCH_INSTANCE_MEMORY") -> int:
    """Bytes of a memory quantity as deploy.sh's --memory takes it: 512Mi, 1Gi, 2G, 512MB."""
    raw = text.strip()
    digits = raw.rstrip("MGBmgbi")
    unit = raw[len(digits):].lower()
    try:
        value = float(digits)
    except ValueError:
        value = -1
    if value <= 0 or unit not in _MEMORY_UNITS:
        raise ValueError(f"{name} must look like 512Mi, 1Gi, 2G or 512MB, got {text!r}")
    return int(value * _MEMORY_UNITS[unit])


def _memory_budget(env: Mapping[str, str], budget_name: str, tier_name: str) -> int:
    """The explicit budget, else BUDGET_SHARE_OF_INSTANCE of the deployed tier. Cloud Run tells a
    container no memory limit of its own (its reserved variables are PORT, K_SERVICE, K_REVISION,
    K_CONFIGURATION: https://cloud.google.com/run/docs/container-contract), so deploy.sh passes
    its --memory as ODDSBATCH_INSTANCE_MEMORY."""
    if env.get(budget_name):
        return _int(env, budget_name, 1)
    tier = memory_bytes(env.get(tier_name) or DEFAULT_INSTANCE_MEMORY, tier_name)
    return int(tier * BUDGET_SHARE_OF_INSTANCE)


def _choice(env: Mapping[str, str], name: str, choices: tuple[str, ...]) -> str:
    value = env.get(name) or choices[0]
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(choices)}, got {value!r}")
    return value


@dataclass(frozen=True)
class Settings:
    endpoint: str
    project: str
    dataset: str
    table: str
    bucket: str | None = None
    bigquery_location: str = "US"
    firestore_database: str = "(default)"
    lock_collection: str = "oddsbatch_locks"
    pending_collection: str = "oddsbatch_pending"
    runs_collection: str = "oddsbatch_runs"
    ledger_collection: str = "oddsbatch_merged"
    ledger_ttl_days: float = 400.0
    settle_seconds: float = 5.0
    settle_quiet_seconds: float = 0.5
    lease_seconds: float = 600.0
    lock_heartbeat_seconds: float = 8.0
    timeout_seconds: float = 540.0
    ttl_days: float = 7.0
    quarantine_bucket: str | None = None
    quarantine_prefix: str = "quarantine/"
    # None only where no holder runs (the ignore path, operator tools that only read): a holder
    # without it stops with a TerminalError naming the setting (staged_objects.py).
    staging_bucket: str | None = None
    download_workers: int = 8
    merge_attempts: int = 5
    bigquery_endpoint: str | None = None
    mode: str = "batch"
    max_object_bytes: int = 32 * 1024 * 1024
    stream_object_bytes: int = 1024 * 1024
    memory_budget_bytes: int = int(512 * 1024 * 1024 * BUDGET_SHARE_OF_INSTANCE)
    sweep_collection: str = "oddsbatch_sweeps"
    fence_collection: str = "oddsbatch_fences"
    sweep_stale_seconds: float = 600.0
    sweep_days: int = 2
    dead_letter_subscription: str | None = None
    dates_per_merge: int = 16

    @property
    def collections(self) -> tuple[str, ...]:
        """Every Firestore collection the protocol writes (each carries expireAt for TTL)."""
        return (self.lock_collection, self.pending_collection, self.runs_collection, self.ledger_collection,
                self.sweep_collection, self.fence_collection)

    @property
    def ttl(self) -> timedelta:
        """How long a lock or pending marker outlives its last write before Firestore's TTL may
        delete it (ODDSBATCH_TTL_DAYS); never read as a lease: TTL deletion lags up to a day."""
        return timedelta(days=self.ttl_days)

    @property
    def prefixes(self) -> tuple[str, str]:
        """Object-name prefixes this function owns (live and historical)."""
        return (f"{OBJECT_ROOT}{self.endpoint}/", f"{OBJECT_ROOT}{self.endpoint}-history/")

    def owns(self, object_name: str, bucket: str | None = None) -> bool:
        """True for this function's own objects (in the landing bucket, when one is set)."""
        if self.bucket and bucket is not None and bucket != self.bucket:
            return False
        return object_name.startswith(self.prefixes)

    def with_(self, **changes) -> "Settings":
        return replace(self, **changes)

    @classmethod
    def from_env(cls, endpoint: str, env: Mapping[str, str] | None = None) -> "Settings":
        if endpoint not in ENDPOINT_TABLES:
            raise ValueError(f"unknown endpoint {endpoint!r}; expected one of {', '.join(ENDPOINTS)}")
        env = os.environ if env is None else env
        project = env.get("ODDSBATCH_PROJECT") or env.get("GOOGLE_CLOUD_PROJECT") or env.get("GCLOUD_PROJECT")
        if not project:
            raise ValueError("ODDSBATCH_PROJECT (or GOOGLE_CLOUD_PROJECT) must be set")
        return cls(
            endpoint=endpoint,
            project=project,
            dataset=env.get("ODDSBATCH_DATASET") or "odds_api",
            table=env.get("ODDSBATCH_TABLE") or ENDPOINT_TABLES[endpoint],
            bucket=env.get("ODDSBATCH_BUCKET") or None,
            bigquery_location=env.get("ODDSBATCH_BIGQUERY_LOCATION") or "US",
            firestore_database=env.get("ODDSBATCH_FIRESTORE_DATABASE") or "(default)",
            lock_collection=env.get("ODDSBATCH_LOCK_COLLECTION") or "oddsbatch_locks",
            pending_collection=env.get("ODDSBATCH_PENDING_COLLECTION") or "oddsbatch_pending",
            runs_collection=env.get("ODDSBATCH_RUNS_COLLECTION") or "oddsbatch_runs",
            ledger_collection=env.get("ODDSBATCH_LEDGER_COLLECTION") or "oddsbatch_merged",
            ledger_ttl_days=_float(env, "ODDSBATCH_LEDGER_TTL_DAYS", 400.0),
            settle_seconds=_float(env, "ODDSBATCH_SETTLE_SECONDS", 5.0),
            settle_quiet_seconds=_float(env, "ODDSBATCH_SETTLE_QUIET_SECONDS", 0.5),
            lease_seconds=_float(env, "ODDSBATCH_LEASE_SECONDS", 600.0),
            lock_heartbeat_seconds=_float(env, "ODDSBATCH_LOCK_HEARTBEAT_SECONDS", 8.0),
            timeout_seconds=_positive(env, "ODDSBATCH_TIMEOUT_SECONDS", 540.0),
            ttl_days=_float(env, "ODDSBATCH_TTL_DAYS", 7.0),
            quarantine_bucket=env.get("ODDSBATCH_QUARANTINE_BUCKET") or None,
            quarantine_prefix=env.get("ODDSBATCH_QUARANTINE_PREFIX") or "quarantine/",
            staging_bucket=env.get("ODDSBATCH_STAGING_BUCKET") or None,
            download_workers=_int(env, "ODDSBATCH_DOWNLOAD_WORKERS", 8),
            merge_attempts=_int(env, "ODDSBATCH_MERGE_ATTEMPTS", 5),
            bigquery_endpoint=env.get("ODDSBATCH_BIGQUERY_ENDPOINT") or None,
            mode=_choice(env, "ODDSBATCH_MODE", MODES),
            max_object_bytes=_int(env, "ODDSBATCH_MAX_OBJECT_BYTES", 32 * 1024 * 1024),
            stream_object_bytes=_int(env, "ODDSBATCH_STREAM_OBJECT_BYTES", 1024 * 1024),
            memory_budget_bytes=_memory_budget(env, "ODDSBATCH_MEMORY_BUDGET_BYTES", "ODDSBATCH_INSTANCE_MEMORY"),
            sweep_collection=env.get("ODDSBATCH_SWEEP_COLLECTION") or "oddsbatch_sweeps",
            fence_collection=env.get("ODDSBATCH_FENCE_COLLECTION") or "oddsbatch_fences",
            sweep_stale_seconds=_float(env, "ODDSBATCH_SWEEP_STALE_SECONDS", 600.0),
            sweep_days=_int(env, "ODDSBATCH_SWEEP_DAYS", 2),
            dead_letter_subscription=env.get("ODDSBATCH_DEAD_LETTER_SUBSCRIPTION") or None,
            dates_per_merge=dates_per_merge(env.get("ODDSBATCH_DATES_PER_MERGE"), "ODDSBATCH_DATES_PER_MERGE"),
        )
