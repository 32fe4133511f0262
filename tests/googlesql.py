"""GoogleSQL conformance: BigQuery's own analyzer (ZetaSQL, WASM build from PyPI `zetasql`) on
every statement oddsbatch can send to BigQuery.

The BigQuery emulator runs SQL by translating it to DuckDB, which accepts statements BigQuery
rejects (FLOAT64 in PARTITION BY: the 400 the old system hit in production). ZetaSQL is the
analyzer BigQuery's dialect is defined by: a statement it rejects would be rejected by
BigQuery too. The catalog is built from the same schema files the tables are created from,
in BigQuery's external product mode (its type names and rules), with every query parameter
declared with its type. The table functions are added to the catalog as their CREATE
statements are analyzed, so queries that call them are checked against their real output.
https://github.com/google/zetasql (the reference implementation of GoogleSQL)
https://cloud.google.com/bigquery/docs/reference/standard-sql/data-types#comparable_data_types

Dev/test only: never imported by the package, never in a function bundle.
"""

from __future__ import annotations

import dataclasses
import re
from functools import cached_property

from oddsbatch.ingest_log import log_tables
from oddsbatch.routines import LEGACY_DATASET, all_legacy_views, all_routines
from oddsbatch.sql import quote
from oddsbatch.tables import all_tables

# BigQuery schema types (legacy and GoogleSQL names) -> ZetaSQL type kinds.
_TYPE_KINDS = {
    "STRING": "TYPE_STRING", "BYTES": "TYPE_BYTES", "INTEGER": "TYPE_INT64", "INT64": "TYPE_INT64",
    "FLOAT": "TYPE_DOUBLE", "FLOAT64": "TYPE_DOUBLE", "NUMERIC": "TYPE_NUMERIC",
    "BIGNUMERIC": "TYPE_BIGNUMERIC", "BOOLEAN": "TYPE_BOOL", "BOOL": "TYPE_BOOL",
    "TIMESTAMP": "TYPE_TIMESTAMP", "DATE": "TYPE_DATE", "TIME": "TYPE_TIME",
    "DATETIME": "TYPE_DATETIME", "JSON": "TYPE_JSON",
}


class GoogleSQLError(AssertionError):
    """ZetaSQL rejected a statement: BigQuery would answer 400 with the same message."""


def staging_name(table: str) -> str:
    return f"_staging_{table}"


# A run's staging table is `_staging_<table>_<run id>`: one catalog entry stands for all runs.
_STAGING_RUN = re.compile(r"(_staging_(?:%s))_[A-Za-z0-9_]+`" % "|".join(map(re.escape, all_tables())))


def canonical(statement: str) -> str:
    """The statement with every run's staging table named as the catalog's one staging table."""
    return _STAGING_RUN.sub(r"\1`", statement)


class GoogleSQL:
    """One analyzer per test run (starting the WASM module costs ~10-40 s of CPU)."""

    def __init__(self, project: str, dataset: str, schemas: dict[str, list[dict]] | None = None):
        """`schemas` replaces a table's schema fields (a negative control's mutated schema)."""
        from zetasql.types import LanguageOptions
        from zetasql.types.proto_model import ProductMode

        self.project, self.dataset = project, dataset
        self.schemas = schemas or {}
        self.language = LanguageOptions.maximum_features()
        self.language.product_mode = ProductMode.PRODUCT_EXTERNAL  # BigQuery's type names and rules
        self.language.supported_statement_kinds = []  # every kind: MERGE, CREATE TABLE FUNCTION, ...
        self._tvfs: dict[str, object] = {}
        self._catalog = None

    # -- types --------------------------------------------------------------------------
    def field_type(self, field: dict):
        from zetasql.api import TypeFactory
        from zetasql.types import TypeKind

        if field["type"] in ("RECORD", "STRUCT"):
            kind = TypeFactory.create_struct_type([(f["name"], self.field_type(f)) for f in field["fields"]])
        else:
            kind = TypeFactory.create_simple_type(getattr(TypeKind, _TYPE_KINDS[field["type"]]))
        return TypeFactory.create_array_type(kind) if field.get("mode") == "REPEATED" else kind

    def _path(self, name: str) -> str:
        return f"{self.project}.{self.dataset}.{name}"

    # -- catalog ------------------------------------------------------------------------
    def _table(self, name: str, fields, full_path: bool = False) -> object:
        """One catalog table of the dataset (or at `name` itself when `full_path`), its columns
        typed from BigQuery schema fields."""
        from zetasql.api import TableBuilder

        builder = TableBuilder(name if full_path else self._path(name))
        for field in fields:
            builder.add_column(field["name"], self.field_type(field))
        return builder.build()

    @cached_property
    def _tables(self) -> list:
        built = []
        for spec in all_tables().values():
            if spec.name in self.schemas:
                spec = dataclasses.replace(spec, schema=tuple(self.schemas[spec.name]))
            built.append(self._table(spec.name, spec.schema))
            built.append(self._table(staging_name(spec.name), spec.staging_schema()))
        for spec in log_tables().values():  # not MERGE targets (no staging): the ingest log
            built.append(self._table(spec.name, spec.schema))
        return built

    def catalog(self):
        if self._catalog is None:
            from zetasql.api import CatalogBuilder
            from zetasql.types import ZetaSQLBuiltinFunctionOptions

            builder = CatalogBuilder("bigquery")
            for table in self._tables:
                builder.add_table(table)
            for tvf in self._tvfs.values():
                builder.add_table_valued_function(tvf)
            self._catalog = builder.with_builtin_functions(
                ZetaSQLBuiltinFunctionOptions(language_options=self.language)).build()
        return self._catalog

    def add_table(self, name: str, fields: list[dict], dataset: str | None = None) -> None:
        """A table the schema files do not define (a test's own probe table; the old pipeline's
        tables, in their own `dataset`); a name already in the catalog is left as it is."""
        path_name = f"{self.project}.{dataset}.{name}" if dataset else self._path(name)
        if path_name in {t.name for t in self._tables}:
            return
        self._tables.append(self._table(name if not dataset else path_name, fields, full_path=bool(dataset)))
        self._catalog = None

    def _add_table_function(self, name: str, arguments, output_columns) -> None:
        from zetasql.api import TVFBuilder

        builder = TVFBuilder(self._path(name))
        for arg_name, arg_type in arguments:
            builder.add_argument(arg_name, self.field_type({"type": arg_type}))
        builder.set_output_schema(output_columns)
        tvf = builder.build()
        tvf.name_path = [self._path(name)]  # one name, as the backquoted path names tables
        for argument in tvf.signature.argument:  # a concrete signature: each argument given once
            argument.num_occurrences = 1
        tvf.signature.return_type.num_occurrences = 1
        self._tvfs[name] = tvf
        self._catalog = None

    # -- analysis -----------------------------------------------------------------------
    def _parameter_type(self, kind: str | tuple[str, str]):
        """"DATE", or ("ARRAY", "STRING") for an array parameter."""
        if isinstance(kind, tuple):
            return self.field_type({"type": kind[1], "mode": "REPEATED"})
        return self.field_type({"type": kind})

    def analyze(self, statement: str, parameters: dict | None = None):
        """Analyze one statement; `parameters` maps each @name to its BigQuery type
        ("DATE", or ("ARRAY", "STRING"))."""
        from zetasql.api import Analyzer
        from zetasql.types import AnalyzerOptions

        declared = [AnalyzerOptions.QueryParameter(name=name, type=self._parameter_type(kind))
                    for name, kind in (parameters or {}).items()]
        options = AnalyzerOptions(language_options=self.language, query_parameters=declared)
        try:
            return Analyzer(options, self.catalog()).analyze_statement(canonical(statement))
        except Exception as exc:  # the WASM service answers a ServerError with ZetaSQL's message
            raise GoogleSQLError(f"{exc}\n--- statement ---\n{statement}") from None

    def create_legacy_views(self, legacy_dataset: str = LEGACY_DATASET) -> dict[str, str]:
        """Analyze every compatibility view's CREATE VIEW statement, the views it reads first, adding
        each to the catalog (in `legacy_dataset`) with the columns ZetaSQL resolved; name -> statement."""
        created = {}
        for view in all_legacy_views():
            statement = view.create_sql(self.project, self.dataset, legacy_dataset)
            resolved = self.analyze(statement)
            self._add_resolved(legacy_dataset, view.name, resolved)
            created[view.name] = statement
        return created

    def add_view(self, dataset: str, name: str, query: str) -> bool:
        """A view of another dataset, its columns as ZetaSQL resolves its query; False when the query
        reads what the catalog lacks yet (another view). A name already in the catalog is left as it is."""
        path = f"{self.project}.{dataset}.{name}"
        if path in {t.name for t in self._tables}:
            return True
        try:
            resolved = self.analyze(query)
        except GoogleSQLError as error:
            if "not found" in str(error).lower():
                return False
            raise
        self._add_resolved(dataset, name, resolved)
        return True

    def _add_resolved(self, dataset: str, name: str, resolved) -> None:
        """A view of `dataset` with the columns ZetaSQL resolved, under its full name and under
        `dataset.name` (BigQuery resolves a name without project in the job's project, as queries
        written for the old tables name `nba_raw.odds_api_game_lines`)."""
        from zetasql.api import TableBuilder

        present = {t.name for t in self._tables}
        for path in (f"{self.project}.{dataset}.{name}", f"{dataset}.{name}"):
            if path in present:  # made by an earlier call on this (shared) checker
                continue
            builder = TableBuilder(path)
            for column in resolved.output_column_list:
                builder.add_column(column.name, column.column.type)
            self._tables.append(builder.build())
        self._catalog = None

    def create_routines(self) -> dict[str, str]:
        """Analyze every routine's CREATE statement, dependencies first, adding each to the
        catalog with the output columns ZetaSQL resolved; name -> statement. The compatibility
        views come first (the legacy table functions read them), as `oddsbatch up` creates them."""
        if not any(t.name.startswith(f"{self.project}.{LEGACY_DATASET}.") for t in self._tables):
            self.create_legacy_views()
        created = {}
        for routine in all_routines():
            statement = routine.create_sql(self.project, self.dataset)
            resolved = self.analyze(statement)
            columns = [(c.name, c.column.type) for c in resolved.output_column_list]
            self._add_table_function(routine.name, routine.arguments, columns)
            created[routine.name] = statement
        return created


def job_parameters(job) -> dict[str, str]:
    """A query job's parameters as name -> BigQuery type (scalars and arrays of scalars)."""
    declared = {}
    for parameter in job.query_parameters or ():
        if hasattr(parameter, "array_type"):
            declared[parameter.name] = ("ARRAY", parameter.array_type)
        else:
            declared[parameter.name] = parameter.type_
    return declared


def _names_scratch_table(statement: str, checker: GoogleSQL, prefixes: tuple[str, ...]) -> bool:
    """Whether the statement names a table of the dataset whose name starts with one of `prefixes`."""
    dataset = re.escape(f"{checker.project}.{checker.dataset}.")
    return any(name.startswith(prefixes) for name in re.findall(rf"`{dataset}([A-Za-z0-9_]+)`", statement))


def analyze_emulator(checker: GoogleSQL, client, scratch_tables: tuple[str, ...] = ()) -> dict[str, int]:
    """Analyze every query job a BigQuery emulator ran and every routine it holds, as they are
    stored there (list_jobs keeps each job's text and parameters); counts per statement type.
    Raises GoogleSQLError for the first statement ZetaSQL rejects."""
    checker.create_routines()  # the catalog's table functions, as the code creates them
    # Tables the tests made on their own (probe tables of the DML limit tests, ...) join the
    # catalog with the schema the emulator holds, so their statements are analyzed too.
    dataset = f"{checker.project}.{checker.dataset}"
    known = set(all_tables()) | set(log_tables()) | {r.name for r in all_routines()}
    # Tables of the project's other datasets too (the old pipeline's tables that import-legacy reads).
    views: dict[tuple[str, str], str] = {}
    for other in client.list_datasets():
        in_ours = other.dataset_id == checker.dataset
        for item in client.list_tables(other.reference):
            if in_ours and (item.table_id in known or item.table_id.startswith("_staging_")):
                continue
            try:
                table = client.get_table(item.reference)
            except Exception:  # noqa: BLE001 - listed but gone (a reset in between)
                continue
            if table.table_type == "TABLE" and table.schema:
                checker.add_table(item.table_id, [f.to_api_repr() for f in table.schema],
                                  dataset=None if in_ours else other.dataset_id)
            elif table.table_type == "VIEW" and not in_ours:
                views[(other.dataset_id, item.table_id)] = table.view_query
    # Views (the compatibility views are in the catalog already; a test's own views join it as
    # ZetaSQL resolves their query), a view after the views it reads: rounds until none is left.
    while views:
        added = [key for key, query in views.items() if checker.add_view(*key, query)]
        if not added:
            raise GoogleSQLError(f"views that read what the catalog lacks: {sorted(views)}")
        for key in added:
            del views[key]
    seen: dict[str, int] = {}
    for job in client.list_jobs(all_users=True):
        if job.job_type != "query":
            continue
        if scratch_tables and _names_scratch_table(job.query, checker, scratch_tables):
            seen["SKIPPED"] = seen.get("SKIPPED", 0) + 1  # a test's own SQL on its own scratch tables
            continue
        try:
            checker.analyze(job.query, job_parameters(job))
        except GoogleSQLError:
            if job.error_result:  # the emulator refused it too (a test's deliberate bad input)
                seen["REJECTED_BY_BOTH"] = seen.get("REJECTED_BY_BOTH", 0) + 1
                continue
            raise
        kind = (job.statement_type or "UNKNOWN") if job.state == "DONE" else job.state
        seen[kind] = seen.get(kind, 0) + 1
    for item in client.list_routines(dataset):
        routine = client.get_routine(item.reference)
        args = ", ".join(f"{a.name} {a.data_type.type_kind.name if hasattr(a.data_type.type_kind, 'name') else a.data_type.type_kind}"
                         for a in routine.arguments)
        checker.analyze(f"CREATE OR REPLACE TABLE FUNCTION {quote(f'{dataset}.{routine.routine_id}')}({args})\n"
                        f"AS (\n{routine.body}\n)")
        seen["ROUTINE"] = seen.get("ROUTINE", 0) + 1
    return seen
