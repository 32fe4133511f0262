"""The dataset's table functions, read from `schemas/routines/` (the files Terraform reads too).

Each routine is one SQL file holding the body of a table function (the query inside
`AS (...)`), with `${project}` and `${dataset}` where the dataset's own objects are named, and
one entry of `routines.json`: description, typed arguments, and the routines it reads
(`reads`), which are created first. Terraform passes the same file to `templatefile()`
as a google_bigquery_routine's definition_body; `oddsbatch up` and the tests run the
`CREATE OR REPLACE TABLE FUNCTION` built here. One text, two readers: they cannot drift.

Table functions for the analyst layer: a table function takes the date range as arguments and
filters game_date itself, so the base tables' partition filter is met by construction and no
caller can forget it. https://cloud.google.com/bigquery/docs/table-functions

The compatibility views (`schemas/legacy_views/`, one SQL file each and `views.json`) carry the
old pipeline's table names in their own dataset (`nba_raw` by default, ODDSBATCH_LEGACY_DATASET /
Terraform's legacy_dataset_id), so queries written for the old tables run unchanged. BigQuery
applies a base table's require_partition_filter when a view over it is queried ("The query that
defines a view is run each time the view is queried": https://cloud.google.com/bigquery/docs/views-intro),
so a query on them needs its game_date filter, as the old game-lines table did. Each old shape is
written once, as its view; its table function (the date-range form) selects from the view.
"""

from __future__ import annotations

import json
import string
from dataclasses import dataclass
from functools import lru_cache

from .sql import quote
from .tables import SCHEMA_DIR

ROUTINE_DIR = SCHEMA_DIR / "routines"
LEGACY_VIEW_DIR = SCHEMA_DIR / "legacy_views"
LEGACY_DATASET = "nba_raw"  # the old pipeline's dataset name (ODDSBATCH_LEGACY_DATASET, Terraform's legacy_dataset_id)


@dataclass(frozen=True)
class Routine:
    name: str
    description: str
    arguments: tuple[tuple[str, str], ...]  # (name, BigQuery type)
    reads: tuple[str, ...]  # other routines its body calls
    template: str

    def body(self, project: str, dataset: str, legacy_dataset: str = LEGACY_DATASET) -> str:
        """The definition body with the datasets' names filled in (as Terraform's replace())."""
        return string.Template(self.template).substitute(project=project, dataset=dataset,
                                                         legacy_dataset=legacy_dataset)

    def create_sql(self, project: str, dataset: str, legacy_dataset: str = LEGACY_DATASET) -> str:
        args = ", ".join(f"{name} {kind}" for name, kind in self.arguments)
        return (f"CREATE OR REPLACE TABLE FUNCTION {quote(f'{project}.{dataset}.{self.name}')}({args})\n"
                f"AS (\n{self.body(project, dataset, legacy_dataset).rstrip()}\n)")


@dataclass(frozen=True)
class LegacyView:
    """One compatibility view: the old pipeline's table (or view) name, its SQL over our tables."""
    name: str
    description: str
    reads: tuple[str, ...]  # other compatibility views its query reads
    template: str

    def query(self, project: str, dataset: str, legacy_dataset: str = LEGACY_DATASET) -> str:
        return string.Template(self.template).substitute(project=project, dataset=dataset,
                                                         legacy_dataset=legacy_dataset)

    def create_sql(self, project: str, dataset: str, legacy_dataset: str = LEGACY_DATASET) -> str:
        return (f"CREATE OR REPLACE VIEW {quote(f'{project}.{legacy_dataset}.{self.name}')}\n"
                f"OPTIONS (description = {json.dumps(self.description)})\n"
                f"AS\n{self.query(project, dataset, legacy_dataset).rstrip()}")


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


@lru_cache(maxsize=None)
def all_legacy_views() -> tuple[LegacyView, ...]:
    """Every compatibility view, each after the views it reads (the order to create them in)."""
    meta = json.loads((LEGACY_VIEW_DIR / "views.json").read_text())
    views = [LegacyView(name=name, description=m["description"], reads=tuple(m.get("reads", ())),
                        template=(LEGACY_VIEW_DIR / f"{name}.sql").read_text())
             for name, m in meta.items()]
    for view in views:
        if unknown := set(view.reads) - set(meta):
            raise ValueError(f"views.json: {view.name} reads {sorted(unknown)[0]}, which is no view")
        if any(meta[read].get("reads") for read in view.reads):
            raise ValueError(f"views.json: {view.name} reads a view that reads views (one level only)")
    return tuple(sorted(views, key=lambda v: bool(v.reads)))


def create_legacy_views(client, project: str, dataset: str, legacy_dataset: str = LEGACY_DATASET) -> list[str]:
    """Create or replace the compatibility views in `legacy_dataset` (which must exist), the views
    they read first; their names. Before create_routines: the legacy table functions read them."""
    for view in all_legacy_views():
        client.query(view.create_sql(project, dataset, legacy_dataset), job_id_prefix="oddsbatch_view_").result()
    return [v.name for v in all_legacy_views()]


def create_routines(client, project: str, dataset: str, legacy_dataset: str = LEGACY_DATASET) -> list[str]:
    """Create or replace every routine in the dataset, dependencies first; their names."""
    for routine in all_routines():
        client.query(routine.create_sql(project, dataset, legacy_dataset), job_id_prefix="oddsbatch_routine_").result()
    return [r.name for r in all_routines()]
