"""`oddsbatch status`, the pipeline part: held locks, pending work, last batches, quarantine,
and the sweep's last run per endpoint.

Reads Firestore and the bucket the same way against the emulators and real GCP.
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timezone

from .clients import firestore_client, storage_client
from .config import Settings

LAST_BATCHES = 10
LAST_QUARANTINED = 10


def _age(moment, now) -> str:
    if moment is None:
        return "?"
    seconds = (now - moment).total_seconds()
    sign = "-" if seconds < 0 else ""
    seconds = abs(seconds)
    if seconds < 120:
        return f"{sign}{seconds:.0f}s"
    if seconds < 7200:
        return f"{sign}{seconds / 60:.0f}m"
    return f"{sign}{seconds / 3600:.1f}h"


def pipeline_status(settings: Settings, bucket: str | None) -> dict:
    """Everything `status` shows, as data (tests read it)."""
    db = firestore_client(settings.project, settings.firestore_database)
    now = datetime.now(timezone.utc)
    locks = []
    for snap in db.collection(settings.lock_collection).stream():
        d = snap.to_dict() or {}
        lease_until = d.get("lease_until")
        locks.append({"key": snap.id, "owner": d.get("owner"), "age": _age(d.get("acquired_at"), now),
                      "lease_left": _age(now, lease_until) if lease_until else "?",
                      "stale": bool(lease_until and lease_until <= now), "takeovers": d.get("takeovers", 0)})
    pending = Counter((snap.to_dict() or {}).get("batch_key", "?")
                      for snap in db.collection(settings.pending_collection).stream())
    runs = []
    from google.cloud import firestore

    query = db.collection(settings.runs_collection).order_by("finished_at", direction=firestore.Query.DESCENDING)
    for snap in query.limit(LAST_BATCHES).stream():
        d = snap.to_dict() or {}
        runs.append({"run_id": snap.id, "key": d.get("batch_key"), "finished": _age(d.get("finished_at"), now) + " ago",
                     "files": d.get("files", 0), "rows": d.get("rows", 0), "merges": d.get("merges", 0),
                     "quarantined": d.get("quarantined", 0), "seconds": (d.get("seconds") or {}).get("total")})
    sweeps = []
    for snap in db.collection(settings.sweep_collection).stream():
        d = snap.to_dict() or {}
        sweeps.append({"endpoint": snap.id, "finished": _age(d.get("finished_at"), now) + " ago",
                       "finished_at": d.get("finished_at"), "decision": d.get("decision"),
                       "oldest_pending_seconds": d.get("oldest_pending_seconds", 0),
                       "pending_markers": d.get("pending_markers", 0), "adopted": list(d.get("adopted") or []),
                       "lost_objects": d.get("lost_objects", 0), "merges": d.get("merges", 0),
                       "errors": list(d.get("errors") or [])})
    sweeps.sort(key=lambda x: x["endpoint"])
    quarantined = []
    if bucket:
        blobs = list(storage_client(settings.project).list_blobs(settings.quarantine_bucket or bucket,
                                                                  prefix=settings.quarantine_prefix))
        blobs.sort(key=lambda b: b.time_created or now, reverse=True)
        quarantined = [{"object": b.name, "reason": (b.metadata or {}).get("oddsbatch-reason", "?")} for b in blobs]
    return {"locks": locks, "pending": dict(pending), "runs": runs, "quarantined": quarantined, "sweeps": sweeps}


def print_status(status: dict) -> None:
    print(f"locks held: {len(status['locks'])}")
    for lock in status["locks"]:
        flag = "  STALE (lease passed: next event takes it over)" if lock["stale"] else ""
        print(f"  {lock['key']:<28} owner {lock['owner']:<14} age {lock['age']:<6} lease left {lock['lease_left']}{flag}")
    print(f"pending work: {sum(status['pending'].values())} objects")
    for key, count in sorted(status["pending"].items()):
        print(f"  {key:<28} {count}")
    print(f"last batches: {len(status['runs'])}")
    for run in status["runs"]:
        print(f"  {run['key']:<28} {run['finished']:<10} files {run['files']:<5} rows {run['rows']:<7} "
              f"merges {run['merges']} quarantined {run['quarantined']} seconds {run['seconds']}")
    print(f"last sweep: {len(status.get('sweeps', []))} endpoints" if status.get("sweeps") else "last sweep: never ran")
    for sw in status.get("sweeps", []):
        print(f"  {sw['endpoint']:<28} {sw['finished']:<10} {sw['decision']:<13} oldest pending "
              f"{sw['oldest_pending_seconds']:.0f}s markers {sw['pending_markers']} adopted {len(sw['adopted'])} "
              f"lost {sw['lost_objects']} merges {sw['merges']}" + (f" errors {len(sw['errors'])}" if sw["errors"] else ""))
    print(f"quarantined files: {len(status['quarantined'])}")
    for q in status["quarantined"][:LAST_QUARANTINED]:
        print(f"  {q['object']}: {q['reason']}")
