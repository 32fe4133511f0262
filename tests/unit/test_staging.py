"""Unit tests of the staging format (oddsbatch.staging): exact, lossless, narrow.

What the load job reads, un-nested the way the MERGE un-nests it, must be exactly the rows
`transform.rows_for_object` gives, for every sample and for a whole synthetic day.
"""

from __future__ import annotations

import json
import sys
from datetime import date
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
try:
    import oddsbatch  # noqa: F401
except ImportError:  # not pip-installed: use the source tree
    sys.path.insert(0, str(ROOT / "shared"))

from oddsbatch import staging, transform  # noqa: E402
from oddsbatch.paths import parse_object_name  # noqa: E402
from oddsbatch.synth import synthesize_day  # noqa: E402
from oddsbatch.tables import MARKET_ROWS_FIELD, all_tables, table_for_endpoint  # noqa: E402

from .test_transform import SAMPLES, load  # noqa: E402


def unnested(data: bytes, endpoint: str) -> list[dict]:
    """Staged bytes read back as a load job + UNNEST would: a missing field is NULL."""
    return transform.flatten(staging.decode(data), table_for_endpoint(endpoint))


def files():
    for sample, (name, _) in SAMPLES.items():
        yield name, load(sample)
    yield from synthesize_day(date(2025, 11, 2), games=2, snapshots=3, seed=11)  # DST change day
    yield from synthesize_day(date(2025, 2, 3), games=2, snapshots=2, seed=5, price_format="decimal",
                              historical=True)


@pytest.mark.parametrize("name,data", list(files()), ids=lambda v: v if isinstance(v, str) else "")
def test_staged_bytes_unnest_to_exactly_the_transform_rows(name, data):
    endpoint = parse_object_name(name).endpoint
    staged = transform.staged_for_object(name, data, generation=9)  # what a holder loads
    rows = transform.rows_for_object(name, data, generation=9)
    assert unnested(staged.ndjson, endpoint) == rows
    assert staged.rows == len(rows) > 0
    assert staged.snapshot == rows[0]["snapshot_timestamp"]


def test_each_line_is_one_market_with_its_head_once_and_rows_without_nulls():
    name, data = next(n_d for n_d in synthesize_day(date(2025, 2, 3), games=1, snapshots=1, seed=3)
                      if "player-props" in n_d[0])
    spec = table_for_endpoint("player-props")
    lines = staging.encode(transform.markets_for_object(name, data, generation=2)).splitlines()
    payload = json.loads(data)
    markets = sum(len(b["markets"]) for b in payload["bookmakers"])
    assert len(lines) == markets
    for line in lines:
        market = json.loads(line)
        assert set(market) == set(spec.head_columns) | {MARKET_ROWS_FIELD}
        for row in market[MARKET_ROWS_FIELD]:
            assert set(row) <= set(spec.line_columns)
            assert None not in row.values()  # absent means NULL: nulls cost bytes, not meaning


def test_encode_is_json_dumps_per_market_and_empty_is_empty():
    head = {"game_date": "2025-02-03", "title": "Théo"}
    rows = [{"player_name": "A", "line": 10.5}, {"player_name": "B"}]
    expected = json.dumps({**head, MARKET_ROWS_FIELD: rows}, separators=(",", ":")) + "\n"
    assert staging.encode([(head, rows)]) == expected.encode()
    assert staging.encode([]) == b""


def test_staged_bytes_are_a_fraction_of_flat_rows():
    day = list(synthesize_day(date(2025, 2, 3), games=2, snapshots=2, seed=5))
    grouped = flat = 0
    for name, data in day:
        grouped += len(staging.encode(transform.markets_for_object(name, data)))
        flat += sum(len(json.dumps(r, separators=(",", ":"))) + 1 for r in transform.rows_for_object(name, data))
    assert grouped * 3 < flat, (grouped, flat)


@pytest.mark.parametrize("spec", list(all_tables().values()), ids=lambda s: s.name)
def test_staging_schema_holds_every_staged_column_once(spec):
    fields = spec.staging_schema()
    head = [f["name"] for f in fields if f["name"] != MARKET_ROWS_FIELD]
    (nested,) = [f for f in fields if f["name"] == MARKET_ROWS_FIELD]
    assert nested["type"] == "RECORD" and nested["mode"] == "REPEATED"
    inner = [f["name"] for f in nested["fields"]]
    assert sorted(head + inner) == sorted(spec.staged_columns)
    assert set(inner) == set(spec.line_columns)
    assert set(spec.natural_key) <= set(spec.staged_columns)


@pytest.mark.parametrize("name,data", list(files()), ids=lambda v: v if isinstance(v, str) else "")
def test_the_text_the_transform_writes_is_exactly_what_the_encoder_writes_of_its_rows(name, data):
    staged = transform.staged_for_object(name, data, generation=9)
    groups = transform.markets_for_object(name, data, generation=9)
    assert staged.ndjson == staging.encode(groups)
    assert staged.rows == staging.row_count(groups)


def _staged_and_encoded(endpoint: str, payload: dict) -> tuple[bytes, bytes]:
    name = f"odds-api/{endpoint}/2025-02-03/20250203_120000-snap-1200.json"
    data = json.dumps(payload).encode()
    return (transform.staged_for_object(name, data, generation=1).ndjson,
            staging.encode(transform.markets_for_object(name, data, generation=1)))


def _one_market(endpoint: str, outcomes: list[dict]) -> dict:
    market = "player_points" if endpoint == "player-props" else "spreads"
    return {"id": "e1", "commence_time": "2025-02-04T00:00:00Z", "home_team": "A", "away_team": "B",
            "bookmakers": [{"key": "book", "markets": [{"key": market, "outcomes": outcomes}]}]}


@pytest.mark.parametrize("endpoint", ["game-lines", "player-props"])
def test_texts_made_once_per_file_fit_every_row_that_shares_them(endpoint):
    """The writer's per-file texts are keyed by value: equal values of other types (an american
    price as an int and as a whole float), the same player on other lines, a side given twice
    (the last price wins), the rarer shapes of a row (one side only, no line) all stage exactly
    what the encoder writes of the rows."""
    if endpoint == "player-props":
        outcomes = [{"name": "Over", "description": "P Q", "price": -110, "point": 10.5},
                    {"name": "Under", "description": "P Q", "price": -110.0, "point": 10.5},
                    {"name": "Over", "description": "P Q", "price": 120, "point": 11.5},
                    {"name": "Over", "description": "P Q", "price": 125, "point": 11.5},  # twice: last wins
                    {"name": "Yes", "description": "Théo Ñ", "price": 300},
                    {"name": "Under", "description": "R S", "price": -110, "point": 2}]
    else:
        outcomes = [{"name": "A", "price": -110, "point": 1.5}, {"name": "B", "price": -110.0, "point": -1.5},
                    {"name": "A", "price": 150}, {"name": "Théo", "description": "x", "price": 150.0, "point": 2},
                    {"name": "B", "price": -120, "point": -1.5}]  # B -1.5 again: the last one wins
    staged, encoded = _staged_and_encoded(endpoint, _one_market(endpoint, outcomes))
    assert staged == encoded
    assert b"\\u00e9" in staged  # the encoder's ASCII escapes
    (line,) = staging.decode(staged)
    if endpoint == "player-props":
        assert [(r["line"] if "line" in r else None, r.get("over_price_american"), r.get("under_price_american"),
                 r.get("yes_price_american")) for r in line[1]] == [
            (10.5, -110, -110, None), (11.5, 125, None, None), (None, None, None, 300), (2.0, None, -110, None)]
    else:
        assert [(r["outcome_name"], r.get("outcome_point"), r["price_american"]) for r in line[1]] == [
            ("A", 1.5, -110), ("A", None, 150), ("Théo", 2.0, 150), ("B", -1.5, -120)]


def test_zero_and_negative_zero_points_keep_their_sign_in_the_staged_text():
    outcomes = [{"name": "A", "price": -110, "point": -0.0}, {"name": "B", "price": -110, "point": 0.0},
                {"name": "Over", "price": 120, "point": -0.0}, {"name": "Under", "price": 120, "point": 0.0}]
    event = {"id": "e1", "commence_time": "2025-02-04T00:00:00Z", "home_team": "A", "away_team": "B",
             "bookmakers": [{"key": "book", "markets": [{"key": "spreads", "outcomes": outcomes[:2]}]}]}
    props = dict(event, bookmakers=[{"key": "book", "markets": [
        {"key": "player_points", "outcomes": [dict(o, description="P Q") for o in outcomes[2:]]}]}])
    for endpoint, payload in (("game-lines", event), ("player-props", props)):
        staged, encoded = _staged_and_encoded(endpoint, payload)
        assert staged == encoded
        assert b"-0.0" in staged
