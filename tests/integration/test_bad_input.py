"""The bad-input matrix on the real stack: every bad file is quarantined with its reason,
acknowledged with 2xx (no retry storm), and never costs a good file of its batch."""

from __future__ import annotations

import json
from collections import Counter
from datetime import date

import pytest

from oddsbatch import synth
from oddsbatch.tables import table_for_endpoint

from .test_end_to_end import comparable, expected_rows, table_rows, upload_all

pytestmark = pytest.mark.integration

DAY = "2025-05-01"
EVENT = "0123456789abcdef0123456789abcdef"
PREFIX = f"odds-api/player-props/{DAY}/{EVENT}-BOSLAL"
HTML = b"<!DOCTYPE html><html><head><title>502 Bad Gateway</title></head><body>nginx</body></html>"

# object name -> (bytes, the reason must contain this)
BAD_FILES = {
    f"{PREFIX}/20250501_180000-snap-1800.json": (b'{"id": "0123456789abcdef01', "JSON"),
    f"{PREFIX}/20250501_180500-snap-1805.json": (b"{}", "id"),
    f"{PREFIX}/20250501_181000-snap-1810.json": (b"", "empty"),
    f"{PREFIX}/20250501_181500-snap-1815.json": (HTML, "HTML"),
    f"{PREFIX}/20250501_182000-snap-1820.json": (b'[1, 2, 3]', "event"),
    f"{PREFIX}/20250501_182500-snap-1825.json": (
        json.dumps({"id": "ffffffffffffffffffffffffffffffff", "sport_key": "basketball_nba",
                    "commence_time": "2025-05-01T23:30:00Z", "home_team": "Los Angeles Lakers",
                    "away_team": "Boston Celtics", "bookmakers": []}).encode(), "ffffffffffffffffffffffffffffffff"),
    f"{PREFIX}/20250501_183000-snap-1830.json": (b"x" * (50 * 1024 * 1024), "exceeds"),
    f"odds-api/player-props/{DAY}/notes.txt": (b"not a snapshot", "outside the layout"),
    f"odds-api/player-props/{DAY}/{EVENT}-BOSLAL/deeper/x.json": (b"{}", "outside the layout"),
    "odds-api/player-props/2025-02-30/x.json": (b"{}", "impossible game date"),
    "odds-api/player-props/2025-13-01/x.json": (b"{}", "impossible game date"),
}


def unknown_market_file() -> tuple[str, bytes]:
    """An unknown market is data, not an error: it must land, not be quarantined."""
    payload = {"id": EVENT, "sport_key": "basketball_nba", "commence_time": "2025-05-01T23:30:00Z",
               "home_team": "Los Angeles Lakers", "away_team": "Boston Celtics", "bookmakers": [
                   {"key": "draftkings", "title": "DraftKings", "markets": [
                       {"key": "player_made_up_stat", "last_update": "2025-05-01T18:40:00Z", "outcomes": [
                           {"name": "Over", "description": "Jayson Tatum", "price": -115, "point": 3.5},
                           {"name": "Under", "description": "Jayson Tatum", "price": -105, "point": 3.5}]}]}]}
    return f"{PREFIX}/20250501_184000-snap-1840.json", json.dumps(payload).encode()


def test_every_bad_file_is_quarantined_and_the_good_ones_merge(stack):
    good = [f for f in synth.synthesize_day(date.fromisoformat(DAY), games=2, snapshots=2, seed=4)
            if f[0].startswith("odds-api/player-props/")]
    good.append(unknown_market_file())
    bad = [(name, data) for name, (data, _) in BAD_FILES.items()]
    generations = upload_all(stack, good + bad)
    stack.wait_idle(expected_events=len(good) + len(bad), timeout=180)

    spec = table_for_endpoint("player-props")
    got = Counter(comparable(r, spec) for r in table_rows(stack, "player-props", DAY))
    assert got == expected_rows(good, generations, "player-props")
    assert any(r["market_key"] == "player_made_up_stat" for r in table_rows(stack, "player-props", DAY))

    bucket = stack.storage().bucket(stack.bucket)
    log = stack.log_text("player_props")
    for name, (data, reason_part) in BAD_FILES.items():
        copy = bucket.get_blob(f"quarantine/{name}")
        assert copy is not None, f"{name} was not quarantined"
        assert copy.size == len(data)
        reason = copy.metadata["oddsbatch-reason"]
        assert reason_part.lower() in reason.lower(), (name, reason)
        assert f'"object": "{name}"' in log and '"message": "quarantined"' in log
        assert bucket.get_blob(name) is not None  # the original stays where it was

    # acknowledged with 2xx at the first attempt: no retry storm for bad input
    deliveries = [json.loads(line) for line in stack.log_text("bridge").splitlines()
                  if line.startswith("{") and '"event": "delivery"' in line]
    for name in BAD_FILES:
        attempts = [d for d in deliveries if d.get("object") == name]
        assert attempts and all(d["ok"] and d["attempt"] == 1 for d in attempts), (name, attempts)
