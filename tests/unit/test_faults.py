"""The fault hooks' switches (faults.py): what the chaos suite's environment means."""

from oddsbatch import faults


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
