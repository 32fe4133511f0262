"""The CloudEvent handler both functions bind: ignore, coalesce, or hold the batch.

Retry contract (functions/v2 tips-retry): raise to be retried, return to stop. A
TransientError propagates so functions-framework answers 500 and Eventarc redelivers;
bad files are quarantined inside the batch and never raise. Any other TerminalError is
raised while the event's pending marker is not written yet (the event is then the only
record of its file), and acknowledged after it (`failed_terminal`, logged with what to
fix): the marker keeps the work queued until the cause is fixed (errors.py).

The ignore path touches nothing but the object name: the Google clients are imported
only once an event is known to be this function's own.

A Pub/Sub message-published event is the scheduled sweep (Cloud Scheduler -> Pub/Sub ->
Eventarc, see sweep.py): told apart by the CloudEvent type alone, one string comparison.
It never raises: the next scheduled sweep is its retry.
"""

from __future__ import annotations

import time
from typing import Any, Callable, Mapping

from . import logs
from .config import Settings
from .event import StorageEvent

FINALIZED = "google.cloud.storage.object.v1.finalized"
SWEEP = "google.cloud.pubsub.topic.v1.messagePublished"  # = sweep.SWEEP_EVENT


def make_handler(endpoint: str, env: Mapping[str, str] | None = None) -> Callable[[Any], str]:
    """Bind settings once per instance; returns handle(cloud_event) -> decision."""
    settings = Settings.from_env(endpoint, env)

    def handle(cloud_event) -> str:
        started = time.monotonic()
        event_type = cloud_event["type"]
        if event_type == SWEEP:
            from .sweep import run_sweep  # lazy: the clients come with it

            decision = run_sweep(settings)
            logs.log("event_done", endpoint=endpoint, decision=decision, event_id=cloud_event["id"],
                     seconds=round(time.monotonic() - started, 3))
            return decision
        data = cloud_event.data or {}
        name = data.get("name", "") if isinstance(data, Mapping) else ""
        bucket = data.get("bucket") if isinstance(data, Mapping) else None
        if event_type != FINALIZED or not settings.owns(name, bucket):
            # Not ours: acknowledge at once, no Firestore, no BigQuery.
            logs.log("ignored", endpoint=endpoint, object=name, event_type=event_type)
            return "ignored"
        event = StorageEvent.from_cloud_event(cloud_event["id"], data)
        from .batch import handle_event  # lazy: the clients come with it

        decision = handle_event(settings, event)
        logs.log("event_done", endpoint=endpoint, object=event.name, decision=decision,
                 event_id=event.event_id, seconds=round(time.monotonic() - started, 3))
        return decision

    return handle
