"""`oddsbatch status` against the real stack: locks, pending work, batches, quarantine."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

import pytest

from oddsbatch import cli, synth
from oddsbatch.config import Settings
from oddsbatch.status import pipeline_status

from .test_end_to_end import upload_all

pytestmark = pytest.mark.integration


def test_status_shows_locks_pending_batches_and_quarantine(stack, capsys):
    day = "2025-06-01"
    files = list(synth.synthesize_day(date.fromisoformat(day), games=1, snapshots=1, seed=6))
    bad = (f"odds-api/game-lines/{day}/broken.json", b"<html>oops</html>")
    upload_all(stack, files + [bad])
    stack.wait_idle(expected_events=len(files) + 1)

    db = stack.firestore()
    now = datetime.now(timezone.utc)
    stale_key, pending_key = "game-lines_2025-06-02", "player-props_2025-06-03"
    db.collection("oddsbatch_locks").document(stale_key).set(
        {"owner": "dead", "acquired_at": now - timedelta(hours=1), "lease_until": now - timedelta(minutes=5)})
    db.collection("oddsbatch_pending").document(f"{pending_key}~x").set({"batch_key": pending_key, "object": "o"})
    try:
        status = pipeline_status(Settings.from_env("game-lines"), stack.bucket)
        assert [(lock["key"], lock["stale"]) for lock in status["locks"]] == [(stale_key, True)]
        assert status["pending"] == {pending_key: 1}
        recent = {run["key"] for run in status["runs"]}
        assert {f"game-lines_{day}", f"player-props_{day}"} <= recent
        assert any(q["object"].endswith(bad[0]) and "HTML" in q["reason"] for q in status["quarantined"])

        assert cli.main(["status", "--state-dir", str(stack.state_dir)]) == 0
        out = capsys.readouterr().out
        assert "game_lines" in out and "alive" in out  # the processes
        assert "locks held: 1" in out and "STALE" in out and f"{pending_key:<28} 1" in out
        assert "last batches:" in out and "quarantined files:" in out
    finally:
        db.collection("oddsbatch_locks").document(stale_key).delete()
        db.collection("oddsbatch_pending").document(f"{pending_key}~x").delete()
