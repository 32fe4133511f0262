"""Two gaps the emulator tests left: -history and decimal files end to end beside live american
ones (one key, one table), and the shipped adaptive settle with count() on the Firestore emulator."""

from __future__ import annotations

import uuid
from collections import Counter
from datetime import date, timedelta

import pytest

from oddsbatch import holder, synth
from oddsbatch.config import Settings
from oddsbatch.pending import PendingWork
from oddsbatch.tables import table_for_endpoint

from .test_end_to_end import (comparable, expected_rows, log_offsets, merge_jobs, settle_merge_bound,
                              table_rows, upload_all)

pytestmark = pytest.mark.integration


def test_history_decimal_and_live_american_files_of_one_date_share_key_and_table(stack):
    day = "2025-06-02"
    live = list(synth.synthesize_day(date.fromisoformat(day), games=2, snapshots=2, seed=31))
    history = list(synth.synthesize_day(date.fromisoformat(day), games=2, snapshots=2, seed=32,
                                        price_format="decimal", historical=True))
    assert all("-history/" in n for n, _ in history) and not any("-history/" in n for n, _ in live)
    before = {t: merge_jobs(stack, t) for t in ("odds_api_game_lines", "odds_api_player_props")}
    offsets = log_offsets(stack)
    generations = upload_all(stack, live + history)
    stack.wait_idle(expected_events=len(live) + len(history))
    for endpoint in ("game-lines", "player-props"):
        spec = table_for_endpoint(endpoint)
        rows = table_rows(stack, endpoint, day)
        files = [f for f in live + history if f[0].startswith(f"odds-api/{endpoint}")]
        assert Counter(comparable(r, spec) for r in rows) == expected_rows(files, generations, endpoint)
        from_history = [r for r in rows if "-history/" in r["source_object"]]
        assert from_history and {r["price_format"] for r in from_history} == {"decimal"}
        assert {r["snapshot_source"] for r in from_history} == {"wrapper"}
        assert {r["price_format"] for r in rows if "-history/" not in r["source_object"]} == {"american"}
        # one queue (the date's key) for live and history; live events take the date's lock, -history/
        # ones the endpoint's backfill lock (backfill.py): each lock's burst is one MERGE (two when
        # files kept arriving), whichever holder has the date's lock merges the history markers too
        bound, keys = settle_merge_bound(stack, endpoint, offsets[endpoint])
        assert keys == 2 and len(merge_jobs(stack, spec.name) - before[spec.name]) <= bound, bound


QUEUES: list[PendingWork] = []  # the settle tests' queues, emptied after each test


class SettleClock:
    """The settle's clock in these tests: time moves only when the settle sleeps, and the files
    due by then land (on the emulator) during that sleep. What the settle decides then depends on
    when the files arrive and on what count() answers, not on how fast a loaded machine runs the
    queries. The cap in wall time when count queries are slow is a unit test:
    tests/unit/test_batch.py::test_settle_cap_is_wall_time_when_count_queries_are_slow."""

    def __init__(self, pending: PendingWork, prefix: str, arrivals: list[float]):
        self.pending, self.prefix, self.arrivals = pending, prefix, list(arrivals)
        self.now, self.landed = 0.0, []

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds
        while self.arrivals and self.arrivals[0] <= self.now + 1e-9:
            self.landed.append(self.arrivals.pop(0))
            n = len(self.landed)
            self.pending.add("b", f"odds-api/game-lines/2025-06-03/{self.prefix}{n}.json", n)


def _settler(stack, key, monkeypatch, prefix: str = "f", arrivals: tuple = ()):
    settings = Settings.from_env("game-lines", stack.env)
    assert (settings.settle_seconds, settings.settle_quiet_seconds) == (5.0, 0.5)  # the shipped defaults
    pending = PendingWork(stack.firestore(), settings.pending_collection, key, timedelta(days=1))
    QUEUES.append(pending)
    clock = SettleClock(pending, prefix, arrivals)
    monkeypatch.setattr(holder, "time", clock)
    settler = holder.BatchHolder(settings, key, date(2025, 6, 3), lock=None, pending=pending, db=None,
                                 sleep=clock.sleep)
    return settler, pending, clock


@pytest.fixture
def shipped_settle(stack, monkeypatch):
    """The functions' shipped settle (the stack runs with a short one): 5 s cap, 0.5 s quiet. The
    markers these tests write name no real object: they are removed after each test, or every
    later wait_idle of the session would wait for them."""
    for name in ("ODDSBATCH_SETTLE_SECONDS", "ODDSBATCH_SETTLE_QUIET_SECONDS"):
        monkeypatch.delitem(stack.env, name, raising=False)
    yield stack
    while QUEUES:
        pending = QUEUES.pop()
        pending.remove(pending.list())
        assert not pending.has_any(), "settle markers left behind"


def test_count_follows_the_markers_on_the_emulator(shipped_settle, monkeypatch):
    key = f"game-lines_settle-{uuid.uuid4().hex[:6]}"
    _, pending, _ = _settler(shipped_settle, key, monkeypatch)
    for i in range(7):
        pending.add("b", f"odds-api/game-lines/2025-06-03/f{i}.json", i + 1)
    pending.add("b", "odds-api/game-lines/2025-06-03/f0.json", 1)  # idempotent: the same marker
    assert pending.count() == 7
    pending.remove(pending.list(limit=3))
    assert pending.count() == 4 and len(pending.list()) == 4


def test_the_shipped_settle_ends_after_the_quiet_period_once_the_burst_landed(shipped_settle, monkeypatch):
    settler, pending, _ = _settler(shipped_settle, f"game-lines_settle-{uuid.uuid4().hex[:6]}", monkeypatch)
    for i in range(14):
        pending.add("b", f"odds-api/game-lines/2025-06-03/f{i}.json", i + 1)
    assert settler.settle() == 0.5  # the burst landed before: the quiet period alone, not the cap
    assert pending.count() == 14


def test_the_shipped_settle_waits_while_files_trickle_in_and_is_capped(shipped_settle, monkeypatch):
    key = f"game-lines_settle-{uuid.uuid4().hex[:6]}"
    trickle = [round(0.3 * i, 1) for i in range(1, 7)]  # a new file every 0.3 s for 2 s
    settler, pending, clock = _settler(shipped_settle, key, monkeypatch, "slow", trickle)
    pending.add("b", "odds-api/game-lines/2025-06-03/slow0.json", 100)
    waited = settler.settle()
    assert clock.landed == trickle and pending.count() == 1 + len(trickle)  # it waited every file out
    assert waited == pytest.approx(trickle[-1] + 0.5, abs=1e-3), waited  # then 0.5 s quiet
    flood = [round(0.2 * i, 1) for i in range(1, 150)]  # a file every 0.2 s for 30 s: never quiet
    settler, pending, clock = _settler(shipped_settle, key, monkeypatch, "flood", flood)
    waited = settler.settle()
    assert waited == 5.0, waited  # the 5 s cap ended the wait
    assert clock.arrivals and clock.landed == flood[:len(clock.landed)] and clock.landed[-1] >= 4.8
