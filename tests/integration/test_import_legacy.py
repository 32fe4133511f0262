"""Coming from the old pipeline, on the local stack: old-shaped tables (their column lists copied
from najicham/nba-stats-scraper, tests/data/legacy/PROVENANCE.md) with rows, `oddsbatch
import-legacy` as a dry run, then applied, then applied again (nothing new), and queries
written for the old tables run unchanged against the compatibility views (`nba_raw.*`, made by
`oddsbatch up`) and answer with the rows our tables hold; the table functions (the date-range
form) answer the same.

The old tables sit in dataset nba_raw_archive: nba_raw is the compatibility views' dataset (a
project keeps the old tables elsewhere: another project, `--from-project`, or a renamed dataset).

The old rows hold what an import must get right: an older duplicate copy of a key (the old
loader appended re-runs), rows oddsbatch cannot hold (a price of 1.0, a point with ten
decimals, a prop without a player lookup or without prices), two dates, and two rows whose key
a file ingested by oddsbatch already holds (that row stays).
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from google.api_core.exceptions import BadRequest
from google.cloud import bigquery

from oddsbatch import cli

from .test_end_to_end import upload_all

pytestmark = pytest.mark.integration

OLD_DATASET = "nba_raw_archive"
SCHEMAS = Path(__file__).resolve().parents[1] / "data" / "legacy"
DAY, DAY2 = "2025-01-20", "2025-01-21"
G1, G2 = "c0ffee00c0ffee00c0ffee00c0ffee01", "c0ffee00c0ffee00c0ffee00c0ffee02"
HOME, AWAY = "Denver Nuggets", "Los Angeles Lakers"
TIP = datetime(2025, 1, 21, 2, 0, tzinfo=timezone.utc)
S1, S2, S3 = TIP - timedelta(hours=5), TIP - timedelta(hours=2), TIP - timedelta(minutes=90)
OLD_PROCESSED, NEW_PROCESSED = "2025-01-21T09:00:00Z", "2025-01-21T10:00:00Z"


def _ts(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _line(game, day, snap, book, market, name, price, point=None, processed=NEW_PROCESSED, tip=TIP):
    return {"snapshot_timestamp": _ts(snap), "game_id": game, "sport_key": "basketball_nba", "sport_title": "NBA",
            "commence_time": _ts(tip), "game_date": day, "home_team": HOME, "away_team": AWAY,
            "home_team_abbr": "DEN", "away_team_abbr": "LAL", "bookmaker_key": book, "bookmaker_title": book.title(),
            "bookmaker_last_update": _ts(snap), "market_key": market, "market_last_update": _ts(snap),
            "outcome_name": name, "outcome_price": price, "outcome_point": point,
            "source_file_path": f"odds-api/game-lines/{day}/{game}-LALDEN/{snap:%Y%m%d_%H%M%S}-snap-{snap:%H%M}.json",
            "data_source": "current", "created_at": processed, "data_hash": "x", "processed_at": processed}


OLD_GAME_LINES = [
    _line(G1, DAY, S1, "draftkings", "spreads", HOME, 1.91, -3.5),
    _line(G1, DAY, S1, "draftkings", "spreads", AWAY, 1.91, 3.5),
    _line(G1, DAY, S1, "draftkings", "spreads", HOME, 1.95, -3.5, processed=OLD_PROCESSED),  # older copy
    _line(G1, DAY, S1, "fanduel", "spreads", HOME, 1.90, -4.5),
    _line(G1, DAY, S1, "fanduel", "spreads", AWAY, 1.92, 4.5),
    _line(G1, DAY, S2, "fanduel", "totals", "Over", 1.87, 228.5),
    _line(G1, DAY, S2, "fanduel", "totals", "Under", 1.95, 228.5),
    _line(G1, DAY, S2, "fanduel", "h2h", HOME, 1.0),  # refused: not a decimal price
    _line(G1, DAY, S2, "fanduel", "totals", "Over", 1.9, 228.0000000001),  # refused: ten decimals
    _line(G1, DAY, S3, "draftkings", "h2h", HOME, 1.55),  # already held: the file below
    _line(G1, DAY, S3, "draftkings", "h2h", AWAY, 2.45),
    _line(G2, DAY2, S1 + timedelta(days=1), "draftkings", "h2h", HOME, 1.70, tip=TIP + timedelta(days=1)),
    _line(G2, DAY2, S1 + timedelta(days=1), "draftkings", "h2h", AWAY, 2.20, tip=TIP + timedelta(days=1)),
]


def _prop(snap, line, over, under, over_american=None, under_american=None, lookup="lebronjames",
          processed=NEW_PROCESSED, player="LeBron James"):
    return {"game_id": "20250120_LAL_DEN", "odds_api_event_id": G1, "game_date": DAY, "game_start_time": _ts(TIP),
            "home_team_abbr": "DEN", "away_team_abbr": "LAL", "snapshot_timestamp": _ts(snap),
            "snapshot_tag": f"snap-{snap:%H%M}", "capture_timestamp": _ts(snap),
            "minutes_before_tipoff": int((TIP - snap).total_seconds() // 60), "bookmaker": "draftkings",
            "player_name": player, "player_lookup": lookup, "points_line": line, "over_price": over,
            "over_price_american": over_american, "under_price": under, "under_price_american": under_american,
            "bookmaker_last_update": _ts(snap),
            "source_file_path": f"odds-api/player-props/{DAY}/{G1}-LALDEN/{snap:%Y%m%d_%H%M%S}-snap-{snap:%H%M}.json",
            "data_source": "current", "data_hash": "x", "processed_at": processed}


OLD_PROPS = [
    _prop(S1, 24.5, 1.87, 1.95, -115, -105),
    _prop(S1, 24.5, 1.80, 2.00, -125, 100, processed=OLD_PROCESSED),  # older copy
    _prop(S2, 25.5, 1.91, 1.91),  # american prices missing: computed (-110)
    _prop(S2, 19.5, 1.91, 1.91, lookup=None, player="Nikola Jokic"),  # refused: no lookup
    _prop(S2, 9.5, None, None, player="Jamal Murray", lookup="jamalmurray"),  # refused: no price
]


def _live_file() -> tuple[str, bytes]:
    """The draftkings h2h of G1 at S3, as a file the scraper dropped (decimal prices)."""
    event = {"id": G1, "sport_key": "basketball_nba", "sport_title": "NBA", "commence_time": _ts(TIP),
             "home_team": HOME, "away_team": AWAY,
             "bookmakers": [{"key": "draftkings", "title": "DraftKings", "last_update": _ts(S3),
                             "markets": [{"key": "h2h", "last_update": _ts(S3),
                                          "outcomes": [{"name": HOME, "price": 1.57}, {"name": AWAY, "price": 2.40}]}]}]}
    return f"odds-api/game-lines/{DAY}/{G1}-LALDEN/{S3:%Y%m%d_%H%M%S}-snap-{S3:%H%M}.json", json.dumps(event).encode()


def _create_old_table(client, project: str, name: str, rows: list[dict], require_filter: bool) -> None:
    fields = json.loads((SCHEMAS / f"{name}.json").read_text())
    table = bigquery.Table(f"{project}.{OLD_DATASET}.{name}", schema=[bigquery.SchemaField.from_api_repr(f) for f in fields])
    table.time_partitioning = bigquery.TimePartitioning(field="game_date")
    table.require_partition_filter = require_filter
    client.create_table(table, exists_ok=True)
    client.load_table_from_json(rows, table.reference, job_config=bigquery.LoadJobConfig(
        schema=table.schema, write_disposition="WRITE_TRUNCATE")).result()


@pytest.fixture(scope="module")
def old_tables(stack):
    client = stack.bigquery()
    client.create_dataset(f"{stack.project}.{OLD_DATASET}", exists_ok=True)
    _create_old_table(client, stack.project, "odds_api_game_lines", OLD_GAME_LINES, require_filter=True)
    _create_old_table(client, stack.project, "odds_api_player_points_props", OLD_PROPS, require_filter=False)
    upload_all(stack, [_live_file()])
    stack.wait_idle(expected_events=1)
    return stack


def _query(stack, statement: str) -> list[dict]:
    return [dict(r) for r in stack.bigquery().query(statement).result()]


def _ours(stack, table: str, where: str) -> list[dict]:
    return _query(stack, f"SELECT * FROM `{stack.project}.{stack.dataset}.{table}` "
                         f"WHERE game_date BETWEEN '{DAY}' AND '{DAY2}' AND {where}")


def _import(capsys, *flags) -> list[str]:
    assert cli.main(["import-legacy", "--from", DAY, "--to", DAY2, "--from-dataset", OLD_DATASET, *flags]) == 0
    return capsys.readouterr().out.splitlines()


def test_dry_run_then_import_then_nothing_new(old_tables, capsys):
    stack = old_tables
    before = len(_ours(stack, "odds_api_game_lines", f"game_id IN ('{G1}', '{G2}')"))
    assert before == 2  # the live file's two outcomes
    old = f"{stack.project}.{OLD_DATASET}"
    lines = f"import-legacy: odds_api_game_lines <- {old}.odds_api_game_lines {DAY}..{DAY2} dates=2 read=13"
    props = f"import-legacy: odds_api_player_props <- {old}.odds_api_player_points_props {DAY}..{DAY2} dates=1 read=5"
    assert _import(capsys) == [
        f"{lines} would_insert=8 already_present=2 duplicate=1 refused=2 (point_not_exact=1, price_not_decimal=1)"
        " (dry run: nothing written)",
        f"{props} would_insert=2 already_present=0 duplicate=1 refused=2 (missing_player_lookup=1, no_price=1)"
        " (dry run: nothing written)"]
    assert len(_ours(stack, "odds_api_game_lines", f"game_id IN ('{G1}', '{G2}')")) == before
    assert _ours(stack, "odds_api_player_props", f"game_id = '{G1}'") == []

    assert _import(capsys, "--apply") == [
        f"{lines} inserted=8 already_present=2 duplicate=1 refused=2 (point_not_exact=1, price_not_decimal=1)",
        f"{props} inserted=2 already_present=0 duplicate=1 refused=2 (missing_player_lookup=1, no_price=1)"]
    assert _import(capsys, "--apply") == [
        f"{lines} inserted=0 already_present=10 duplicate=1 refused=2 (point_not_exact=1, price_not_decimal=1)",
        f"{props} inserted=0 already_present=2 duplicate=1 refused=2 (missing_player_lookup=1, no_price=1)"]

    held = {(r["bookmaker_key"], r["market_key"], r["outcome_name"], r["snapshot_timestamp"]): r
            for r in _ours(stack, "odds_api_game_lines", f"game_id IN ('{G1}', '{G2}')")}
    assert len(held) == 10
    dk_home = held[("draftkings", "spreads", HOME, S1)]
    assert (dk_home["price_decimal"], dk_home["price_american"], str(dk_home["outcome_point"])) == (1.91, -110, "-3.5")
    assert (dk_home["snapshot_source"], dk_home["source_generation"]) == ("legacy", 0)
    live = held[("draftkings", "h2h", HOME, S3)]
    assert live["price_decimal"] == 1.57 and live["snapshot_source"] != "legacy"  # the ingested file's row stayed
    assert live["source_generation"] > 0


def test_a_single_table_and_bad_input_end_in_one_line(old_tables, capsys):
    assert cli.main(["import-legacy", "--from", DAY, "--to", DAY, "--table", "player-points-props",
                     "--from-dataset", OLD_DATASET]) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 1 and "odds_api_player_props" in out[0]
    for argv in (["--from", "2025-13-01", "--to", DAY], ["--from", DAY2, "--to", DAY],
                 ["--from", DAY, "--to", DAY, "--table", "odds"],
                 ["--from", DAY, "--to", DAY, "--from-dataset", "no_such_dataset"]):
        assert cli.main(["import-legacy", *argv]) == 2, argv
        err = capsys.readouterr().err
        assert err.startswith("oddsbatch import-legacy: ") and err.count("\n") == 1, err


# -- queries written for the old tables --------------------------------------------------------
# Run as written, against the compatibility views. The date-range form names the table function
# with the range after it instead of the old name: it answers the same.
OLD_REFERENCES = {"`nba_raw.odds_api_game_lines`": "odds_api_game_lines_legacy",
                  "`nba_raw.odds_api_player_points_props`": "odds_api_player_points_props",
                  "`nba_raw.odds_api_game_lines_preferred`": "odds_api_game_lines_preferred"}


def table_function_form(stack, query: str, start: str, end: str) -> str:
    for old, function in OLD_REFERENCES.items():
        query = query.replace(old, f"`{stack.project}.{stack.dataset}.{function}`(DATE '{start}', DATE '{end}')")
    return query


OLD_SPREADS_QUERY = f"""
SELECT bookmaker_key, outcome_name, outcome_price, outcome_point, snapshot_timestamp, data_source
FROM `nba_raw.odds_api_game_lines`
WHERE game_date = '{DAY}' AND game_id = '{G1}' AND market_key = 'spreads'
ORDER BY bookmaker_key, outcome_name
"""

OLD_PLAYER_QUERY = """
SELECT player_name, bookmaker, points_line, over_price, over_price_american, under_price_american,
       minutes_before_tipoff, snapshot_timestamp, snapshot_tag
FROM `nba_raw.odds_api_player_points_props`
WHERE game_date = '2025-01-20' AND game_id = '20250120_LAL_DEN' AND player_name = 'LeBron James'
ORDER BY snapshot_timestamp
"""

OLD_PREFERRED_QUERY = f"""
SELECT market_key, outcome_name, bookmaker_key, outcome_price
FROM `nba_raw.odds_api_game_lines_preferred`
WHERE game_date = '{DAY}' AND game_id = '{G1}'
ORDER BY market_key, outcome_name
"""


@pytest.mark.usefixtures("old_tables")
def test_queries_written_for_the_old_tables_run_unchanged_and_return_what_our_tables_hold(stack, capsys):
    _import(capsys, "--apply")  # idempotent: whatever ran before, the old rows are in
    ours = _ours(stack, "odds_api_game_lines", f"game_id = '{G1}' AND market_key = 'spreads'")
    want = sorted(((r["bookmaker_key"], r["outcome_name"], r["price_decimal"], float(r["outcome_point"]),
                    r["snapshot_timestamp"], "current") for r in ours))
    got = _query(stack, OLD_SPREADS_QUERY)
    assert [tuple(r.values()) for r in got] == want and len(want) == 4

    ours = _ours(stack, "odds_api_player_props", f"game_id = '{G1}' AND player_name = 'LeBron James'")
    want = sorted(((r["player_name"], r["bookmaker_key"], float(r["line"]), r["over_price_decimal"],
                    r["over_price_american"], r["under_price_american"], r["minutes_before_tipoff"],
                    r["snapshot_timestamp"], f"snap-{r['snapshot_timestamp']:%H%M}") for r in ours),
                  key=lambda t: t[7])
    got = _query(stack, OLD_PLAYER_QUERY)
    assert [tuple(r.values()) for r in got] == want
    # one row per over/under pair, as the old table: the newest copy of S1, S2's computed american
    assert [(r["points_line"], r["over_price"], r["over_price_american"], r["under_price_american"]) for r in got] == \
        [(24.5, 1.87, -115, -105), (25.5, 1.91, -110, -110)]

    got = _query(stack, OLD_PREFERRED_QUERY)
    assert [tuple(r.values()) for r in got] == [
        ("h2h", HOME, "draftkings", 1.57), ("h2h", AWAY, "draftkings", 2.40),  # the ingested file's prices
        ("spreads", HOME, "draftkings", 1.91), ("spreads", AWAY, "draftkings", 1.91),  # draftkings before fanduel
        ("totals", "Over", "fanduel", 1.87), ("totals", "Under", "fanduel", 1.95)]

    # the date-range form (the table functions) answers the same
    for query in (OLD_SPREADS_QUERY, OLD_PLAYER_QUERY, OLD_PREFERRED_QUERY, OLD_DOWNSTREAM_QUERY):
        assert _query(stack, table_function_form(stack, query, DAY, DAY)) == _query(stack, query)


# A downstream query of the kind the old tables fed: each points line beside the home spread the
# same book quoted in the same snapshot (a join of the two tables, by date).
OLD_DOWNSTREAM_QUERY = f"""
SELECT p.player_lookup, p.snapshot_timestamp, p.points_line, g.outcome_point AS home_spread
FROM `nba_raw.odds_api_player_points_props` AS p
JOIN `nba_raw.odds_api_game_lines` AS g
  ON g.game_id = p.odds_api_event_id AND g.game_date = p.game_date AND g.bookmaker_key = p.bookmaker
 AND g.snapshot_timestamp = p.snapshot_timestamp AND g.market_key = 'spreads' AND g.outcome_name = g.home_team
WHERE p.game_date = '{DAY}' AND g.game_date = '{DAY}'
ORDER BY p.player_lookup, p.snapshot_timestamp
"""


@pytest.mark.usefixtures("old_tables")
def test_a_downstream_join_runs_unchanged_and_an_unfiltered_query_is_refused_as_on_bigquery(stack, capsys):
    """The views keep BigQuery's rule of the base tables: a query without a game_date filter is
    refused with the table's message (the old game-lines table required the filter too)."""
    assert stack.env["ODDSBATCH_LEGACY_DATASET"] == "nba_raw"  # oddsbatch up's default: the old name
    _import(capsys, "--apply")
    # draftkings quoted LeBron's points and the spread together at S1 only (S2's prop has no spread)
    assert [tuple(r.values()) for r in _query(stack, OLD_DOWNSTREAM_QUERY)] == [("lebronjames", S1, 24.5, -3.5)]
    for view, base, other_column in (("odds_api_player_points_props", "odds_api_player_props", "bookmaker"),
                                     ("odds_api_game_lines", "odds_api_game_lines", "bookmaker_key"),
                                     ("odds_api_game_lines_preferred", "odds_api_game_lines", "bookmaker_key")):
        with pytest.raises(BadRequest) as refused:
            _query(stack, f"SELECT COUNT(*) FROM `nba_raw.{view}` WHERE {other_column} IS NOT NULL")
        assert (f"Cannot query over table '{stack.project}.{stack.dataset}.{base}' without a filter over column(s) "
                "'game_date' that can be used for partition elimination") in refused.value.message, view


@pytest.mark.usefixtures("old_tables")
def test_the_compatibility_functions_have_the_old_columns(stack):
    """Same names, order and types as the old tables (the preferred view: all but data_source
    and data_hash), read from the emulator's answer to the old columns' query."""
    for function, old_table in (("odds_api_game_lines_legacy", "odds_api_game_lines"),
                                ("odds_api_player_points_props", "odds_api_player_points_props")):
        fields = json.loads((SCHEMAS / f"{old_table}.json").read_text())
        legacy_name = {"FLOAT": "FLOAT64", "INTEGER": "INT64"}
        for source in (f"`{stack.project}.{stack.dataset}.{function}`(DATE '{DAY}', DATE '{DAY}')",
                       f"`nba_raw.{old_table}` WHERE game_date = '{DAY}'"):  # the view, as the old name
            schema = stack.bigquery().query(f"SELECT * FROM {source} LIMIT 0").result().schema
            assert [(f.name, legacy_name.get(f.field_type, f.field_type)) for f in schema] == \
                [(f["name"], f["type"]) for f in fields], source
