"""Poison files on the real stack: values the scraper can really send that no column holds.
Each is quarantined with its reason, the rest of its batch merges, none blocks its key.

Three paths, each against the emulators through the official clients:
- files whose values the transform refuses (huge integers, out-of-range prices, NaN and
  infinity, timestamps outside BigQuery's range), through the deployed-like functions;
- a file whose rows only the load job refuses (a transform gap, simulated by patching the
  transform in-process): the holder finds it by loading halves and quarantines it alone;
- a quarantine copy that fails (a missing quarantine bucket): a transient error that keeps
  only that file queued, then succeeds into a separate quarantine bucket once it exists.
The in-process holders use a bucket of their own, so the stack's functions never see it.
"""

from __future__ import annotations

import json
import uuid
from collections import Counter
from datetime import date

import pytest

from oddsbatch import batch, staging, synth, transform
from oddsbatch.config import Settings
from oddsbatch.errors import TransientError
from oddsbatch.event import StorageEvent
from oddsbatch.pending import PendingWork
from oddsbatch.paths import batch_key
from oddsbatch.tables import table_for_endpoint

from .test_end_to_end import comparable, expected_rows, table_rows, upload_all

pytestmark = pytest.mark.integration

DAY = "2025-05-21"


def _poison(good_name: str, good: bytes, where, raw: bytes, snap: str) -> tuple[str, bytes]:
    """A copy of a good file with one value set to `raw` (JSON text, written as is), under a
    later snapshot name; `where(payload)` returns (the dict holding the value, its key)."""
    payload = json.loads(good)
    holder, key = where(payload)
    holder[key] = "__POISON__"
    folder, _ = good_name.rsplit("/", 1)
    return (f"{folder}/{DAY.replace('-', '')}_{snap}00-snap-{snap}.json",
            json.dumps(payload).encode().replace(b'"__POISON__"', raw, 1))


def _first(files, endpoint):
    return next((n, d) for n, d in files if n.startswith(f"odds-api/{endpoint}/"))


def _outcome(payload, market_with_point: bool):
    for market in payload["bookmakers"][0]["markets"]:
        for outcome in market["outcomes"]:
            if not market_with_point or "point" in outcome:
                return outcome
    raise AssertionError("no such outcome in the synthesized file")


def test_values_no_column_holds_are_quarantined_and_never_block_their_key(stack):
    good = list(synth.synthesize_day(date.fromisoformat(DAY), games=2, snapshots=2, seed=21))
    gl_name, gl = _first(good, "game-lines")
    pp_name, pp = _first(good, "player-props")
    point = lambda p: (_outcome(p, True), "point")  # noqa: E731
    price = lambda p: (_outcome(p, False), "price")  # noqa: E731
    commence = lambda p: (p, "commence_time")  # noqa: E731
    cases = [  # (base file, where, raw JSON value, snapshot, the reason must contain this)
        (gl_name, gl, point, b"9" * 401, "2301", "out of range for an exact line"),
        (gl_name, gl, point, b"1e999", "2302", "out of range for an exact NUMERIC"),
        (gl_name, gl, point, b"0.0000000001", "2303", "out of range for an exact NUMERIC"),
        (gl_name, gl, commence, b'"9999-12-31T23:59:00-05:00"', "2304", "outside the TIMESTAMP range"),
        (pp_name, pp, price, b"1" + b"0" * 30, "2305", "out of range of the price columns"),
        (pp_name, pp, price, b"NaN", "2306", "NaN"),
        (pp_name, pp, price, b"-Infinity", "2307", "Infinity"),
    ]
    poison = {}
    for base_name, base, where, raw, snap, reason in cases:
        name, data = _poison(base_name, base, where, raw, snap)
        poison[name] = (data, reason)
    generations = upload_all(stack, good + [(n, d) for n, (d, _) in poison.items()])
    stack.wait_idle(expected_events=len(good) + len(poison), timeout=240)

    for endpoint in ("game-lines", "player-props"):
        spec = table_for_endpoint(endpoint)
        got = Counter(comparable(r, spec) for r in table_rows(stack, endpoint, DAY))
        want = expected_rows([f for f in good if f[0].startswith(f"odds-api/{endpoint}/")], generations, endpoint)
        assert got == want and want, endpoint  # every good row once, nothing of a poison file
    bucket = stack.storage().bucket(stack.bucket)
    for name, (_, reason_part) in poison.items():
        copy = bucket.get_blob(f"quarantine/{name}")
        assert copy is not None, f"{name} was not quarantined"
        assert reason_part.lower() in copy.metadata["oddsbatch-reason"].lower(), (name, copy.metadata)
    deliveries = [json.loads(line) for line in stack.log_text("bridge").splitlines()
                  if line.startswith("{") and '"event": "delivery"' in line]
    for name in poison:  # acknowledged at the first attempt: no retry storm, the key is not blocked
        attempts = [d for d in deliveries if d.get("object") == name]
        assert attempts and all(d["ok"] and d["attempt"] == 1 for d in attempts), (name, attempts)
    db = stack.firestore()
    assert not list(db.collection("oddsbatch_pending").limit(1).stream()), "a poison file stayed queued"


@pytest.fixture
def side_bucket(stack):
    """A bucket the stack's functions do not watch: in-process holders work it alone."""
    name = f"poison-{uuid.uuid4().hex[:8]}"
    client = stack.storage()
    client.create_bucket(name)
    return client.bucket(name)


def _upload(bucket, files) -> list[StorageEvent]:
    events = []
    for name, data in files:
        blob = bucket.blob(name)
        blob.upload_from_string(data, content_type="application/json")
        events.append(StorageEvent(event_id=uuid.uuid4().hex, bucket=bucket.name, name=name,
                                   generation=int(blob.generation), size=len(data)))
    return events


def _queued(stack, settings, key) -> list[str]:
    pending = PendingWork(stack.firestore(), settings.pending_collection, key, settings.ttl)
    return sorted(m.name for m in pending.list(limit=100))


def test_rows_only_the_load_refuses_are_found_by_halves_and_quarantined_alone(stack, side_bucket, monkeypatch):
    day = "2025-05-22"
    files = [f for f in synth.synthesize_day(date.fromisoformat(day), games=3, snapshots=3, seed=22)
             if f[0].startswith("odds-api/game-lines/")]
    refused = {files[2][0], files[6][0]}  # two of nine files
    original = transform.staged_for_object  # what reading stages a whole file with

    def with_a_gap(name, data, generation, created=None):  # a value the transform let through
        staged = original(name, data, generation, created)
        if name in refused:
            groups = staging.decode(staged.ndjson)
            groups[0][1][0]["price_american"] = 10 ** 30  # beyond INT64: the load refuses the row
            staged = staged._replace(ndjson=staging.encode(groups))
        return staged

    monkeypatch.setattr(transform, "staged_for_object", with_a_gap)
    settings = Settings.from_env("game-lines", {**stack.env, "ODDSBATCH_BUCKET": side_bucket.name,
                                                "ODDSBATCH_SETTLE_SECONDS": "0"})
    events = _upload(side_bucket, files)
    key = batch_key("game-lines", day)
    pending = PendingWork(stack.firestore(), settings.pending_collection, key, settings.ttl)
    for e in events[:-1]:  # a burst: the files' markers are queued when the last event holds the lock
        pending.add(e.bucket, e.name, e.generation, e.event_id, e.created, e.size)
    assert batch.handle_event(settings, events[-1]) == "merged"

    spec = table_for_endpoint("game-lines")
    got = Counter(comparable(r, spec) for r in table_rows(stack, "game-lines", day))
    generations = {e.name: e.generation for e in events}
    assert got == expected_rows([f for f in files if f[0] not in refused], generations, "game-lines")
    for name in refused:
        copy = side_bucket.get_blob(f"quarantine/{name}")
        assert copy is not None and "load refused its rows" in copy.metadata["oddsbatch-reason"], name
    assert _queued(stack, settings, key) == []
    probes = [j for j in stack.bigquery().list_jobs(all_users=True) if j.job_type == "load" and "_probe_" in j.job_id]
    # 9 files, 2 refused: fewer loads than one per file, more than one
    assert 1 < len(probes) < len(files), len(probes)


def test_a_failing_quarantine_copy_keeps_only_that_file_queued(stack, side_bucket):
    day = "2025-05-23"
    files = [f for f in synth.synthesize_day(date.fromisoformat(day), games=1, snapshots=2, seed=23)
             if f[0].startswith("odds-api/player-props/")]
    bad_name = files[0][0].rsplit("/", 1)[0] + f"/{day.replace('-', '')}_235900-snap-2359.json"
    quarantine_bucket = f"quarantine-{uuid.uuid4().hex[:8]}"  # does not exist yet
    env = {**stack.env, "ODDSBATCH_BUCKET": side_bucket.name, "ODDSBATCH_SETTLE_SECONDS": "0",
           "ODDSBATCH_QUARANTINE_BUCKET": quarantine_bucket}
    settings = Settings.from_env("player-props", env)
    events = _upload(side_bucket, files + [(bad_name, b'{"id": "truncated')])

    with pytest.raises(TransientError, match="quarantine copy"):
        for e in events:
            batch.handle_event(settings, e)
    key = batch_key("player-props", day)
    assert _queued(stack, settings, key) == [bad_name]  # the good files merged, the bad one waits
    spec = table_for_endpoint("player-props")
    got = Counter(comparable(r, spec) for r in table_rows(stack, "player-props", day))
    generations = {e.name: e.generation for e in events}
    assert got == expected_rows(files, generations, "player-props")

    stack.storage().create_bucket(quarantine_bucket)  # the operator's fix; Eventarc retries the event
    assert batch.handle_event(settings, events[-1]) in ("merged", "nothing_pending")
    assert _queued(stack, settings, key) == []
    copy = stack.storage().bucket(quarantine_bucket).get_blob(f"quarantine/{bad_name}")
    assert copy is not None and "JSON" in copy.metadata["oddsbatch-reason"]
    assert side_bucket.get_blob(f"quarantine/{bad_name}") is None  # the separate bucket, not the source
