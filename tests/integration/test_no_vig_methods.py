"""Every no-vig method of odds_api_market_snapshots on the emulator, against the independent
reference of tests/no_vig_reference.py (each method's model of the book inverted by nested
bisection, not the SQL's closed forms over its brackets).

One game-lines file holds the market shapes the methods must get right: a soccer-style 1X2
(the issue's 2.60 / 3.30 / 2.90), ten outcomes, favourite-longshot extremes (1.01 vs 30, both
ways round, and with a third outcome), an underround two-way and the notes' 1.80 / 2.10. Each
is quoted by its own book, so each is one line of the table function.
"""

from __future__ import annotations

import json
import math
from datetime import date

import pytest

from oddsbatch import sql
from tests.no_vig_reference import METHODS, PARAMETERS, no_vig

from .test_end_to_end import upload_all

pytestmark = pytest.mark.integration

DAY = "2025-03-02"
GAME = "5e1f0c2b9a8d7e6f5a4b3c2d1e0f9a8b"
HOME, AWAY = "Home Side", "Away Side"
SNAPSHOT = "2025-03-02T17:00:00Z"
TEN = [f"Outcome {i:02d}" for i in range(10)]
# book -> (market, [(outcome name, decimal price)]), outcomes in the table function's side order
MARKETS = {
    "onextwo": ("h2h", [(HOME, 2.60), (AWAY, 3.30), ("Draw", 2.90)]),
    "tenway": ("winning_margin", list(zip(TEN, [3.2, 4.5, 6.0, 8.0, 10.0, 13.0, 17.0, 21.0, 26.0, 34.0]))),
    "favourite": ("h2h", [(HOME, 1.01), (AWAY, 30.0)]),
    "longshot": ("h2h", [(HOME, 30.0), (AWAY, 1.01)]),
    "extreme3": ("h2h", [(HOME, 1.01), (AWAY, 30.0), ("Draw", 45.0)]),
    "underround": ("h2h", [(HOME, 2.05), (AWAY, 2.05)]),
    "notes": ("h2h", [(HOME, 1.80), (AWAY, 2.10)]),
}


def _file() -> tuple[str, bytes]:
    event = {"id": GAME, "sport_key": "basketball_nba", "sport_title": "NBA", "commence_time": "2025-03-02T20:00:00Z",
             "home_team": HOME, "away_team": AWAY,
             "bookmakers": [{"key": book, "title": book, "last_update": SNAPSHOT,
                             "markets": [{"key": market, "last_update": SNAPSHOT,
                                          "outcomes": [{"name": name, "price": price} for name, price in outcomes]}]}
                            for book, (market, outcomes) in MARKETS.items()]}
    name = f"odds-api/game-lines/{DAY}/{GAME}-AWYHOM/20250302_170000-snap-1700.json"
    return name, json.dumps(event).encode()


@pytest.fixture(scope="module")
def lines(stack):
    upload_all(stack, [_file()])
    stack.wait_idle(expected_events=1)
    statement = sql.table_function_sql(stack.project, stack.dataset, "odds_api_market_snapshots",
                                       ("start_date", "end_date"))
    from google.cloud import bigquery

    config = bigquery.QueryJobConfig(query_parameters=[
        bigquery.ScalarQueryParameter("start_date", "DATE", date.fromisoformat(DAY)),
        bigquery.ScalarQueryParameter("end_date", "DATE", date.fromisoformat(DAY))])
    rows = [dict(r) for r in stack.bigquery().query(statement, job_config=config).result()]
    return {r["bookmaker_key"]: r for r in rows if r["game_id"] == GAME}


def test_one_line_per_market_with_its_outcomes_in_order(lines):
    assert set(lines) == set(MARKETS)
    for book, (_, outcomes) in MARKETS.items():
        assert [s["side"] for s in lines[book]["sides"]] == [name for name, _ in outcomes]
        assert lines[book]["outcomes"] == len(outcomes)


@pytest.mark.parametrize("book", sorted(MARKETS))
def test_every_method_matches_the_reference_and_sums_to_one(lines, book):
    row = lines[book]
    prices = [price for _, price in MARKETS[book][1]]
    want = no_vig(prices)
    assert row["margin"] == pytest.approx(want["margin"], abs=1e-12)
    for method in METHODS:
        got = [s[f"no_vig_{method}"] for s in row["sides"]]
        assert got == pytest.approx(want[method], abs=1e-9), method
        assert abs(sum(got) - 1) < 1e-9, method
        assert row[f"no_vig_{method}_1"] == got[0] and row[f"no_vig_{method}_2"] == got[1]
        assert row[f"fair_decimal_{method}_1"] == pytest.approx(1 / got[0], rel=1e-12)
    for method, column in PARAMETERS.items():
        assert row[column] == pytest.approx(want[column], abs=1e-9), column
    assert row["logarithmic_c"] == pytest.approx(math.log(row["odds_ratio_c"]), abs=1e-12)


def test_the_issues_acceptance_values_to_five_places(lines):
    row = lines["onextwo"]
    five = lambda method: [round(s[f"no_vig_{method}"], 5) for s in row["sides"]]  # noqa: E731
    assert five("shin") == [0.37347, 0.29254, 0.33400]
    assert five("power") == [0.37371, 0.29233, 0.33395]
    # what the 12 unrolled fixed-point steps gave (summing to 1.0088): now far from it
    assert abs(row["sides"][0]["no_vig_shin"] - 0.37622) > 2e-3


def test_the_notes_worked_example_and_an_underround_market(lines):
    notes = lines["notes"]
    four = lambda *xs: tuple(round(x, 4) for x in xs)  # noqa: E731
    assert four(notes["no_vig_shin_1"], notes["no_vig_shin_2"], notes["shin_z"]) == (0.5397, 0.4603, 0.0318)
    assert four(notes["no_vig_power_1"], notes["no_vig_power_2"], notes["power_k"]) == (0.5403, 0.4597, 1.0474)
    under = lines["underround"]
    assert under["margin"] < 0 and under["shin_z"] < 0 < under["power_k"] < 1
    assert [round(s["no_vig_shin"], 12) for s in under["sides"]] == [0.5, 0.5]
