"""The fault hooks (faults.py): the pause a test resumes, and what the chaos suite's crash switches mean."""

from __future__ import annotations

import threading

from oddsbatch import faults

from tests.waiting import GUARD_SECONDS, wait_for


def test_the_first_arrival_pauses_until_resumed_and_later_arrivals_go_on(tmp_path, monkeypatch):
    monkeypatch.setenv("ODDSBATCH_FAULT_PAUSE_AT", "after_load")
    monkeypatch.setenv("ODDSBATCH_FAULT_PAUSE_DIR", str(tmp_path))
    passed = threading.Event()

    def first():
        faults.point("after_load")
        passed.set()

    arrival = threading.Thread(target=first, daemon=True)
    arrival.start()
    wait_for((tmp_path / "after_load.paused").exists, "the first arrival at after_load")
    assert not passed.is_set() and arrival.is_alive()  # held there: nothing resumed it
    faults.point("before_release")  # a point that is not armed goes on
    faults.point("after_load")  # the second arrival goes on while the first is held
    assert not passed.is_set()
    (tmp_path / "after_load.resume").touch()
    assert passed.wait(GUARD_SECONDS), "the paused arrival never went on"
    arrival.join(GUARD_SECONDS)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["after_load.paused", "after_load.resume"]


def test_without_a_pause_dir_nothing_pauses(monkeypatch):
    monkeypatch.setenv("ODDSBATCH_FAULT_PAUSE_AT", "after_load")
    arrival = threading.Thread(target=faults.point, args=("after_load",), daemon=True)
    arrival.start()
    arrival.join(GUARD_SECONDS)
    assert not arrival.is_alive(), "paused with no directory to be resumed from"


def test_a_point_of_its_own_rate_overrides_the_bare_rate(monkeypatch):
    monkeypatch.setenv("ODDSBATCH_FAULT_CRASH_RATE", "0.15,during_merge=0.3")
    assert faults.crash_rate("during_merge") == 0.3
    assert faults.crash_rate("after_load") == 0.15


def test_without_a_rate_an_armed_point_always_crashes(monkeypatch):
    monkeypatch.delenv("ODDSBATCH_FAULT_CRASH_RATE", raising=False)
    assert faults.crash_rate("after_merge") == 1.0
    monkeypatch.setenv("ODDSBATCH_FAULT_CRASH_RATE", "after_merge=0.5")
    assert faults.crash_rate("after_merge") == 0.5 and faults.crash_rate("after_load") == 1.0


def test_the_crash_points_include_the_merge_in_flight():
    assert "during_merge" in faults.CRASH_POINTS
