"""Every statement oddsbatch can send to BigQuery, analyzed by ZetaSQL (tests/googlesql.py).

The SQL builders in oddsbatch.sql are the only source of the statements the functions,
reconcile, status, the demo and the benchmark run; the table functions come from
oddsbatch.routines. A builder or routine added without a check here fails the coverage tests.
"""

from __future__ import annotations

import inspect
import json
from pathlib import Path

import pytest

from oddsbatch import legacy, routines, sql
from oddsbatch.tables import all_tables
from tests.googlesql import GoogleSQLError, GoogleSQL, staging_name

PROJECT, DATASET = "test-project", "odds_api"
TABLES = sorted(all_tables())


def target(table: str) -> str:
    return sql.table_path(PROJECT, DATASET, table)


# The old pipeline's tables (tests/data/legacy, copied with provenance), in their own dataset: not
# nba_raw, which holds our compatibility views of the same names (routines.LEGACY_DATASET).
LEGACY_DATASET = "nba_raw_archive"
LEGACY_SCHEMAS = Path(__file__).resolve().parents[1] / "data" / "legacy"


def legacy_source(spec) -> legacy.LegacySource:
    return next(s for s in legacy.SOURCES.values() if s.target == spec.name)


def legacy_rows(spec) -> str:
    source = legacy_source(spec)
    return sql.legacy_rows_sql(spec, source.columns, source.refusals, source.newest_first,
                               sql.table_path(PROJECT, LEGACY_DATASET, source.old_table))


def add_legacy_tables(checker) -> None:
    for source in legacy.SOURCES.values():
        fields = json.loads((LEGACY_SCHEMAS / f"{source.old_table}.json").read_text())
        checker.add_table(source.old_table, fields, dataset=LEGACY_DATASET)


# The batch MERGE's parameters, typed as warehouse.merge_job_config sends them.
MERGE_PARAMETERS = {sql.GAME_DATES: ("ARRAY", "DATE"), sql.FIRST_GAME_DATE: "DATE", sql.LAST_GAME_DATE: "DATE"}

# builder name -> (statement for one table, its parameters). Every *_sql builder is listed.
STATEMENTS = {
    "merge_sql": lambda spec: (sql.merge_sql(spec, target(spec.name),
                                             sql.quote(f"{PROJECT}.{DATASET}.{staging_name(spec.name)}_run_0a1b")),
                               MERGE_PARAMETERS),
    "deduplicated_source_sql": lambda spec: (
        sql.deduplicated_source_sql(spec, sql.quote(f"{PROJECT}.{DATASET}.{staging_name(spec.name)}")),
        MERGE_PARAMETERS),
    "count_rows_sql": lambda spec: (sql.count_rows_sql(target(spec.name)), {"game_date": "DATE"}),
    "source_objects_sql": lambda spec: (sql.source_objects_sql(target(spec.name)), {"game_date": "DATE"}),
    "rows_per_date_sql": lambda spec: (sql.rows_per_date_sql(target(spec.name)),
                                       {"start_date": "DATE", "end_date": "DATE"}),
    "key_counts_sql": lambda spec: (sql.key_counts_sql(spec, target(spec.name)),
                                    {"start_date": "DATE", "end_date": "DATE"}),
    # the analyst layer: the table functions exist in the catalog (create_routines) when these run
    "table_function_sql": lambda spec: (
        sql.table_function_sql(PROJECT, DATASET, "odds_api_market_snapshots", ("start_date", "end_date")),
        {"start_date": "DATE", "end_date": "DATE"}),
    "closing_lines_sql": lambda spec: (
        sql.closing_lines_sql(PROJECT, DATASET),
        {"start_date": "DATE", "end_date": "DATE", "closing_window_minutes": "INT64",
         "game_id": "STRING", "market_key": "STRING", "bookmaker_key": "STRING"}),
    "line_history_sql": lambda spec: (
        sql.line_history_sql(PROJECT, DATASET),
        {"start_date": "DATE", "end_date": "DATE", "game_id": "STRING", "market_key": "STRING", "bookmaker_key": "STRING"}),
    "line_moves_sql": lambda spec: (
        sql.line_moves_sql(PROJECT, DATASET),
        {"start_date": "DATE", "end_date": "DATE", "steam_books": "INT64", "steam_minutes": "INT64",
         "game_id": "STRING", "market_key": "STRING", "bookmaker_key": "STRING"}),
    # import-legacy: the old tables are in the catalog (add_legacy_tables) when these run
    "legacy_dates_sql": lambda spec: (
        sql.legacy_dates_sql(sql.table_path(PROJECT, LEGACY_DATASET, legacy_source(spec).old_table)),
        {"start_date": "DATE", "end_date": "DATE"}),
    "legacy_rows_sql": lambda spec: (legacy_rows(spec), {"game_date": "DATE"}),
    "legacy_accounting_sql": lambda spec: (
        sql.legacy_accounting_sql(spec, target(spec.name), legacy_rows(spec)), {"game_date": "DATE"}),
    "legacy_merge_sql": lambda spec: (
        sql.legacy_merge_sql(spec, target(spec.name), legacy_rows(spec)), {"game_date": "DATE"}),
}


def test_every_sql_builder_is_analyzed():
    builders = {name for name, fn in inspect.getmembers(sql, inspect.isfunction)
                if name.endswith("_sql") and fn.__module__ == sql.__name__}
    assert builders == set(STATEMENTS)


@pytest.mark.parametrize("table", TABLES)
@pytest.mark.parametrize("builder", sorted(STATEMENTS))
def test_statement_is_valid_googlesql(googlesql, builder, table):
    statement, parameters = STATEMENTS[builder](all_tables()[table])
    checker = googlesql(PROJECT, DATASET)
    checker.create_routines()
    add_legacy_tables(checker)
    checker.analyze(statement, parameters)


def test_every_routine_is_valid_googlesql_and_callable(googlesql):
    checker = googlesql(PROJECT, DATASET)
    created = checker.create_routines()
    assert list(created) == [r.name for r in routines.all_routines()] and created
    for routine in routines.all_routines():
        args = ", ".join(f"@{name}" for name, _ in routine.arguments)
        resolved = checker.analyze(f"SELECT * FROM {sql.table_path(PROJECT, DATASET, routine.name)}({args})",
                                   dict(routine.arguments))
        assert [c.name for c in resolved.output_column_list]


def test_latest_functions_return_every_column_of_their_table(googlesql):
    checker = googlesql(PROJECT, DATASET)
    checker.create_routines()
    for table, spec in all_tables().items():
        resolved = checker.analyze(f"SELECT * FROM {sql.table_path(PROJECT, DATASET, table + '_latest')}(@s, @e)",
                                   {"s": "DATE", "e": "DATE"})
        assert [c.name for c in resolved.output_column_list] == list(spec.columns)


def test_the_catalog_rejects_what_bigquery_rejects(googlesql):
    """Negative controls: the check can fail. FLOAT64 in PARTITION BY (the production 400),
    a column a table lacks, a parameter of the wrong type, a table function called badly."""
    checker = googlesql(PROJECT, DATASET)
    checker.create_routines()
    game_lines = target("odds_api_game_lines")
    with pytest.raises(GoogleSQLError, match="Partitioning by expressions of type FLOAT64 is not allowed"):
        checker.analyze(f"SELECT * FROM {game_lines} WHERE game_date = @game_date "
                        "QUALIFY ROW_NUMBER() OVER (PARTITION BY price_decimal ORDER BY game_id) = 1",
                        {"game_date": "DATE"})
    with pytest.raises(GoogleSQLError, match="Unrecognized name: no_such_column"):
        checker.analyze(f"SELECT no_such_column FROM {game_lines} WHERE game_date = @game_date", {"game_date": "DATE"})
    with pytest.raises(GoogleSQLError, match="No matching signature|cannot be compared|No matching|types"):
        checker.analyze(f"SELECT 1 FROM {game_lines} WHERE game_date = @game_date", {"game_date": "BOOL"})
    with pytest.raises(GoogleSQLError, match="Unrecognized name: no_such_column"):
        checker.analyze(f"SELECT no_such_column FROM {sql.table_path(PROJECT, DATASET, 'odds_api_game_lines_latest')}(@s, @e)",
                        {"s": "DATE", "e": "DATE"})


@pytest.mark.parametrize("table, column", [("odds_api_game_lines", "outcome_point"), ("odds_api_player_props", "line")])
def test_the_merge_of_a_float_key_is_rejected(table, column):
    """The MERGE as it was, with the point a FLOAT64: ZetaSQL answers BigQuery's 400."""
    spec = all_tables()[table]
    floats = [dict(f, type="FLOAT64") if f["name"] == column else f for f in spec.schema]
    checker = GoogleSQL(PROJECT, DATASET, schemas={table: floats})
    statement, parameters = STATEMENTS["merge_sql"](spec)
    with pytest.raises(GoogleSQLError, match="Partitioning by expressions of type FLOAT64 is not allowed"):
        checker.analyze(statement, parameters)


def test_no_float_in_any_key_or_clustering_column():
    """BigQuery: FLOAT64 is not groupable or partitionable and compares inexactly; keys, window
    partitions and clustering columns use exact types.
    https://cloud.google.com/bigquery/docs/reference/standard-sql/data-types#groupable_data_types
    https://cloud.google.com/bigquery/docs/clustered-tables#limitations"""
    for spec in all_tables().values():
        types = {f["name"]: f["type"] for f in spec.schema}
        for column in spec.natural_key + spec.clustering + (spec.partition_field,):
            assert types[column] not in ("FLOAT", "FLOAT64"), (spec.name, column)


def test_routine_files_use_only_the_three_placeholders():
    """Terraform fills ${project}, ${dataset} and ${legacy_dataset} with replace(); anything else
    would reach BigQuery raw."""
    import re

    for routine in [*routines.all_routines(), *routines.all_legacy_views()]:
        assert set(re.findall(r"\$\{?(\w+)", routine.template)) <= {"project", "dataset", "legacy_dataset"}, routine.name
        assert "${project}.${dataset}." in routine.template or "${project}.${legacy_dataset}." in routine.template
    for routine in routines.all_routines():
        assert json.loads((routines.ROUTINE_DIR / "routines.json").read_text())[routine.name]["arguments"]


def test_the_compatibility_views_have_the_old_tables_names_and_columns(googlesql):
    """Each view ZetaSQL resolves has the old table's columns, in its order and types (the
    preferred view: the game-lines columns but data_source and data_hash), and a query written
    for the old tables, unchanged, analyzes against them."""
    checker = googlesql(PROJECT, DATASET)
    created = checker.create_legacy_views()
    assert list(created) == ["odds_api_game_lines", "odds_api_player_points_props", "odds_api_game_lines_preferred"]
    zeta = {"FLOAT64": "DOUBLE", "FLOAT": "DOUBLE", "INTEGER": "INT64"}
    for view in ("odds_api_game_lines", "odds_api_player_points_props", "odds_api_game_lines_preferred"):
        old = "odds_api_game_lines" if view == "odds_api_game_lines_preferred" else view
        fields = json.loads((LEGACY_SCHEMAS / f"{old}.json").read_text())
        if view == "odds_api_game_lines_preferred":
            fields = [f for f in fields if f["name"] not in ("data_source", "data_hash")]
        resolved = checker.analyze(f"SELECT * FROM `{PROJECT}.{routines.LEGACY_DATASET}.{view}` WHERE game_date = @d",
                                   {"d": "DATE"})
        got = [(c.name, c.column.type.type_kind.name.removeprefix("TYPE_")) for c in resolved.output_column_list]
        assert got == [(f["name"], zeta.get(f["type"], f["type"])) for f in fields], view
    # negative control: a column the old table never had
    with pytest.raises(GoogleSQLError, match="Unrecognized name: price_decimal"):
        checker.analyze(f"SELECT price_decimal FROM `{PROJECT}.{routines.LEGACY_DATASET}.odds_api_game_lines`")
