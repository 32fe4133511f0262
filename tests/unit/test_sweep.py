"""The sweep's pure parts: how the handler tells a sweep event, which locks it adopts."""

import json
from datetime import timedelta

import pytest
from functions_framework import create_app

from oddsbatch import batch, sweep
from oddsbatch.lock import BatchLock

from .firestore_fake import FakeFirestore
from .test_handler import ROOT, post

SWEEP_HEADERS = {"ce-id": "sweep-1", "ce-specversion": "1.0", "ce-type": "google.cloud.pubsub.topic.v1.messagePublished",
                 "ce-source": "//pubsub.googleapis.com/projects/p/topics/oddsbatch-sweep",
                 "content-type": "application/json"}
SWEEP_BODY = json.dumps({"message": {"data": "c3dlZXA=", "messageId": "1"}, "subscription": "projects/p/subscriptions/s"})


@pytest.fixture
def client(monkeypatch):
    monkeypatch.setenv("ODDSBATCH_PROJECT", "p")
    return create_app("game_lines", str(ROOT / "functions" / "game_lines" / "main.py"), "cloudevent").test_client()


def test_a_pubsub_event_is_a_sweep_of_the_functions_own_endpoint(client, monkeypatch):
    seen = []
    monkeypatch.setattr(sweep, "run_sweep", lambda settings: seen.append(settings.endpoint) or "sweep_idle")
    monkeypatch.setattr(batch, "handle_event", lambda *a: pytest.fail("a sweep event reached the object batch"))
    assert client.post("/", headers=SWEEP_HEADERS, data=SWEEP_BODY).status_code == 200
    assert seen == ["game-lines"]


def test_an_object_event_is_never_a_sweep(client, monkeypatch):
    monkeypatch.setattr(sweep, "run_sweep", lambda settings: pytest.fail("an object event started a sweep"))
    monkeypatch.setattr(batch, "handle_event", lambda settings, event: "coalesced")
    assert post(client, "odds-api/game-lines/2025-01-21/x.json").status_code == 200


def test_a_failed_sweep_answers_200_and_logs(monkeypatch, capsys):
    def boom(self):
        raise RuntimeError("firestore down")

    monkeypatch.setattr(sweep.Sweep, "__init__", lambda self, settings: None)
    monkeypatch.setattr(sweep.Sweep, "run", boom)
    from oddsbatch.config import Settings

    assert sweep.run_sweep(Settings.from_env("game-lines", {"ODDSBATCH_PROJECT": "p"})) == "sweep_failed"
    assert '"sweep_failed"' in capsys.readouterr().out


def _locks(db):
    coll = db.collection("locks")
    holder = BatchLock(coll, "game-lines_2025-01-21", "evt-1", lease=timedelta(seconds=600), ttl=timedelta(days=7),
                       heartbeat=timedelta(seconds=8), beat_in_background=False)
    assert holder.acquire()
    taker = sweep.SweepLock(coll, "game-lines_2025-01-21", "sweep-x", lease=timedelta(seconds=600),
                            ttl=timedelta(days=7), heartbeat=timedelta(seconds=8), beat_in_background=False)
    return holder, taker


def test_a_live_holder_is_left_alone():
    holder, taker = _locks(FakeFirestore())
    assert not taker.acquire()  # written just now: alive, its lease runs


def test_a_silent_holder_is_adopted_and_learns_it_at_its_fence(monkeypatch):
    from freezegun import freeze_time

    db = FakeFirestore()
    with freeze_time("2025-01-21 12:00:00") as clock:
        holder, taker = _locks(db)
        clock.tick(9)  # no heartbeat for more than a period: its process is gone
        assert taker.acquire() and taker.how == "adopted"
        from oddsbatch.lock import LockLost

        with pytest.raises(LockLost):
            holder.renew()  # were it only slow: it stops before its MERGE


def test_a_plain_batch_lock_would_not_adopt_it():
    from freezegun import freeze_time

    db = FakeFirestore()
    with freeze_time("2025-01-21 12:00:00") as clock:
        holder, _ = _locks(db)
        clock.tick(9)
        other = BatchLock(db.collection("locks"), "game-lines_2025-01-21", "evt-2", lease=timedelta(seconds=600),
                          ttl=timedelta(days=7), beat_in_background=False)
        assert not other.acquire()  # negative control: the takeover is the sweep's own rule


def test_endpoint_range_holds_its_keys_only():
    low, high = sweep._endpoint_range("game-lines")
    assert low <= "game-lines_2025-01-21" < high
    assert not (low <= "game-lines-history_2025-01-21" < high)
    assert not (low <= "player-props_2025-01-21" < high)


def test_fingerprint_changes_with_any_object_or_generation():
    a = sweep.fingerprint([("x.json", 1), ("y.json", 2)])
    assert a == sweep.fingerprint([("y.json", 2), ("x.json", 1)])
    assert a != sweep.fingerprint([("x.json", 1), ("y.json", 3)])
    assert a != sweep.fingerprint([("x.json", 1)])
