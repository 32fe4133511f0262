"""How the season bench (bench/season_bench.py) reads what ran: MERGE jobs per target table with
queue refusals apart, natural-key values in one form from either side, a seeded -history tree."""

from __future__ import annotations

from datetime import date, datetime, timezone
from decimal import Decimal
from types import SimpleNamespace

from bench import season_bench
from oddsbatch import sql
from oddsbatch.tables import all_tables

REFUSED = {"reason": "resourcesExceeded",
           "message": "Resources exceeded during query execution: Too many DML statements outstanding against "
                      "table p:odds_api.odds_api_game_lines, limit is 20"}


def job(job_id, query, statement_type="MERGE", error=None):
    return SimpleNamespace(job_id=job_id, query=query, statement_type=statement_type, error_result=error)


def merge_into(table: str) -> str:
    spec = all_tables()[table]
    return sql.merge_sql(spec, sql.table_path("p", "odds_api", table), sql.quote("p.odds_api.staging"))


def test_merges_are_counted_per_target_table_with_refusals_apart():
    lines = merge_into("odds_api_game_lines")
    counts = season_bench.dml_jobs([
        job("run_1_merge", lines),
        job("run_2_merge", lines, statement_type=None, error=REFUSED),  # refused jobs carry no statement type
        job("run_3_merge", lines, error={"reason": "invalidQuery", "message": "Could not serialize access"}),
        job("bench_count", "SELECT COUNT(*) AS n FROM t", statement_type="SELECT"),
        job("run_4_merge", merge_into("odds_api_player_props")),
    ])
    assert counts["odds_api_game_lines"] == {"merged": 1, "refused": 1, "failed": 1}
    assert counts["odds_api_player_props"] == {"merged": 1, "refused": 0}


def test_a_merge_in_a_form_the_pattern_misses_is_still_counted():
    script = "DECLARE d DATE DEFAULT '2025-10-21'; MERGE `p.odds_api.odds_api_player_props` T USING s ON FALSE"
    counts = season_bench.dml_jobs([job("x", script), job("y", "UPDATE t SET a = 1", statement_type="UPDATE")])
    assert counts["odds_api_player_props"]["merged"] == 1
    assert sum(c["merged"] for c in counts.values()) == 1


def test_key_values_read_the_same_from_transform_and_from_bigquery():
    pairs = [
        ("2025-10-21T12:50:23Z", datetime(2025, 10, 21, 12, 50, 23, tzinfo=timezone.utc)),
        ("2025-10-21", date(2025, 10, 21)),
        (26.5, Decimal("26.500000000")),
        (10.0, Decimal("10")),
        (-0.0, Decimal("0")),  # NUMERIC has no negative zero
        ("draftkings", "draftkings"),
        (None, None),
    ]
    for staged, stored in pairs:
        assert season_bench.key_value(staged) == season_bench.key_value(stored), (staged, stored)
    assert season_bench.key_value(26.5) != season_bench.key_value(Decimal("-26.5"))


def test_the_season_tree_is_seeded_and_under_history():
    days = [date(2025, 10, 21), date(2025, 10, 22)]
    files = season_bench.season_files(days, games=1, snapshots=2, seed=7)
    assert files == season_bench.season_files(days, games=1, snapshots=2, seed=7)
    assert len(files) == 2 * 2 * 2
    assert {name.split("/")[1] for name, _ in files} == {"game-lines-history", "player-props-history"}
    assert season_bench.scale(2) == (2, 1) and season_bench.scale(210) == (7, 30)
