"""Every interleaving of the real lock and holder code, within a preemption bound.

`make test` runs the bounded exploration below (a few minutes on 2 cores); `make prove`
(ODDSBATCH_PROVE=1) runs the same scenarios with every service call a branching point and a
larger bound. Each run prints one line:

    explore: scenario=... schedules=N (cut at a known state: P) two_merges_in_flight=K (...) failures=0 ...

Deliberately broken protocols (mutations of the real source) must be caught with a failing
schedule, printed: a marker written after the lock attempt, a release without the re-read.
BigQuery's fake follows the DML page (two insert-only MERGEs of one key both commit, the key
stored twice: fakes.py), so the "no row written twice" check fails whenever two MERGEs of one
key are in flight.
"""

from __future__ import annotations

import dataclasses
import os

import pytest

from oddsbatch import batch, fence, holder, lock, warehouse

from .scenarios import (SCENARIOS, blind_takeover, describe_failure, explore, marker_after_lock,
                        merge_without_record, mutated, record_without_settling, release_without_precondition,
                        release_without_reread, silent_heartbeat, backfill_release_without_reread)

PROVE = os.environ.get("ODDSBATCH_PROVE") == "1"
# scenario -> (preemption bound, every service call a branching point)
BOUNDS = {
    "duplicates": (1, True) if PROVE else (0, False),
    "twin": (3, True) if PROVE else (2, False),
    "crash": (2, True) if PROVE else (1, False),
    "lease": (1, True) if PROVE else (0, False),
    # two takers of one stale lock only race with a preemption between a read and a write: 1 is
    # the least bound that has them, and it costs minutes, so it runs in `make prove` only
    "takers": (1, True) if PROVE else None,
    # slow BigQuery (time passes freely while a holder waits): tens of thousands of schedules at
    # bound 0, so `make prove` only; make test runs its control and the same prefix unmutated
    "twin_slow": (0, True) if PROVE else None,
    "deadline": (2, True) if PROVE else (1, False),
    "crash2": (2, True) if PROVE else (1, False),
    "faults": (2, True) if PROVE else (1, False),
    "group": (2, True) if PROVE else (1, False),
    "group_live": (0, True) if PROVE else None,
}


def report(capsys, line: str) -> None:
    with capsys.disabled():
        print(f"\n{line}")


@pytest.mark.parametrize("name", [name for name in SCENARIOS if BOUNDS[name] is not None])
def test_every_schedule_merges_every_file_once(name, capsys):
    spec = SCENARIOS[name]
    bound, every_call = BOUNDS[name]
    out = explore(spec, bound, every_call=every_call)
    report(capsys, out.line(spec, bound))
    assert out.complete
    assert not out.failures, describe_failure(out.failures[0])
    if spec.layout:  # a group scenario met schedules where one MERGE covered both dates
        assert out.seen.get("multi_date_merge"), out.seen
    assert out.schedules > (100 if bound else 10)
    # never two MERGEs of the key in flight, whatever passed or died (fence.py)
    assert out.two_merges == 0, out.by_reason
    if spec.lease_pass or spec.crash or spec.deadline:  # the next holder met the previous one's MERGE
        assert out.seen.get("fence_waiting", 0) + out.seen.get("fence_burned", 0) > 0, out.seen
    if spec.deadline:
        assert out.seen.get("unfinished at the deadline", 0) > 0, out.seen
    if name == "twin":  # some schedule has the twin see its live holder's beat and coalesce
        assert out.seen.get("twin delivery coalesces", 0) > 0, out.seen
    if spec.crash:  # a crash at every step of either invocation, and at the answer
        points = {p for _, p in out.crash_points}
        for step in ("firestore:create locks", "firestore:query pending", "firestore:update locks",
                     "bigquery:MERGE job insert", "resume:wait merge", "resume:join heartbeat", "end:answers"):
            assert any(p.startswith(step) for p in points), (step, sorted(points))


SMALL = dataclasses.replace(SCENARIOS["duplicates"], name="control", files=2, deliveries=(0, 1))


def caught(spec, bound: int, capsys, what: str) -> str:
    out = explore(spec, bound, stop_at_first_failure=True)
    assert out.failures, f"{what}: no failing schedule found in {out.schedules} schedules"
    text = describe_failure(out.failures[0])
    report(capsys, f"explore: control={what} caught after {out.schedules} schedules\n{text}")
    return text


def test_a_marker_written_after_the_lock_attempt_is_caught(capsys):
    with mutated(batch, "handle_event", marker_after_lock):
        text = caught(SMALL, 1, capsys, "marker_after_lock_attempt")
    assert "not merged" in text or "markers left queued" in text


def test_a_backfill_release_without_the_reread_is_caught(capsys):
    from oddsbatch import backfill

    with mutated(backfill.BackfillHolder, "run", backfill_release_without_reread):
        text = caught(SCENARIOS["group"], BOUNDS["group"][0], capsys, "backfill_release_without_reread")
    assert "not merged" in text or "markers left queued" in text


def test_a_release_without_the_reread_is_caught(capsys):
    with mutated(holder.BatchHolder, "run", release_without_reread):
        text = caught(SMALL, 1, capsys, "release_without_reread")
    assert "not merged" in text or "markers left queued" in text


def test_the_unmutated_protocol_passes_the_controls_scenario(capsys):
    """The negative controls' own scenario and bound, on the real code: no failure."""
    out = explore(SMALL, 1)
    report(capsys, out.line(SMALL, 1))
    assert out.complete and not out.failures, out.failures and describe_failure(out.failures[0])


# -- the lock and the MERGE fence: each safeguard, removed, lets the explorer find a failing schedule --


def test_a_takeover_as_a_blind_write_is_caught(capsys):
    """Two takers of one stale lock both win when the takeover is not compare-and-set."""
    with mutated(lock.BatchLock, "acquire", blind_takeover):
        text = caught(SCENARIOS["takers"], 1, capsys, "blind_takeover")
    assert "two holders of the key at once" in text


def test_a_release_without_its_precondition_is_caught(capsys):
    """A holder whose lease passed deletes its taker's lock; the next create() makes two holders."""
    with mutated(lock.BatchLock, "release", release_without_precondition):
        text = caught(SCENARIOS["lease"], 0, capsys, "release_without_precondition")
    assert "two holders of the key at once" in text


def test_a_heartbeat_that_never_writes_is_caught(capsys):
    """A duplicate delivery of a live holder's event, BigQuery slow, finds the lock silent for a
    whole period and reclaims it from the live holder. The same number of schedules of the real
    code (the same search, unmutated) passes."""
    with mutated(lock.BatchLock, "beat", silent_heartbeat):
        out = explore(SCENARIOS["twin_slow"], 0, stop_at_first_failure=True, max_schedules=5000)
    assert out.failures, f"silent_heartbeat: no failing schedule found in {out.schedules} schedules"
    text = describe_failure(out.failures[0])
    report(capsys, f"explore: control=silent_heartbeat caught after {out.schedules} schedules\n{text}")
    assert "two holders of the key at once" in text and "(reclaimed)" in text
    real = explore(SCENARIOS["twin_slow"], 0, max_schedules=out.schedules)
    report(capsys, real.line(SCENARIOS["twin_slow"], 0))
    assert not real.failures, describe_failure(real.failures[0])
    assert real.seen.get("twin delivery coalesces", 0) > 0, real.seen


def test_a_taker_that_does_not_settle_the_recorded_merge_is_caught(capsys):
    """The retry of a holder that died during its MERGE merges the same files while that MERGE runs:
    both insert only, both commit (the DML page's rule), every row twice."""
    with mutated(fence.MergeFence, "record", record_without_settling):
        text = caught(SCENARIOS["crash"], BOUNDS["crash"][0], capsys, "record_without_settling")
    assert "written twice" in text


def test_a_deadline_release_without_the_record_is_caught(capsys):
    """The deadline path releases with the MERGE in flight; unrecorded, the next holder cannot wait
    for it and merges the same files beside it."""
    with mutated(warehouse.Warehouse, "merge", merge_without_record):
        text = caught(SCENARIOS["deadline"], BOUNDS["deadline"][0], capsys, "merge_without_record")
    assert "written twice" in text


def test_mutations_that_do_not_apply_are_refused():
    with pytest.raises(AssertionError):
        with mutated(holder.BatchHolder, "run", lambda source: source):
            pass
