"""Unit tests of oddsbatch.synth: deterministic, realistic days in the scraper's layout."""

from __future__ import annotations

import json
import re
import sys
from collections import Counter, defaultdict
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
try:
    import oddsbatch  # noqa: F401
except ImportError:  # not pip-installed: use the source tree
    sys.path.insert(0, str(ROOT / "shared"))

from oddsbatch import cli, teams  # noqa: E402
from oddsbatch.paths import parse_object_name  # noqa: E402
from oddsbatch.synth import synthesize_day  # noqa: E402
from oddsbatch.transform import rows_for_object, us_eastern_utc_offset  # noqa: E402

UTC = timezone.utc
DAY = date(2025, 1, 20)


def when(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


@pytest.fixture(scope="module")
def day():
    return list(synthesize_day(DAY, 7, 3, seed=42))


def test_deterministic_for_a_seed(day):
    assert list(synthesize_day(DAY, 7, 3, seed=42)) == day
    other = list(synthesize_day(DAY, 7, 3, seed=43))
    assert [n for n, _ in other] != [n for n, _ in day]
    decimal = list(synthesize_day(DAY, 7, 3, seed=42, price_format="decimal"))
    assert [n for n, _ in decimal] == [n for n, _ in day]  # same games and times, other prices
    assert [d for _, d in decimal] != [d for _, d in day]


def test_counts_and_unique_names(day):
    names = [n for n, _ in day]
    assert len(names) == 7 * 3 * 2 == len(set(names))
    assert Counter(parse_object_name(n).endpoint for n in names) == {"game-lines": 21, "player-props": 21}


def test_layout_and_payload_agree(day):
    for name, data in day:
        ref = parse_object_name(name)
        assert ref.game_date == DAY and not ref.historical
        assert re.fullmatch(r"[0-9a-f]{32}", ref.event_id)
        assert ref.name_time is not None and ref.snapshot_tag == f"snap-{ref.name_time:%H%M}"
        event = json.loads(data)
        assert event["id"] == ref.event_id
        assert teams.abbreviation(event["away_team"]) == ref.away_abbr
        assert teams.abbreviation(event["home_team"]) == ref.home_abbr
        assert event["sport_key"] == "basketball_nba"


def test_teams_paired_without_repeats(day):
    games = {}
    for _, data in day:
        event = json.loads(data)
        games[event["id"]] = (event["away_team"], event["home_team"])
    assert len(games) == 7
    played = [t for pair in games.values() for t in pair]
    assert len(played) == len(set(played)) == 14
    assert set(played) <= set(teams.TEAMS)


def test_tip_offs_in_the_eastern_evening(day):
    for _, data in day:
        commence = when(json.loads(data)["commence_time"])
        local = commence + us_eastern_utc_offset(commence)
        assert local.date() == DAY
        assert 19 <= local.hour <= 22
    # January: EST, so a 19:00+ tip-off is 00:00+ UTC on the next day
    assert all(when(json.loads(d)["commence_time"]).date() == date(2025, 1, 21) for _, d in day)


def test_snapshots_spread_before_tip_off(day):
    times = defaultdict(set)
    for name, data in day:
        ref = parse_object_name(name)
        commence = when(json.loads(data)["commence_time"])
        assert timedelta(minutes=15) <= commence - ref.name_time <= timedelta(hours=10, minutes=2)
        times[(ref.event_id, ref.endpoint)].add(ref.name_time)
    for stamps in times.values():
        assert len(stamps) == 3
        assert max(stamps) - min(stamps) >= timedelta(hours=8)


def test_game_lines_markets(day):
    for name, data in day:
        if parse_object_name(name).endpoint != "game-lines":
            continue
        event = json.loads(data)
        books = {b["key"]: b for b in event["bookmakers"]}
        assert len(books) >= 5
        assert {"draftkings", "fanduel", "betmgm", "williamhill_us", "betrivers"} <= set(books)
        for book in books.values():
            markets = {m["key"]: m["outcomes"] for m in book["markets"]}
            assert {"h2h", "spreads", "totals"} <= set(markets)
            assert {o["name"] for o in markets["h2h"]} == {event["home_team"], event["away_team"]}
            assert all("point" not in o for o in markets["h2h"])
            spread_points = [o["point"] for o in markets["spreads"]]
            assert len(spread_points) == 2 and spread_points[0] == -spread_points[1]
            assert [o["name"] for o in markets["totals"]] == ["Over", "Under"]
            assert markets["totals"][0]["point"] == markets["totals"][1]["point"]
            assert 200 <= markets["totals"][0]["point"] <= 250
            for outcomes in markets.values():
                for o in outcomes:
                    assert type(o["price"]) is int and abs(o["price"]) >= 100


def test_player_props_markets(day):
    props = [(n, json.loads(d)) for n, d in day if parse_object_name(n).endpoint == "player-props"]
    for _, event in props:
        assert len(event["bookmakers"]) >= 5
        dk = {m["key"]: m["outcomes"] for m in next(b for b in event["bookmakers"] if b["key"] == "draftkings")["markets"]}
        for key in ("player_points", "player_rebounds", "player_assists", "player_threes",
                    "player_points_rebounds_assists", "player_points_alternate", "player_double_double"):
            assert key in dk, key
        players = {o["description"] for o in dk["player_points"]}
        assert 12 <= len(players) <= 16  # 8 a team; a book may not have posted a few yet
        sides = Counter((o["description"], o["point"]) for o in dk["player_points"])
        assert set(sides.values()) == {2}  # Over and Under for every line
        lines = defaultdict(set)
        for o in dk["player_points_alternate"]:
            lines[o["description"]].add(o["point"])
        assert max(len(v) for v in lines.values()) >= 3  # several lines a player
        for o in dk["player_double_double"]:
            assert o["name"] in ("Yes", "No") and "point" not in o
        for o in dk["player_points"]:
            assert o["point"] % 1 == 0.5
            assert -200 <= o["price"] <= 200 and abs(o["price"]) >= 100


def test_rows_per_file_and_every_file_transforms(day):
    counts = defaultdict(list)
    for name, data in day:
        rows = rows_for_object(name, data, generation=3)
        counts[parse_object_name(name).endpoint].append(len(rows))
        assert {r["price_format"] for r in rows} == {"american"}
        assert {r["snapshot_source"] for r in rows} == {"object_name"}
        assert all(r["minutes_before_tipoff"] >= 15 for r in rows)
    assert all(40 <= n <= 120 for n in counts["game-lines"])
    assert all(300 <= n <= 1500 for n in counts["player-props"])


def test_decimal_prices():
    for name, data in synthesize_day(DAY, 2, 1, seed=1, price_format="decimal"):
        prices = [o["price"] for b in json.loads(data)["bookmakers"] for m in b["markets"] for o in m["outcomes"]]
        assert all(type(p) is float and 1.01 <= p < 100 for p in prices)
        assert any(p < 2 for p in prices) and any(p > 2 for p in prices)
        rows = rows_for_object(name, data)
        assert {r["price_format"] for r in rows} == {"decimal"}


def test_historical_days():
    files = list(synthesize_day(date(2024, 1, 24), 2, 3, seed=9, historical=True))
    assert len(files) == 12
    for name, data in files:
        ref = parse_object_name(name)
        assert ref.historical and name.split("/")[1].endswith("-history")
        payload = json.loads(data)
        assert set(payload) == {"timestamp", "previous_timestamp", "next_timestamp", "data"}
        stamp = when(payload["timestamp"])
        assert ref.name_time.minute % 5 == 0 and ref.name_time.second == 0
        assert timedelta(0) < ref.name_time - stamp <= timedelta(minutes=5)
        assert when(payload["previous_timestamp"]) < stamp < when(payload["next_timestamp"])
        assert payload["data"]["id"] == ref.event_id
        rows = rows_for_object(name, data)
        assert {r["snapshot_timestamp"] for r in rows} == {payload["timestamp"]}
        assert {r["snapshot_source"] for r in rows} == {"wrapper"}


def test_daylight_saving_day_and_many_snapshots():
    files = list(synthesize_day(date(2025, 3, 9), 1, 200, seed=3))
    names = [n for n, _ in files]
    assert len(names) == 400 == len(set(names))
    commence = when(json.loads(files[0][1])["commence_time"])
    local = commence + us_eastern_utc_offset(commence)
    assert us_eastern_utc_offset(commence) == timedelta(hours=-4)  # DST began that morning
    assert 19 <= local.hour <= 22 and local.date() == date(2025, 3, 9)


@pytest.mark.parametrize("kwargs", [dict(games=0), dict(games=16), dict(snapshots=0), dict(price_format="fraction")])
def test_bad_arguments(kwargs):
    args = dict(day=DAY, games=2, snapshots=1, seed=0) | kwargs
    with pytest.raises(ValueError):
        list(synthesize_day(**args))


def test_cmd_synth_writes_the_layout(tmp_path, capsys):
    out = tmp_path / "day"
    assert cli.main(["synth", "--date", "2025-01-20", "--games", "2", "--snapshots", "2", "--seed", "4",
                     "--out", str(out)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 1
    expected = list(synthesize_day(DAY, 2, 2, seed=4))
    written = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert written == sorted(n for n, _ in expected)
    assert all((out / n).read_bytes() == d for n, d in expected)
    assert "8 files" in lines[0] and f"{sum(len(d) for _, d in expected)} bytes" in lines[0]


def test_cmd_synth_bad_arguments_exit_2(tmp_path, capsys):
    assert cli.main(["synth", "--date", "2025-02-30", "--out", str(tmp_path)]) == 2
    assert len(capsys.readouterr().err.splitlines()) == 1
    assert cli.main(["synth", "--date", "2025-01-20", "--games", "16", "--out", str(tmp_path)]) == 2
    assert len(capsys.readouterr().err.splitlines()) == 1
