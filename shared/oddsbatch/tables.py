"""The table definitions, read from `schemas/` (the same files Terraform reads with file())."""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

SCHEMA_DIR = Path(__file__).parent / "schemas"


@dataclass(frozen=True)
class TableSpec:
    name: str
    endpoint: str
    description: str
    schema: tuple[dict, ...]  # BigQuery JSON schema fields: name, type, mode, description
    partition_field: str
    require_partition_filter: bool
    clustering: tuple[str, ...]
    natural_key: tuple[str, ...]
    line_columns: tuple[str, ...]  # staged once per row; every other staged column once per market

    @property
    def columns(self) -> tuple[str, ...]:
        return tuple(f["name"] for f in self.schema)

    @property
    def staged_columns(self) -> tuple[str, ...]:
        """Columns a transform row carries: everything but what the MERGE itself sets."""
        return tuple(c for c in self.columns if c not in MERGE_SET_COLUMNS)

    @property
    def head_columns(self) -> tuple[str, ...]:
        """Staged columns shared by every row of one (event, bookmaker, market) in one file."""
        return tuple(c for c in self.staged_columns if c not in self.line_columns)

    def staging_schema(self) -> list[dict]:
        """The staging table, one row per market: its head columns, and its rows' own columns
        nested under MARKET_ROWS_FIELD. Staging the head once per market instead of once per
        row makes the staged bytes several times smaller (see staging.py)."""
        fields = {f["name"]: dict(f) for f in self.schema}
        head = [fields[c] for c in self.head_columns]
        rows = [fields[c] for c in self.staged_columns if c in self.line_columns]
        return head + [{"name": MARKET_ROWS_FIELD, "type": "RECORD", "mode": "REPEATED", "fields": rows,
                        "description": "The market's rows: the columns that differ from row to row."}]

    @property
    def nullable_key(self) -> tuple[str, ...]:
        modes = {f["name"]: f.get("mode", "NULLABLE") for f in self.schema}
        return tuple(c for c in self.natural_key if modes[c] != "REQUIRED")

    @property
    def value_columns(self) -> tuple[str, ...]:
        """Staged columns outside the natural key: compared and updated by the MERGE."""
        return tuple(c for c in self.staged_columns if c not in self.natural_key)

    def bigquery_schema(self, fields: list[dict] | None = None):
        from google.cloud import bigquery  # lazy: not on the ignore path

        return [bigquery.SchemaField.from_api_repr(dict(f)) for f in (self.schema if fields is None else fields)]


# Where a row came from: updated with the data, never a reason to update on their own.
PROVENANCE_COLUMNS = ("source_object", "source_generation")

# The staging table's repeated field holding a market's rows (see TableSpec.staging_schema).
MARKET_ROWS_FIELD = "market_rows"

# Set by the MERGE (INSERT ... CURRENT_TIMESTAMP()), never staged: keeps replays byte-identical.
MERGE_SET_COLUMNS = ("ingested_at",)


@lru_cache(maxsize=None)
def all_tables() -> dict[str, TableSpec]:
    meta = json.loads((SCHEMA_DIR / "tables.json").read_text())
    specs = {}
    for name, m in meta.items():
        schema = json.loads((SCHEMA_DIR / m["schema_file"]).read_text())
        specs[name] = TableSpec(
            name=name,
            endpoint=m["endpoint"],
            description=m["description"],
            schema=tuple(schema),
            partition_field=m["partition_field"],
            require_partition_filter=m["require_partition_filter"],
            clustering=tuple(m["clustering"]),
            natural_key=tuple(m["natural_key"]),
            line_columns=tuple(m["line_columns"]),
        )
        unknown = set(m["line_columns"]) - set(specs[name].staged_columns)
        if unknown:
            raise ValueError(f"tables.json: line_columns of {name} not staged columns: {sorted(unknown)}")
    return specs


def table_for_endpoint(endpoint: str) -> TableSpec:
    for spec in all_tables().values():
        if spec.endpoint == endpoint:
            return spec
    raise KeyError(f"no table for endpoint {endpoint!r}")
