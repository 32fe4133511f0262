"""Unit tests of oddsbatch.transform: payload shapes, prices, pivots, bad input, the CLI.

Expected figures are worked out by hand in the comments (fractions for conversions), never
copied from the code's output.
"""

from __future__ import annotations

import json
import subprocess
import sys
from decimal import Decimal
from collections import Counter
from datetime import date, datetime, timedelta, timezone
from fractions import Fraction
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
try:
    import oddsbatch  # noqa: F401
except ImportError:  # not pip-installed: use the source tree
    sys.path.insert(0, str(ROOT / "shared"))

from oddsbatch import cli, teams, transform  # noqa: E402
from oddsbatch.errors import BadInputError  # noqa: E402
from oddsbatch.synth import synthesize_day  # noqa: E402
from oddsbatch.tables import table_for_endpoint  # noqa: E402
from oddsbatch.transform import (  # noqa: E402
    american_to_decimal,
    decimal_to_american,
    format_timestamp,
    natural_key,
    outcomes_from_rows,
    parse_payload,
    player_lookup,
    rows_for_object,
    us_eastern_date,
)

DATA = ROOT / "tests" / "data"
UTC = timezone.utc

GL_AM = "event_odds_game_lines_american_synthetic.json"
PP_AM = "event_odds_player_props_american_synthetic.json"
H2H = "historical_event_odds_h2h_decimal.json"
SPREADS = "historical_event_odds_spreads_totals_decimal.json"
PP_YN = "event_odds_player_props_yes_no_decimal.json"
GL_LIST = "sport_odds_game_lines_decimal.json"

# file -> (object name, rows counted by hand from the file)
SAMPLES = {
    GL_AM: ("odds-api/game-lines/2025-01-20/a1b2c3d4e5f6g7h8i9j0-BOSLAL/20250120_180500-snap-1805.json", 12),
    PP_AM: ("odds-api/player-props/2025-01-20/a1b2c3d4e5f6g7h8i9j0-BOSLAL/20250120_180500-snap-1805.json", 5),
    H2H: ("odds-api/game-lines-history/2024-01-24/cd0bc7d0c238f4446ce1c03d0cea7ec4-ATLGSW/"
          "20240125_035500-snap-0355.json", 4),
    SPREADS: ("odds-api/game-lines-history/2024-01-24/cd0bc7d0c238f4446ce1c03d0cea7ec4-ATLGSW/"
              "20240125_035500-snap-0355.json", 8),
    # 2 points + 2 double-double + 2 alternate lines + 3 first basket (h2h skipped) + 1 + 1 + 1 team total
    PP_YN: ("odds-api/player-props/2025-03-09/0f1e2d3c4b5a69788796a5b4c3d2e1f0-DALDEN/20250309_230000-snap-2300.json",
            12),
    # h2h 2 + spreads 2 + totals 2 + h2h_q1 3 + team_totals 2; the second event has no bookmakers
    GL_LIST: ("odds-api/game-lines/2025-01-20/20250120_211500-snap-2115.json", 11),
}


def load(name: str) -> bytes:
    return (DATA / name).read_bytes()


def rows_of(name: str, **kw) -> list[dict]:
    return rows_for_object(SAMPLES[name][0], load(name), **kw)


def endpoint_of_name(object_name: str) -> str:
    return object_name.split("/")[1].removesuffix("-history")


def payload_outcomes(payload, endpoint: str) -> Counter:
    """The outcomes of a payload, read independently of the transform, in the canonical form
    `outcomes_from_rows` documents (props: side spelled Over/Under/Yes/No, player as description)."""
    body = payload["data"] if isinstance(payload, dict) and "data" in payload and "id" not in payload else payload
    events = body if isinstance(body, list) else [body]
    out: Counter = Counter()
    for ev in events:
        for bk in ev["bookmakers"]:
            for mk in bk["markets"]:
                for o in mk["outcomes"]:
                    point = None if o.get("point") is None else float(o["point"])
                    head = (ev["id"], bk["key"], mk["key"])
                    desc = o.get("description") or None
                    if endpoint == "game-lines":
                        out[head + (o["name"], desc, point, o["price"])] += 1
                        continue
                    side = o["name"].lower() in ("over", "under", "yes", "no")
                    if desc is not None and side:
                        out[head + (o["name"].lower().capitalize(), desc, point, o["price"])] += 1
                    elif desc is None and not side and mk["key"].startswith("player_"):
                        out[head + ("Yes", o["name"], point, o["price"])] += 1
    return out


def event_payload() -> dict:
    return json.loads(load(GL_AM))


def gl(payload, name=SAMPLES[GL_AM][0], **kw) -> list[dict]:
    data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return rows_for_object(name, data, **kw)


def pp(payload, name=SAMPLES[PP_AM][0], **kw) -> list[dict]:
    return rows_for_object(name, json.dumps(payload).encode(), **kw)


def props_event(markets: list[dict]) -> dict:
    ev = event_payload()
    ev["bookmakers"] = [{"key": "draftkings", "title": "DraftKings", "markets": markets}]
    return ev


# ---------------------------------------------------------------------------------------------
# Samples and the column contract.


@pytest.mark.parametrize("sample", sorted(SAMPLES))
def test_every_sample_gives_exactly_the_staged_columns(sample):
    object_name, expected = SAMPLES[sample]
    spec = table_for_endpoint(endpoint_of_name(object_name))
    rows = rows_of(sample, generation=1712345678901234)
    assert len(rows) == expected
    for row in rows:
        assert tuple(sorted(row)) == tuple(sorted(spec.staged_columns))
        assert "ingested_at" not in row
        assert row["source_object"] == object_name
        assert row["source_generation"] == 1712345678901234
        assert row["game_date"] == object_name.split("/")[2]
        for field in spec.schema:
            value = row.get(field["name"])
            if field["mode"] == "REQUIRED" and field["name"] in row:
                assert value is not None, field["name"]
            if value is None:
                continue
            kind = field["type"]
            if kind == "INT64":
                assert type(value) is int, field["name"]
            elif kind == "FLOAT64":
                assert type(value) is float, field["name"]
            elif kind == "NUMERIC":  # a float whose shortest repr NUMERIC holds exactly
                assert type(value) is float, field["name"]
                assert Decimal(repr(value)).as_tuple().exponent >= -9, (field["name"], value)
            elif kind == "TIMESTAMP":
                assert datetime.strptime(value.replace(".", "").rstrip("Z")[:19], "%Y-%m-%dT%H:%M:%S")
                assert value.endswith("Z") and len(value) in (20, 27), value
            elif kind == "DATE":
                assert date.fromisoformat(value)
            else:
                assert isinstance(value, str)
    json.dumps(rows)  # serializable as-is
    keys = [natural_key(r, spec) for r in rows]
    assert len(set(keys)) == len(keys)


@pytest.mark.parametrize("sample", sorted(SAMPLES))
def test_samples_round_trip_losslessly(sample):
    object_name, _ = SAMPLES[sample]
    endpoint = endpoint_of_name(object_name)
    rows = rows_of(sample)
    assert outcomes_from_rows(rows, endpoint) == payload_outcomes(json.loads(load(sample)), endpoint)


def test_historical_h2h_row_by_hand():
    rows = rows_of(H2H)
    hawks = [r for r in rows if r["bookmaker_key"] == "draftkings" and r["outcome_name"] == "Atlanta Hawks"]
    assert len(hawks) == 1
    r = hawks[0]
    assert r["price_format"] == "decimal"
    assert r["price_decimal"] == 3.3
    assert r["price_american"] == 230  # (3.3 - 1) * 100
    assert r["outcome_point"] is None and r["outcome_description"] is None
    assert r["snapshot_timestamp"] == "2024-01-25T03:55:40Z"
    assert r["snapshot_source"] == "wrapper"
    assert r["previous_snapshot_timestamp"] == "2024-01-25T03:50:38Z"
    assert r["next_snapshot_timestamp"] == "2024-01-25T04:00:38Z"
    # tip-off 03:20:30, snapshot 03:55:40: -35 min 10 s, floored to -36
    assert r["minutes_before_tipoff"] == -36
    assert r["commence_time"] == "2024-01-25T03:20:30Z"
    assert (r["home_team_abbr"], r["away_team_abbr"]) == ("GSW", "ATL")
    assert r["bookmaker_last_update"] == "2024-01-25T03:55:22Z"
    assert r["market_last_update"] == "2024-01-25T03:55:22Z"
    assert r["game_date"] == "2024-01-24"
    warriors = [x for x in rows if x["bookmaker_key"] == "draftkings" and x["outcome_name"] == "Golden State Warriors"]
    assert warriors[0]["price_american"] == -313  # -100 / 0.32 = -312.5, half away from zero


def test_american_sample_conversions_by_hand():
    rows = rows_of(GL_AM)
    by = {(r["bookmaker_key"], r["market_key"], r["outcome_name"]): r for r in rows}
    lakers = by[("draftkings", "h2h", "Los Angeles Lakers")]
    assert lakers["price_format"] == "american"
    assert lakers["price_american"] == -180
    assert lakers["price_decimal"] == float(Fraction(14, 9))  # 1 + 100/180
    celtics = by[("draftkings", "h2h", "Boston Celtics")]
    assert celtics["price_american"] == 155 and celtics["price_decimal"] == 2.55
    spread = by[("draftkings", "spreads", "Los Angeles Lakers")]
    assert spread["outcome_point"] == -4.5 and spread["price_decimal"] == float(Fraction(21, 11))
    fd = by[("fanduel", "spreads", "Los Angeles Lakers")]
    assert fd["market_last_update"] is None  # the sample's FanDuel markets carry none
    assert fd["bookmaker_last_update"] == "2025-01-20T17:55:00Z"
    # name time 18:05:00, tip-off 00:30:00 next day: 6 h 25 min
    assert fd["minutes_before_tipoff"] == 385
    assert fd["snapshot_source"] == "object_name"


# ---------------------------------------------------------------------------------------------
# Prices.


@pytest.mark.parametrize("american, decimal", [
    (-110, Fraction(21, 11)), (155, Fraction(255, 100)), (-180, Fraction(14, 9)), (100, Fraction(2)),
    (-100, Fraction(2)), (-105, Fraction(41, 21)), (250, Fraction(7, 2)), (-250, Fraction(7, 5)),
])
def test_american_to_decimal(american, decimal):
    assert american_to_decimal(american) == float(decimal)


@pytest.mark.parametrize("decimal, american", [
    (1.91, -110),   # -100/0.91 = -109.89
    (3.3, 230),     # 2.3 * 100
    (1.32, -313),   # -312.5 exactly: half away from zero (Python round() would say -312)
    (2.005, 101),   # 100.5 exactly: half away from zero (float math says 100.49999)
    (2.5, 150), (2, 100), (3, 200), (1.5, -200),
    (1.26, -385),   # -384.62
    (1.83, -120),   # -120.48
    (1.87, -115),   # -114.94
    (1.88, -114),   # -113.64
    (1.01, -10000),
])
def test_decimal_to_american(decimal, american):
    assert decimal_to_american(decimal) == american


def test_impossible_prices_raise():
    with pytest.raises(ValueError):
        decimal_to_american(1.0)
    with pytest.raises(ValueError):
        american_to_decimal(50)


def test_decimal_file_with_whole_number_prices_2_and_3():
    ev = event_payload()
    ev["bookmakers"] = [{"key": "draftkings", "markets": [{"key": "h2h", "outcomes": [
        {"name": "Los Angeles Lakers", "price": 2}, {"name": "Boston Celtics", "price": 3}]}]}]
    rows = gl(ev)
    assert [r["price_format"] for r in rows] == ["decimal", "decimal"]
    assert [(r["price_decimal"], r["price_american"]) for r in rows] == [(2.0, 100), (3.0, 200)]
    assert all(type(r["price_decimal"]) is float for r in rows)


def test_american_file_written_with_float_whole_numbers():
    ev = event_payload()
    ev["bookmakers"] = [{"key": "draftkings", "markets": [{"key": "h2h", "outcomes": [
        {"name": "Los Angeles Lakers", "price": -110.0}, {"name": "Boston Celtics", "price": 100}]}]}]
    rows = gl(ev)
    assert [r["price_format"] for r in rows] == ["american", "american"]
    assert rows[0]["price_american"] == -110 and type(rows[0]["price_american"]) is int
    assert rows[1]["price_decimal"] == 2.0


def test_one_decimal_price_makes_the_file_decimal():
    ev = event_payload()
    ev["bookmakers"] = [{"key": "draftkings", "markets": [{"key": "h2h", "outcomes": [
        {"name": "Los Angeles Lakers", "price": 1.5}, {"name": "Boston Celtics", "price": 101}]}]}]
    rows = gl(ev)
    assert {r["price_format"] for r in rows} == {"decimal"}
    assert rows[1]["price_decimal"] == 101.0 and rows[1]["price_american"] == 10000


def test_mixed_formats_are_bad_input():
    ev = event_payload()
    ev["bookmakers"][0]["markets"][2]["outcomes"][0]["price"] = 1.91  # in an american file
    with pytest.raises(BadInputError, match=r"price -1\d\d .*no decimal price"):
        gl(ev)


def test_decimal_price_of_one_is_bad_input():
    ev = event_payload()
    ev["bookmakers"] = [{"key": "draftkings", "markets": [{"key": "h2h", "outcomes": [
        {"name": "Los Angeles Lakers", "price": 1.0}, {"name": "Boston Celtics", "price": 2.2}]}]}]
    with pytest.raises(BadInputError, match="no decimal price"):
        gl(ev)


# ---------------------------------------------------------------------------------------------
# Game lines.


def test_sport_odds_list_short_layout_and_extras():
    rows = rows_of(GL_LIST)
    assert {r["game_id"] for r in rows} == {"5a5b5c5d5e5f60616263646566676869"}  # the other has no bookmakers
    assert {r["market_key"] for r in rows} == {"h2h", "spreads", "totals", "h2h_q1", "team_totals"}
    assert all(r["bookmaker_last_update"] is None for r in rows)  # BetMGM has no last_update
    assert all(r["market_last_update"] for r in rows)
    draw = [r for r in rows if r["outcome_name"] == "Draw"][0]
    assert (draw["price_decimal"], draw["price_american"]) == (15.0, 1400)
    team_totals = sorted(r["outcome_description"] for r in rows if r["market_key"] == "team_totals")
    assert team_totals == ["Miami Heat", "New York Knicks"]  # same name and point: two rows
    r = rows[0]
    assert (r["home_team_abbr"], r["away_team_abbr"]) == ("MIA", "NYK")
    assert r["snapshot_timestamp"] == "2025-01-20T21:15:00Z"


def test_every_market_key_is_kept():
    ev = event_payload()
    ev["bookmakers"][0]["markets"].append({"key": "alternate_spreads_h1_made_up", "outcomes": [
        {"name": "Boston Celtics", "price": 120, "point": 10.5}]})
    rows = gl(ev)
    assert len(rows) == 13
    made_up = [r for r in rows if r["market_key"] == "alternate_spreads_h1_made_up"]
    assert [(r["bookmaker_key"], r["outcome_point"], r["price_decimal"]) for r in made_up] == [
        ("draftkings", 10.5, 2.2)]


def test_duplicate_natural_key_keeps_the_last_outcome():
    ev = event_payload()
    outcomes = ev["bookmakers"][0]["markets"][0]["outcomes"]  # draftkings spreads
    outcomes.append({"name": "Los Angeles Lakers", "price": -125, "point": -4.5})
    rows = gl(ev)
    assert len(rows) == 12  # 13 outcomes, one natural key twice
    lakers = [r for r in rows if (r["bookmaker_key"], r["market_key"], r["outcome_name"]) ==
              ("draftkings", "spreads", "Los Angeles Lakers")]
    assert [r["price_american"] for r in lakers] == [-125]
    spec = table_for_endpoint("game-lines")
    assert len({natural_key(r, spec) for r in rows}) == 12


@pytest.mark.parametrize("text, stored", [(b"224.5", 224.5), (b"0.1", 0.1), (b"-3.25", -3.25), (b"225", 225.0),
                                          (b"1.123456789", 1.123456789), (b"1e20", 1e20)])
def test_points_are_kept_exactly_as_numeric_can_hold_them(text, stored):
    rows = rows_for_object(SAMPLES[GL_AM][0], load(GL_AM).replace(b'"point": 224.5', b'"point": ' + text, 1))
    points = [r["outcome_point"] for r in rows if r["market_key"] == "totals" and r["bookmaker_key"] == "draftkings"]
    assert stored in points and type(stored) is float
    assert Decimal(repr(stored)) == Decimal(text.decode())  # what NUMERIC stores is the file's number


def test_same_name_different_point_is_two_rows():
    ev = event_payload()
    ev["bookmakers"][0]["markets"][0]["outcomes"].append({"name": "Los Angeles Lakers", "price": -150, "point": -2.5})
    rows = gl(ev)
    assert len(rows) == 13
    assert outcomes_from_rows(rows, "game-lines") == payload_outcomes(ev, "game-lines")


def test_empty_bookmakers_and_empty_list_give_no_rows():
    ev = event_payload()
    ev["bookmakers"] = []
    assert gl(ev) == []
    assert gl([], name="odds-api/game-lines/2025-01-20/20250120_180500.json") == []
    ev["bookmakers"] = [{"key": "draftkings", "markets": []}]
    assert gl(ev) == []


def test_unknown_fields_are_ignored():
    plain = gl(event_payload())
    ev = event_payload()
    ev["new_top_field"] = {"a": [1, 2]}
    for bk in ev["bookmakers"]:
        bk["link"] = "x"
        for mk in bk["markets"]:
            mk["link"] = None
            for o in mk["outcomes"]:
                o["link"] = "y"
                o["sid"] = 12
    assert gl(ev) == plain


def test_missing_bookmaker_last_update_is_null():
    ev = event_payload()
    del ev["bookmakers"][0]["last_update"]
    rows = [r for r in gl(ev) if r["bookmaker_key"] == "draftkings"]
    assert rows and all(r["bookmaker_last_update"] is None for r in rows)
    assert all(r["market_last_update"] == "2025-01-20T18:00:00Z" for r in rows)


def test_inconsistent_commence_date_is_kept():
    ev = event_payload()
    ev["commence_time"] = "2031-07-04T12:00:00Z"
    rows = gl(ev)
    assert len(rows) == 12
    assert rows[0]["game_date"] == "2025-01-20" and rows[0]["commence_time"] == "2031-07-04T12:00:00Z"


def test_unknown_team_falls_back_to_the_name_abbreviations():
    ev = event_payload()
    ev["home_team"] = "Seattle SuperSonics"
    rows = gl(ev)
    assert rows[0]["home_team"] == "Seattle SuperSonics"
    assert (rows[0]["home_team_abbr"], rows[0]["away_team_abbr"]) == ("LAL", "BOS")  # from -BOSLAL
    short = gl(ev, name="odds-api/game-lines/2025-01-20/20250120_180500.json")
    assert (short[0]["home_team_abbr"], short[0]["away_team_abbr"]) == (None, "BOS")


# ---------------------------------------------------------------------------------------------
# Timestamps and snapshot source.


def test_format_timestamp_is_rfc3339_utc():
    assert format_timestamp(datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)) == "2025-01-02T03:04:05Z"
    assert format_timestamp(datetime(2025, 1, 2, 3, 4, 5, 120000, tzinfo=UTC)) == "2025-01-02T03:04:05.120000Z"
    assert format_timestamp(datetime(2025, 1, 2, 3, 4, 5)) == "2025-01-02T03:04:05Z"  # naive = UTC
    plus2 = timezone(timedelta(hours=2))
    assert format_timestamp(datetime(2025, 1, 2, 1, 0, 0, tzinfo=plus2)) == "2025-01-01T23:00:00Z"


def test_payload_timestamps_normalized_to_utc():
    ev = event_payload()
    ev["commence_time"] = "2025-01-21T01:30:00.5+01:00"
    ev["bookmakers"][0]["last_update"] = "2025-01-20T18:00:00.123456789Z"
    rows = gl(ev)
    assert rows[0]["commence_time"] == "2025-01-21T00:30:00.500000Z"
    assert rows[0]["bookmaker_last_update"] == "2025-01-20T18:00:00.123456Z"


def test_snapshot_source_precedence():
    wrapped = json.loads(load(H2H))
    name = SAMPLES[H2H][0]  # name time 03:55:00
    created = datetime(2024, 1, 25, 3, 56, 1, 250000, tzinfo=UTC)
    r = gl(wrapped, name=name, created=created)[0]
    assert (r["snapshot_timestamp"], r["snapshot_source"]) == ("2024-01-25T03:55:40Z", "wrapper")

    r = gl(wrapped["data"], name=name, created=created)[0]
    assert (r["snapshot_timestamp"], r["snapshot_source"]) == ("2024-01-25T03:55:00Z", "object_name")
    assert r["previous_snapshot_timestamp"] is None and r["next_snapshot_timestamp"] is None

    no_time = "odds-api/game-lines/2024-01-24/latest.json"
    r = gl(wrapped["data"], name=no_time, created=created)[0]
    assert (r["snapshot_timestamp"], r["snapshot_source"]) == ("2024-01-25T03:56:01.250000Z", "object_created")
    r = gl(wrapped["data"], name=no_time, created=datetime(2024, 1, 25, 3, 56, 1))[0]  # naive = UTC
    assert r["snapshot_timestamp"] == "2024-01-25T03:56:01Z"

    with pytest.raises(BadInputError, match="no snapshot time"):
        gl(wrapped["data"], name=no_time)

    no_stamp = dict(wrapped, timestamp=None)
    r = gl(no_stamp, name=name)[0]
    assert (r["snapshot_source"], r["previous_snapshot_timestamp"]) == ("object_name", "2024-01-25T03:50:38Z")


def test_historical_wrapper_around_a_list():
    wrapped = json.loads(load(H2H))
    wrapped["data"] = [wrapped["data"]]
    rows = gl(wrapped, name="odds-api/game-lines-history/2024-01-24/20240125_035500.json")
    assert len(rows) == 4 and rows[0]["snapshot_source"] == "wrapper"


@pytest.mark.parametrize("snapshot, minutes", [
    (datetime(2025, 1, 21, 0, 29, 59, tzinfo=UTC), 0),
    (datetime(2025, 1, 21, 0, 30, 0, tzinfo=UTC), 0),
    (datetime(2025, 1, 21, 0, 30, 1, tzinfo=UTC), -1),
    (datetime(2025, 1, 21, 0, 0, 0, tzinfo=UTC), 30),
    (datetime(2025, 1, 20, 0, 30, 0, 1, tzinfo=UTC), 1439),
])
def test_minutes_before_tipoff_floors(snapshot, minutes):
    rows = gl(event_payload(), name="odds-api/game-lines/2025-01-20/latest.json", created=snapshot)
    assert rows[0]["minutes_before_tipoff"] == minutes


def test_missing_commence_time_gives_null_minutes():
    ev = event_payload()
    del ev["commence_time"]
    rows = gl(ev)
    assert rows[0]["commence_time"] is None and rows[0]["minutes_before_tipoff"] is None


# ---------------------------------------------------------------------------------------------
# Player props.


def test_props_pivot_american_sample():
    rows = rows_of(PP_AM)
    assert len(rows) == 5
    by = {(r["bookmaker_key"], r["market_key"], r["player_name"]): r for r in rows}
    lebron = by[("draftkings", "player_points", "LeBron James")]
    assert lebron["line"] == 25.5 and lebron["player_lookup"] == "lebronjames"
    assert (lebron["over_price_american"], lebron["under_price_american"]) == (-115, -105)
    assert lebron["over_price_decimal"] == float(Fraction(43, 23))  # 1 + 100/115
    assert lebron["under_price_decimal"] == float(Fraction(41, 21))  # 1 + 100/105
    assert lebron["yes_price_decimal"] is None and lebron["no_price_american"] is None
    ad = by[("draftkings", "player_rebounds", "Anthony Davis")]
    assert (ad["under_price_american"], ad["under_price_decimal"]) == (100, 2.0)
    assert by[("fanduel", "player_points", "LeBron James")]["market_last_update"] is None


def test_props_yes_no_first_basket_and_skips():
    rows = rows_of(PP_YN)
    by = {(r["bookmaker_key"], r["market_key"], r["player_name"], r["line"]): r for r in rows}
    assert not [r for r in rows if r["market_key"] == "h2h"]  # no descriptions: not player props
    assert all(r["price_format"] == "decimal" for r in rows)

    jokic_dd = by[("draftkings", "player_double_double", "Nikola Jokić", None)]
    assert (jokic_dd["yes_price_decimal"], jokic_dd["yes_price_american"]) == (1.2, -500)  # -100/0.2
    assert (jokic_dd["no_price_decimal"], jokic_dd["no_price_american"]) == (4.5, 350)
    assert jokic_dd["over_price_decimal"] is None and jokic_dd["player_lookup"] == "nikolajokic"
    luka_dd = by[("draftkings", "player_double_double", "Luka Dončić", None)]
    assert (luka_dd["yes_price_american"], luka_dd["no_price_decimal"]) == (160, None)

    first = {k[2]: r for k, r in by.items() if k[1] == "player_first_basket"}
    assert set(first) == {"Nikola Jokić", "Luka Dončić", "Kyrie Irving"}
    assert (first["Luka Dončić"]["yes_price_decimal"], first["Luka Dončić"]["yes_price_american"]) == (6.0, 500)
    assert first["Kyrie Irving"]["yes_price_american"] == 1000
    assert first["Nikola Jokić"]["yes_price_american"] == 450
    assert first["Kyrie Irving"]["player_lookup"] == "kyrieirving" and first["Kyrie Irving"]["line"] is None

    alt = [r for r in rows if r["market_key"] == "player_points_alternate"]
    assert sorted((r["line"], r["over_price_american"], r["under_price_american"]) for r in alt) == [
        (25.5, -250, None), (34.5, 180, None)]

    reb = by[("fanduel", "player_rebounds", "Nikola Jokić", 12.5)]  # "OVER" / "under" spellings
    assert (reb["over_price_american"], reb["under_price_american"]) == (-125, 100)
    assert reb["bookmaker_last_update"] is None and reb["market_last_update"] == "2025-03-09T22:57:40Z"

    team = by[("fanduel", "team_totals", "Denver Nuggets", 118.5)]  # non-player market with descriptions
    assert (team["over_price_american"], team["under_price_american"]) == (-115, -110)
    assert team["player_lookup"] == "denvernuggets"
    assert team["minutes_before_tipoff"] == 120  # 23:00 -> 01:00


def test_props_side_given_twice_keeps_the_last():
    ev = props_event([{"key": "player_points", "outcomes": [
        {"name": "Over", "description": "A B", "price": -110, "point": 10.5},
        {"name": "Over", "description": "A B", "price": -130, "point": 10.5},
        {"name": "Under", "description": "A B", "price": -105, "point": 10.5}]}])
    rows = pp(ev)
    assert len(rows) == 1
    assert (rows[0]["over_price_american"], rows[0]["under_price_american"]) == (-130, -105)


HUGE = 10 ** 30  # an american price beyond INT64: out of range of the price columns


@pytest.mark.parametrize("outcomes, reason", [
    # the first of two errors in payload order is the one named, whichever kind it is
    ([{"name": "Over", "description": "A B", "price": HUGE, "point": 10.5},
      {"name": "Exactly 10", "description": "A B", "price": 800, "point": 10}], "out of range of the price columns"),
    ([{"name": "Exactly 10", "description": "A B", "price": 800, "point": 10},
      {"name": "Over", "description": "A B", "price": HUGE, "point": 10.5}], "cannot tell the side"),
    ([{"name": "Over", "price": -110, "point": 10.5},
      {"name": "Under", "description": "A B", "price": HUGE, "point": 10.5}], "no player"),
    # a side given twice: the price it replaced is checked all the same
    ([{"name": "Over", "description": "A B", "price": HUGE, "point": 10.5},
      {"name": "Over", "description": "A B", "price": -130, "point": 10.5}], "out of range of the price columns"),
])
def test_props_errors_of_a_file_are_named_in_payload_order(outcomes, reason):
    ev = props_event([{"key": "player_points", "outcomes": outcomes}])
    with pytest.raises(BadInputError, match=reason):
        pp(ev)
    with pytest.raises(BadInputError, match=reason):  # the holder's path: the same reason
        transform.staged_for_object(SAMPLES[PP_AM][0], json.dumps(ev).encode())


def test_a_replaced_game_line_price_is_checked_all_the_same():
    ev = event_payload()
    ev["bookmakers"] = [{"key": "draftkings", "markets": [{"key": "h2h", "outcomes": [
        {"name": "Boston Celtics", "price": HUGE}, {"name": "Boston Celtics", "price": -120}]}]}]
    with pytest.raises(BadInputError, match="out of range of the price columns"):
        gl(ev)
    with pytest.raises(BadInputError, match="out of range of the price columns"):
        transform.staged_for_object(SAMPLES[GL_AM][0], json.dumps(ev).encode())


def test_props_player_without_description_is_bad_input():
    ev = props_event([{"key": "player_points", "outcomes": [{"name": "Over", "price": -110, "point": 10.5}]}])
    with pytest.raises(BadInputError, match="no player"):
        pp(ev)


def test_props_undeterminable_side_is_bad_input():
    ev = props_event([{"key": "player_points", "outcomes": [
        {"name": "Exactly 10", "description": "A B", "price": 800, "point": 10}]}])
    with pytest.raises(BadInputError, match="cannot tell the side of outcome 'Exactly 10'"):
        pp(ev)


def test_props_non_player_market_without_side_is_skipped():
    ev = props_event([{"key": "team_winner", "outcomes": [
        {"name": "Los Angeles Lakers", "description": "Game", "price": -110}]},
        {"key": "player_points", "outcomes": [{"name": "Over", "description": "A B", "price": -110, "point": 1.5}]}])
    rows = pp(ev)
    assert [r["market_key"] for r in rows] == ["player_points"]


@pytest.mark.parametrize("name, lookup", [
    ("Luka Dončić", "lukadoncic"),
    ("Jaren Jackson Jr.", "jarenjacksonjr"),
    ("LeBron James", "lebronjames"),
    ("De'Aaron Fox", "deaaronfox"),
    ("Karl-Anthony Towns", "karlanthonytowns"),
    ("Théo Maledon", "theomaledon"),
    ("Alperen Şengün", "alperensengun"),
    ("Kristaps Porziņģis", "kristapsporzingis"),
    ("Gary Trent Jr. III 2", "garytrentjriii"),
])
def test_player_lookup(name, lookup):
    assert player_lookup(name) == lookup


# ---------------------------------------------------------------------------------------------
# Synthetic days: lossless, unique keys.


@pytest.mark.parametrize("price_format, historical", [("american", False), ("decimal", False), ("decimal", True)])
def test_synth_days_round_trip_losslessly(price_format, historical):
    for name, data in synthesize_day(date(2025, 3, 9), 3, 2, seed=11, price_format=price_format,
                                     historical=historical):
        endpoint = endpoint_of_name(name)
        rows = rows_for_object(name, data, generation=5)
        assert rows
        assert {r["price_format"] for r in rows} == {price_format}
        assert outcomes_from_rows(rows, endpoint) == payload_outcomes(json.loads(data), endpoint)
        spec = table_for_endpoint(endpoint)
        assert len({natural_key(r, spec) for r in rows}) == len(rows)
        if historical:
            assert {r["snapshot_source"] for r in rows} == {"wrapper"}


# ---------------------------------------------------------------------------------------------
# Bad input.


def mutate(fn) -> bytes:
    ev = event_payload()
    fn(ev)
    return json.dumps(ev).encode()


BAD = {
    "empty": (b"", "empty file"),
    "whitespace": (b"  \n\t ", "empty file"),
    "truncated": (load(GL_AM)[:300], "truncated JSON"),
    "truncated_in_string": (b'{"id": "abc', "truncated JSON"),
    "html": (b"<html><body>502 Bad Gateway</body></html>", "HTML/XML page"),
    "html_after_whitespace": (b"\n  <!DOCTYPE html><html></html>", "HTML/XML page"),
    "not_utf8": (b'{"id": "caf\xe9"}', "not UTF-8: byte 0xe9 at offset 11"),
    "garbage": (b"{'id': 1}", "invalid JSON"),
    "two_documents": (b'{"id": "a", "bookmakers": []}\n{"id": "b", "bookmakers": []}', "invalid JSON: Extra data"),
    "nan_price": (load(GL_AM).replace(b"-180", b"NaN"), "NaN"),
    "scalar": (b"42", "wrong shape: the payload is a JSON number"),
    "null": (b"null", "wrong shape: the payload is a JSON null"),
    "list_of_strings": (b'["a", "b"]', "item 0 of the event list is a JSON string"),
    "dict_without_id_bookmakers": (b'{"foo": 1}', "object without id or bookmakers (keys: foo)"),
    "api_error": (b'{"message": "Usage quota has been reached", "error_code": "OUT_OF_USAGE_CREDITS"}',
                  "message: 'Usage quota has been reached'"),
    "wrapper_data_null": (b'{"timestamp": "2024-01-25T03:55:40Z", "data": null}', "wrapper's data is a JSON null"),
    "missing_id": (mutate(lambda e: e.pop("id")), "missing event id"),
    "numeric_id": (mutate(lambda e: e.__setitem__("id", 7)), "event id is a JSON number"),
    "missing_bookmakers": (mutate(lambda e: e.pop("bookmakers")), "missing bookmakers of event"),
    "bookmakers_not_list": (mutate(lambda e: e.__setitem__("bookmakers", {})), "is a JSON object, not an array"),
    "bookmaker_not_object": (mutate(lambda e: e["bookmakers"].append("dk")), "a bookmaker of event"),
    "missing_bookmaker_key": (mutate(lambda e: e["bookmakers"][1].pop("key")), "missing bookmaker key"),
    "missing_markets": (mutate(lambda e: e["bookmakers"][1].pop("markets")), "missing markets of"),
    "missing_market_key": (mutate(lambda e: e["bookmakers"][0]["markets"][1].pop("key")), "missing market key"),
    "missing_outcomes": (mutate(lambda e: e["bookmakers"][0]["markets"][1].pop("outcomes")), "missing outcomes"),
    "missing_outcome_name": (mutate(lambda e: e["bookmakers"][0]["markets"][1]["outcomes"][0].pop("name")),
                             "missing outcome name in event a1b2c3d4e5f6g7h8i9j0 bookmaker draftkings market totals"),
    "missing_price": (mutate(lambda e: e["bookmakers"][0]["markets"][1]["outcomes"][0].pop("price")),
                      "missing price of outcome 'Over'"),
    "string_price": (mutate(lambda e: e["bookmakers"][0]["markets"][1]["outcomes"][0].__setitem__("price", "-110")),
                     "price of outcome 'Over' in event a1b2c3d4e5f6g7h8i9j0 bookmaker draftkings market totals is not a number"),
    "bool_price": (mutate(lambda e: e["bookmakers"][0]["markets"][1]["outcomes"][0].__setitem__("price", True)),
                   "is not a number: True"),
    "infinite_price": (load(GL_AM).replace(b"-180", b"1e999"), "is not a number: inf"),
    "string_point": (mutate(lambda e: e["bookmakers"][0]["markets"][1]["outcomes"][0].__setitem__("point", "224.5")),
                     "point of outcome 'Over'"),
    "huge_integer_point": (load(GL_AM).replace(b'"point": 224.5', b'"point": ' + b"9" * 401, 1),
                           "point of outcome 'Over' in event a1b2c3d4e5f6g7h8i9j0 bookmaker draftkings market totals is out of range"),
    "inexact_integer_point": (load(GL_AM).replace(b'"point": 224.5', b'"point": 9007199254740993', 1),
                              "is out of range for an exact line"),
    "ten_decimals_point": (load(GL_AM).replace(b'"point": 224.5', b'"point": 224.0000000001', 1),
                           "out of range for an exact NUMERIC line"),
    "numeric_overflow_point": (load(GL_AM).replace(b'"point": 224.5', b'"point": 1.5e29', 1),
                               "out of range for an exact NUMERIC line"),
    "infinite_point": (load(GL_AM).replace(b'"point": 224.5', b'"point": -1e999', 1), "point of outcome 'Over'"),
    "huge_american_price": (load(GL_AM).replace(b"-180", b"-" + b"1" + b"0" * 30, 1), "out of range of the price columns"),
    "int64_overflow_american_price": (load(GL_AM).replace(b"-180", b"-9223372036854775809", 1),
                                      "price -9223372036854775809 (american) is out of range"),
    "commence_time_before_year_1": (mutate(lambda e: e.__setitem__("commence_time", "0001-01-01T00:00:00+01:00")),
                                    "commence_time is outside the TIMESTAMP range"),
    "commence_time_after_9999": (mutate(lambda e: e.__setitem__("commence_time", "9999-12-31T23:30:00-01:00")),
                                 "commence_time is outside the TIMESTAMP range"),
    "bad_commence_time": (mutate(lambda e: e.__setitem__("commence_time", "tonight")), "commence_time is not an ISO 8601"),
    "event_id_mismatch": (mutate(lambda e: e.__setitem__("id", "ffffffffffffffffffffffffffffffff")),
                          "event id ffffffffffffffffffffffffffffffff in the payload disagrees with a1b2c3d4e5f6g7h8i9j0"),
}


@pytest.mark.parametrize("price", [b"1e300", b"1" + b"0" * 400])
def test_decimal_prices_beyond_the_american_int64_column_are_bad_input(price):
    data = load(GL_LIST).replace(b'"price": 2.1', b'"price": ' + price, 1)
    with pytest.raises(BadInputError, match=r"\(decimal\) is out of range of the price columns"):
        rows_for_object(SAMPLES[GL_LIST][0], data)


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_input_raises_with_a_specific_one_line_reason(case):
    data, reason = BAD[case]
    with pytest.raises(BadInputError) as info:
        rows_for_object(SAMPLES[GL_AM][0], data)
    assert reason in info.value.reason
    assert "\n" not in info.value.reason and info.value.reason == str(info.value)


@pytest.mark.parametrize("fixture, reason", [
    ("bad_truncated.json", "truncated JSON"),
    ("bad_html_error_page.json", "HTML/XML page"),
    ("bad_empty.json", "empty file (0 bytes)"),
    ("bad_not_utf8.json", "not UTF-8"),
    ("bad_api_error_message.json", "Usage quota has been reached"),
])
def test_bad_fixture_files(fixture, reason):
    with pytest.raises(BadInputError, match=reason.replace("(", r"\(").replace(")", r"\)")):
        rows_for_object("odds-api/game-lines/2024-01-24/20240125_035500.json", load(fixture))


def test_bad_object_name_is_bad_input():
    with pytest.raises(BadInputError, match="outside the layout"):
        rows_for_object("somewhere/else.json", load(GL_AM))


def test_utf8_bom_is_accepted():
    assert len(rows_for_object(SAMPLES[GL_AM][0], b"\xef\xbb\xbf" + load(GL_AM))) == 12


def test_parse_payload_accepts_str():
    assert parse_payload('{"a": 1}') == {"a": 1}


def test_event_id_check_is_case_insensitive():
    ev = event_payload()
    ev["id"] = "A1B2C3D4E5F6G7H8I9J0"
    assert len(gl(ev)) == 12


# ---------------------------------------------------------------------------------------------
# Helpers: Eastern dates, teams, purity.


def test_us_eastern_date_matches_the_tz_database():
    zoneinfo = pytest.importorskip("zoneinfo")
    try:
        eastern = zoneinfo.ZoneInfo("America/New_York")
    except zoneinfo.ZoneInfoNotFoundError:
        pytest.skip("no tz database here")
    moment = datetime(2023, 1, 1, tzinfo=UTC)
    while moment < datetime(2027, 1, 1, tzinfo=UTC):
        assert us_eastern_date(moment) == moment.astimezone(eastern).date(), moment
        moment += timedelta(minutes=37)


def test_us_eastern_date_examples():
    assert us_eastern_date(datetime(2024, 1, 25, 3, 20, 30, tzinfo=UTC)) == date(2024, 1, 24)  # EST: 22:20
    assert us_eastern_date(datetime(2025, 3, 10, 1, 0, tzinfo=UTC)) == date(2025, 3, 9)  # EDT: 21:00
    assert us_eastern_date(datetime(2025, 7, 1, 3, 59, tzinfo=UTC)) == date(2025, 6, 30)
    assert us_eastern_date(datetime(2025, 7, 1, 4, 0, tzinfo=UTC)) == date(2025, 7, 1)


def test_teams_table():
    assert len(teams.TEAMS) == 30 and len(set(teams.TEAMS.values())) == 30
    assert all(len(a) == 3 and a.isupper() for a in teams.TEAMS.values())
    for name, abbr in teams.TEAMS.items():
        assert teams.abbreviation(name) == abbr and teams.full_name(abbr) == name
    assert teams.abbreviation("LA Clippers") == "LAC"
    assert teams.abbreviation("  golden state   warriors ") == "GSW"
    assert teams.abbreviation("Seattle SuperSonics") is None and teams.abbreviation(None) is None
    assert teams.full_name("okc") == "Oklahoma City Thunder"


def test_transform_imports_no_google_client():
    # `google` and `google.cloud` are namespace packages some installs preload: compare to before.
    code = ("import sys; sys.path.insert(0, %r); before = set(sys.modules); "
            "import oddsbatch.transform, oddsbatch.synth; "
            "bad = [m for m in set(sys.modules) - before if m.startswith('google')]; assert not bad, bad"
            ) % str(ROOT / "shared")
    subprocess.run([sys.executable, "-c", code], check=True)


# ---------------------------------------------------------------------------------------------
# CLI.


@pytest.mark.parametrize("sample", sorted(SAMPLES))
def test_cli_transform_every_sample(sample, capsys):
    object_name, expected = SAMPLES[sample]
    endpoint = endpoint_of_name(object_name)
    assert cli.main(["transform", "--endpoint", endpoint, str(DATA / sample)]) == 0
    out, err = capsys.readouterr()
    lines = out.splitlines()
    assert len(lines) == expected and err == ""
    rows = [json.loads(line) for line in lines]
    assert all(line == json.dumps(json.loads(line), sort_keys=True) for line in lines)
    assert {r["source_object"].split("/")[1] for r in rows} == {endpoint + ("-history" if "historical" in sample else "")}


def test_cli_synthesized_names():
    from oddsbatch.transform import parse_payload as parse, synthesize_object_name

    name = synthesize_object_name(parse(load(H2H)), "game-lines", "x/historical.json")
    # tip-off 2024-01-25T03:20:30Z is 22:20 on the 24th in New York
    assert name == ("odds-api/game-lines-history/2024-01-24/cd0bc7d0c238f4446ce1c03d0cea7ec4-ATLGSW/"
                    "20240125_035540-snap-0355.json")
    name = synthesize_object_name(parse(load(PP_AM)), "player-props", "/tmp/a/event_odds.json")
    assert name == "odds-api/player-props/2025-01-20/a1b2c3d4e5f6g7h8i9j0-BOSLAL/event_odds.json"
    name = synthesize_object_name(parse(load(GL_LIST)), "game-lines", "list.json")
    assert name == "odds-api/game-lines/2025-01-20/list.json"


def test_cli_object_name_and_layout_path(tmp_path, capsys):
    name = "odds-api/game-lines/2025-01-20/a1b2c3d4e5f6g7h8i9j0-BOSLAL/20250120_180500-snap-1805.json"
    assert cli.main(["transform", "--object-name", name, "--generation", "9", str(DATA / GL_AM)]) == 0
    rows = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert {(r["source_object"], r["source_generation"], r["snapshot_source"]) for r in rows} == {(name, 9, "object_name")}

    local = tmp_path / "mirror" / name
    local.parent.mkdir(parents=True)
    local.write_bytes(load(GL_AM))
    assert cli.main(["transform", str(local)]) == 0
    rows = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert len(rows) == 12 and {r["source_object"] for r in rows} == {name}


def test_cli_without_endpoint_outside_the_layout_fails(capsys):
    assert cli.main(["transform", str(DATA / GL_AM)]) == 2
    out, err = capsys.readouterr()
    assert out == "" and len(err.splitlines()) == 1 and "--endpoint" in err


def test_cli_endpoint_disagreeing_with_the_name_fails(capsys):
    assert cli.main(["transform", "--endpoint", "player-props", "--object-name", SAMPLES[GL_AM][0],
                     str(DATA / GL_AM)]) == 2
    assert len(capsys.readouterr().err.splitlines()) == 1


@pytest.mark.parametrize("fixture", ["bad_truncated.json", "bad_html_error_page.json", "bad_empty.json",
                                     "bad_not_utf8.json"])
def test_cli_bad_file_exits_2_with_one_line(fixture, capsys):
    assert cli.main(["transform", "--endpoint", "game-lines", str(DATA / fixture)]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert len(err.splitlines()) == 1 and err.startswith("oddsbatch transform: ")


def test_cli_missing_file_exits_2(tmp_path, capsys):
    assert cli.main(["transform", "--endpoint", "game-lines", str(tmp_path / "nope.json")]) == 2
    assert len(capsys.readouterr().err.splitlines()) == 1
