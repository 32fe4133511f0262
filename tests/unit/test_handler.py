"""The CloudEvent entry points: ignore path, retry contract, decision logging.

Driven like functions-framework's own tests: create_app(...).test_client() with binary
CloudEvents, no server.
"""

import json
import subprocess
import sys
from pathlib import Path

import pytest
from functions_framework import create_app

from oddsbatch import batch
from oddsbatch.errors import TerminalError, TransientError

ROOT = Path(__file__).resolve().parents[2]
EVENT_TYPE = "google.cloud.storage.object.v1.finalized"


def post(client, name, event_id="evt-1", event_type=EVENT_TYPE):
    headers = {
        "ce-id": event_id, "ce-specversion": "1.0", "ce-type": event_type,
        "ce-source": "//storage.googleapis.com/projects/_/buckets/landing", "ce-subject": f"objects/{name}",
        "content-type": "application/json",
    }
    body = {"bucket": "landing", "name": name, "generation": "1700000000000001",
            "timeCreated": "2025-01-20T18:00:00.000Z", "size": "10"}
    return client.post("/", headers=headers, data=json.dumps(body))


@pytest.fixture
def app_for(monkeypatch):
    monkeypatch.setenv("ODDSBATCH_PROJECT", "p")

    def make(function):
        return create_app(function, str(ROOT / "functions" / function / "main.py"), "cloudevent").test_client()

    return make


@pytest.mark.parametrize("function,foreign", [
    ("game_lines", "odds-api/player-props/2025-01-21/a-BOSLAL/20250120_180000-snap-1800.json"),
    ("player_props", "odds-api/game-lines-history/2025-01-21/x.json"),
    ("game_lines", "quarantine/odds-api/game-lines/2025-01-21/x.json"),
    ("player_props", "scraper/logs.txt"),
])
def test_foreign_objects_are_acknowledged_without_a_batch(app_for, monkeypatch, function, foreign):
    monkeypatch.setattr(batch, "handle_event", lambda *a: pytest.fail("a foreign object reached the batch"))
    assert post(app_for(function), foreign).status_code == 200


def test_own_object_goes_to_the_batch_and_the_decision_is_logged(app_for, monkeypatch, capsys):
    seen = []
    monkeypatch.setattr(batch, "handle_event", lambda settings, event: seen.append(event) or "coalesced")
    name = "odds-api/player-props/2025-01-21/abc-BOSLAL/20250120_180000-snap-1800.json"
    assert post(app_for("player_props"), name, event_id="evt-7").status_code == 200
    assert seen[0].name == name and seen[0].generation == 1700000000000001 and seen[0].event_id == "evt-7"
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    done = [line for line in lines if line["message"] == "event_done"]
    assert done and done[0]["decision"] == "coalesced" and done[0]["endpoint"] == "player-props"


@pytest.mark.parametrize("error,status", [(TransientError("BigQuery 503"), 500), (TerminalError("bad schema"), 500)])
def test_errors_answer_5xx_so_eventarc_retries(app_for, monkeypatch, error, status):
    def fail(settings, event):
        raise error

    monkeypatch.setattr(batch, "handle_event", fail)
    name = "odds-api/game-lines/2025-01-21/abc-BOSLAL/20250120_180000-snap-1800.json"
    assert post(app_for("game_lines"), name).status_code == status


def test_events_from_another_bucket_are_ignored_when_a_landing_bucket_is_set(app_for, monkeypatch):
    monkeypatch.setenv("ODDSBATCH_BUCKET", "the-landing-bucket")
    monkeypatch.setattr(batch, "handle_event", lambda *a: pytest.fail("another bucket's object reached the batch"))
    name = "odds-api/game-lines/2025-01-21/abc-BOSLAL/20250120_180000-snap-1800.json"
    assert post(app_for("game_lines"), name).status_code == 200  # the test event says bucket "landing"


def test_other_event_types_are_ignored(app_for, monkeypatch):
    monkeypatch.setattr(batch, "handle_event", lambda *a: pytest.fail("a delete event reached the batch"))
    name = "odds-api/game-lines/2025-01-21/abc-BOSLAL/20250120_180000-snap-1800.json"
    assert post(app_for("game_lines"), name, event_type="google.cloud.storage.object.v1.deleted").status_code == 200


def test_ignore_path_imports_neither_bigquery_nor_firestore():
    script = f"""
import sys, json, runpy
sys.path.insert(0, {str(ROOT / 'shared')!r})
module = runpy.run_path({str(ROOT / 'functions' / 'game_lines' / 'main.py')!r})
from cloudevents.http import CloudEvent
event = CloudEvent({{"type": "{EVENT_TYPE}", "source": "//storage", "id": "1"}},
                   {{"bucket": "b", "name": "other/x.json", "generation": "1"}})
module["game_lines"](event)
print(json.dumps(sorted(m for m in sys.modules if m.startswith(("google.cloud.bigquery", "google.cloud.firestore")))))
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True,
                         env={"ODDSBATCH_PROJECT": "p", "PATH": "/usr/bin:/bin"}).stdout
    assert '"message": "ignored"' in out
    assert json.loads(out.strip().splitlines()[-1]) == []
