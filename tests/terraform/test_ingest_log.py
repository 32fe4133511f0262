"""The ingest log in Terraform: the same definition file oddsbatch up reads (ingest_log.json),
partitioned by game_date with a required partition filter, created with the target tables so
the status function (a stage-0 routine: it reads no routine) waits for it."""

from __future__ import annotations

import copy
import json

from oddsbatch.ingest_log import LOG_TABLE, log_table_spec

from .conftest import one, resources
from .test_evaluated import DEFAULTS, SCHEMAS


def log_table_problems(table: dict) -> list[str]:
    """What is wrong with an evaluated google_bigquery_table of the log, against the Python spec.
    DATE column partitioning with a required partition filter:
    https://cloud.google.com/bigquery/docs/creating-column-partitions"""
    spec, problems = log_table_spec(), []
    if json.loads(table["schema"]) != list(spec.schema):
        problems.append("schema differs from the schema file")
    if table.get("require_partition_filter") is not True:
        problems.append("no required partition filter")
    partitioning = table.get("time_partitioning") or {}
    if partitioning.get("field") != spec.partition_field or partitioning.get("type") != "DAY":
        problems.append("not partitioned by day on game_date")
    if table.get("clustering") != list(spec.clustering):
        problems.append("clustering differs")
    if table.get("deletion_protection") is not True:
        problems.append("no deletion protection")
    if table.get("dataset_id") != DEFAULTS.dataset:
        problems.append("another dataset")
    return problems


def test_the_log_table_is_the_shared_definition(tf):
    table = one(tf, f'google_bigquery_table.tables["{LOG_TABLE}"]')
    assert table["table_id"] == LOG_TABLE
    assert table["description"] == json.loads((SCHEMAS / "ingest_log.json").read_text())[LOG_TABLE]["description"]
    assert log_table_problems(table) == []


def test_the_check_fails_a_mutated_log_table(tf):
    table = one(tf, f'google_bigquery_table.tables["{LOG_TABLE}"]')
    unfiltered = dict(table, require_partition_filter=False)
    assert log_table_problems(unfiltered) == ["no required partition filter"]
    by_time = copy.deepcopy(table)
    by_time["time_partitioning"]["field"] = "finished_at"
    assert log_table_problems(by_time) == ["not partitioned by day on game_date"]
    fewer = dict(table, schema=json.dumps(list(log_table_spec().schema)[1:]))
    assert log_table_problems(fewer) == ["schema differs from the schema file"]


def test_the_status_function_is_created_after_the_tables_it_reads(tf):
    """Stage 0 depends on google_bigquery_table.tables, which now holds the log (routines.tf)."""
    found = {a: r for a, r in resources(tf, "google_bigquery_routine").items()
             if r["routine_id"] == "odds_api_ingest_status"}
    assert len(found) == 1 and ".stage0[" in next(iter(found))
    assert f"`oddsbatch-test.{DEFAULTS.dataset}.{LOG_TABLE}`" in next(iter(found.values()))["definition_body"]
    tables = {t["table_id"] for t in resources(tf, "google_bigquery_table").values() if not t.get("view")}
    assert tables == {"odds_api_game_lines", "odds_api_player_props", LOG_TABLE}
