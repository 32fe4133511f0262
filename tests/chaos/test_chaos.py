"""Chaos: random days replayed through the real local stack while holders crash and the
bridge delivers events twice; the tables must equal what the files say. Nothing lost,
nothing duplicated, no lock or pending work left behind.

`make test` runs 3 seeds; `make chaos` (ODDSBATCH_CHAOS_SEEDS=20) the long mode.
Each run prints:
chaos: seed=<int> files=<int> events=<int> duplicates=<int> crashes=<int> merges=<int> lost=<int> duplicated=<int>
"""

from __future__ import annotations

import os
import random
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import date, timedelta

import pytest

from oddsbatch import synth
from oddsbatch.config import ENDPOINT_TABLES
from oddsbatch.local.stack import Stack
from oddsbatch.tables import table_for_endpoint
from tests.googlesql import analyze_emulator
from tests.integration.test_end_to_end import comparable, expected_rows, merge_jobs, table_rows

pytestmark = pytest.mark.integration

SEEDS = int(os.environ.get("ODDSBATCH_CHAOS_SEEDS", "3"))
# Holder points only: a crash kills every request of the instance, and a point that every
# event passes (before_marker) at this rate would crash the instance faster than it restarts.
CRASH_POINTS = "after_load,after_merge,before_release"


@pytest.fixture(scope="module")
def chaos_stack(tmp_path_factory):
    st = Stack(tmp_path_factory.mktemp("oddsbatch-chaos"), settle_seconds=0.3, extra_env={
        "ODDSBATCH_FAULT_CRASH_AT": CRASH_POINTS,
        "ODDSBATCH_FAULT_CRASH_RATE": "0.15",
        "ODDSBATCH_FAULT_SEED": "7",
    }, bridge_args=["--duplicate-rate", "0.3", "--seed", "11", "--max-attempts", "40", "--max-backoff", "2",
                    "--initial-backoff", "0.2"])
    st.start()
    try:
        yield st
    finally:
        st.stop()


def crashes(stack) -> int:
    return sum(stack.log_text(fn).count('"fault_crash"') for fn in ("game_lines", "player_props"))


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


def test_random_days_under_crashes_and_duplicate_deliveries(chaos_stack, googlesql):
    stack = chaos_stack
    totals = Counter()
    for seed in range(1, SEEDS + 1):
        files = plan(seed)
        before = {"bridge": stack.bridge_status(), "crashes": crashes(stack),
                  "merges": {t: merge_jobs(stack, t) for t in ENDPOINT_TABLES.values()}}
        generations = upload_with_jitter(stack, files, seed)
        stack.wait_idle(expected_events=len(files), timeout=600)
        after = stack.bridge_status()
        lost = duplicated = 0
        for day in sorted({name.split("/")[2] for name, _ in files}):
            day_files = [f for f in files if f"/{day}/" in f[0]]
            for endpoint in ENDPOINT_TABLES:
                spec = table_for_endpoint(endpoint)
                got = Counter(comparable(r, spec) for r in table_rows(stack, endpoint, day))
                want = expected_rows(day_files, generations, endpoint)
                lost += sum((want - got).values())
                duplicated += sum((got - want).values())
        run = {
            "files": len(files),
            "events": after["received"] - before["bridge"]["received"],
            "duplicates": after["duplicates"] - before["bridge"]["duplicates"],
            "crashes": crashes(stack) - before["crashes"],
            "merges": sum(len(merge_jobs(stack, t) - before["merges"][t]) for t in ENDPOINT_TABLES.values()),
        }
        print(f"\nchaos: seed={seed} files={run['files']} events={run['events']} duplicates={run['duplicates']} "
              f"crashes={run['crashes']} merges={run['merges']} lost={lost} duplicated={duplicated}")
        totals.update(run)
        assert (lost, duplicated) == (0, 0), f"seed {seed}"
        assert after["failed"] == before["bridge"]["failed"], "an event gave up: its retries ran out"
        db = stack.firestore()
        assert not list(db.collection("oddsbatch_locks").limit(1).stream()), "a lock was left behind"
        assert not list(db.collection("oddsbatch_pending").limit(1).stream()), "pending work was left behind"
    assert totals["crashes"] > 0 and totals["duplicates"] > 0, totals
    # Every statement the holders sent under chaos (retried MERGEs included) is valid GoogleSQL.
    seen = analyze_emulator(googlesql(stack.project, stack.dataset), stack.bigquery())
    assert seen.get("MERGE", 0) >= 2, seen
