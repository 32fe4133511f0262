"""Unit tests of oddsbatch.paths: the scraper's object layout."""

from __future__ import annotations

import sys
from datetime import date, datetime, timezone
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
try:
    import oddsbatch  # noqa: F401
except ImportError:  # not pip-installed: use the source tree
    sys.path.insert(0, str(ROOT / "shared"))

from oddsbatch.errors import BadInputError  # noqa: E402
from oddsbatch.paths import batch_key, endpoint_of, object_name, parse_object_name  # noqa: E402

UTC = timezone.utc
LONG = "odds-api/player-props/2025-10-21/bbde7751a0c4e1d2f3a4b5c6d7e8f901-HOUOKC/20251019_032435-snap-0324.json"


def test_long_layout():
    ref = parse_object_name(LONG)
    assert ref.name == LONG
    assert ref.endpoint == "player-props" and ref.historical is False
    assert ref.game_date == date(2025, 10, 21)
    assert ref.event_id == "bbde7751a0c4e1d2f3a4b5c6d7e8f901"
    assert (ref.away_abbr, ref.home_abbr) == ("HOU", "OKC")
    assert ref.name_time == datetime(2025, 10, 19, 3, 24, 35, tzinfo=UTC)
    assert ref.snapshot_tag == "snap-0324"
    assert ref.batch_key == "player-props_2025-10-21"


def test_short_layout():
    ref = parse_object_name("odds-api/game-lines/2024-01-24/20240125_035540-snap-0355.json")
    assert ref.endpoint == "game-lines" and ref.historical is False
    assert ref.game_date == date(2024, 1, 24)
    assert ref.event_id is None and ref.away_abbr is None and ref.home_abbr is None
    assert ref.name_time == datetime(2024, 1, 25, 3, 55, 40, tzinfo=UTC)
    assert ref.snapshot_tag == "snap-0355"


def test_short_layout_without_time():
    ref = parse_object_name("odds-api/game-lines/2024-01-24/latest.json")
    assert ref.name_time is None and ref.snapshot_tag is None and ref.event_id is None


@pytest.mark.parametrize("endpoint", ["game-lines", "player-props"])
def test_history_variants_share_the_batch_key(endpoint):
    live = parse_object_name(f"odds-api/{endpoint}/2024-01-24/abc123-ATLGSW/20240125_035540-snap-0355.json")
    hist = parse_object_name(f"odds-api/{endpoint}-history/2024-01-24/abc123-ATLGSW/20240125_035540-snap-0355.json")
    assert (live.historical, hist.historical) == (False, True)
    assert live.endpoint == hist.endpoint == endpoint
    assert live.batch_key == hist.batch_key == f"{endpoint}_2024-01-24"
    short = parse_object_name(f"odds-api/{endpoint}-history/2024-01-24/x.json")
    assert short.historical and short.endpoint == endpoint


def test_batch_key_accepts_date_or_string():
    assert batch_key("game-lines", date(2025, 1, 2)) == batch_key("game-lines", "2025-01-02") == "game-lines_2025-01-02"


@pytest.mark.parametrize("raw", ["2025-02-30", "2025-13-01", "2025-00-10", "2025-1-05", "25-01-05", "2025-01-5",
                                 "2025_01_05", "20250105", "latest"])
def test_impossible_dates(raw):
    with pytest.raises(BadInputError, match="impossible game date"):
        parse_object_name(f"odds-api/game-lines/{raw}/x.json")


def test_impossible_snapshot_time():
    with pytest.raises(BadInputError, match="impossible snapshot time '20251340_032435'"):
        parse_object_name("odds-api/game-lines/2025-10-21/abc-HOUOKC/20251340_032435-snap-0324.json")
    with pytest.raises(BadInputError, match="impossible snapshot time"):
        parse_object_name("odds-api/game-lines/2025-10-21/20251019_250000.json")


def test_leap_day_is_possible():
    assert parse_object_name("odds-api/game-lines/2024-02-29/x.json").game_date == date(2024, 2, 29)


@pytest.mark.parametrize("name", [
    "odds-api/game-lines/2025-10-21/abc-HOUOKC/sub/20251019_032435.json",  # too deep
    "odds-api/game-lines/2025-10-21/abc-houokc/20251019_032435.json",  # lowercase teams
    "odds-api/game-lines/2025-10-21/abc-HOUOK/20251019_032435.json",  # five letters
    "odds-api/game-lines/2025-10-21/20251019_032435.txt",  # not .json
    "odds-api/game-lines/2025-10-21/",  # a "folder"
    "odds-api/game-lines/20251019_032435.json",  # no date directory
    "odds-api/totals/2025-10-21/x.json",  # unknown endpoint
    "odds-api/game-lines-backup/2025-10-21/x.json",
    "odds-api/game-lines-history-history/2025-10-21/x.json",
    "other/game-lines/2025-10-21/x.json",
    "/odds-api/game-lines/2025-10-21/x.json",  # leading slash
    "quarantine/odds-api/game-lines/2025-10-21/x.json",
    "",
])
def test_names_outside_the_layout(name):
    with pytest.raises(BadInputError, match="outside the layout"):
        parse_object_name(name)


@pytest.mark.parametrize("name, endpoint", [
    (LONG, "player-props"),
    ("odds-api/game-lines/2025-01-01/x.json", "game-lines"),
    ("odds-api/game-lines-history/2025-01-01/x.json", "game-lines"),
    ("odds-api/player-props-history/anything/at/all", "player-props"),
    ("odds-api/game-lines/", "game-lines"),
    ("odds-api/game-lines", None),  # no trailing slash: not under the prefix
    ("odds-api/totals/2025-01-01/x.json", None),
    ("odds-api/game-lines-backup/x.json", None),
    ("odds-api/game-linesx/x.json", None),
    ("odds-api/game-lines-history-history/x.json", None),
    ("quarantine/odds-api/game-lines/2025-01-01/x.json", None),
    ("other/x.json", None),
    ("", None),
])
def test_endpoint_of(name, endpoint):
    assert endpoint_of(name) == endpoint


@pytest.mark.parametrize("historical", [False, True])
def test_object_name_round_trips(historical):
    snapshot = datetime(2025, 1, 21, 0, 9, 13, tzinfo=UTC)
    name = object_name("game-lines", date(2025, 1, 20), "88034c940053e7f48e8ea15aac958bc7", "DET", "LAL", snapshot,
                       historical=historical)
    suffix = "-history" if historical else ""
    assert name == (f"odds-api/game-lines{suffix}/2025-01-20/88034c940053e7f48e8ea15aac958bc7-DETLAL/"
                    "20250121_000913-snap-0009.json")
    ref = parse_object_name(name)
    assert (ref.endpoint, ref.historical, ref.game_date, ref.event_id, ref.away_abbr, ref.home_abbr, ref.name_time) == (
        "game-lines", historical, date(2025, 1, 20), "88034c940053e7f48e8ea15aac958bc7", "DET", "LAL", snapshot)
    assert endpoint_of(name) == "game-lines"
