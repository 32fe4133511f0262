"""The dataset's table functions, read from `schemas/routines/` (the files Terraform reads too).

Each routine is one SQL file holding the body of a table function (the query inside
`AS (...)`), with `${project}` and `${dataset}` where the dataset's own objects are named, and
one entry of `routines.json`: description, typed arguments, and the routines it reads
(`reads`), which are created first. Terraform passes the same file to `templatefile()`
as a google_bigquery_routine's definition_body; `oddsbatch up` and the tests run the
`CREATE OR REPLACE TABLE FUNCTION` built here. One text, two readers: they cannot drift.

Table functions, not views. BigQuery checks a base table's require_partition_filter when a
view over it is queried, and accepts the caller's game_date filter there; local-bigquery
refuses to even create such a view. A table function takes the date range as arguments and
filters game_date itself, so the partition filter is met by construction on both, and no
caller can forget it. https://cloud.google.com/bigquery/docs/table-functions
"""

from __future__ import annotations

import json
import string
from dataclasses import dataclass
from functools import lru_cache

from .sql import quote
from .tables import SCHEMA_DIR

ROUTINE_DIR = SCHEMA_DIR / "routines"


@dataclass(frozen=True)
class Routine:
    name: str
    description: str
    arguments: tuple[tuple[str, str], ...]  # (name, BigQuery type)
    reads: tuple[str, ...]  # other routines its body calls
    template: str

    def body(self, project: str, dataset: str) -> str:
        """The definition body with the dataset's names filled in (as Terraform's templatefile)."""
        return string.Template(self.template).substitute(project=project, dataset=dataset)

    def create_sql(self, project: str, dataset: str) -> str:
        args = ", ".join(f"{name} {kind}" for name, kind in self.arguments)
        return (f"CREATE OR REPLACE TABLE FUNCTION {quote(f'{project}.{dataset}.{self.name}')}({args})\n"
                f"AS (\n{self.body(project, dataset).rstrip()}\n)")


@lru_cache(maxsize=None)
def all_routines() -> tuple[Routine, ...]:
    """Every routine, each after the routines it reads (the order to create them in)."""
    meta = json.loads((ROUTINE_DIR / "routines.json").read_text())
    found = {
        name: Routine(name=name, description=m["description"],
                      arguments=tuple((a["name"], a["type"]) for a in m["arguments"]),
                      reads=tuple(m.get("reads", ())),
                      template=(ROUTINE_DIR / f"{name}.sql").read_text())
        for name, m in meta.items()
    }
    ordered: list[Routine] = []

    def visit(name: str, path: tuple[str, ...]) -> None:
        if name in path:
            raise ValueError(f"routines.json: {' -> '.join(path + (name,))} is a cycle")
        if name not in found:
            raise ValueError(f"routines.json: {path[-1]} reads {name}, which is no routine")
        if found[name] in ordered:
            return
        for dependency in found[name].reads:
            visit(dependency, path + (name,))
        ordered.append(found[name])

    for name in found:
        visit(name, ())
    return tuple(ordered)


def create_routines(client, project: str, dataset: str) -> list[str]:
    """Create or replace every routine in the dataset, dependencies first; their names."""
    for routine in all_routines():
        client.query(routine.create_sql(project, dataset), job_id_prefix="oddsbatch_routine_").result()
    return [r.name for r in all_routines()]
