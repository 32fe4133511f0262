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

    @property
    def columns(self) -> tuple[str, ...]:
        return tuple(f["name"] for f in self.schema)

    @property
    def staged_columns(self) -> tuple[str, ...]:
        """Columns a transform row carries: everything but what the MERGE itself sets."""
        return tuple(c for c in self.columns if c not in MERGE_SET_COLUMNS)

    @property
    def nullable_key(self) -> tuple[str, ...]:
        modes = {f["name"]: f.get("mode", "NULLABLE") for f in self.schema}
        return tuple(c for c in self.natural_key if modes[c] != "REQUIRED")

    @property
    def value_columns(self) -> tuple[str, ...]:
        """Staged columns outside the natural key: compared and updated by the MERGE."""
        return tuple(c for c in self.staged_columns if c not in self.natural_key)

    def bigquery_schema(self):
        from google.cloud import bigquery  # lazy: not on the ignore path

        return [bigquery.SchemaField.from_api_repr(dict(f)) for f in self.schema]


# Where a row came from: updated with the data, never a reason to update on their own.
PROVENANCE_COLUMNS = ("source_object", "source_generation")

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
        )
    return specs


def table_for_endpoint(endpoint: str) -> TableSpec:
    for spec in all_tables().values():
        if spec.endpoint == endpoint:
            return spec
    raise KeyError(f"no table for endpoint {endpoint!r}")
