"""The compatibility views (schemas/legacy_views/): the old shapes written once, read in order."""

from __future__ import annotations

import json
import re

import pytest

from oddsbatch import routines

LEGACY_FUNCTIONS = {"odds_api_game_lines_legacy": "odds_api_game_lines",
                    "odds_api_player_points_props": "odds_api_player_points_props",
                    "odds_api_game_lines_preferred": "odds_api_game_lines_preferred"}


def _sql(template: str) -> str:
    """The statement without its comments."""
    return "\n".join(line for line in template.splitlines() if not line.lstrip().startswith("--")).strip()


def test_views_come_after_the_views_they_read_and_carry_the_old_names():
    views = routines.all_legacy_views()
    assert [v.name for v in views] == ["odds_api_game_lines", "odds_api_player_points_props",
                                       "odds_api_game_lines_preferred"]
    assert views[-1].reads == ("odds_api_game_lines",)
    sql = views[-1].create_sql("p", "odds_api")
    assert sql.startswith("CREATE OR REPLACE VIEW `p.nba_raw.odds_api_game_lines_preferred`\n")
    assert "FROM `p.nba_raw.odds_api_game_lines`" in sql
    assert "FROM `p.other.odds_api_game_lines`" in views[-1].create_sql("p", "odds_api", "other")


def test_each_old_shape_is_written_once_the_table_functions_select_from_the_views():
    templates = {r.name: r.template for r in routines.all_routines()}
    for function, view in LEGACY_FUNCTIONS.items():
        assert _sql(templates[function]) == (f"SELECT *\nFROM `${{project}}.${{legacy_dataset}}.{view}`\n"
                                             "WHERE game_date BETWEEN start_date AND end_date"), function
    # the mapping of each old column lives in one file of either directory
    every_file = [*routines.ROUTINE_DIR.glob("*.sql"), *routines.LEGACY_VIEW_DIR.glob("*.sql")]
    for mapping in ("price_decimal AS outcome_price", "over_price_decimal AS over_price",
                    "WHEN 'draftkings' THEN 1"):
        holders = [p.name for p in every_file if mapping in _sql(p.read_text())]
        assert len(holders) == 1, (mapping, holders)


@pytest.fixture
def view_dir(tmp_path, monkeypatch):
    monkeypatch.setattr(routines, "LEGACY_VIEW_DIR", tmp_path)
    routines.all_legacy_views.cache_clear()
    yield tmp_path
    routines.all_legacy_views.cache_clear()


@pytest.mark.parametrize("meta, message", [
    ({"a": {"description": "d", "reads": ["b"]}}, "a reads b, which is no view"),
    ({"a": {"description": "d"}, "b": {"description": "d", "reads": ["a"]}, "c": {"description": "d", "reads": ["b"]}},
     "c reads a view that reads views"),
])
def test_a_view_reading_what_terraform_cannot_order_is_refused(view_dir, meta, message):
    (view_dir / "views.json").write_text(json.dumps(meta))
    for name in meta:
        (view_dir / f"{name}.sql").write_text("SELECT 1 AS x")
    with pytest.raises(ValueError, match=re.escape(message)):
        routines.all_legacy_views()
