"""SQL builders: small pure functions returning BigQuery statements. Nothing here runs SQL.

Identifiers always pass through `quote`; values are query parameters (@game_date), never
formatted into the text.

The batch MERGE names its game dates with three parameters (`merge_parameters`): @game_dates, an
ARRAY<DATE> of the dates it merges (one, or a group of several: holder.py), and @first_game_date /
@last_game_date, their least and greatest. The target's partitions are pruned by the range, a
comparison of the partitioning column with constants, the form BigQuery's page names for pruning
("If a query uses a qualifying filter on the value of the partitioning column, BigQuery can scan
the partitions that match the filter and skip the remaining partitions"; its examples compare the
column with constants, `transaction_date >= '2016-01-01'`, `_PARTITIONTIME BETWEEN ...`:
https://cloud.google.com/bigquery/docs/querying-partitioned-tables), which is also the "partition
filter that can be used for partition elimination" a table with require_partition_filter asks
for (Table.requirePartitionFilter, https://cloud.google.com/bigquery/docs/reference/rest/v2/tables).
`IN UNNEST(@game_dates)` then keeps exactly the group's dates (a date between two of them that the
group does not hold is never touched), and `T.game_date = S.game_date` matches each row within its
own date.
"""

from __future__ import annotations

from .tables import MARKET_ROWS_FIELD, MERGE_SET_COLUMNS, PROVENANCE_COLUMNS, TableSpec


def quote(identifier: str) -> str:
    """Backtick-quote one identifier (or a dotted path), escaping what BigQuery escapes."""
    return "`" + identifier.replace("\\", "\\\\").replace("`", "\\`") + "`"


def table_path(project: str, dataset: str, table: str) -> str:
    return quote(f"{project}.{dataset}.{table}")


def _null_safe_equal(left: str, right: str) -> str:
    return f"({left} = {right} OR ({left} IS NULL AND {right} IS NULL))"


GAME_DATES, FIRST_GAME_DATE, LAST_GAME_DATE = "game_dates", "first_game_date", "last_game_date"


def merge_parameters(game_dates) -> dict[str, object]:
    """The batch MERGE's parameters for a group of game dates (dates, deduplicated and sorted):
    {name: value}, an ARRAY<DATE> list and two DATEs (warehouse.py turns them into job parameters)."""
    days = sorted(set(game_dates))
    if not days:
        raise ValueError("a MERGE needs at least one game date")
    return {GAME_DATES: days, FIRST_GAME_DATE: days[0], LAST_GAME_DATE: days[-1]}


def partition_filter(column: str) -> str:
    """The group's dates, pruned by their range (see the module docstring)."""
    return (f"{column} BETWEEN @{FIRST_GAME_DATE} AND @{LAST_GAME_DATE} "
            f"AND {column} IN UNNEST(@{GAME_DATES})")


def _key_match(spec: TableSpec, target: str, source: str, grouped: bool = False) -> str:
    """The ON clause: the partition filter, then every natural key column. `grouped`: the
    group's dates (the batch MERGE), else the one @game_date (the legacy import)."""
    nullable = set(spec.nullable_key)
    partition = f"{target}.{quote(spec.partition_field)}"
    if grouped:
        parts = [partition_filter(partition), f"{partition} = {source}.{quote(spec.partition_field)}"]
    else:
        parts = [f"{partition} = @game_date"]
    for column in spec.natural_key:
        if column == spec.partition_field:
            continue
        left, right = f"{target}.{quote(column)}", f"{source}.{quote(column)}"
        parts.append(_null_safe_equal(left, right) if column in nullable else f"{left} = {right}")
    return "\n  AND ".join(parts)


def _values_differ(spec: TableSpec, target: str, source: str) -> str:
    """Data columns only: the same line re-uploaded (a new generation, same values) is no
    change, so a replayed day leaves the table byte-identical."""
    return "\n    OR ".join(
        f"NOT {_null_safe_equal(f'{target}.{quote(c)}', f'{source}.{quote(c)}')}"
        for c in spec.value_columns if c not in PROVENANCE_COLUMNS
    )


def _staged(spec: TableSpec, column: str) -> str:
    """A staged column in the un-nested staging table: the market's (M) or the row's (R)."""
    return f"{'R' if column in spec.line_columns else 'M'}.{quote(column)}"


def deduplicated_source_sql(spec: TableSpec, staging: str) -> str:
    """The staged rows of the group's game dates, flat again (staging.py stages each market's
    head once, its rows nested under it), one per natural key (the date is part of it): BigQuery
    rejects a MERGE where two source rows match one target row. The newest generation of the
    last-named object wins, deterministically."""
    columns = ", ".join(f"{_staged(spec, c)} AS {quote(c)}" for c in spec.staged_columns)
    key = ", ".join(_staged(spec, c) for c in spec.natural_key)
    return (
        f"SELECT {columns}\n"
        f"  FROM {staging} AS M, UNNEST(M.{quote(MARKET_ROWS_FIELD)}) AS R\n"
        f"  WHERE {partition_filter(f'M.{quote(spec.partition_field)}')}\n"
        f"  QUALIFY ROW_NUMBER() OVER (PARTITION BY {key}\n"
        f"    ORDER BY {_staged(spec, 'source_generation')} DESC, {_staged(spec, 'source_object')} DESC) = 1"
    )


def _source_wins(target: str, source: str) -> str:
    """The same order as the source dedup: a key's final row is the one from the newest
    (generation, object) ever merged, whatever order batches ran in."""
    gen, obj = quote("source_generation"), quote("source_object")
    return (f"({source}.{gen} > {target}.{gen} OR "
            f"({source}.{gen} = {target}.{gen} AND {source}.{obj} > {target}.{obj}))")


def merge_sql(spec: TableSpec, target: str, staging: str) -> str:
    """The one MERGE of a batch (one game date, or a group of several): insert new keys;
    update a key only when the source row wins the (generation, object) order and a data value
    changed.

    Both conditions keep replays byte-identical (ingested_at is set on insert only, the
    provenance columns move only with the data) and make the result independent of the
    order in which batches ran. The partition filter in ON keeps the scan of the target to
    the group's game dates (`merge_parameters`).
    """
    staged = spec.staged_columns
    insert_columns = ", ".join(quote(c) for c in staged + MERGE_SET_COLUMNS)
    insert_values = ", ".join([f"S.{quote(c)}" for c in staged] + ["CURRENT_TIMESTAMP()"] * len(MERGE_SET_COLUMNS))
    updates = ",\n    ".join(f"{quote(c)} = S.{quote(c)}" for c in spec.value_columns)
    return (
        f"MERGE {target} AS T\n"
        f"USING (\n  {deduplicated_source_sql(spec, staging)}\n) AS S\n"
        f"ON {_key_match(spec, 'T', 'S', grouped=True)}\n"
        f"WHEN MATCHED AND {_source_wins('T', 'S')} AND (\n    {_values_differ(spec, 'T', 'S')}\n  ) THEN UPDATE SET\n    {updates}\n"
        f"WHEN NOT MATCHED THEN INSERT ({insert_columns})\n  VALUES ({insert_values})"
    )


def count_rows_sql(target: str, partition_field: str = "game_date") -> str:
    """Rows of one game date (the partition filter is required by the table)."""
    return f"SELECT COUNT(*) AS n FROM {target} WHERE {quote(partition_field)} = @game_date"


def source_objects_sql(target: str, partition_field: str = "game_date") -> str:
    """The (object, generation) pairs a table holds for one date: what reconcile compares."""
    return (f"SELECT DISTINCT source_object, source_generation FROM {target} "
            f"WHERE {quote(partition_field)} = @game_date")


def rows_per_date_sql(target: str, partition_field: str = "game_date") -> str:
    """Rows per game date within [@start_date, @end_date] (the bench's season backfill)."""
    field = quote(partition_field)
    return (f"SELECT {field} AS game_date, COUNT(*) AS n FROM {target} "
            f"WHERE {field} BETWEEN @start_date AND @end_date GROUP BY {field}")


def key_counts_sql(spec: TableSpec, target: str) -> str:
    """Rows per natural key within [@start_date, @end_date]: a key stored twice shows as n = 2
    (BigQuery enforces no key)."""
    keys = ", ".join(quote(c) for c in spec.natural_key)
    return (f"SELECT {keys}, COUNT(*) AS n FROM {target} "
            f"WHERE {quote(spec.partition_field)} BETWEEN @start_date AND @end_date GROUP BY {keys}")


# -- the analyst layer (schemas/routines/): what `oddsbatch lines`, the demo and the tests ask --

# The closing window and steam thresholds `oddsbatch lines` and the demo pass; table function
# arguments have no defaults, so they are named once here (the README documents them).
CLOSING_WINDOW_MINUTES = 15
STEAM_BOOKS = 2
STEAM_MINUTES = 5


def table_function_sql(project: str, dataset: str, routine: str, arguments: tuple[str, ...]) -> str:
    """Every row of one table function, its arguments as query parameters of the same names."""
    args = ", ".join(f"@{name}" for name in arguments)
    return f"SELECT * FROM {table_path(project, dataset, routine)}({args})"


def _optional_filters(columns: tuple[str, ...]) -> str:
    """`@column IS NULL OR column = @column` for each: a NULL parameter means any."""
    return "\n  AND ".join(f"(@{c} IS NULL OR {quote(c)} = @{c})" for c in columns)


def closing_lines_sql(project: str, dataset: str) -> str:
    """Closing lines of the date range (@start_date, @end_date, @closing_window_minutes),
    optionally one game, market and book (@game_id, @market_key, @bookmaker_key: NULL = all)."""
    function = table_path(project, dataset, "odds_api_closing_lines")
    return (f"SELECT * FROM {function}(@start_date, @end_date, @closing_window_minutes)\n"
            f"WHERE {_optional_filters(('game_id', 'market_key', 'bookmaker_key'))}\n"
            "ORDER BY game_id, market_key, participant, side, bookmaker_key")


def line_moves_sql(project: str, dataset: str) -> str:
    """Line moves of the date range (@start_date, @end_date, @steam_books, @steam_minutes),
    optionally one game, market and book (NULL = all), in time order."""
    function = table_path(project, dataset, "odds_api_line_moves")
    return (f"SELECT * FROM {function}(@start_date, @end_date, @steam_books, @steam_minutes)\n"
            f"WHERE {_optional_filters(('game_id', 'market_key', 'bookmaker_key'))}\n"
            "ORDER BY game_id, to_snapshot_timestamp, market_key, participant, side, bookmaker_key")


def line_history_sql(project: str, dataset: str) -> str:
    """Each book's main line of every side at every snapshot (in-game ones too, flagged), for
    plotting a game's line movement (@start_date, @end_date, @game_id, @market_key, @bookmaker_key)."""
    function = table_path(project, dataset, "odds_api_lines")
    return (f"SELECT game_id, bookmaker_key, market_key, participant, side, point, price_decimal, price_american,\n"
            f"       snapshot_timestamp, minutes_before_tipoff, is_pre_tip, commence_time\n"
            f"FROM {function}(@start_date, @end_date)\n"
            f"WHERE is_main_line AND market_key NOT LIKE '%alternate%'\n"
            f"  AND {_optional_filters(('game_id', 'market_key', 'bookmaker_key'))}\n"
            "ORDER BY game_id, market_key, participant, side, bookmaker_key, snapshot_timestamp")


# -- importing the old pipeline's tables (oddsbatch.legacy) ------------------------------------

def legacy_dates_sql(source: str) -> str:
    """The game dates of the old table within [@start_date, @end_date] (its partition filter)."""
    return (f"SELECT DISTINCT game_date FROM {source}\n"
            "WHERE game_date BETWEEN @start_date AND @end_date ORDER BY game_date")


def legacy_rows_sql(spec: TableSpec, columns: dict[str, str], refusals: tuple[tuple[str, str], ...],
                    newest_first: str, source: str) -> str:
    """The old table's rows of @game_date in our table's staged columns (`columns`: our column ->
    expression over the old row O), each with `refused` (the reason of the first refusal whose
    condition holds, else NULL) and `copy` (1 for the newest, by `newest_first`, of the accepted
    old rows of one natural key; 2, 3, ... for the re-run duplicates the old loader appended)."""
    mapped = ",\n       ".join(f"{columns[c]} AS {quote(c)}" for c in spec.staged_columns)
    reason = "CASE " + " ".join(f"WHEN {condition} THEN '{why}'" for condition, why in refusals) + " END"
    key = ", ".join(columns[c] for c in spec.natural_key)
    return (f"SELECT {mapped},\n       {reason} AS refused,\n"
            f"       IF({reason} IS NULL, ROW_NUMBER() OVER (PARTITION BY {reason} IS NULL, {key}\n"
            f"         ORDER BY {newest_first}), NULL) AS copy\n"
            f"FROM {source} AS O\nWHERE O.game_date = @game_date")


def legacy_accounting_sql(spec: TableSpec, target: str, rows: str) -> str:
    """Every old row of @game_date counted once, by what an import does with it: `refused`
    (with its reason), `duplicate` (an older copy of a key), `already_present` (the key is in
    our table), `new`."""
    key = ", ".join(quote(c) for c in spec.natural_key)
    return (f"SELECT CASE WHEN L.refused IS NOT NULL THEN 'refused' WHEN L.copy > 1 THEN 'duplicate'\n"
            f"            WHEN T.{quote(spec.partition_field)} IS NOT NULL THEN 'already_present' ELSE 'new' END AS outcome,\n"
            f"       L.refused AS reason, COUNT(*) AS n\n"
            f"FROM ({rows}) AS L\n"
            f"LEFT JOIN (SELECT {key} FROM {target} WHERE {quote(spec.partition_field)} = @game_date) AS T\n"
            f"  ON L.refused IS NULL AND L.copy = 1 AND {_key_match(spec, 'T', 'L')}\n"
            "GROUP BY outcome, reason")


def legacy_merge_sql(spec: TableSpec, target: str, rows: str) -> str:
    """Insert the accepted newest copy of each old key of @game_date that our table lacks; a
    key it holds is left as it is (insert-only, so a second import inserts nothing)."""
    staged = spec.staged_columns
    insert_columns = ", ".join(quote(c) for c in staged + MERGE_SET_COLUMNS)
    insert_values = ", ".join([f"S.{quote(c)}" for c in staged] + ["CURRENT_TIMESTAMP()"] * len(MERGE_SET_COLUMNS))
    selected = ", ".join(quote(c) for c in staged)
    return (f"MERGE {target} AS T\n"
            f"USING (SELECT {selected} FROM ({rows}) WHERE refused IS NULL AND copy = 1) AS S\n"
            f"ON {_key_match(spec, 'T', 'S')}\n"
            f"WHEN NOT MATCHED THEN INSERT ({insert_columns})\n  VALUES ({insert_values})")
