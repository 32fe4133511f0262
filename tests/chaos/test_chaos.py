"""Chaos: random days replayed through the real local stack while holders crash and the
bridge delivers events twice; the tables must equal what the files say. Nothing lost,
nothing duplicated, no lock or pending work left behind.

`make test` runs 3 seeds; `make chaos` (ODDSBATCH_CHAOS_SEEDS=20) the long mode. The BigQuery
emulator follows the DML page (bigquery_emulator.py): an insert-only MERGE never conflicts, so two
MERGEs of one key in flight store its rows twice. Every MERGE runs seconds before it commits
(--dml-latency-ms), and holders die right after inserting their MERGE (during_merge), so the retry
that reclaims the key meets the dead holder's MERGE still running: the MERGE fence (fence.py) makes
it wait. Each seed asserts, from the jobs the emulator kept, that no two MERGEs of one (table, game
date) ran at once, and counts rows per natural key. A Janitor thread per table runs identity
UPDATEs on the run's partitions throughout, as an operator's DML would (they take DML slots; under
BigQuery's rules they make no insert-only MERGE fail).
Each run prints:
chaos: seed=<int> files=<int> events=<int> duplicates=<int> crashes=<int> crashes_during_merge=<int> merges=<int> lost=<int> duplicated=<int> keys_stored_twice=<int> merges_in_flight_together=<int>
and, from the functions' and the emulator's logs:
chaos: seed=<int> merges=<int> bound=<int> conflicts=<int> emulator_conflicts=<int> takeovers=<int> keys=<int> janitor_updates=<int> janitor_refused=<int> fence_waits=<int> fence_burned=<int> fenced=<int>

Every run also asserts, from the functions' logs, that
- no key had two holders at once, except by a takeover (a lock whose lease passed, or whose
  holder's heartbeat went silent: it died): holder_violations() over the lock_acquired /
  lock_released / lock_write_lost lines (lock.py), each with its invocation's nonce;
- the MERGE jobs stay within merge_bound(): per key, each round lists the queue after a settle
  window of its own (settle_seconds, slept whole in this stack) and only when a marker arrived
  after the previous listing, so rounds <= 2 + floor(span / settle), span = first to last event
  of the key (marker writes: coalesced / lock_acquired lines); plus 1 per holding that ended
  abnormally (taken over, lost, failed: its round may run again), plus each conflict retried.
"""

from __future__ import annotations

import json
import math
import os
import random
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import date, datetime, timedelta

import pytest

from oddsbatch import synth
from oddsbatch.config import ENDPOINT_TABLES
from oddsbatch.local.stack import Stack
from oddsbatch.pending import marker_id
from oddsbatch.paths import parse_object_name
from oddsbatch.tables import table_for_endpoint
from tests.googlesql import analyze_emulator
from tests.integration.test_end_to_end import comparable, expected_rows, merge_jobs, table_rows

pytestmark = pytest.mark.integration

SEEDS = int(os.environ.get("ODDSBATCH_CHAOS_SEEDS", "3"))
# Holder points only: a crash kills every request of the instance, and a point that every
# event passes (before_marker) at this rate would crash the instance faster than it restarts.
# during_merge: the process dies right after inserting its MERGE job, which runs on in BigQuery.
CRASH_POINTS = "after_load,during_merge,after_merge,before_release"
# Each UPDATE / MERGE of the emulator runs this long before it commits (BigQuery's take seconds),
# longer than the heartbeat below and than the bridge's retry backoff, so the retry of a holder
# that died during its MERGE reclaims the key while that MERGE still runs: the next holder must
# settle it (fence.py) or the rows land twice. make chaos raises it (ODDSBATCH_CHAOS_DML_LATENCY_MS).
DML_LATENCY_MS = int(os.environ.get("ODDSBATCH_CHAOS_DML_LATENCY_MS", "1500"))
HEARTBEAT_SECONDS = 1.0


@pytest.fixture(scope="module")
def chaos_stack(tmp_path_factory):
    st = Stack(tmp_path_factory.mktemp("oddsbatch-chaos"), settle_seconds=0.3, dml_latency_ms=DML_LATENCY_MS, extra_env={
        "ODDSBATCH_FAULT_CRASH_AT": CRASH_POINTS,
        "ODDSBATCH_FAULT_CRASH_RATE": "0.15,during_merge=0.3",
        "ODDSBATCH_FAULT_SEED": "7",
        "ODDSBATCH_LOCK_HEARTBEAT_SECONDS": str(HEARTBEAT_SECONDS),
    }, bridge_args=["--duplicate-rate", "0.3", "--seed", "11"])
    st.start()
    try:
        yield st
    finally:
        st.stop()


FUNCTION_LOGS = ("game_lines", "player_props")
TAKEOVERS = ("stale_takeover", "reclaimed")  # lock.py: a lease that passed, a holder that went silent


def crashes(stack, point: str = "") -> int:
    """Injected crashes so far (at `point` only, when given)."""
    needle = '"fault_crash", "point": "' + point if point else '"fault_crash"'
    return sum(stack.log_text(fn).count(needle) for fn in FUNCTION_LOGS)


def key_counts(rows: list[dict], spec) -> Counter:
    """Rows per natural key: BigQuery enforces no key, so a key stored twice shows here."""
    return Counter(tuple(str(r[c]) for c in spec.natural_key) for r in rows)


def _merge_dates(job) -> list[str]:
    """The game dates a MERGE job touches: its `game_date` parameter, or each of `game_dates`."""
    dates = []
    for p in job.query_parameters or []:
        if p.name == "game_date":
            dates.append(str(p.value))
        elif p.name == "game_dates":
            dates.extend(str(v) for v in p.values)
    return dates or ["?"]


def overlapping_merges(client, tables, since: dict[str, set[str]]) -> list[str]:
    """MERGE jobs into one table and one game date whose run times overlap, from the jobs the
    emulator kept (started/ended): the fence's invariant, checked where the jobs ran. One
    listing of the jobs for all `tables` (since: table -> job ids to leave out)."""
    by_day: dict[tuple[str, str], list] = {}
    for job in client.list_jobs(all_users=True):
        if getattr(job, "statement_type", None) != "MERGE" or job.started is None:
            continue
        table = next((t for t in tables if t in job.job_id), None)
        if table is None or job.job_id in since[table]:
            continue
        for day in _merge_dates(job):
            by_day.setdefault((table, day), []).append(
                (job.started, job.ended or datetime.max.replace(tzinfo=job.started.tzinfo), job.job_id))
    found = []
    for (table, day), runs in by_day.items():
        runs.sort()
        for (s1, e1, j1), (s2, e2, j2) in zip(runs, runs[1:]):
            if s2 < e1:
                found.append(f"{table} {day}: {j1} ({s1:%H:%M:%S.%f}-{e1:%H:%M:%S.%f}) and {j2} ({s2:%H:%M:%S.%f}-...)")
    return found


def log_offsets(stack) -> dict[str, int]:
    return {name: len(stack.log_text(name)) for name in (*FUNCTION_LOGS, "bigquery")}


def records_since(stack, name: str, offset: int) -> list[dict]:
    """The JSON lines one function logged since `offset`, in order (one process per function, so
    file order is the order things happened in)."""
    out = []
    for line in stack.log_text(name)[offset:].splitlines():
        if line.startswith("{"):
            try:
                out.append(json.loads(line))
            except ValueError:
                continue
    return out


def holder_violations(records: list[dict]) -> tuple[list[str], int, set]:
    """(violations, takeovers, abnormal holders) of one function's log lines, in order.

    A holding begins at its lock_acquired line and ends at lock_released (logged before the
    delete) or lock_write_lost; a holder that crashed never ends its holding. A lock_acquired of a
    key that still has a holder is a violation unless it is a takeover, which supersedes the
    holders it found (they died, or lost the lock and learn it at their next write)."""
    current: dict[str, set] = {}
    violations, takeovers, abnormal = [], 0, set()
    for r in records:
        key, nonce = r.get("batch_key"), r.get("nonce")
        if r.get("message") == "lock_acquired":
            holders = current.get(key) or set()
            if holders:
                if r.get("how") in TAKEOVERS:
                    takeovers += 1
                    abnormal |= holders
                else:
                    violations.append(f"{key}: {nonce} acquired ({r.get('how')}) at {r.get('time')} "
                                      f"while {sorted(holders)} held it")
            current[key] = {nonce}
        elif r.get("message") in ("lock_released", "lock_write_lost"):
            if r.get("message") == "lock_write_lost":
                abnormal.add(nonce)
            (current.get(key) or set()).discard(nonce)
    return violations, takeovers, abnormal


def _time(record: dict) -> float:
    return datetime.fromisoformat(record["time"].replace("Z", "+00:00")).timestamp()


def merge_bound(records: list[dict], settle_seconds: float, conflicts: int) -> tuple[int, int]:
    """(bound on the MERGE jobs of one function's log lines, keys): see the module doc."""
    spans: dict[str, list[float]] = {}
    failed = 0
    for r in records:
        if r.get("message") in ("coalesced", "lock_acquired") and r.get("batch_key") and r.get("time"):
            t = _time(r)
            first, last = spans.setdefault(r["batch_key"], [t, t])
            spans[r["batch_key"]] = [min(first, t), max(last, t)]
        failed += r.get("message") == "failed"
    _, _, abnormal = holder_violations(records)
    rounds = sum(2 + math.floor((last - first) / settle_seconds) for first, last in spans.values())
    return rounds + len(abnormal) + failed + conflicts, len(spans)


def conflicts_retried(records: list[dict]) -> int:
    return sum(1 for r in records if r.get("message") == "bigquery_retry" and r.get("reason") == "serializationConflict")


def plan(seed: int) -> list[tuple[str, bytes]]:
    """A random workload of 14 to 300 files over 1 to 3 game dates."""
    rng = random.Random(seed)
    target = rng.randint(14, 300)
    dates = rng.randint(1, 3)
    first = date(2025, 10, 21) + timedelta(days=seed * 4)
    files = []
    for i in range(dates):
        games = rng.randint(1, 7)
        snapshots = max(1, round(target / dates / games / 2))
        files += synth.synthesize_day(first + timedelta(days=i), games=games, snapshots=snapshots, seed=seed * 10 + i)
    return files


def wait_finished(stack, generations: dict[str, int], timeout: float = 600.0) -> int:
    """Wait until a batch finished every uploaded generation (its ledger entry exists), then for
    the stack to be idle. wait_idle alone counts the events the bridge received, and an event
    published twice (fake-gcs retrying a slow Publish) makes that count arrive early. Returns
    the generations still unfinished at the timeout (the row comparison then shows them)."""
    db = stack.firestore()
    ledger = db.collection("oddsbatch_merged")
    refs = {ledger.document(marker_id(parse_object_name(name).batch_key, stack.bucket, name, generation))
            for name, generation in generations.items()}
    deadline = time.monotonic() + timeout
    while refs and time.monotonic() < deadline:
        refs = {snap.reference for snap in db.get_all(list(refs)) if not snap.exists}
        if refs:
            time.sleep(0.5)
    stack.wait_idle(0, timeout=timeout)
    return len(refs)


def upload_with_jitter(stack, files, seed: int) -> dict[str, int]:
    rng = random.Random(seed)
    concurrency = rng.randint(8, 32)
    jitter = {name: rng.uniform(0, 0.2) for name, _ in files}
    bucket = stack.storage().bucket(stack.bucket)

    def put(item):
        name, data = item
        time.sleep(jitter[name])
        blob = bucket.blob(name)
        blob.upload_from_string(data, content_type="application/json")
        return name, blob.generation

    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        return dict(pool.map(put, files))


class Janitor:
    """Other writers on the run's partitions, as an operator's DML would be: per table, a thread
    that UPDATEs a column to itself (no value changes) on each game date of the run in turn,
    resting `every` seconds after each round, while the holders MERGE. On BigQuery, and on the
    emulator's model of it, a MERGE of the same partition that overlaps such an UPDATE that
    started before it fails with "Could not serialize access" and the holder resubmits it
    (warehouse.py): the lock cannot prevent these conflicts, only retries can. One writer per table
    keeps a janitor UPDATE in flight on a MERGE's partition a good part of the time (with the
    emulator's DML latency), so the run meets conflicts at every seed count. The janitor's own
    refused UPDATEs are its business: it simply goes on."""

    def __init__(self, stack, days: list[str], every: float = 5.0):
        import threading

        self.stack, self.days, self.every = stack, days, every
        self.stop = threading.Event()
        self.counts = Counter()
        self.threads = [threading.Thread(target=self._run, args=(table,), daemon=True)
                        for table in ENDPOINT_TABLES.values()]

    @property
    def updates(self) -> int:
        return self.counts["updates"]

    @property
    def refused(self) -> int:
        return self.counts["refused"]

    def _run(self, table: str):
        from google.cloud import bigquery

        client = self.stack.bigquery()
        target = f"`{self.stack.project}.{self.stack.dataset}.{table}`"
        while not self.stop.is_set():
            for day in self.days:
                config = bigquery.QueryJobConfig(query_parameters=[
                    bigquery.ScalarQueryParameter("game_date", "DATE", day)])
                try:
                    client.query(f"UPDATE {target} SET snapshot_source = snapshot_source "
                                 f"WHERE game_date = @game_date", job_config=config,
                                 job_id_prefix="chaos_janitor_").result()
                    self.counts["updates"] += 1  # Counter += under the GIL: two threads, exact enough
                except Exception:  # noqa: BLE001 - a refused janitor UPDATE changes nothing
                    self.counts["refused"] += 1
            self.stop.wait(self.every)

    def __enter__(self):
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=60)


def test_random_days_under_crashes_and_duplicate_deliveries(chaos_stack, googlesql):
    stack = chaos_stack
    totals = Counter()
    for seed in range(1, SEEDS + 1):
        files = plan(seed)
        before = {"bridge": stack.bridge_status(), "crashes": crashes(stack),
                  "in_merge": crashes(stack, "during_merge"), "logs": log_offsets(stack),
                  "merges": {t: merge_jobs(stack, t) for t in ENDPOINT_TABLES.values()}}
        days = sorted({name.split("/")[2] for name, _ in files})
        with Janitor(stack, days) as janitor:
            generations = upload_with_jitter(stack, files, seed)
            stack.wait_idle(expected_events=len(files), timeout=600)
            unfinished = wait_finished(stack, generations)
        after = stack.bridge_status()
        lost = duplicated = twice = 0
        for day in days:
            day_files = [f for f in files if f"/{day}/" in f[0]]
            for endpoint in ENDPOINT_TABLES:
                spec = table_for_endpoint(endpoint)
                rows = table_rows(stack, endpoint, day)
                got = Counter(comparable(r, spec) for r in rows)
                want = expected_rows(day_files, generations, endpoint)
                lost += sum((want - got).values())
                duplicated += sum((got - want).values())
                # per natural key: every key the files hold exactly once
                twice += sum(n - 1 for n in key_counts(rows, spec).values() if n > 1)
        run = {
            "files": len(files),
            "events": after["received"] - before["bridge"]["received"],
            "duplicates": after["duplicates"] - before["bridge"]["duplicates"],
            "crashes": crashes(stack) - before["crashes"],
            "in_merge": crashes(stack, "during_merge") - before["in_merge"],
            "merges": sum(len(merge_jobs(stack, t) - before["merges"][t]) for t in ENDPOINT_TABLES.values()),
        }
        overlaps = overlapping_merges(stack.bigquery(), list(ENDPOINT_TABLES.values()), before["merges"])
        print(f"\nchaos: seed={seed} files={run['files']} events={run['events']} duplicates={run['duplicates']} "
              f"crashes={run['crashes']} crashes_during_merge={run['in_merge']} merges={run['merges']} "
              f"lost={lost} duplicated={duplicated} keys_stored_twice={twice} merges_in_flight_together={len(overlaps)}")
        logged = {fn: records_since(stack, fn, before["logs"][fn]) for fn in FUNCTION_LOGS}
        conflicts = {fn: conflicts_retried(records) for fn, records in logged.items()}
        bounds = {fn: merge_bound(records, stack.settle_seconds, conflicts[fn]) for fn, records in logged.items()}
        holders = {fn: holder_violations(records) for fn, records in logged.items()}
        emulator_conflicts = stack.log_text("bigquery")[before["logs"]["bigquery"]:].count("dml_conflict ")
        bound = sum(b for b, _ in bounds.values())
        settled = {what: sum(1 for records in logged.values() for r in records if r.get("message") == what)
                   for what in ("fence_waiting", "fence_burned", "fenced")}
        run.update(settled)
        print(f"chaos: seed={seed} merges={run['merges']} bound={bound} conflicts={sum(conflicts.values())} "
              f"emulator_conflicts={emulator_conflicts} takeovers={sum(h[1] for h in holders.values())} "
              f"keys={sum(k for _, k in bounds.values())} janitor_updates={janitor.updates} "
              f"janitor_refused={janitor.refused} fence_waits={settled['fence_waiting']} "
              f"fence_burned={settled['fence_burned']} fenced={settled['fenced']}")
        totals.update(run)
        totals.update(conflicts=sum(conflicts.values()), emulator_conflicts=emulator_conflicts)
        assert (lost, duplicated, twice) == (0, 0, 0), f"seed {seed}, {unfinished} generations unfinished"
        assert overlaps == [], f"seed {seed}: two MERGEs of one key in flight at once: {overlaps[:3]}"
        assert [v for h in holders.values() for v in h[0]] == [], f"seed {seed}: two holders of one key at once"
        assert run["merges"] <= bound, f"seed {seed}: {run['merges']} MERGEs, bound {bound}"
        # Every conflict a holder retried was one the emulator raised (no conflicts are injected here).
        assert sum(conflicts.values()) <= emulator_conflicts, (conflicts, emulator_conflicts)
        assert after["failed"] == before["bridge"]["failed"], "an event gave up: its retries ran out"
        db = stack.firestore()
        assert not list(db.collection("oddsbatch_locks").limit(1).stream()), "a lock was left behind"
        assert not list(db.collection("oddsbatch_pending").limit(1).stream()), "pending work was left behind"
    assert totals["crashes"] > 0 and totals["duplicates"] > 0, totals
    print(f"\nchaos: seeds={SEEDS} merges={totals['merges']} conflicts_retried={totals['conflicts']} "
          f"emulator_conflicts={totals['emulator_conflicts']} crashes={totals['crashes']} "
          f"crashes_during_merge={totals['in_merge']} fence_waits={totals['fence_waiting']} "
          f"fence_burned={totals['fence_burned']} fenced={totals['fenced']}")
    # processes did die with their MERGE job running in BigQuery
    assert totals["in_merge"] > 0, totals
    # the concurrency model was on, with BigQuery-like statement latency
    assert f"conflicts=on latency_ms={DML_LATENCY_MS}" in stack.log_text("bigquery")
    # No conflict is required of the MERGEs: under BigQuery's rules (DML page, "DML statement
    # conflicts") an insert-only MERGE never conflicts, and an identity UPDATE never makes one fail.
    # What can write rows twice is two MERGEs of one key in flight, asserted per seed above; the
    # resubmission of a conflicting MERGE is shown where conflicts are certain (test_dml_models.py,
    # tests/unit/test_warehouse.py).
    # Every statement the holders sent under chaos (retried MERGEs included) is valid GoogleSQL.
    seen = analyze_emulator(googlesql(stack.project, stack.dataset), stack.bigquery())
    assert seen.get("MERGE", 0) >= 2, seen


# -- the checks themselves, on made-up log lines (each must be able to fail) ----------------------
def _line(message, key="game-lines/2025-01-21", nonce="a", how=None, t="2025-01-21T00:00:00.000Z"):
    return {"message": message, "batch_key": key, "nonce": nonce, "how": how, "time": t}


def test_two_holders_of_one_key_at_once_is_a_violation():
    created_twice = [_line("lock_acquired", nonce="a", how="created"), _line("lock_acquired", nonce="b", how="created")]
    violations, takeovers, _ = holder_violations(created_twice)
    assert len(violations) == 1 and takeovers == 0
    # negative controls: one after the other; another key; a takeover of a dead or silent holder
    assert holder_violations([created_twice[0], _line("lock_released", nonce="a"), created_twice[1]])[0] == []
    assert holder_violations([created_twice[0], _line("lock_acquired", key="k2", nonce="b", how="created")])[0] == []
    crashed = [created_twice[0], _line("lock_acquired", nonce="b", how="reclaimed"),
               _line("lock_write_lost", nonce="a"), _line("lock_released", nonce="b"),
               _line("lock_acquired", nonce="c", how="created")]
    violations, takeovers, abnormal = holder_violations(crashed)
    assert violations == [] and takeovers == 1 and abnormal == {"a"}
    # a crashed holder that nobody took over still holds the key: a creator after it is a violation
    assert len(holder_violations([created_twice[0], _line("lock_acquired", nonce="c", how="created")])[0]) == 1


def test_the_merge_bound_counts_settle_windows_and_abnormal_holdings():
    burst = [_line("lock_acquired", nonce="a", how="created", t="2025-01-21T00:00:00.000Z"),
             _line("coalesced", nonce=None, t="2025-01-21T00:00:00.950Z"),
             _line("lock_released", nonce="a", t="2025-01-21T00:00:01.000Z")]
    assert merge_bound(burst, 0.3, 0) == (2 + 3, 1)  # 0.95 s of events, 0.3 s windows: 5 rounds at most
    assert merge_bound(burst, 0.3, 2) == (7, 1)
    taken_over = burst[:2] + [_line("lock_acquired", nonce="b", how="reclaimed", t="2025-01-21T00:00:00.950Z")]
    assert merge_bound(taken_over, 0.3, 0) == (6, 1)
    # a MERGE per file (the old behaviour) of a 40-file burst in one second breaks it
    per_file = [_line("coalesced", nonce=None, t=f"2025-01-21T00:00:00.{i * 25:03d}Z") for i in range(40)]
    assert merge_bound(per_file, 0.3, 0)[0] < 40
