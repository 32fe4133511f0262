"""The MERGE builder: key, partition filter, dedup and update rules, read from the text."""

import re

import pytest

from oddsbatch import sql, tables


def merge_for(endpoint):
    spec = tables.table_for_endpoint(endpoint)
    return spec, sql.merge_sql(spec, sql.table_path("p", "d", "t"), sql.quote("p.d.staging"))


def test_quote_escapes_backticks():
    assert sql.quote("a`b") == "`a\\`b`"
    assert sql.table_path("proj", "ds", "tbl") == "`proj.ds.tbl`"


def test_merge_matches_on_partition_parameter_and_whole_natural_key():
    for endpoint in ("game-lines", "player-props"):
        spec, statement = merge_for(endpoint)
        on = statement.split("\nON ", 1)[1].split("\nWHEN", 1)[0]
        # the group's dates: pruned by their range, kept exactly by the array, each row in its own date
        assert on.startswith("T.`game_date` BETWEEN @first_game_date AND @last_game_date "
                             "AND T.`game_date` IN UNNEST(@game_dates)\n  AND T.`game_date` = S.`game_date`\n")
        assert "@game_date " not in on + " " and "@game_date\n" not in on
        for column in spec.natural_key:
            assert f"T.`{column}`" in on, column
        for column in spec.nullable_key:  # a NULL point must still match NULL
            assert f"T.`{column}` IS NULL AND S.`{column}` IS NULL" in on


def test_outcome_point_and_line_are_part_of_the_key():
    assert "outcome_point" in tables.table_for_endpoint("game-lines").natural_key
    assert "line" in tables.table_for_endpoint("player-props").natural_key


def test_source_is_deduplicated_on_the_natural_key():
    for endpoint in ("game-lines", "player-props"):
        spec, statement = merge_for(endpoint)
        using = statement.split("USING (", 1)[1].split(") AS S", 1)[0]
        key = re.search(r"QUALIFY ROW_NUMBER\(\) OVER \(PARTITION BY (.*?)\n", using).group(1)
        # every key column, taken from the market (M) or from its un-nested row (R)
        assert key.split(", ") == [f"{'R' if c in spec.line_columns else 'M'}.`{c}`" for c in spec.natural_key]
        assert ("WHERE M.`game_date` BETWEEN @first_game_date AND @last_game_date "
                "AND M.`game_date` IN UNNEST(@game_dates)\n") in using


def test_source_unnests_each_market_into_every_staged_column():
    for endpoint in ("game-lines", "player-props"):
        spec, statement = merge_for(endpoint)
        using = statement.split("USING (", 1)[1].split(") AS S", 1)[0]
        assert "FROM `p.d.staging` AS M, UNNEST(M.`market_rows`) AS R" in using
        selected = re.findall(r"([MR])\.`(\w+)` AS `(\w+)`", using.strip().split("\n", 1)[0])
        assert [alias for _, _, alias in selected] == list(spec.staged_columns)
        for side, column, alias in selected:
            assert column == alias and (side == "R") == (column in spec.line_columns)


def test_update_only_when_source_wins_and_a_value_changed():
    spec, statement = merge_for("player-props")
    matched = statement.split("WHEN MATCHED AND ", 1)[1].split("THEN UPDATE", 1)[0]
    assert "S.`source_generation` > T.`source_generation`" in matched
    for column in spec.value_columns:
        compared = f"NOT (T.`{column}` = S.`{column}`" in matched
        # a re-upload (new generation, same values) must not count as a change
        assert compared == (column not in ("source_object", "source_generation")), column
    updated = re.findall(r"^\s+`(\w+)` = S\.", statement.split("THEN UPDATE SET", 1)[1].split("WHEN NOT", 1)[0], re.M)
    assert updated == list(spec.value_columns)
    assert "ingested_at" not in updated


def test_insert_sets_ingested_at_and_every_staged_column():
    spec, statement = merge_for("game-lines")
    insert = statement.split("WHEN NOT MATCHED THEN INSERT (", 1)[1]
    columns = insert.split(")", 1)[0].replace("`", "").split(", ")
    assert columns == list(spec.staged_columns) + ["ingested_at"]
    assert insert.rstrip().endswith("CURRENT_TIMESTAMP())")


def test_no_literal_values_in_statement():
    _, statement = merge_for("game-lines")
    assert not re.search(r"'\d{4}-\d{2}-\d{2}'", statement)


def test_merge_parameters_name_the_group_sorted_and_its_range():
    from datetime import date

    days = [date(2025, 1, 23), date(2025, 1, 21), date(2025, 1, 23), date(2025, 2, 2)]
    assert sql.merge_parameters(days) == {"game_dates": [date(2025, 1, 21), date(2025, 1, 23), date(2025, 2, 2)],
                                          "first_game_date": date(2025, 1, 21), "last_game_date": date(2025, 2, 2)}
    assert sql.merge_parameters([date(2025, 1, 21)])["first_game_date"] == date(2025, 1, 21)  # the group of one
    with pytest.raises(ValueError):
        sql.merge_parameters([])


def test_every_parameter_the_merge_names_is_one_merge_parameters_gives():
    from datetime import date

    for endpoint in ("game-lines", "player-props"):
        _, statement = merge_for(endpoint)
        assert set(re.findall(r"@(\w+)", statement)) == set(sql.merge_parameters([date(2025, 1, 21)]))


def test_the_legacy_import_keeps_its_one_date_parameter():
    spec = tables.table_for_endpoint("game-lines")
    statement = sql.legacy_merge_sql(spec, "`p.d.t`", "SELECT 1")
    assert "T.`game_date` = @game_date" in statement and "@game_dates" not in statement
