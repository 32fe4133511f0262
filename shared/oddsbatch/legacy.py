"""`oddsbatch import-legacy`: move the old pipeline's rows into our tables, dry-run first.

The old pipeline (najicham/nba-stats-scraper) kept `nba_raw.odds_api_game_lines` (one row per
outcome, decimal prices, FLOAT64 points) and `nba_raw.odds_api_player_points_props` (player
points only, Over and Under pivoted). Each old table maps onto one of ours (`SOURCES`: an SQL
expression over the old row `O` for every column our loads stage). Per game date of the old
table, one query counts what an import would do with every old row, and with --apply one
insert-only MERGE on our natural key adds the rows our table lacks (sql.legacy_merge_sql): a
key our table already holds keeps its row (a file ingested by oddsbatch outranks the old
copy), so a second import inserts nothing. Imported rows carry snapshot_source 'legacy' and
source_generation 0: a later ingest of the same key from a real object (generation > 0) wins
the MERGE order and replaces them.

Row accounting, per table: read = new + already_present + duplicate + refused, where
duplicate counts the older copies of one key (the old loader appended re-runs without a
MERGE; the copy with the latest processed_at is the one imported) and refused the rows
oddsbatch cannot hold, each with its reason.
"""

from __future__ import annotations

import sys
from collections import Counter
from dataclasses import dataclass, field
from datetime import date

from . import sql
from .envfile import use_local_stack_if_unconfigured
from .tables import all_tables

SNAPSHOT_SOURCE = "legacy"
GENERATION = 0


def _decimal_to_american(decimal_price: str) -> str:
    """transform.decimal_to_american in SQL: on the NUMERIC of the price (its written digits),
    rounded half away from zero (BigQuery's ROUND of NUMERIC)."""
    d = f"CAST({decimal_price} AS NUMERIC)"
    return f"CAST(IF({d} >= 2, ROUND(({d} - 1) * 100), ROUND(-100 / ({d} - 1))) AS INT64)"


def _minutes_before(commence: str, snapshot: str) -> str:
    """transform's (commence - snapshot) // 1 minute: floored, also for in-game snapshots."""
    return f"CAST(FLOOR(TIMESTAMP_DIFF({commence}, {snapshot}, SECOND) / 60) AS INT64)"


def _not_a_price(column: str) -> str:
    return f"(IS_NAN({column}) OR IS_INF({column}) OR {column} <= 1)"


def _inexact_point(column: str) -> str:
    """A point NUMERIC cannot hold as the float it is (NaN, infinite, out of range, more than 9
    decimals): the rule transform applies to a file's points."""
    return (f"({column} IS NOT NULL AND "
            f"IFNULL(CAST(SAFE_CAST({column} AS NUMERIC) AS FLOAT64) != {column}, TRUE))")


@dataclass(frozen=True)
class LegacySource:
    old_table: str  # its name in the old dataset
    target: str  # our table
    columns: dict  # our staged column -> SQL over the old row O
    refusals: tuple  # (condition over O, reason): the first that holds refuses the row
    newest_first: str  # ORDER BY among the old copies of one natural key


SOURCES = {
    "game-lines": LegacySource(
        old_table="odds_api_game_lines",
        target="odds_api_game_lines",
        columns={
            "game_date": "O.game_date", "game_id": "O.game_id", "sport_key": "O.sport_key",
            "sport_title": "O.sport_title", "commence_time": "O.commence_time", "home_team": "O.home_team",
            "away_team": "O.away_team", "home_team_abbr": "O.home_team_abbr", "away_team_abbr": "O.away_team_abbr",
            "snapshot_timestamp": "O.snapshot_timestamp", "snapshot_source": f"'{SNAPSHOT_SOURCE}'",
            "previous_snapshot_timestamp": "O.previous_snapshot_timestamp",
            "next_snapshot_timestamp": "O.next_snapshot_timestamp",
            "minutes_before_tipoff": _minutes_before("O.commence_time", "O.snapshot_timestamp"),
            "bookmaker_key": "O.bookmaker_key", "bookmaker_title": "O.bookmaker_title",
            "bookmaker_last_update": "O.bookmaker_last_update", "market_key": "O.market_key",
            "market_last_update": "O.market_last_update", "outcome_name": "O.outcome_name",
            "outcome_description": "CAST(NULL AS STRING)",
            "outcome_point": "SAFE_CAST(O.outcome_point AS NUMERIC)",
            "price_decimal": "O.outcome_price", "price_american": _decimal_to_american("O.outcome_price"),
            "price_format": "'decimal'", "source_object": "O.source_file_path", "source_generation": str(GENERATION),
        },
        refusals=(
            ("O.game_id IS NULL OR O.bookmaker_key IS NULL OR O.market_key IS NULL OR O.outcome_name IS NULL "
             "OR O.snapshot_timestamp IS NULL", "missing_key"),
            (f"O.outcome_price IS NULL OR {_not_a_price('O.outcome_price')}", "price_not_decimal"),
            (_inexact_point("O.outcome_point"), "point_not_exact"),
        ),
        newest_first="O.processed_at DESC, O.created_at DESC, O.source_file_path DESC, O.outcome_price DESC",
    ),
    "player-points-props": LegacySource(
        old_table="odds_api_player_points_props",
        target="odds_api_player_props",
        columns={
            "game_date": "O.game_date", "game_id": "O.odds_api_event_id", "sport_key": "CAST(NULL AS STRING)",
            "sport_title": "CAST(NULL AS STRING)", "commence_time": "O.game_start_time",
            "home_team": "CAST(NULL AS STRING)", "away_team": "CAST(NULL AS STRING)",
            "home_team_abbr": "O.home_team_abbr", "away_team_abbr": "O.away_team_abbr",
            "snapshot_timestamp": "O.snapshot_timestamp", "snapshot_source": f"'{SNAPSHOT_SOURCE}'",
            "previous_snapshot_timestamp": "CAST(NULL AS TIMESTAMP)", "next_snapshot_timestamp": "CAST(NULL AS TIMESTAMP)",
            "minutes_before_tipoff": f"COALESCE(O.minutes_before_tipoff, "
                                     f"{_minutes_before('O.game_start_time', 'O.snapshot_timestamp')})",
            "bookmaker_key": "O.bookmaker", "bookmaker_title": "CAST(NULL AS STRING)",
            "bookmaker_last_update": "O.bookmaker_last_update", "market_key": "'player_points'",
            "market_last_update": "CAST(NULL AS TIMESTAMP)", "player_name": "O.player_name",
            "player_lookup": "O.player_lookup", "line": "SAFE_CAST(O.points_line AS NUMERIC)",
            "over_price_decimal": "O.over_price",
            "over_price_american": f"COALESCE(O.over_price_american, {_decimal_to_american('O.over_price')})",
            "under_price_decimal": "O.under_price",
            "under_price_american": f"COALESCE(O.under_price_american, {_decimal_to_american('O.under_price')})",
            "yes_price_decimal": "CAST(NULL AS FLOAT64)", "yes_price_american": "CAST(NULL AS INT64)",
            "no_price_decimal": "CAST(NULL AS FLOAT64)", "no_price_american": "CAST(NULL AS INT64)",
            "price_format": "'decimal'", "source_object": "IFNULL(O.source_file_path, '')",
            "source_generation": str(GENERATION),
        },
        refusals=(
            ("O.odds_api_event_id IS NULL OR O.bookmaker IS NULL OR O.player_name IS NULL "
             "OR O.snapshot_timestamp IS NULL OR O.points_line IS NULL", "missing_key"),
            ("O.player_lookup IS NULL OR O.player_lookup = ''", "missing_player_lookup"),
            ("O.over_price IS NULL AND O.under_price IS NULL", "no_price"),
            (f"(O.over_price IS NOT NULL AND {_not_a_price('O.over_price')}) "
             f"OR (O.under_price IS NOT NULL AND {_not_a_price('O.under_price')})", "price_not_decimal"),
            (_inexact_point("O.points_line"), "point_not_exact"),
        ),
        newest_first="O.processed_at DESC, O.source_file_path DESC, O.over_price DESC, O.under_price DESC",
    ),
}


@dataclass
class Accounting:
    """What an import did (or would do) with the old rows of one table."""
    dates: int = 0
    read: int = 0
    new: int = 0
    inserted: int = 0
    already_present: int = 0
    duplicate: int = 0
    refused: Counter = field(default_factory=Counter)  # reason -> rows

    def add(self, outcome: str, reason: str | None, n: int) -> None:
        self.read += n
        if outcome == "refused":
            self.refused[reason] += n
        else:
            setattr(self, outcome, getattr(self, outcome) + n)

    def line(self, source: LegacySource, old: str, start: date, end: date, apply: bool) -> str:
        refused = sum(self.refused.values())
        reasons = ", ".join(f"{why}={n}" for why, n in sorted(self.refused.items()))
        done = f"inserted={self.inserted}" if apply else f"would_insert={self.new}"
        return (f"import-legacy: {source.target} <- {old} {start}..{end} dates={self.dates} read={self.read} "
                f"{done} already_present={self.already_present} duplicate={self.duplicate} refused={refused}"
                + (f" ({reasons})" if reasons else "") + ("" if apply else " (dry run: nothing written)"))


def _config(**params):
    from google.cloud import bigquery

    return bigquery.QueryJobConfig(query_parameters=[
        bigquery.ScalarQueryParameter(name, "DATE", value) for name, value in params.items()])


def import_table(bq, project: str, dataset: str, old_project: str, old_dataset: str, source: LegacySource,
                 start: date, end: date, apply: bool) -> Accounting:
    """Count (and with `apply` insert) the old table's rows of every game date in [start, end]."""
    spec = all_tables()[source.target]
    old = sql.table_path(old_project, old_dataset, source.old_table)
    target = sql.table_path(project, dataset, source.target)
    rows = sql.legacy_rows_sql(spec, source.columns, source.refusals, source.newest_first, old)
    account = Accounting()
    days = [r["game_date"] for r in bq.query(sql.legacy_dates_sql(old),
                                             job_config=_config(start_date=start, end_date=end)).result()]
    for day in days:
        account.dates += 1
        for r in bq.query(sql.legacy_accounting_sql(spec, target, rows), job_config=_config(game_date=day)).result():
            account.add(r["outcome"], r["reason"], r["n"])
        if apply:
            job = bq.query(sql.legacy_merge_sql(spec, target, rows), job_config=_config(game_date=day),
                           job_id_prefix="oddsbatch_import_legacy_")
            job.result()
            account.inserted += job.num_dml_affected_rows or 0
    return account


def _date(text: str, flag: str) -> date:
    try:
        return date.fromisoformat(text)
    except (TypeError, ValueError):
        raise ValueError(f"{flag} must be a date YYYY-MM-DD, got {text!r}") from None


def cmd_import_legacy(args) -> int:
    start, end = _date(args.date_from, "--from"), _date(args.date_to, "--to")
    if end < start:
        raise ValueError(f"--to {end} is before --from {start}")
    names = [args.table] if args.table else list(SOURCES)
    unknown = [n for n in names if n not in SOURCES]
    if unknown:
        raise ValueError(f"--table must be one of {', '.join(SOURCES)}, got {unknown[0]!r}")
    use_local_stack_if_unconfigured(args.state_dir)
    from google.api_core.exceptions import GoogleAPIError

    from .clients import bigquery_client
    from .config import Settings

    settings = Settings.from_env("game-lines")
    bq = bigquery_client(settings.project, settings.bigquery_endpoint, settings.bigquery_location)
    old_project = args.from_project or settings.project
    for name in names:
        source = SOURCES[name]
        try:
            account = import_table(bq, settings.project, settings.dataset, old_project, args.from_dataset, source,
                                   start, end, args.apply)
        except GoogleAPIError as exc:  # a missing old table or column, an unreachable endpoint: one line
            raise ValueError(f"{old_project}.{args.from_dataset}.{source.old_table}: "
                             f"{str(exc).splitlines()[0]}") from None
        print(account.line(source, f"{old_project}.{args.from_dataset}.{source.old_table}", start, end, args.apply))
        sys.stdout.flush()
    return 0
