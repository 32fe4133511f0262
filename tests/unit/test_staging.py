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
    groups = transform.markets_for_object(name, data, generation=9)
    encoded = staging.encode(groups)
    assert unnested(encoded, endpoint) == transform.rows_for_object(name, data, generation=9)
    assert staging.row_count(groups) == len(transform.rows_for_object(name, data, generation=9)) > 0


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


def _plain(groups):
    """The same groups as plain dicts: encode writes them item by item, without the texts."""
    return [(dict(head), [dict(row) for row in rows]) for head, rows in groups]


@pytest.mark.parametrize("name,data", list(files()), ids=lambda v: v if isinstance(v, str) else "")
def test_the_texts_the_transform_writes_are_exactly_what_the_encoder_writes(name, data):
    groups = transform.markets_for_object(name, data, generation=9)
    assert all(isinstance(r, staging.StagedRow) for head, rows in groups for r in [head, *rows])
    assert staging.encode(groups) == staging.encode(_plain(groups))


def test_a_row_changed_after_the_transform_is_staged_as_changed():
    name, data = next(n_d for n_d in synthesize_day(date(2025, 2, 3), games=1, snapshots=1, seed=3)
                      if "game-lines" in n_d[0])
    groups = transform.markets_for_object(name, data, generation=2)
    groups[0][1][0]["price_american"] = 10 ** 30
    groups[1][0]["market_key"] = "changed"
    groups[2][1][0].update(outcome_name="also changed")
    del groups[3][1][0]["price_decimal"]
    assert staging.encode(groups) == staging.encode(_plain(groups))
    lines = staging.decode(staging.encode(groups))
    assert lines[0][1][0]["price_american"] == 10 ** 30 and lines[1][0]["market_key"] == "changed"
    assert lines[2][1][0]["outcome_name"] == "also changed" and "price_decimal" not in lines[3][1][0]


@pytest.mark.parametrize("value", [0.0, -0.0, 1, 1.0, True, None, "Théo", 2 ** 70, float("nan")])
def test_equal_values_of_different_types_keep_their_own_text(value):
    head = staging.StagedRow({"game_date": "2025-02-03"})
    head.json = '{"game_date":"2025-02-03"}'
    row = staging.StagedRow({"line": value})
    row.json = staging.object_text({"line": value})
    expected = json.dumps({"game_date": "2025-02-03", MARKET_ROWS_FIELD: [{"line": value}]}, separators=(",", ":"))
    assert staging.encode([(head, [row])]) == (expected + "\n").encode()


def test_zero_and_negative_zero_points_keep_their_sign_in_the_staged_text():
    outcomes = [{"name": "A", "price": -110, "point": -0.0}, {"name": "B", "price": -110, "point": 0.0},
                {"name": "Over", "price": 120, "point": -0.0}, {"name": "Under", "price": 120, "point": 0.0}]
    event = {"id": "e1", "commence_time": "2025-02-04T00:00:00Z", "home_team": "A", "away_team": "B",
             "bookmakers": [{"key": "book", "markets": [{"key": "spreads", "outcomes": outcomes[:2]}]}]}
    props = dict(event, bookmakers=[{"key": "book", "markets": [
        {"key": "player_points", "outcomes": [dict(o, description="P Q") for o in outcomes[2:]]}]}])
    for endpoint, payload in (("game-lines", event), ("player-props", props)):
        name = f"odds-api/{endpoint}/2025-02-03/20250203_120000-snap-1200.json"
        groups = transform.markets_for_object(name, json.dumps(payload).encode(), generation=1)
        assert staging.encode(groups) == staging.encode(_plain(groups))
        assert b"-0.0" in staging.encode(groups)
